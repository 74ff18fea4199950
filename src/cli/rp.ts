import { Command, InvalidArgumentError, Option } from 'commander';
import { resolve } from 'node:path';
import { BoomerangError, ConfigError } from '../replication/errors.js';
import { listRecoveryPointsOffline, restoreOffline } from '../mt/offline.js';
import type { HttpsJsonClient } from '../runtime/https-client.js';
import { controlClientFromFiles } from './common.js';
import type { RecoveryPointView } from '../cs/inventory/recovery-points.js';
import { action, CONNECTION_HELP, ENV, exitCodesHelp, printJson, query, renderTable, resolveItem, withApi, type Lang } from './cs-api.js';

interface Target {
  disk?: string;
  mt?: string;
  ca?: string;
  tokenFile?: string;
  retention?: string;
  output: 'json' | 'table';
}

interface PointView {
  id: string;
  bookmarkId: string;
  kind: string;
  time: number;
  lineage: string;
  seq: number;
}

function addTargetOptions(cmd: Command, disk: 'required' | 'optional' = 'required'): Command {
  return (disk === 'required' ? cmd.requiredOption('--disk <id>', 'disk id') : cmd.option('--disk <id>', 'disk id (required with --mt or --retention; with <item>: only this disk)'))
    .option('--mt <host:port>', 'a running master target’s control endpoint')
    .option('--ca <file>', 'CA that signed the master target’s certificate (with --mt)')
    .option('--token-file <file>', 'token for the master target’s control API (with --mt)')
    .option('--retention <dir>', 'offline: the disk’s retention directory on a master target that is stopped')
    .option('-o, --output <format>', 'json | table', 'table');
}

