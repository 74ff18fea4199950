/**
 * The configuration server's notion of time: timestamps of jobs and heartbeats, token expiry,
 * the heartbeat monitor's period. Injected so tests (and a time-skipping lab) can move time
 * forward instead of waiting. Socket-level deadlines (a long-poll's timeout) use real timers.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` once after `ms`; the returned function cancels it. */
  setTimeout(fn: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    // A pending check must never keep the process alive on its own.
    t.unref();
    return () => clearTimeout(t);
  },
};

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
}

/** A clock that moves only when told to; due timers fire synchronously inside advance(). */
export class ManualClock implements Clock {
  private current: number;
  private seq = 0;
  private pending: Pending[] = [];

  constructor(start: number | Date = Date.UTC(2030, 0, 1)) {
    this.current = typeof start === 'number' ? start : start.getTime();
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): () => void {
    const p: Pending = { at: this.current + Math.max(0, ms), seq: this.seq++, fn };
    this.pending.push(p);
    return () => {
      this.pending = this.pending.filter((x) => x !== p);
    };
  }

  /** Moves time forward by `ms`, firing every timer that falls due, earliest first. */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      const due = this.pending.filter((p) => p.at <= target).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (due === undefined) break;
      this.pending = this.pending.filter((p) => p !== due);
      this.current = due.at;
      due.fn();
    }
    this.current = target;
  }
}

/** ISO-8601 text of a clock reading: how timestamps are stored (sortable, dialect-neutral). */
export function isoAt(clock: Clock): string {
  return new Date(clock.now()).toISOString();
}
