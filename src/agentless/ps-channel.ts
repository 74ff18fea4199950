import { PsSender } from '../agent/sender.js';
import type { SealedBatch } from '../agent/capture.js';
import { BoomerangError } from '../replication/errors.js';
import type { Endpoint, TlsMaterial } from '../replication/transport.js';
import type { Logger } from '../runtime/log.js';

/** How the runner reaches its process server. */
export interface PsChannelOptions {
  name: string;
  endpoint: Endpoint;
  material: TlsMaterial;
  token: string;
  /** Bytes sent but not yet acknowledged (the sender's window). */
  windowBytes: number;
  /** Bytes of batches held (queued or in flight) before a round waits for acknowledgements. */
  bufferBytes: number;
  log: Logger;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * The agent's sender (one TLS connection to the PS, batches resent in order until acknowledged)
 * plus what rounds need on top of it: a bound on the bytes held, so a full round of a large disk
 * does not read the whole disk into memory, and per-disk counts of unacknowledged batches, so a
 * round can wait until the PS has stored every batch of its disk.
 */
export class PsChannel {
  private readonly sender: PsSender;
  private readonly unacked = new Map<string, number>();
  private waiters: (() => void)[] = [];

  constructor(private readonly o: PsChannelOptions) {
    this.sender = new PsSender({
      endpoint: o.endpoint,
      material: o.material,
      token: o.token,
      name: o.name,
      windowBytes: o.windowBytes,
      onAck: (batch) => {
        this.unacked.set(batch.diskId, (this.unacked.get(batch.diskId) ?? 1) - 1);
        for (const w of this.waiters.splice(0)) w();
      },
      log: (level, msg, fields) => o.log[level](fields ?? {}, msg),
      ...(o.minBackoffMs === undefined ? {} : { minBackoffMs: o.minBackoffMs }),
      ...(o.maxBackoffMs === undefined ? {} : { maxBackoffMs: o.maxBackoffMs }),
    });
  }

  start(): void {
    this.sender.start();
  }

  /** Sender counters and connection facts, for status. */
  get stats(): { connected: boolean; reconnects: number; lastError: string | undefined; batchesSent: number; bytesSent: number; batchesAcked: number; refusals: number } {
    return { connected: this.sender.connected, reconnects: this.sender.reconnects, lastError: this.sender.lastError, ...this.sender.stats };
  }

  /** Batches of the disk not yet acknowledged. */
  unackedOf(diskId: string): number {
    return this.unacked.get(diskId) ?? 0;
  }

  /**
   * Hands a batch to the sender once the bytes held leave room for it (a batch alone always
   * fits). ROUND_STALLED when no room is made before `deadline`.
   */
  async send(batch: SealedBatch, deadline: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      const held = this.sender.pending();
      if (held.batches === 0 || held.bytes + batch.length <= this.o.bufferBytes) break;
      await this.changed(deadline, signal, 'room for the next batch');
    }
    this.unacked.set(batch.diskId, this.unackedOf(batch.diskId) + 1);
    this.sender.enqueue(batch);
  }

  /** Resolves once every batch of the disk handed over so far is acknowledged; ROUND_STALLED at `deadline`. */
  async acknowledged(diskId: string, deadline: number, signal?: AbortSignal): Promise<void> {
    while (this.unackedOf(diskId) > 0) await this.changed(deadline, signal, `acknowledgement of disk ${diskId}'s batches`);
  }

  /** Resolves true once the sender holds nothing, false after `timeoutMs`. */
  drain(timeoutMs: number): Promise<boolean> {
    return this.sender.drain(timeoutMs);
  }

  async stop(): Promise<void> {
    await this.sender.stop();
  }

  /** Waits for the next acknowledgement; throws at the deadline or on abort. */
  private changed(deadline: number, signal: AbortSignal | undefined, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const wait = deadline - Date.now();
      const done = (err?: Error) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiters = this.waiters.filter((w) => w !== onAck);
        if (err) reject(err);
        else resolve();
      };
      const onAck = () => done();
      const onAbort = () => done(new BoomerangError('ROUND_STOPPED', 'the runner is stopping'));
      const timer = setTimeout(() => done(new BoomerangError('ROUND_STALLED', `the process server did not answer in time (waiting for ${what}; ${this.sender.lastError ?? 'no error reported'})`, { retryable: true })), Math.max(0, wait));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(onAck);
    });
  }
}
