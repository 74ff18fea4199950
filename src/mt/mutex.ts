/**
 * Serialises async operations: each `run` starts after every earlier one has settled, whatever
 * its outcome. Operations on one replica disk go through one of these.
 */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
