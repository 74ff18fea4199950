/**
 * Orders operations on overlapping byte ranges of one disk. An operation may start when no
 * operation that arrived before it overlaps its range; non-overlapping operations run
 * concurrently. Capture relies on this: the sequence number an operation takes once it holds its
 * range is then the order in which overlapping operations reached the backing disk, so the
 * replica applies them in the same order (a resync read can never race a newer write).
 */
interface Entry {
  start: number;
  end: number;
  held: boolean;
  grant: () => void;
}

export class RangeLock {
  private readonly queue: Entry[] = [];

  get size(): number {
    return this.queue.length;
  }

  acquire(offset: number, length: number): Promise<() => void> {
    return new Promise((resolve) => {
      const entry: Entry = { start: offset, end: offset + length, held: false, grant: () => undefined };
      entry.grant = () => {
        entry.held = true;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.queue.splice(this.queue.indexOf(entry), 1);
          this.wake();
        });
      };
      this.queue.push(entry);
      if (this.canRun(this.queue.length - 1)) entry.grant();
    });
  }

  private canRun(index: number): boolean {
    const e = this.queue[index]!;
    for (let i = 0; i < index; i++) {
      const other = this.queue[i]!;
      if (other.start < e.end && e.start < other.end) return false;
    }
    return true;
  }

  private wake(): void {
    for (let i = 0; i < this.queue.length; i++) {
      const e = this.queue[i]!;
      if (!e.held && this.canRun(i)) e.grant();
    }
  }
}
