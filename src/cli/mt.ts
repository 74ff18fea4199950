import { Command } from 'commander';
import { Type, type Static } from '@sinclair/typebox';
import { masterTargetCommands, recoveryPointReport } from '../mt/commands.js';
import { MasterTarget } from '../mt/main.js';
import { loadConfigFile } from '../runtime/config.js';
import { AzureConfigSchema } from '../replication/azure-config.js';
import { DiskStore } from '../replication/disk-store.js';
import { createLogger } from '../runtime/log.js';
import type { Endpoint } from '../replication/transport.js';
import { CsSchema, EndpointString, SizeValue, TlsSchema, bytes, endpoint, loadSecurity, runUntilSignal, startCsLink } from './common.js';

export const MtConfigSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 128 }),
    listen: EndpointString,
    /** The resync target for agents (delta resync); default: the host of listen and the port after it. */
    resyncListen: Type.Optional(EndpointString),
    control: Type.Optional(EndpointString),
    retention: Type.Object(
      { dir: Type.String({ minLength: 1 }), windowHours: Type.Optional(Type.Number({ exclusiveMinimum: 0 })), maxBytesPerDisk: Type.Optional(SizeValue) },
      { additionalProperties: false },
    ),
    disks: Type.Optional(
      Type.Array(
        Type.Object(
          { id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' }), target: Type.String({ minLength: 1 }), size: SizeValue, blobSnapshots: Type.Optional(Type.Boolean()) },
          { additionalProperties: false },
        ),
        { description: 'disks replicated from the start; the CS attaches the others at runtime' },
      ),
    ),
    /** Page-blob replicas keep each recovery point as a blob snapshot too (a disk's own blobSnapshots wins). */
    blobSnapshots: Type.Optional(Type.Boolean({ description: 'keep recovery points of page-blob replicas as blob snapshots too (default false)' })),
    tls: Type.Optional(TlsSchema),
    cs: Type.Optional(CsSchema),
    tokenFile: Type.String({ minLength: 1 }),
    azure: Type.Optional(AzureConfigSchema),
  },
  { additionalProperties: false },
);
export type MtConfig = Static<typeof MtConfigSchema>;

export function mtCommand(): Command {
  return new Command('mt')
    .description('run a master target: apply batches to target disks behind an undo journal, keep recovery points')
    .requiredOption('-c, --config <file>', 'master target config file (YAML or JSON)')
    .option('--listen <host:port>', 'data endpoint for process servers (overrides listen)')
    .option('--resync-listen <host:port>', 'resync target endpoint for agents (overrides resyncListen)')
    .option('--log-level <level>', 'trace|debug|info|warn|error', 'info')
    .addHelpText(
      'after',
      `
Config file (YAML):
  name: mt1
  listen: 0.0.0.0:9444
  resyncListen: 0.0.0.0:9445                  # agents compare their disks with the replicas here
                                              # (default: listen's host, listen's port + 1)
  control: 127.0.0.1:9082                     # status, recovery points, restore
  retention: { dir: /mnt/retention, windowHours: 24, maxBytesPerDisk: 100GiB }
  disks: [ { id: disk0, target: /srv/replica/disk0.img, size: 1GiB } ]
                                              # or a page blob: target: azblob://cloud/replicas/disk0
  blobSnapshots: true                         # page-blob replicas: each recovery point also kept as
                                              # a blob snapshot (restored by a server-side copy);
                                              # per disk: disks: [ { ..., blobSnapshots: false } ]
  azure:                                      # storage accounts azblob:// targets name (key in a file)
    accounts: { cloud: { url: https://acct.blob.core.windows.net, accountName: acct, keyFile: acct.key } }
  tls: { ca: ca.pem, cert: mt.pem, key: mt.key }
  tokenFile: token`,
    )
    .action(async (opts: { config: string; listen?: string; resyncListen?: string; logLevel: string }) => {
      const cfg = await loadConfigFile(opts.config, MtConfigSchema);
      const log = createLogger('mt', opts.logLevel);
      const { material, token, cs } = await loadSecurity(cfg, { kind: 'mt', name: cfg.name });
      const listen = endpoint(opts.listen ?? cfg.listen);
      const resyncListen = opts.resyncListen ?? cfg.resyncListen;
      const mt = await MasterTarget.start({
        name: cfg.name,
        listen,
        resyncListen: resyncListen === undefined ? defaultResyncListen(listen) : endpoint(resyncListen),
        ...(cfg.cs?.hostnames?.[0] !== undefined ? { advertiseHost: cfg.cs.hostnames[0] } : {}),
        retentionDir: cfg.retention.dir,
        diskStore: await DiskStore.fromConfig(cfg.azure),
        disks: (cfg.disks ?? []).map((d) => ({ id: d.id, target: d.target, sizeBytes: bytes(d.size)!, ...(d.blobSnapshots === undefined ? {} : { blobSnapshots: d.blobSnapshots }) })),
        ...(cfg.blobSnapshots === undefined ? {} : { blobSnapshots: cfg.blobSnapshots }),
        material,
        token,
        log,
        ...(cfg.retention.windowHours !== undefined ? { retentionMs: cfg.retention.windowHours * 3600 * 1000 } : {}),
        ...(cfg.retention.maxBytesPerDisk !== undefined ? { maxJournalBytes: bytes(cfg.retention.maxBytesPerDisk)! } : {}),
        ...(cfg.control ? { control: endpoint(cfg.control) } : {}),
      });
      process.stdout.write(`${JSON.stringify({ event: 'ready', component: 'mt', listen: mt.endpoint, resync: mt.resyncEndpoint, control: mt.controlEndpoint })}\n`);
      const link = startCsLink(cs, { report: () => mt.healthReport(), afterBeat: async (client) => void (await client.call('POST', '/v1/recovery-points', recoveryPointReport(mt))), commands: masterTargetCommands(mt), log });
      await runUntilSignal(async () => {
        await link.stop();
        await mt.stop();
      });
    });
}

/**
 * The port after the data port: an agent is told this endpoint when its protection starts and keeps
 * using it across an MT restart, so it must not change the way an OS-chosen port would.
 */
function defaultResyncListen(listen: Endpoint): Endpoint {
  return { host: listen.host, port: listen.port === 0 ? 0 : listen.port + 1 };
}
