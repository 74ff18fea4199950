import { Command } from 'commander';
import { Type, type Static } from '@sinclair/typebox';
import { Agent } from '../agent/agent.js';
import { loadConfigFile } from '../runtime/config.js';
import { AzureConfigSchema } from '../replication/azure-config.js';
import { DiskStore } from '../replication/disk-store.js';
import { createLogger } from '../runtime/log.js';
import { CsSchema, EndpointString, SizeValue, TlsSchema, bytes, endpoint, loadSecurity, runUntilSignal, startCsLink } from './common.js';
import { agentCommands } from '../agent/commands.js';

export const AgentConfigSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 128 }),
    stateDir: Type.String({ minLength: 1 }),
    nbdSocket: Type.String({ minLength: 1 }),
    processServer: EndpointString,
    control: Type.Optional(EndpointString),
    tls: Type.Optional(TlsSchema),
    cs: Type.Optional(CsSchema),
    tokenFile: Type.String({ minLength: 1 }),
    azure: Type.Optional(AzureConfigSchema),
    disks: Type.Array(
      Type.Object(
        {
          id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' }),
          path: Type.String({ minLength: 1 }),
          size: Type.Optional(SizeValue),
          protect: Type.Optional(Type.Boolean({ description: 'replicate from the start (default); false serves the disk until the CS protects it' })),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
    batch: Type.Optional(Type.Object({ maxBytes: Type.Optional(SizeValue), maxDelayMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })) }, { additionalProperties: false })),
    bufferBytes: Type.Optional(SizeValue),
    windowBytes: Type.Optional(SizeValue),
    regionBytes: Type.Optional(SizeValue),
    bookmarkIntervalSec: Type.Optional(Type.Number({ minimum: 0 })),
    resync: Type.Optional(
      Type.Object(
        {
          checkpointBytes: Type.Optional(SizeValue),
          windowBatches: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
          connectTimeoutSec: Type.Optional(Type.Number({ minimum: 0 })),
        },
        { additionalProperties: false, description: 'delta resync against the master target: checkpoint interval (bytes compared between persisted cursors), compares in flight, how long an unreachable target is retried before regions are copied' },
      ),
    ),
  },
  { additionalProperties: false },
);
export type AgentConfig = Static<typeof AgentConfigSchema>;

export function agentCommand(): Command {
  return new Command('agent')
    .description('run the mobility agent: serve protected disks over NBD, capture every write, send batches to a process server')
    .requiredOption('-c, --config <file>', 'agent config file (YAML or JSON)')
    .option('--ps <host:port>', 'process server data endpoint (overrides processServer)')
    .option('--control <host:port>', 'control API endpoint (overrides control)')
    .option('--log-level <level>', 'trace|debug|info|warn|error', 'info')
    .addHelpText(
      'after',
      `
Config file (YAML):
  name: web01
  stateDir: /var/lib/boomerang/agent     # write-intent maps and lineage state
  nbdSocket: /run/boomerang/agent.sock   # unix socket; exports are named by disk id
  processServer: 127.0.0.1:9443
  control: 127.0.0.1:9080                # optional HTTPS control API (status, bookmarks, drain)
  tls: { ca: ca.pem, cert: agent.pem, key: agent.key }
  tokenFile: token                       # mode 0600
  disks: [ { id: disk0, path: /srv/disk0.img, size: 1GiB } ]
                                         # or a page blob: path: azblob://cloud/disks/web01-disk0
  azure:                                 # storage accounts azblob:// paths name (key in a file)
    accounts: { cloud: { url: https://acct.blob.core.windows.net, accountName: acct, keyFile: acct.key } }
  bufferBytes: 256MiB                    # beyond this, writes go to the dirty map (resync later)
  bookmarkIntervalSec: 300               # crash-consistent bookmarks; 0 = only on request
  resync: { checkpointBytes: 256MiB }    # delta resync: bytes compared between persisted cursors

Example: qemu-io -f raw 'nbd+unix:///disk0?socket=/run/boomerang/agent.sock' -c 'write 0 64k'`,
    )
    .action(async (opts: { config: string; ps?: string; control?: string; logLevel: string }) => {
      const cfg = await loadConfigFile(opts.config, AgentConfigSchema);
      const log = createLogger('agent', opts.logLevel);
      const { material, token, cs } = await loadSecurity(cfg, { kind: 'agent', name: cfg.name });
      const control = opts.control ?? cfg.control;
      const agent = await Agent.start({
        name: cfg.name,
        stateDir: cfg.stateDir,
        nbdSocket: cfg.nbdSocket,
        processServer: endpoint(opts.ps ?? cfg.processServer),
        material,
        token,
        log,
        diskStore: await DiskStore.fromConfig(cfg.azure),
        disks: cfg.disks.map((d) => ({ id: d.id, path: d.path, ...(d.size === undefined ? {} : { sizeBytes: bytes(d.size)! }), ...(d.protect === undefined ? {} : { protect: d.protect }) })),
        ...(control ? { control: endpoint(control) } : {}),
        ...(cfg.batch?.maxBytes !== undefined ? { maxBatchBytes: bytes(cfg.batch.maxBytes)! } : {}),
        ...(cfg.batch?.maxDelayMs !== undefined ? { maxBatchDelayMs: cfg.batch.maxDelayMs } : {}),
        ...(cfg.bufferBytes !== undefined ? { bufferBytes: bytes(cfg.bufferBytes)! } : {}),
        ...(cfg.windowBytes !== undefined ? { windowBytes: bytes(cfg.windowBytes)! } : {}),
        ...(cfg.regionBytes !== undefined ? { regionBytes: bytes(cfg.regionBytes)! } : {}),
        ...(cfg.bookmarkIntervalSec !== undefined ? { bookmarkIntervalMs: cfg.bookmarkIntervalSec * 1000 } : {}),
        ...(cfg.resync
          ? {
              resync: {
                ...(cfg.resync.checkpointBytes !== undefined ? { checkpointBytes: bytes(cfg.resync.checkpointBytes)! } : {}),
                ...(cfg.resync.windowBatches !== undefined ? { windowBatches: cfg.resync.windowBatches } : {}),
                ...(cfg.resync.connectTimeoutSec !== undefined ? { connectTimeoutMs: cfg.resync.connectTimeoutSec * 1000 } : {}),
              },
            }
          : {}),
      });
      if (agent.controlEndpoint) process.stdout.write(`${JSON.stringify({ event: 'ready', component: 'agent', control: agent.controlEndpoint })}\n`);
      const link = startCsLink(cs, { report: () => agent.healthReport(), commands: agentCommands(agent), log });
      await runUntilSignal(async () => {
        await link.stop();
        await agent.stop();
      });
    });
}
