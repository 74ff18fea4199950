import { spawn } from 'node:child_process';
import { open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BoomerangError } from '../replication/errors.js';
import type { GuestStatus } from './guest.js';
import { CLI } from './process.js';

/**
 * A lab machine at one site: its agent (the mobility service) and its guest (the workload) as
 * detached processes, so they outlive the power hook that started them and the CS that ran it.
 * `boomerang lab power` is the physical fabric's hook for lab machines; this is what it does.
 * Everything about a machine lives in its run directory: configs, pid files, logs, status.
 */

export interface MachineRun {
  /** The machine's run directory at its site. */
  dir: string;
  diskId: string;
  burstBytes: number;
}

/** The hook is given only the run directory; the rest is kept there. */
export async function readMachineRun(dir: string): Promise<MachineRun> {
  const saved = JSON.parse(await readFile(join(dir, MACHINE_FILES.machine), 'utf8')) as Omit<MachineRun, 'dir'>;
  return { ...saved, dir };
}

export async function writeMachineRun(m: MachineRun): Promise<void> {
  await writeFile(join(m.dir, MACHINE_FILES.machine), JSON.stringify({ diskId: m.diskId, burstBytes: m.burstBytes }));
}

export const MACHINE_FILES = Object.freeze({
  machine: 'machine.json',
  agentConfig: 'agent.json',
  agentPid: 'agent.pid',
  agentLog: 'agent.log',
  agentReady: 'agent.ready.json',
  guestPid: 'guest.pid',
  guestLog: 'guest.log',
  guestStatus: 'guest.json',
  nbdSocket: 'nbd.sock',
});

const READY_TIMEOUT_MS = 60_000;
const AGENT_STOP_TIMEOUT_MS = 120_000;
const GUEST_STOP_TIMEOUT_MS = 60_000;

function file(m: MachineRun, name: keyof typeof MACHINE_FILES): string {
  return join(m.dir, MACHINE_FILES[name]);
}

async function readPid(path: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(path, 'utf8')).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function waitExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

async function spawnDetached(args: string[], logPath: string, pidPath: string): Promise<number> {
  const log = await open(logPath, 'a');
  try {
    const child = spawn(process.execPath, [CLI, ...args], { detached: true, stdio: ['ignore', log.fd, log.fd] });
    const pid = child.pid;
    if (pid === undefined) throw new BoomerangError('LAB_START', `cannot start ${args[0]}`);
    child.unref();
    await writeFile(pidPath, `${pid}\n`);
    return pid;
  } finally {
    await log.close();
  }
}

/** Waits for the agent's ready line after `from` in its log; it names the control endpoint. */
async function waitAgentReady(m: MachineRun, pid: number, from: number): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const text = (await readFile(file(m, 'agentLog'), 'utf8')).slice(from);
    for (const line of text.split('\n')) {
      if (!line.startsWith('{"event":"ready"')) continue;
      await writeFile(file(m, 'agentReady'), `${line}\n`);
      return;
    }
    if (!alive(pid)) throw new BoomerangError('LAB_START', `the agent exited before it was ready; see ${file(m, 'agentLog')}`);
    if (Date.now() > deadline) throw new BoomerangError('LAB_START', `the agent was not ready within ${READY_TIMEOUT_MS / 1000} s; see ${file(m, 'agentLog')}`);
    await sleep(50);
  }
}

export async function machineRunning(m: MachineRun): Promise<boolean> {
  const pid = await readPid(file(m, 'agentPid'));
  return pid !== undefined && alive(pid);
}

export async function startMachine(m: MachineRun): Promise<void> {
  if (await machineRunning(m)) return;
  const from = await stat(file(m, 'agentLog')).then((s) => s.size, () => 0);
  await rm(file(m, 'agentReady'), { force: true });
  const agent = await spawnDetached(['agent', '--config', file(m, 'agentConfig')], file(m, 'agentLog'), file(m, 'agentPid'));
  await waitAgentReady(m, agent, from);
  await rm(file(m, 'guestStatus'), { force: true });
  await spawnDetached(
    ['lab', 'guest', '--socket', file(m, 'nbdSocket'), '--export', m.diskId, '--status', file(m, 'guestStatus'), '--burst', String(m.burstBytes)],
    file(m, 'guestLog'),
    file(m, 'guestPid'),
  );
}

/**
 * Points the machine's agent at the disks its VM has now (in device order): after an
 * alternate-location failback the VM is a new one, with new disks. The fabric says which.
 */
export async function useDisks(m: MachineRun, paths: readonly string[]): Promise<void> {
  const path = file(m, 'agentConfig');
  const config = JSON.parse(await readFile(path, 'utf8')) as { disks: { path: string }[] };
  if (paths.length !== config.disks.length) throw new BoomerangError('LAB_STATE', `the VM has ${paths.length} disks, the machine ${config.disks.length}`);
  config.disks.forEach((d, i) => (d.path = paths[i]!));
  await writeFile(`${path}.tmp`, JSON.stringify(config, null, 2));
  await rename(`${path}.tmp`, path);
}

/** A clean shutdown: the guest stops writing and records its disk, then the agent drains and stops. */
export async function stopMachine(m: MachineRun): Promise<void> {
  for (const [pidFile, timeoutMs] of [
    ['guestPid', GUEST_STOP_TIMEOUT_MS],
    ['agentPid', AGENT_STOP_TIMEOUT_MS],
  ] as const) {
    const pid = await readPid(file(m, pidFile));
    if (pid !== undefined && alive(pid)) {
      process.kill(pid, 'SIGTERM');
      if (!(await waitExit(pid, timeoutMs))) {
        process.kill(pid, 'SIGKILL');
        await waitExit(pid, 10_000);
      }
    }
    await rm(file(m, pidFile), { force: true });
  }
}

/** The power cut: no shutdown, no drain (for fault tests). */
export async function killMachine(m: MachineRun): Promise<void> {
  for (const pidFile of ['guestPid', 'agentPid'] as const) {
    const pid = await readPid(file(m, pidFile));
    if (pid !== undefined && alive(pid)) {
      process.kill(pid, 'SIGKILL');
      await waitExit(pid, 10_000);
    }
    await rm(file(m, pidFile), { force: true });
  }
}

export async function guestStatus(m: MachineRun): Promise<GuestStatus | undefined> {
  try {
    return JSON.parse(await readFile(file(m, 'guestStatus'), 'utf8')) as GuestStatus;
  } catch {
    return undefined;
  }
}

/** Asks the guest for another burst of writes (live writes during a resync, say); resolves once it has taken the request. */
export async function burst(m: MachineRun): Promise<void> {
  const pid = await readPid(file(m, 'guestPid'));
  const before = await guestStatus(m);
  if (pid === undefined || !alive(pid) || before === undefined) throw new BoomerangError('LAB_STATE', `the guest in ${m.dir} is not running`);
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + 10_000;
  while (((await guestStatus(m))?.requested ?? 0) <= before.requested) {
    if (Date.now() > deadline) throw new BoomerangError('LAB_STATE', `the guest in ${m.dir} did not take the burst request`);
    await sleep(20);
  }
}
