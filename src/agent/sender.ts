import type { TLSSocket } from 'node:tls';
import { connectData, FrameType, batchPayload, parseJson, writeFrame, type Ack, type Endpoint, type Frame, type Nack, type TlsMaterial } from '../replication/transport.js';
import { errorMessage } from '../replication/errors.js';
import { Reconnector } from '../replication/reconnect.js';
import { Wakeup } from '../replication/wakeup.js';
import type { SealedBatch } from './capture.js';

export interface SenderOptions {
  endpoint: Endpoint;
  material: TlsMaterial;
  token: string;
  name: string;
  /** Bytes of batches sent but not yet acknowledged. */
  windowBytes: number;
  onAck(batch: SealedBatch): void;
  log(level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>): void;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * Sends sealed batches to the process server over one TLS connection, several in flight, and
 * keeps each until it is acknowledged. On any failure (refusal, lost connection) it reconnects
 * with backoff and resends everything unacknowledged in the original order; the PS spool and the
 * MT are idempotent by (lineage, sequence), so resending is always safe.
 */
export class PsSender {
  private readonly queue: SealedBatch[] = [];
  private readonly inFlight = new Map<number, SealedBatch>();
  private inFlightBytes = 0;
  private nextId = 1;
  private readonly wakeup = new Wakeup();
  private drainWaiters: (() => void)[] = [];
  lastError: string | undefined;
  private readonly link: Reconnector;
  readonly stats = { batchesSent: 0, bytesSent: 0, batchesAcked: 0, refusals: 0 };

  constructor(private readonly o: SenderOptions) {
    this.link = new Reconnector({
      connect: () => connectData(o.endpoint, o.material, { role: 'agent', name: o.name, token: o.token }),
      session: (socket, frames) => this.session(socket, frames),
      onDown: () => this.requeueInFlight(),
      onError: (message) => {
        this.lastError = message;
        o.log('warn', 'process server connection failed', { error: message });
      },
      ...(o.minBackoffMs === undefined ? {} : { minBackoffMs: o.minBackoffMs }),
      ...(o.maxBackoffMs === undefined ? {} : { maxBackoffMs: o.maxBackoffMs }),
    });
  }

  get connected(): boolean {
    return this.link.connected;
  }

  get reconnects(): number {
    return this.link.reconnects;
  }

  enqueue(batch: SealedBatch): void {
    this.queue.push(batch);
    this.wakeup.notify();
  }

  pending(): { batches: number; bytes: number } {
    let bytes = this.inFlightBytes;
    for (const b of this.queue) bytes += b.length;
    return { batches: this.queue.length + this.inFlight.size, bytes };
  }

  start(): void {
    this.link.start();
  }

  /** Resolves true once everything enqueued so far is acknowledged, false on timeout. */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.isEmpty()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.drainWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  async stop(): Promise<void> {
    const stopped = this.link.stop();
    this.wakeup.notify();
    await stopped;
  }

  private isEmpty(): boolean {
    return this.queue.length === 0 && this.inFlight.size === 0;
  }

  private requeueInFlight(): void {
    const back = [...this.inFlight.values()];
    this.inFlight.clear();
    this.inFlightBytes = 0;
    this.queue.unshift(...back);
  }

  private async session(socket: TLSSocket, frames: AsyncGenerator<Frame>): Promise<void> {
    const reader = this.readAcks(socket, frames);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    for (;;) {
      while (this.link.isRunning && !socket.destroyed && this.queue.length > 0 && (this.inFlight.size === 0 || this.inFlightBytes + this.queue[0]!.length <= this.o.windowBytes)) {
        const batch = this.queue.shift()!;
        const id = this.nextId++ >>> 0;
        this.inFlight.set(id, batch);
        this.inFlightBytes += batch.length;
        await writeFrame(socket, FrameType.batch, batchPayload(id, ...batch.parts));
        this.stats.batchesSent++;
        this.stats.bytesSent += batch.length;
      }
      if (!this.link.isRunning || socket.destroyed) break;
      await Promise.race([this.wakeup.wait(), closed]);
    }
    socket.destroy();
    await reader;
  }

  private async readAcks(socket: TLSSocket, frames: AsyncGenerator<Frame>): Promise<void> {
    try {
      for await (const frame of frames) {
        if (frame.type === FrameType.ack) {
          const ack = parseJson<Ack>(frame, 'ack');
          const batch = this.inFlight.get(ack.id);
          if (!batch) continue;
          this.inFlight.delete(ack.id);
          this.inFlightBytes -= batch.length;
          this.stats.batchesAcked++;
          this.o.onAck(batch);
          this.wakeup.notify();
          if (this.isEmpty()) for (const w of this.drainWaiters.splice(0)) w();
        } else if (frame.type === FrameType.nack) {
          const nack = parseJson<Nack>(frame, 'nack');
          this.stats.refusals++;
          this.lastError = `${nack.code}: ${nack.message}`;
          this.o.log('warn', 'process server refused a batch', { code: nack.code, message: nack.message, retryable: nack.retryable });
          break; // the PS drops the connection after a refusal; resend from the first unacknowledged batch
        }
      }
    } catch (err) {
      this.lastError = errorMessage(err);
    } finally {
      socket.destroy();
      this.wakeup.notify();
    }
  }
}
