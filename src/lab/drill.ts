import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BoomerangError } from '../replication/errors.js';
import type { Endpoint } from '../replication/transport.js';
import { HttpsJsonClient, httpsUrl } from '../runtime/https-client.js';
import type { GuestStatus } from './guest.js';
import { burst, guestStatus, MACHINE_FILES, type MachineRun } from './machine.js';
import type { Lab, LabMachine, Site } from './two-site.js';

/**
 * `boomerang lab drill`: the whole lifecycle, unattended, on every lab machine in turn —
 * enable → failover → commit → reprotect → failback → commit → reprotect — checking after each
 * step the item's state and, byte for byte, the disks that must match: a replica against its
 * quiesced source, or a machine's disk at boot against the disk the other side shut down on.
 */

export interface DrillStep {
  machine: string;
  step: string;
  ms: number;
  /** Bytes the master targets applied during the step (payload of data and resync extents). */
  bytesMoved: number;
  /** Age of the newest recovery point at the end of the step, while replicating. */
  rpoSeconds: number | null;
  state: string;
  verification: string;
  ok: boolean;
}

/** Hooks of a drill run; tests use them to look at the sites between steps. */
export interface DrillOptions {
  /** Runs after each step that succeeded, before the next; an error fails the machine's drill. */
  afterStep?: (m: LabMachine, step: DrillStep) => Promise<void>;
}

export interface DrillReport {
  ok: boolean;
  ms: number;
  steps: DrillStep[];
}

interface ItemView {
  id: string;
  state: string;
  direction: string;
}

interface JobView {
  id: string;
  state: string;
  version: number;
  error: { code: string; message: string; remedy?: string } | null;
}

const WAIT_MS = 300_000;
const POLL_MS = 100;

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = WAIT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new BoomerangError('DRILL_TIMEOUT', `${what} did not happen within ${Math.round(timeoutMs / 1000)} s`);
    await sleep(POLL_MS);
  }
}

export class Drill {
  constructor(
    private readonly lab: Lab,
    private readonly print: (line: string) => void,
    private readonly options: DrillOptions = {},
  ) {}

  private get cs(): HttpsJsonClient {
    return this.lab.client;
  }

  /** Waits for a job to end; its error (code, message, remedy) when it did not succeed. */
  async waitJob(id: string): Promise<JobView> {
    let job = await this.cs.call<JobView>('GET', `/v1/jobs/${id}`);
    const deadline = Date.now() + WAIT_MS;
    while (!['succeeded', 'failed', 'cancelled'].includes(job.state)) {
      if (Date.now() > deadline) throw new BoomerangError('DRILL_TIMEOUT', `job ${id} did not end within ${WAIT_MS / 1000} s`);
      job = await this.cs.call<JobView>('GET', `/v1/jobs/${id}/watch?version=${job.version}&timeoutSeconds=20`);
    }
    if (job.state !== 'succeeded') throw new BoomerangError('DRILL_JOB_FAILED', `job ${id} ${job.state}: ${job.error ? `[${job.error.code}] ${job.error.message}` : 'no error recorded'}`);
    return job;
  }

  async operate(itemId: string, operation: string, body: object = {}): Promise<JobView> {
    const { job } = await this.cs.call<{ job: JobView }>('POST', `/v1/items/${itemId}/${operation}`, body);
    return job;
  }

  item(id: string): Promise<ItemView> {
    return this.cs.call<ItemView>('GET', `/v1/items/${id}`);
  }

  private async applied(): Promise<number> {
    let total = 0;
    for (const site of ['a', 'b'] as const) {
      const c = this.lab.controlClient(`mt-${site}`);
      try {
        total += (await c.call<{ apply: { bytes: number } }>('GET', '/status')).apply.bytes;
      } finally {
        await c.close();
      }
    }
    return total;
  }

  private async rpo(itemId: string): Promise<number | null> {
    const points = await this.cs.call<{ time: string }[]>('GET', `/v1/items/${itemId}/recovery-points?limit=1`);
    const newest = points[0];
    return newest ? Math.max(0, (Date.now() - Date.parse(newest.time)) / 1000) : null;
  }

