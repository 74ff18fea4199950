import { promisify } from 'node:util';
import { inflateRaw } from 'node:zlib';
import { BATCH_LIMITS, decodeBatch, type Batch } from '../replication/batch.js';
import { BoomerangError } from '../replication/errors.js';
import { FrameType, jsonPayload, nackFor, splitBatchPayload, writeFrame, type Ack, type DataConnection, type Nack } from '../replication/transport.js';
import type { ReplicaDisk } from './replica.js';

const inflate = promisify(inflateRaw);

/** Apply latency samples (ms from the batch's first write to durable on the MT) per disk. */
export class RpoWindow {
  private readonly samples: number[] = [];
  constructor(private readonly max = 4096) {}
  add(ms: number): void {
    this.samples.push(ms);
    if (this.samples.length > this.max) this.samples.shift();
  }
  summary(): { count: number; p50: number; p99: number; max: number } {
    const s = [...this.samples].sort((a, b) => a - b);
    const at = (q: number) => (s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.floor(q * s.length))]!);
    return { count: s.length, p50: at(0.5), p99: at(0.99), max: s.length === 0 ? 0 : s[s.length - 1]! };
  }
}

export interface ApplyStats {
  batches: number;
  bytes: number;
  refused: number;
  lastRefusal: string | undefined;
}

/**
 * Finds the replica a batch is for, at the moment it is applied; throws the typed, retryable
 * refusal when the master target has no such disk (UNKNOWN_DISK) or does not apply its batches
 * now (DISK_FROZEN). The PS keeps refused batches and resends them after a backoff.
 */
export type ReplicaResolver = (diskId: string) => ReplicaDisk;

/**
 * Serves one process-server connection: batches are applied per disk in arrival order (the
 * replica serialises its own work) and acknowledged only once durable on the target and in the
 * journal. Refusals carry the replica's typed error so the PS can back off and resend.
 */
export async function servePs(
  conn: DataConnection,
  resolve: ReplicaResolver,
  rpo: Map<string, RpoWindow>,
  stats: ApplyStats,
  log: (msg: string, f?: object) => void,
  onApplied: (diskId: string) => void,
): Promise<void> {
  const chains = new Map<string, Promise<void>>();
  const send = (type: number, body: Ack | Nack) => writeFrame(conn.socket, type, jsonPayload(body)).catch(() => undefined);
  const refuse = async (id: number, err: unknown) => {
    stats.refused++;
    const nack = nackFor(id, err);
    stats.lastRefusal = `${nack.code}: ${nack.message}`;
    log('batch refused', { code: nack.code, message: nack.message });
    await send(FrameType.nack, nack);
  };
  for await (const frame of conn.frames) {
    if (frame.type !== FrameType.batch && frame.type !== FrameType.batchDeflate) {
      await refuse(0, new BoomerangError('BAD_MESSAGE', `unexpected frame type ${frame.type}`));
      continue;
    }
    const { id, body } = splitBatchPayload(frame.payload);
    let batch: Batch;
    try {
      const raw = frame.type === FrameType.batchDeflate ? await inflate(body, { maxOutputLength: BATCH_LIMITS.maxBytes }) : body;
      batch = decodeBatch(raw);
    } catch (err) {
      await refuse(id, err);
      continue;
    }
    const prev = chains.get(batch.diskId) ?? Promise.resolve();
    const next = prev.then(async () => {
      try {
        // Resolved when its turn comes, so a freeze or release also stops batches already queued.
        const result = await resolve(batch.diskId).apply(batch);
        if (result.status === 'applied') {
          stats.batches++;
          stats.bytes += body.length;
          rpo.get(batch.diskId)?.add(Date.now() - batch.firstTime);
        }
        onApplied(batch.diskId);
        await send(FrameType.ack, { id, status: result.status, diskId: batch.diskId, lineage: result.lineage, lastSeq: result.lastSeq });
      } catch (err) {
        await refuse(id, err);
      }
    });
    chains.set(batch.diskId, next);
  }
  await Promise.all(chains.values());
}
