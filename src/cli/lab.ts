import { Command } from 'commander';
import { resolve } from 'node:path';
import { replicationRun } from '../lab/replication-run.js';
import { parseBytes } from '../runtime/config.js';

export function labCommand(): Command {
  return new Command('lab')
    .description('one-machine lab: run agent, process server and master target on loopback, drive a workload through NBD, verify the replica and its recovery points')
    .option('--dir <dir>', 'where the lab keeps its sites, configs and logs', 'lab-data')
    .option('--disk-size <size>', 'size of the demo disk', '512MiB')
    .option('--duration <seconds>', 'how long the workload writes', '20')
    .option('--bookmark-every <seconds>', 'pause writes and take an app bookmark this often', '5')
    .option('--seed <n>', 'workload seed', '1')
    .option('--keep', 'keep an existing lab directory instead of starting fresh', false)
    .action(async (opts: { dir: string; diskSize: string; duration: string; bookmarkEvery: string; seed: string; keep: boolean }) => {
      const ok = await replicationRun({
        dir: resolve(opts.dir),
        diskBytes: parseBytes(opts.diskSize),
        durationMs: Number(opts.duration) * 1000,
        bookmarkEveryMs: Number(opts.bookmarkEvery) * 1000,
        seed: Number(opts.seed),
        keep: opts.keep,
        print: (line) => process.stdout.write(`${line}\n`),
      });
      process.exitCode = ok ? 0 : 1;
    });
}