  guest(run: MachineRun, what: string, ready: (s: GuestStatus) => boolean): Promise<GuestStatus> {
    return until(`${what} (${run.dir})`, async () => {
      const s = await guestStatus(run);
      if (s?.error) throw new BoomerangError('DRILL_GUEST', `the guest in ${run.dir} failed: ${s.error}`);
      return s && ready(s) ? s : undefined;
    });
  }

  /**
   * The source is idle and everything it wrote is applied: drain the agent to its PS, then wait
   * for the MT to reach the agent's last sequence number. Then the files must be equal.
   */
  async compareReplica(m: LabMachine, source: Site): Promise<string> {
    const run = this.lab.machineRun(m.name, source);
    const target: Site = source === 'a' ? 'b' : 'a';
    await this.guest(run, 'the guest to go idle', (s) => s.state === 'idle' && s.bursts === s.requested);
    const ready = JSON.parse(await readFile(join(run.dir, MACHINE_FILES.agentReady), 'utf8')) as { control: Endpoint };
    const agent = new HttpsJsonClient(httpsUrl(ready.control), this.lab.caPem, this.lab.token);
    const mt = this.lab.controlClient(`mt-${target}`);
    try {
      const { drained } = await agent.call<{ drained: boolean }>('POST', `/drain?timeoutMs=${WAIT_MS}`);
      if (!drained) throw new BoomerangError('DRILL_TIMEOUT', `agent of ${m.name} did not drain`);
      const status = await agent.call<{ disks: Record<string, { lineage: string; lastSeq: number }> }>('GET', '/status');
      const disk = status.disks[m.diskId];
      if (!disk) throw new BoomerangError('DRILL_STATE', `agent of ${m.name} has no disk ${m.diskId}`);
      const { reached } = await mt.call<{ reached: boolean }>('GET', `/disks/${m.diskId}/wait?lineage=${disk.lineage}&seq=${disk.lastSeq}&timeoutMs=${WAIT_MS}`);
      if (!reached) throw new BoomerangError('DRILL_TIMEOUT', `mt-${target} did not apply ${m.diskId} up to ${disk.lastSeq}`);
    } finally {
      await agent.close();
      await mt.close();
    }
    // Files or page blobs (an Azure site's disks), read whole either way.
    const [a, b] = await Promise.all([this.lab.hashDisk(this.lab.diskPath(m.name, source)), this.lab.hashDisk(this.lab.replicaPath(m.name, target))]);
    if (a !== b) throw new BoomerangError('DRILL_MISMATCH', `${m.name}: the replica at site ${target} (${b.slice(0, 12)}) differs from the disk at site ${source} (${a.slice(0, 12)})`);
    return `replica at site ${target} = disk at site ${source} (sha256 ${a.slice(0, 12)}…)`;
  }

  /** After a switch: the machine that started must have booted on the disk the other shut down on. */
  async compareSwitch(m: LabMachine, from: Site, to: Site): Promise<string> {
    const stopped = await this.guest(this.lab.machineRun(m.name, from), 'the old guest to record its disk', (s) => s.state === 'stopped' && s.shutdownHash !== undefined);
    const booted = await this.guest(this.lab.machineRun(m.name, to), 'the new guest to boot', (s) => s.bootHash !== undefined);
    if (stopped.shutdownHash !== booted.bootHash) {
      throw new BoomerangError('DRILL_MISMATCH', `${m.name}: site ${to} booted on ${booted.bootHash?.slice(0, 12)}, but site ${from} shut down on ${stopped.shutdownHash?.slice(0, 12)}`);
    }
    return `site ${to} booted on the disk site ${from} shut down on (sha256 ${booted.bootHash?.slice(0, 12)}…)`;
  }

