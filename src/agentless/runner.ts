import { mkdir } from 'node:fs/promises';
import { BoomerangError, ConfigError } from '../replication/errors.js';
import { isDiskId } from '../replication/position.js';
import type { Endpoint, TlsMaterial } from '../replication/transport.js';
import type { Logger } from '../runtime/log.js';
import { DiskReplicator, type AgentlessDisk, type DiskStatus, type RoundReport } from './disk-replicator.js';
import { PsChannel } from './ps-channel.js';

/** How the agentless runner is set up. */
export interface AgentlessOptions {
  /** Name presented to the PS (role agent). */
  name: string;
  processServer: Endpoint;
  material: TlsMaterial;
  token: string;
  /** Where each disk's base snapshot and lineage position are kept. */
  stateDir: string;
  disks: AgentlessDisk[];
  log: Logger;
  /** Data bytes per batch. Default 4 MiB (as the agent). */
  maxBatchBytes?: number;
  /** Bytes in flight to the PS. Default 64 MiB (as the agent). */
  windowBytes?: number;
  /** Bytes held (queued and in flight) before a round waits. Default 128 MiB. */
  bufferBytes?: number;
  /** How long a round may wait for the PS before it is abandoned. Default 10 min. */
  roundTimeoutMs?: number;
  /** Snapshot reads in flight per disk. Default 8. */
  maxInFlight?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** The runner's status: one entry per disk plus the PS connection. */
export interface AgentlessStatus {
  name: string;
  ps: PsChannel['stats'];
  disks: DiskStatus[];
}

/**
 * Agentless replication of cloud disks (page blobs without an agent): for each disk, every
 * interval, a round of snapshot-diff changes sent to the process server as an agent sends
 * captured writes, each round ending in a crash-consistent recovery point at the master target.
 * All disks share one sender (one TLS connection), as an agent's disks do.
 */
export class AgentlessRunner {
  private readonly abort = new AbortController();
  private loops: Promise<void>[] = [];

  private constructor(
    private readonly o: AgentlessOptions,
    private readonly channel: PsChannel,
    private readonly replicators: Map<string, DiskReplicator>,
  ) {}

  /** Opens every disk's state, connects to the PS and starts the rounds of disks with an interval. */
  static async start(o: AgentlessOptions): Promise<AgentlessRunner> {
    const ids = new Set<string>();
    for (const d of o.disks) {
      if (!isDiskId(d.id)) throw new ConfigError('CONFIG_INVALID', `disk id ${JSON.stringify(d.id)} is not valid`);
      if (ids.has(d.id)) throw new ConfigError('CONFIG_INVALID', `disk ${d.id} is configured twice`);
      if (!Number.isSafeInteger(d.intervalMs) || d.intervalMs < 0) throw new ConfigError('CONFIG_INVALID', `disk ${d.id}: interval ${d.intervalMs} ms is not valid`);
      ids.add(d.id);
    }
    await mkdir(o.stateDir, { recursive: true, mode: 0o700 });
    const channel = new PsChannel({
      name: o.name,
      endpoint: o.processServer,
      material: o.material,
      token: o.token,
      windowBytes: o.windowBytes ?? 64 * 1024 * 1024,
      bufferBytes: o.bufferBytes ?? 128 * 1024 * 1024,
      log: o.log,
      ...(o.minBackoffMs === undefined ? {} : { minBackoffMs: o.minBackoffMs }),
      ...(o.maxBackoffMs === undefined ? {} : { maxBackoffMs: o.maxBackoffMs }),
    });
    const ctx = {
      stateDir: o.stateDir,
      channel,
      maxBatchBytes: o.maxBatchBytes ?? 4 * 1024 * 1024,
      roundTimeoutMs: o.roundTimeoutMs ?? 10 * 60_000,
      maxInFlight: o.maxInFlight ?? 8,
      log: o.log,
    };
    const replicators = new Map<string, DiskReplicator>();
    for (const d of o.disks) replicators.set(d.id, await DiskReplicator.open(d, ctx));
    const runner = new AgentlessRunner(o, channel, replicators);
    channel.start();
    for (const r of replicators.values()) if (r.disk.intervalMs > 0) runner.loops.push(r.loop(runner.abort.signal));
    o.log.info({ disks: o.disks.map((d) => ({ id: d.id, intervalMs: d.intervalMs })) }, 'agentless runner started');
    return runner;
  }

  /** Runs one round of `diskId` now (after any round under way). */
  roundNow(diskId: string): Promise<RoundReport> {
    const r = this.replicators.get(diskId);
    if (!r) return Promise.reject(new BoomerangError('UNKNOWN_DISK', `disk ${diskId} is not replicated by this runner`));
    return r.round(this.abort.signal);
  }

  status(): AgentlessStatus {
    return { name: this.o.name, ps: this.channel.stats, disks: [...this.replicators.values()].map((r) => r.status()) };
  }

  /**
   * Stops the rounds (a round under way is abandoned), then waits up to `drainTimeoutMs` for the
   * PS to acknowledge what was handed over: drained, the next run continues the lineages;
   * otherwise it starts new ones, diffed from the persisted bases.
   */
  async stop(options: { drainTimeoutMs?: number } = {}): Promise<{ drained: boolean }> {
    this.abort.abort();
    await Promise.all(this.loops);
    for (const r of this.replicators.values()) await r.settled();
    const drained = await this.channel.drain(options.drainTimeoutMs ?? 30_000);
    if (drained) for (const r of this.replicators.values()) await r.markDrained();
    await this.channel.stop();
    this.o.log.info({ drained, status: this.status() }, 'agentless runner stopped');
    return { drained };
  }
}
