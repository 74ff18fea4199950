import type { SpoolEntry } from './spool.js';

/**
 * Batches just spooled, kept in memory (bounded) so the forwarder usually sends them without
 * reading its own files back. The spool stays the source of truth: a miss reads the file.
 */
export class RecentBatches {
  private readonly map = new Map<string, Buffer>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  private static key(e: SpoolEntry): string {
    return `${e.diskId}/${e.id}`;
  }

  set(e: SpoolEntry, batch: Buffer): void {
    if (batch.length > this.maxBytes) return;
    this.map.set(RecentBatches.key(e), batch);
    this.bytes += batch.length;
    // Oldest first: Map iteration follows insertion order.
    for (const [k, b] of this.map) {
      if (this.bytes <= this.maxBytes) break;
      this.map.delete(k);
      this.bytes -= b.length;
    }
  }

  get(e: SpoolEntry): Buffer | undefined {
    return this.map.get(RecentBatches.key(e));
  }

  delete(e: SpoolEntry): void {
    const k = RecentBatches.key(e);
    const b = this.map.get(k);
    if (!b) return;
    this.map.delete(k);
    this.bytes -= b.length;
  }
}