  private async step(m: LabMachine, name: string, expect: { state: string; direction: string }, act: () => Promise<JobView | undefined>, verify: () => Promise<string>): Promise<DrillStep> {
    const itemId = m.itemId!;
    const t0 = Date.now();
    const before = await this.applied();
    const job = await act();
    if (job) await this.waitJob(job.id);
    const item = await this.item(itemId);
    if (item.state !== expect.state || item.direction !== expect.direction) {
      throw new BoomerangError('DRILL_STATE', `${m.name} after ${name}: ${item.state}/${item.direction}, expected ${expect.state}/${expect.direction}`);
    }
    const verification = await verify();
    const s: DrillStep = {
      machine: m.name,
      step: name,
      ms: Date.now() - t0,
      bytesMoved: (await this.applied()) - before,
      rpoSeconds: item.state === 'Protected' ? await this.rpo(itemId) : null,
      state: `${item.state} (${item.direction})`,
      verification,
      ok: true,
    };
    this.print(`${m.name.padEnd(8)} ${name.padEnd(22)} ${(s.ms / 1000).toFixed(1).padStart(6)} s ${(s.bytesMoved / 2 ** 20).toFixed(1).padStart(8)} MiB  ${s.state.padEnd(24)} ${verification}`);
    await this.options.afterStep?.(m, s);
    return s;
  }

  /** The lifecycle of one machine's item. */
  async machine(m: LabMachine): Promise<DrillStep[]> {
    const id = m.itemId!;
    const steps: DrillStep[] = [];
    const enableJob = async () => {
      const jobs = await this.cs.call<JobView[]>('GET', `/v1/jobs?resource=item/${id}&limit=1`);
      return jobs[0];
    };
    steps.push(await this.step(m, 'enable', { state: 'Protected', direction: 'forward' }, enableJob, () => this.compareReplica(m, 'a')));
    steps.push(await this.step(m, 'failover', { state: 'FailedOver', direction: 'forward' }, () => this.operate(id, 'failover', { point: 'latest', shutdownSource: true }), () => this.compareSwitch(m, 'a', 'b')));
    steps.push(await this.step(m, 'commit', { state: 'Committed', direction: 'forward' }, () => this.operate(id, 'commit'), async () => 'recovery points of A→B released'));
    steps.push(
      await this.step(
        m,
        'reprotect (original)',
        { state: 'Protected', direction: 'failback' },
        async () => {
          const job = await this.operate(id, 'reprotect', { location: 'original' });
          // Live writes while the resync runs: they must arrive after the resync data they overlap.
          await burst(this.lab.machineRun(m.name, 'b')).catch(() => undefined);
          return job;
        },
        () => this.compareReplica(m, 'b'),
      ),
    );
    steps.push(await this.step(m, 'failback', { state: 'FailedBack', direction: 'failback' }, () => this.operate(id, 'failback'), () => this.compareSwitch(m, 'b', 'a')));
    steps.push(await this.step(m, 'commit', { state: 'Committed', direction: 'failback' }, () => this.operate(id, 'commit'), async () => 'recovery points of B→A released'));
    steps.push(await this.step(m, 'reprotect (original)', { state: 'Protected', direction: 'forward' }, () => this.operate(id, 'reprotect', { location: 'original' }), () => this.compareReplica(m, 'a')));
    return steps;
  }

  async run(): Promise<DrillReport> {
    const t0 = Date.now();
    this.print(`${'machine'.padEnd(8)} ${'step'.padEnd(22)} ${'time'.padStart(8)} ${'applied'.padStart(12)}  ${'state'.padEnd(24)} verification`);
    // One machine after the other, so that what the master targets applied during a step is that step's.
    const steps: DrillStep[] = [];
    let ok = true;
    for (const m of this.lab.state.machines) {
      try {
        steps.push(...(await this.machine(m)));
      } catch (err) {
        ok = false;
        const message = err instanceof Error ? err.message : String(err);
        steps.push({ machine: m.name, step: 'failed', ms: 0, bytesMoved: 0, rpoSeconds: null, state: '', verification: message, ok: false });
        this.print(`${m.name}: DRILL FAILED: ${message}`);
      }
    }
    return { ok, ms: Date.now() - t0, steps };
  }
}
