import { Command, Option } from 'commander';
import { access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Drill, type DrillReport } from '../lab/drill.js';
import { runGuest } from '../lab/guest.js';
import { alive } from '../lab/machine.js';
import { replicationRun } from '../lab/replication-run.js';
import { Lab, LAB_DEFAULTS, powerHook } from '../lab/two-site.js';
import { parseBytes } from '../runtime/config.js';
import { runUntilSignal } from './common.js';

const DEFAULT_DIR = '.boomerang-lab';

interface LabOpts {
  dir: string;
  machines: string;
  diskSize: string;
  burst: string;
  logLevel: string;
  azure?: boolean;
}

function labOptions(o: LabOpts, print: (line: string) => void) {
  return {
    dir: resolve(o.dir),
    machines: o.machines.split(',').map((m) => m.trim()).filter((m) => m.length > 0),
    diskBytes: parseBytes(o.diskSize),
    burstBytes: parseBytes(o.burst),
    logLevel: o.logLevel,
    ...(o.azure ? { azure: true } : {}),
    print,
  };
}

function withLabOptions(c: Command): Command {
  return c
    .option('--dir <dir>', 'where the lab keeps its two sites, the CS data, configs and logs (recreated by `lab up`)', DEFAULT_DIR)
    .option('--machines <names>', 'demo machines, comma separated', LAB_DEFAULTS.machines.join(','))
    .option('--disk-size <size>', 'disk size of each demo machine', '64MiB')
    .option('--burst <size>', 'what each guest writes when it boots (and per extra burst)', '8MiB')
    .option('--log-level <level>', 'trace|debug|info|warn|error (component logs go to <dir>/logs)', 'info')
    .option('--azure', 'site B is an Azure site: Azurite (started by the lab) holds its disks as page blobs, a stand-in Resource Manager powers its VMs');
}

function printNextSteps(lab: Lab, print: (line: string) => void): void {
  const first = lab.state.machines[0];
  print('');
  print(`configuration server  ${lab.state.csUrl}`);
  print(`vault passphrase      in ${lab.path('passphrase')} (boomerang cs passphrase --data-dir ${lab.csDir})`);
  print(`operator token        ${lab.adminTokenPath}`);
  print(`OpenAPI               ${lab.state.csUrl}/openapi.json`);
  print('');
  print('Try next (in another shell):');
  print(`  source ${join(lab.dir, 'cli.env')}`);
  print('  boomerang item list');
  if (first) {
    print(`  boomerang check failover ${first.name}`);
    print(`  boomerang failover ${first.name} --shutdown-source`);
  }
  print(`  boomerang lab drill --dir ${lab.dir}      # the whole lifecycle, verified byte for byte`);
  print('');
  print('Ctrl-C stops the lab (its directory stays for a look at the logs).');
}

function printReport(report: DrillReport, print: (line: string) => void): void {
  print('');
  print(report.ok ? `drill passed in ${(report.ms / 1000).toFixed(1)} s: every disk verified byte for byte` : 'drill FAILED');
}

async function supervisorRunning(dir: string): Promise<boolean> {
  try {
    await access(join(dir, 'lab.json'));
  } catch {
    return false;
  }
  const lab = await Lab.open({ dir });
  const running = alive(lab.state.supervisorPid) && lab.state.supervisorPid !== process.pid;
  await lab.client.close();
  return running;
}

export function labCommand(): Command {
  const lab = new Command('lab').description('the one-machine lab: two sites, a configuration server, process servers, master targets and demo machines on loopback');

  withLabOptions(lab.command('up', { isDefault: true }).description('bring the lab up, enable replication of every demo machine, and keep it running until Ctrl-C')).action(
    async (o: LabOpts) => {
      const print = (line: string) => process.stdout.write(`${line}\n`);
      print(`bringing the lab up in ${resolve(o.dir)} …`);
      const running = await Lab.up(labOptions(o, print));
      printNextSteps(running, print);
      await runUntilSignal(() => running.down());
    },
  );

  withLabOptions(
    lab
      .command('drill')
      .description('run the whole lifecycle unattended on every demo machine (enable → failover → commit → reprotect → failback → commit → reprotect) and report each step')
      .addOption(new Option('-o, --output <format>', 'report format').choices(['table', 'json']).default('table'))
      .addHelpText('after', '\nUses the lab running in --dir if there is one; otherwise brings one up for the drill and stops it afterwards.\nExit codes: 0 every step passed and verified, 1 a step failed.'),
  ).action(async (o: LabOpts & { output: 'table' | 'json' }) => {
    const print = o.output === 'json' ? () => undefined : (line: string) => process.stdout.write(`${line}\n`);
    const dir = resolve(o.dir);
    const attached = await supervisorRunning(dir);
    if (!attached) print(`bringing a lab up in ${dir} for the drill …`);
    const target = attached ? await Lab.open(labOptions(o, print)) : await Lab.up(labOptions(o, print));
    let report: DrillReport;
    try {
      report = await new Drill(target, print).run();
    } finally {
      if (attached) await target.client.close();
      else await target.down();
    }
    if (o.output === 'json') process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else printReport(report, print);
    process.exitCode = report.ok ? 0 : 1;
  });

  lab
    .command('power')
    .description("the physical fabric's power hook for lab machines (the CS runs it)")
    .argument('<run-dir>', "the machine's run directory at its site")
    .argument('<action>', 'start | stop | status (status exits 0 running, 3 stopped)')
    .action(async (runDir: string, action: string) => {
      process.exitCode = await powerHook(runDir, action);
    });

  lab
    .command('guest')
    .description("a lab machine's workload: boots on its NBD disk, writes bursts, records the disk's hash at boot and shutdown")
    .requiredOption('--socket <path>', "the agent's NBD socket")
    .requiredOption('--export <name>', 'the export (disk id)')
    .requiredOption('--status <file>', 'where to keep the status (JSON)')
    .option('--burst <size>', 'bytes per burst', '8MiB')
    .option('--block <size>', 'bytes per write', '64KiB')
    .action(async (o: { socket: string; export: string; status: string; burst: string; block: string }) => {
      await runGuest({ socketPath: o.socket, exportName: o.export, statusPath: o.status, burstBytes: parseBytes(o.burst), blockBytes: parseBytes(o.block), connectTimeoutMs: 30_000 });
    });

  lab
    .command('replication')
    .description('data path only: agent, process server and master target on loopback, a workload through NBD, the replica and its recovery points verified')
    .option('--dir <dir>', 'where the run keeps its files', 'lab-data')
    .option('--disk-size <size>', 'size of the demo disk', '512MiB')
    .option('--duration <seconds>', 'how long the workload writes', '20')
    .option('--bookmark-every <seconds>', 'pause writes and take an app bookmark this often', '5')
    .option('--seed <n>', 'workload seed', '1')
    .option('--keep', 'keep an existing directory instead of starting fresh', false)
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

  return lab;
}