async function online<T>(t: Target, fn: (c: HttpsJsonClient) => Promise<T>): Promise<T> {
  if (!t.ca || !t.tokenFile) throw new ConfigError('USAGE', '--mt needs --ca and --token-file');
  const client = await controlClientFromFiles(t.mt!, t.ca, t.tokenFile);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

function pickMode(t: Target, item?: string): 'online' | 'offline' | 'cs' {
  if (item !== undefined) {
    if (t.mt || t.retention) throw new ConfigError('USAGE', 'give either <item> (from the configuration server), --mt (running master target) or --retention (offline), not several');
    return 'cs';
  }
  if (t.mt && t.retention) throw new ConfigError('USAGE', 'give either --mt (running master target) or --retention (offline), not both');
  if (!t.mt && !t.retention) throw new ConfigError('USAGE', 'give --mt <host:port> (running master target) or --retention <dir> (offline), or, for list, an <item> of the configuration server');
  if (t.disk === undefined) throw new ConfigError('USAGE', '--disk <id> is required with --mt or --retention');
  return t.mt ? 'online' : 'offline';
}

interface CsTarget extends Target {
  cs?: string;
  lang: Lang;
  limit: number;
}

function limit(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new InvalidArgumentError('must be an integer from 1 to 1000');
  return n;
}

/** rp list <item>: the points master targets reported to the configuration server, newest first. */
async function listFromCs(ref: string, t: CsTarget): Promise<void> {
  await withApi(t, async (api) => {
    const item = await resolveItem(api, ref);
    const points = await api.get<RecoveryPointView[]>(`/v1/items/${encodeURIComponent(item.id)}/recovery-points${query({ diskId: t.disk, limit: t.limit })}`);
    if (t.output === 'json') return printJson(points);
    const rows = points.map((p) => [p.diskId, p.pointId, p.bookmarkId || '-', p.kind, p.time.replace(/\.\d{3}Z$/, 'Z'), `${p.lineage.slice(0, 8)}/${p.seq}`]);
    process.stdout.write(renderTable(['DISK', 'POINT', 'BOOKMARK', 'KIND', 'TIME', 'POSITION'], rows));
    if (rows.length === 0) process.stdout.write(`(no recovery points reported for ${item.machineName}${t.disk ? ` disk ${t.disk}` : ''} yet)\n`);
  });
}

function printPoints(points: PointView[], output: Target['output']): void {
  if (output === 'json') {
    process.stdout.write(`${JSON.stringify(points, null, 2)}\n`);
    return;
  }
  const rows = points.map((p) => [p.bookmarkId, p.kind, new Date(p.time).toISOString(), `${p.lineage.slice(0, 8)}/${p.seq}`]);
  const head = ['BOOKMARK', 'KIND', 'TIME', 'POSITION'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [head, ...rows]) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ')}\n`);
  if (rows.length === 0) process.stdout.write('(no recovery points yet)\n');
}

export function rpCommand(): Command {
  const rp = new Command('rp').exitOverride().description('recovery points of a replicated disk: list them, restore one');
  addTargetOptions(
    rp
      .command('list')
      .description('list recovery points: of an item from the configuration server (newest first), or of one disk from a master target (oldest first)')
      .argument('[item]', 'a protected item (id or machine name): list its points from the configuration server')
      .option('--cs <url>', `with <item>: configuration server (default: $${ENV.cs}); --ca and --token-file are then the CS’s (default: $${ENV.ca}, $${ENV.tokenFile})`)
      .addOption(new Option('--limit <n>', 'with <item>: at most this many points').argParser(limit).default(100))
      .addOption(new Option('--lang <lang>', 'with <item>: language of messages').choices(['en', 'ja']).default('en')),
    'optional',
  )
    .addHelpText(
      'after',
      `
Modes:
  rp list <item> [--disk <id>]                 the configuration server (what master targets reported)
  rp list --disk <id> --mt <host:port> …       a running master target
  rp list --disk <id> --retention <dir>        offline, from a stopped master target's retention directory
${CONNECTION_HELP}
${exitCodesHelp([0, 1, 2])}`,
    )
    .action(
      action(async (item: string | undefined, t: CsTarget) => {
        const mode = pickMode(t, item);
        if (mode === 'cs') return listFromCs(item!, t);
        const points =
          mode === 'online'
            ? (await online(t, (c) => c.call<{ points: PointView[] }>('GET', `/disks/${encodeURIComponent(t.disk!)}/recovery-points`))).points
            : await listRecoveryPointsOffline(resolve(t.retention!));
        printPoints(points, t.output);
      }),
    );
  addTargetOptions(
    rp
      .command('restore')
      .description('materialise the disk at a recovery point: into a new file (--out) or rolling the target back in place (--in-place)')
      .requiredOption('--point <id>', "bookmark id or recovery point id (as `rp list` shows), or 'latest'")
      .option('--out <file>', 'write the restored disk to this new file')
      .option('--in-place', 'roll the target disk itself back (later points are discarded)', false)
      .option('--target <file>', 'offline: the target disk file'),
  ).action(async (t: Target & { point: string; out?: string; inPlace: boolean; target?: string }) => {
    if (!t.out === !t.inPlace) throw new ConfigError('USAGE', 'give exactly one of --out <file> or --in-place');
    const started = Date.now();
    if (pickMode(t) === 'online') {
      await online(t, (c) => c.call('POST', `/disks/${encodeURIComponent(t.disk!)}/restore`, t.inPlace ? { point: t.point, inPlace: true } : { point: t.point, outPath: resolve(t.out!) }));
    } else {
      if (t.inPlace) throw new ConfigError('USAGE', 'in-place restore needs the running master target (--mt)');
      const dir = resolve(t.retention!);
      const point = t.point === 'latest' ? t.point : (await listRecoveryPointsOffline(dir)).find((p) => p.id === t.point || p.bookmarkId === t.point)?.id;
      if (!point) throw new BoomerangError('UNKNOWN_POINT', `no recovery point or bookmark ${t.point} in ${dir}`);
      await restoreOffline(dir, point, resolve(t.out!), t.target ? { targetPath: resolve(t.target) } : {});
    }
    const result = { disk: t.disk, point: t.point, ...(t.out ? { out: resolve(t.out) } : { inPlace: true }), ms: Date.now() - started };
    process.stdout.write(t.output === 'json' ? `${JSON.stringify(result)}\n` : `restored ${t.disk} to ${t.point}${t.out ? ` into ${resolve(t.out)}` : ' in place'} in ${result.ms} ms\n`);
  });
  return rp;
}
