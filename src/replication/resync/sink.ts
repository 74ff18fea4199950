/**
 * Where the differences a resync finds go. The engine calls `write` once per differing extent,
 * in offset order, possibly before earlier calls have resolved (at most `windowBatches` batches
 * of extents are outstanding), and `flush` before it reports a cursor.
 *
 * The contract, for a sink that feeds a live replication stream (the agent):
 *  - `extent.data` is what the engine read when it compared; it is only valid until `write`
 *    resolves (the buffer is reused), so a sink that keeps it must copy it.
 *  - A sink in front of a disk that is still being written must not send `extent.data`. It
 *    must take the extent's range in the capture's range lock, read the range again from the
 *    source disk, and enqueue that read as the next event(s) of the ordered write stream before
 *    releasing the lock. Then a write captured after the read is ordered after the resync data
 *    on the replica, and one captured before it is already in the bytes read: resync data can
 *    never overwrite a newer captured write. A zero extent may be read back non-zero by then;
 *    the sink sends what it reads.
 *  - `flush` resolves once everything written before it is durable where the caller keeps it
 *    (the standalone sink: fsynced on the target; the agent: *applied* by the master target —
 *    stored by the process server is not enough, see src/agent/delta-resync.ts), so that a
 *    cursor reported after it can be persisted and trusted after a crash.
 */
export interface ResyncExtent {
  offset: number;
  length: number;
  /** The source's bytes; absent for a range that is all zero on the source. */
  data?: Buffer;
}

export interface ResyncSink {
  write(extent: ResyncExtent): Promise<void>;
  flush(): Promise<void>;
}
