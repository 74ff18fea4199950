import { promisify } from 'node:util';
import { deflateRaw } from 'node:zlib';
import type { TLSSocket } from 'node:tls';
import { connectData, FrameType, batchPayload, parseJson, writeFrame, type Ack, type Endpoint, type Frame, type Nack, type TlsMaterial } from '../replication/transport.js';
import { errorMessage } from '../replication/errors.js';
import { Wakeup } from '../replication/wakeup.js';
import { Reconnector } from '../replication/reconnect.js';
import type { Spool, SpoolEntry } from './spool.js';
import type { RecentBatches } from './recent.js';

const deflate = promisify(deflateRaw);

export interface ForwarderOptions {
  endpoint: Endpoint;
  material: TlsMaterial;
  token: string;
  name: string;
  spool: Spool;
  recent: RecentBatches;
  compression: 'none' | 'deflate';
  /** Batches of one disk in flight to the MT at once. */
  windowPerDisk: number;
  log(level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>): void;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

interface DiskLane {
  inFlight: SpoolEntry[];
  /** Set after a refusal: nothing more is sent until in-flight batches settle and backoff ends. */
  blockedUntil: number;
  /** A refusal happened: wait for every in-flight batch of the lane to settle before resending. */
  retrying: boolean;
  retryTimer: NodeJS.Timeout | undefined;
  backoffMs: number;
  lastError: string | undefined;
  forwarded: number;
}

/**
 * Forwards spooled batches to the master target, per disk in arrival order, and deletes each
 * from the spool only once the MT has acknowledged it as applied (or as a duplicate/obsolete).
 * A refused batch is retried with backoff, never skipped.
 */
export class Forwarder {
  private readonly lanes = new Map<string, DiskLane>();
  /** Disks whose batches are being discarded: nothing more of theirs is sent. */
  private readonly held = new Set<string>();
  private readonly byId = new Map<number, { diskId: string; entry: SpoolEntry }>();
  private nextId = 1;
  private readonly wakeup = new Wakeup();
  private unsubscribe: (() => void) | undefined;
  lastError: string | undefined;
  private readonly link: Reconnector;
  readonly stats = { batches: 0, bytes: 0, wireBytes: 0, refusals: 0 };

  constructor(private readonly o: ForwarderOptions) {
    this.link = new Reconnector({
      connect: () => connectData(o.endpoint, o.material, { role: 'ps', name: o.name, token: o.token }),
      session: (socket, frames) => {
        this.lastError = undefined;
        return this.session(socket, frames);
      },
      onDown: () => {
        for (const lane of this.lanes.values()) {
          lane.inFlight = [];
          lane.retrying = false;
        }
        this.byId.clear();
      },
      onError: (message) => {
        this.lastError = message;
        o.log('warn', 'master target connection failed', { error: message });
      },
      ...(o.minBackoffMs === undefined ? {} : { minBackoffMs: o.minBackoffMs }),
      ...(o.maxBackoffMs === undefined ? {} : { maxBackoffMs: o.maxBackoffMs }),
    });
  }

  get connected(): boolean {
    return this.link.connected;
  }

  start(): void {
    this.unsubscribe ??= this.o.spool.onPut(() => this.wakeup.notify());
    this.link.start();
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    for (const lane of this.lanes.values()) clearTimeout(lane.retryTimer);
    const stopped = this.link.stop();
    this.wakeup.notify();
    await stopped;
  }

  status(): Record<string, { pending: number; inFlight: number; lastError: string | undefined; forwarded: number }> {
    const out: Record<string, { pending: number; inFlight: number; lastError: string | undefined; forwarded: number }> = {};
    for (const diskId of this.o.spool.disks()) {
      const lane = this.lanes.get(diskId);
      out[diskId] = { pending: this.o.spool.pending(diskId).length, inFlight: lane?.inFlight.length ?? 0, lastError: lane?.lastError, forwarded: lane?.forwarded ?? 0 };
    }
    return out;
  }

  /** Stops sending the disk's batches until forgetDisk (called before they are discarded). */
  holdDisk(diskId: string): void {
    this.held.add(diskId);
  }

  /**
   * Forgets the disk's lane after its spooled batches were discarded: no retry timer, nothing in
   * flight expected; acknowledgements of batches already sent are ignored. Its next batches start
   * a fresh lane.
   */
  forgetDisk(diskId: string): void {
    this.held.delete(diskId);
    const lane = this.lanes.get(diskId);
    if (lane) clearTimeout(lane.retryTimer);
    this.lanes.delete(diskId);
    for (const [id, sent] of this.byId) if (sent.diskId === diskId) this.byId.delete(id);
    this.wakeup.notify();
  }

