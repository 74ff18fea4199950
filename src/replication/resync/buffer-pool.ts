/**
 * A fixed number of equal buffers, handed out in turn: bounds the memory of a pipeline (reads
 * ahead, batches waiting for their diff, extents waiting for the sink) and reuses the buffers so
 * a run allocates nothing per batch. take() waits while all of them are out.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly waiters: ((b: Buffer) => void)[] = [];
  private created = 0;

  constructor(
    private readonly count: number,
    readonly bytes: number,
  ) {}

  take(): Promise<Buffer> {
    const b = this.free.pop();
    if (b) return Promise.resolve(b);
    if (this.created < this.count) {
      this.created++;
      return Promise.resolve(Buffer.allocUnsafeSlow(this.bytes));
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(b: Buffer): void {
    const w = this.waiters.shift();
    if (w) w(b);
    else this.free.push(b);
  }
}
