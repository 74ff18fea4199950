/**
 * A wake-up signal for a worker loop that must not miss a notification sent while it was busy:
 * notify() before wait() makes the next wait() return at once.
 */
export class Wakeup {
  private pending = false;
  private waiter: (() => void) | undefined;

  notify(): void {
    this.pending = true;
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  wait(): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.waiter = () => {
        this.pending = false;
        resolve();
      };
    });
  }
}
