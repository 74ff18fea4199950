import { Command } from 'commander';
import { resolve } from 'node:path';
import { BoomerangError, ConfigError } from '../replication/errors.js';
import { listRecoveryPointsOffline, restoreOffline } from '../mt/offline.js';
import type { HttpsJsonClient } from '../runtime/https-client.js';
import { controlClientFromFiles } from './common.js';

interface Target {
  disk: string;
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

function addTargetOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--disk <id>', 'disk id')
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

function pickMode(t: Target): 'online' | 'offline' {
  if (t.mt && t.retention) throw new ConfigError('USAGE', 'give either --mt (running master target) or --retention (offline), not both');
  if (t.mt) return 'online';
  if (t.retention) return 'offline';
  throw new ConfigError('USAGE', 'give --mt <host:port> (running master target) or --retention <dir> (offline)');
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
  const rp = new Command('rp').description('recovery points of a replicated disk: list them, restore one');
  addTargetOptions(rp.command('list').description('list recovery points (oldest first) with kind and time')).action(async (t: Target) => {
    const points =
      pickMode(t) === 'online'
        ? (await online(t, (c) => c.call<{ points: PointView[] }>('GET', `/disks/${encodeURIComponent(t.disk)}/recovery-points`))).points
        : await listRecoveryPointsOffline(resolve(t.retention!));
    printPoints(points, t.output);
  });
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
      await online(t, (c) => c.call('POST', `/disks/${encodeURIComponent(t.disk)}/restore`, t.inPlace ? { point: t.point, inPlace: true } : { point: t.point, outPath: resolve(t.out!) }));
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
