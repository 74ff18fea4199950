/**
 * The agent's memory bound: bytes of captured data held until the process server acknowledges
 * them. Capture never waits on it (the workload must not stall); when a write does not fit, the
 * disk switches to its dirty map. Resync reads do wait for room, so they can never cause an
 * overflow themselves.
 */
export class BufferBudget {
  private usedBytes = 0;
  private waiters: { below: number; resolve: () => void }[] = [];

  constructor(readonly limitBytes: number) {}

  get used(): number {
    return this.usedBytes;
  }

  fits(bytes: number): boolean {
    return this.usedBytes + bytes <= this.limitBytes;
  }

  take(bytes: number): void {
    this.usedBytes += bytes;
  }

  give(bytes: number): void {
    this.usedBytes = Math.max(0, this.usedBytes - bytes);
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) (this.usedBytes <= w.below ? w.resolve() : still.push(w));
    this.waiters = still;
  }

  /** Resolves once usage is at or below `bytes`. */
  waitBelow(bytes: number): Promise<void> {
    if (this.usedBytes <= bytes) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ below: bytes, resolve }));
  }
}
