import type { NbdClient } from '../agent/nbd/client.js';
import { Prng } from './prng.js';

export interface WorkloadOptions {
  seed: number;
  /** Bytes per write (a multiple of 512). */
  blockBytes: number;
  pattern: 'random' | 'sequential';
  /** Writes in flight at once. */
  concurrency: number;
  /** Stop after this many writes… */
  maxWrites?: number;
  /** …or this many milliseconds, whichever comes first (one of the two is required). */
  durationMs?: number;
  /** Pace to this many bytes per second (a fixed churn); unpaced when omitted. */
  bytesPerSecond?: number;
  /** Part of the disk to write: [start, end) bytes; the whole disk by default. */
  range?: [number, number];
  /** Every n-th write is a write-zeroes instead of data (exercises zero extents). */
  zeroEvery?: number;
  signal?: AbortSignal;
  onWrite?: (bytes: number) => void;
}

/**
 * Writes pseudo-random data through an NBD export, as a protected machine's workload would.
 * The loop is bounded by count or time; every write is awaited, so when it returns the writes
 * are acknowledged by the export.
 */
export async function runWorkload(client: NbdClient, o: WorkloadOptions): Promise<{ writes: number; bytes: number; ms: number }> {
  if (o.maxWrites === undefined && o.durationMs === undefined) throw new Error('runWorkload needs maxWrites or durationMs');
  const prng = new Prng(o.seed);
  const [start, end] = o.range ?? [0, client.size];
  const slots = Math.floor((end - start) / o.blockBytes);
  const t0 = Date.now();
  const deadline = o.durationMs === undefined ? Infinity : t0 + o.durationMs;
  const maxWrites = o.maxWrites ?? Infinity;
  let issued = 0;
  let bytes = 0;
  let seqSlot = 0;
  const worker = async () => {
    for (;;) {
      if (issued >= maxWrites || Date.now() >= deadline || o.signal?.aborted) return;
      const n = issued++;
      const slot = o.pattern === 'sequential' ? seqSlot++ % slots : prng.int(slots);
      const offset = start + slot * o.blockBytes;
      if (o.zeroEvery && n % o.zeroEvery === o.zeroEvery - 1) await client.writeZeroes(offset, o.blockBytes);
      else await client.write(offset, prng.fill(Buffer.allocUnsafe(o.blockBytes)));
      bytes += o.blockBytes;
      o.onWrite?.(o.blockBytes);
      if (o.bytesPerSecond) {
        const due = t0 + (bytes / o.bytesPerSecond) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, Math.min(wait, Math.max(0, deadline - Date.now()))));
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return { writes: Math.min(issued, maxWrites), bytes, ms: Date.now() - t0 };
}
