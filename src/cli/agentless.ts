import { Command } from 'commander';
import { Type, type Static } from '@sinclair/typebox';
import { DiskStore } from '../replication/disk-store.js';
import { AgentlessRunner } from '../agentless/runner.js';
import { AzureConfigSchema } from '../replication/azure-config.js';
import { loadConfigFile } from '../runtime/config.js';
import { createLogger } from '../runtime/log.js';
import { EndpointString, SizeValue, TlsSchema, bytes, endpoint, loadSecurity, runUntilSignal } from './common.js';

export const AgentlessConfigSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 128 }),
    stateDir: Type.String({ minLength: 1 }),
    processServer: EndpointString,
    tls: TlsSchema,
    tokenFile: Type.String({ minLength: 1 }),
    azure: AzureConfigSchema,
    intervalSec: Type.Number({ minimum: 1, maximum: 86_400, description: 'time between the starts of two rounds' }),
    diffReportsClears: Type.Optional(Type.Boolean({ description: 'the storage service reports cleared pages in its diff (Azure: true; Azurite: false, the default, which also compares written ranges)' })),
    disks: Type.Array(
      Type.Object(
        {
          id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' }),
          location: Type.String({ pattern: '^azblob://', description: 'the page blob: azblob://<account>/<container>/<blob>' }),
          intervalSec: Type.Optional(Type.Number({ minimum: 1, maximum: 86_400 })),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
    batchBytes: Type.Optional(SizeValue),
    bufferBytes: Type.Optional(SizeValue),
    roundTimeoutSec: Type.Optional(Type.Number({ minimum: 1 })),
  },
  { additionalProperties: false },
);
export type AgentlessConfig = Static<typeof AgentlessConfigSchema>;

export function agentlessCommand(): Command {
  return new Command('agentless')
    .description('replicate cloud disks without an agent: page-blob snapshot diffs sent to a process server, a crash-consistent recovery point per round')
    .requiredOption('-c, --config <file>', 'config file (YAML or JSON)')
    .option('--log-level <level>', 'trace|debug|info|warn|error', 'info')
    .addHelpText(
      'after',
      `
Config file (YAML):
  name: cloud-agentless
  stateDir: /var/lib/boomerang/agentless   # base snapshot and lineage position per disk
  processServer: 127.0.0.1:9443
  tls: { ca: ca.pem, cert: agent.pem, key: agent.key }
  tokenFile: token                         # mode 0600
  azure:
    accounts: { cloud: { url: https://acct.blob.core.windows.net, accountName: acct, keyFile: acct.key } }
  diffReportsClears: true                  # Azure; leave false for Azurite
  intervalSec: 300                         # one round (one recovery point) per interval
  disks: [ { id: vm1-disk0, location: azblob://cloud/disks/vm1-disk0 } ]

Each round logs "agentless round committed" with its snapshot, bytes sent and sequence numbers;
SIGTERM stops after the PS acknowledged what was sent.`,
    )
    .action(async (opts: { config: string; logLevel: string }) => {
      const cfg = await loadConfigFile(opts.config, AgentlessConfigSchema);
      const log = createLogger('agentless', opts.logLevel);
      const { material, token } = await loadSecurity(cfg, { kind: 'agent', name: cfg.name });
      const blobs = await DiskStore.fromConfig(cfg.azure);
      const runner = await AgentlessRunner.start({
        name: cfg.name,
        stateDir: cfg.stateDir,
        processServer: endpoint(cfg.processServer),
        material,
        token,
        log,
        disks: cfg.disks.map((d) => ({
          id: d.id,
          blob: blobs.pageBlob(d.location),
          intervalMs: Math.round((d.intervalSec ?? cfg.intervalSec) * 1000),
          ...(cfg.diffReportsClears ? { diffReportsClears: true } : {}),
        })),
        ...(cfg.batchBytes === undefined ? {} : { maxBatchBytes: bytes(cfg.batchBytes)! }),
        ...(cfg.bufferBytes === undefined ? {} : { bufferBytes: bytes(cfg.bufferBytes)! }),
        ...(cfg.roundTimeoutSec === undefined ? {} : { roundTimeoutMs: cfg.roundTimeoutSec * 1000 }),
      });
      process.stdout.write(`${JSON.stringify({ event: 'ready', component: 'agentless', disks: cfg.disks.map((d) => d.id) })}\n`);
      await runUntilSignal(() => runner.stop());
    });
}