  private lane(diskId: string): DiskLane {
    let lane = this.lanes.get(diskId);
    if (!lane) {
      lane = { inFlight: [], blockedUntil: 0, retrying: false, retryTimer: undefined, backoffMs: this.o.minBackoffMs ?? 100, lastError: undefined, forwarded: 0 };
      this.lanes.set(diskId, lane);
    }
    return lane;
  }

  private async session(socket: TLSSocket, frames: AsyncGenerator<Frame>): Promise<void> {
    const reader = this.readAcks(socket, frames);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    while (this.link.isRunning && !socket.destroyed) {
      await this.pump(socket);
      if (!this.link.isRunning || socket.destroyed) break;
      await Promise.race([this.wakeup.wait(), closed]);
    }
    socket.destroy();
    await reader;
  }

  /** Kicks the pump once `at` has passed (timers may fire a millisecond early: never rely on one). */
  private wakeAt(lane: DiskLane, at: number): void {
    clearTimeout(lane.retryTimer);
    lane.retryTimer = setTimeout(() => this.wakeup.notify(), Math.max(0, at - Date.now()) + 1);
  }

  private async pump(socket: TLSSocket): Promise<void> {
    const now = Date.now();
    for (const diskId of this.o.spool.disks()) {
      if (this.held.has(diskId)) continue;
      const lane = this.lane(diskId);
      if (lane.blockedUntil > now) {
        this.wakeAt(lane, lane.blockedUntil);
        continue;
      }
      if (lane.retrying) {
        if (lane.inFlight.length > 0) continue;
        lane.retrying = false;
      }
      // In-flight batches are always the head of the lane's pending list (removed from the lane
      // only after the spool deleted them), so the next one to send is right behind them.
      while (lane.inFlight.length < this.o.windowPerDisk && !socket.destroyed) {
        const entry = this.o.spool.pending(diskId)[lane.inFlight.length];
        if (!entry) break;
        let raw: Buffer;
        try {
          raw = this.o.recent.get(entry) ?? (await this.o.spool.read(entry));
          if (this.lanes.get(diskId) !== lane) break; // discarded meanwhile
        } catch (err) {
          if (this.lanes.get(diskId) !== lane) break;
          // The spool quarantined a batch that no longer verifies; the MT will refuse the gap
          // it leaves, which surfaces the loss instead of hiding it.
          lane.lastError = errorMessage(err);
          this.o.log('warn', 'spooled batch unreadable', { disk: diskId, error: lane.lastError });
          break;
        }
        const id = this.nextId++ >>> 0;
        lane.inFlight.push(entry);
        this.byId.set(id, { diskId, entry });
        const body = this.o.compression === 'deflate' ? await deflate(raw, { level: 1 }) : raw;
        if (this.lanes.get(diskId) !== lane) {
          this.byId.delete(id);
          break;
        }
        await writeFrame(socket, this.o.compression === 'deflate' ? FrameType.batchDeflate : FrameType.batch, batchPayload(id, body));
        this.stats.wireBytes += body.length;
      }
    }
  }

  private async readAcks(socket: TLSSocket, frames: AsyncGenerator<Frame>): Promise<void> {
    try {
      for await (const frame of frames) {
        if (frame.type !== FrameType.ack && frame.type !== FrameType.nack) continue;
        const msg = parseJson<Ack | Nack>(frame, 'ack');
        const sent = this.byId.get(msg.id);
        if (!sent) continue;
        this.byId.delete(msg.id);
        const lane = this.lane(sent.diskId);
        const settle = () => {
          const at = lane.inFlight.indexOf(sent.entry);
          if (at >= 0) lane.inFlight.splice(at, 1);
        };
        if (frame.type === FrameType.ack) {
          await this.o.spool.remove(sent.entry);
          this.o.recent.delete(sent.entry);
          settle();
          lane.forwarded++;
          lane.lastError = undefined;
          lane.backoffMs = this.o.minBackoffMs ?? 100;
          this.stats.batches++;
          this.stats.bytes += sent.entry.bytes;
        } else {
          const nack = msg as Nack;
          settle();
          this.stats.refusals++;
          lane.lastError = `${nack.code}: ${nack.message}`;
          if (lane.blockedUntil <= Date.now()) this.o.log('warn', 'master target refused a batch', { disk: sent.diskId, code: nack.code, message: nack.message });
          // Batches behind a refused one are refused too (they would leave a gap); resend the
          // lane from its first pending batch after a backoff.
          if (!lane.retrying) {
            lane.retrying = true;
            lane.blockedUntil = Date.now() + lane.backoffMs;
            this.wakeAt(lane, lane.blockedUntil);
            lane.backoffMs = Math.min(lane.backoffMs * 2, this.o.maxBackoffMs ?? 5000);
          }
        }
        this.wakeup.notify();
      }
    } catch (err) {
      this.lastError = errorMessage(err);
    } finally {
      socket.destroy();
    }
  }
}
