import type { JobView, TaskView } from '../cs/jobs/store.js';
import { WaitTimeoutError, type CsApi } from './cs-api.js';

/**
 * Live progress of a job: one line per task with a bar, a percentage, the state and the task's
 * detail text. On a terminal the block is redrawn in place; elsewhere (a pipe, a log file) a line
 * is appended whenever a task's line changes, so the output reads as a history.
 */

export const FINISHED_STATES: readonly string[] = ['succeeded', 'failed', 'cancelled'];

export function isFinished(job: Pick<JobView, 'state'>): boolean {
  return FINISHED_STATES.includes(job.state);
}

const BAR = 20;

function taskFraction(t: TaskView): number | undefined {
  if (t.state === 'skipped') return undefined;
  if (t.state === 'succeeded') return 1;
  return t.progress.total > 0 ? Math.min(1, Math.max(0, t.progress.done / t.progress.total)) : 0;
}

export function bar(fraction: number | undefined, width = BAR): string {
  if (fraction === undefined) return `[${' '.repeat(width)}]`;
  const full = Math.round(fraction * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

export function percent(fraction: number | undefined): string {
  return fraction === undefined ? '   -' : `${Math.floor(fraction * 100)}%`.padStart(4);
}

/** The header line of a job: kind, id, state, overall percentage. */
export function jobLine(job: JobView): string {
  const cancel = job.cancelRequested && !isFinished(job) ? ' (cancel requested)' : '';
  return `job ${job.id} ${job.kind}: ${job.state}${cancel} ${percent(job.state === 'succeeded' ? 1 : job.progress).trim()}`;
}

/** One task: name, bar, percentage, state, detail (or its error). */
export function taskLine(t: TaskView, nameWidth: number): string {
  const f = taskFraction(t);
  const detail = t.error ? `[${t.error.code}] ${t.error.message}` : (t.progress.detail ?? '');
  return `  ${t.name.padEnd(nameWidth)}  ${bar(f)} ${percent(f)}  ${t.state.padEnd(9)}  ${detail}`.trimEnd();
}

export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export class JobProgress {
  private drawn = 0;
  private readonly printed = new Map<string, string>();

  constructor(
    private readonly out: ProgressStream,
    private readonly tty: boolean = out.isTTY === true,
  ) {}

  update(job: JobView): void {
    const width = Math.max(4, ...job.tasks.map((t) => t.name.length));
    const head = jobLine(job);
    const tasks = job.tasks.map((t) => taskLine(t, width));
    if (this.tty) this.redraw([head, ...tasks]);
    else this.append(head, job.tasks, tasks);
  }

  private redraw(lines: string[]): void {
    const cols = this.out.columns && this.out.columns > 10 ? this.out.columns - 1 : undefined;
    // Cut to the terminal width: a wrapped line would throw the cursor-up count off.
    const fitted = cols === undefined ? lines : lines.map((l) => (l.length > cols ? `${l.slice(0, cols - 1)}…` : l));
    let text = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
    for (const l of fitted) text += `\r\x1b[2K${l}\n`;
    // Fewer lines than before (should not happen: a job's tasks are fixed): clear what is left.
    for (let i = fitted.length; i < this.drawn; i++) text += '\r\x1b[2K\n';
    this.out.write(text);
    this.drawn = Math.max(this.drawn, fitted.length);
  }

  private append(head: string, tasks: readonly TaskView[], lines: readonly string[]): void {
    const emit = (key: string, line: string) => {
      if (this.printed.get(key) === line) return;
      this.printed.set(key, line);
      this.out.write(`${line}\n`);
    };
    // The header's percentage moves with every task line; a new header line says a new state.
    emit('', head.replace(/ +\d+%$/, ''));
    tasks.forEach((t, i) => {
      // Pending tasks say nothing new until they start.
      if (t.state === 'pending' && !this.printed.has(`task:${t.index}`)) return;
      emit(`task:${t.index}`, lines[i]!);
    });
  }
}

export interface WatchOptions {
  /** Stop waiting (WaitTimeoutError) after this long; the job goes on. */
  timeoutMs?: number;
  onUpdate?: (job: JobView) => void;
  /** Seconds each long-poll may wait on the server (at most 60). */
  pollSeconds?: number;
}

/** Follows a job through GET /v1/jobs/:id/watch until it ends; returns its last view. */
export async function watchJob(api: CsApi, jobId: string, options: WatchOptions = {}): Promise<JobView> {
  const id = encodeURIComponent(jobId);
  const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
  const poll = options.pollSeconds ?? 25;
  let job = await api.get<JobView>(`/v1/jobs/${id}`);
  options.onUpdate?.(job);
  while (!isFinished(job)) {
    let seconds = poll;
    if (deadline !== undefined) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new WaitTimeoutError(
          `job ${job.id} (${job.kind}) is still ${job.state} after ${Math.round(options.timeoutMs! / 1000)} s; it goes on on the configuration server: boomerang job watch ${job.id}`,
        );
      }
      seconds = Math.min(poll, Math.max(0.05, left / 1000));
    }
    // The server answers by `seconds` at the latest; the client gives it a margin, then asks again.
    const guard = AbortSignal.timeout(seconds * 1000 + 15_000);
    let next: JobView;
    try {
      next = await api.get<JobView>(`/v1/jobs/${id}/watch?version=${job.version}&timeoutSeconds=${Number(seconds.toFixed(3))}`, guard);
    } catch (err) {
      if (guard.aborted) continue;
      throw err;
    }
    if (next.version !== job.version || next.state !== job.state) options.onUpdate?.(next);
    job = next;
  }
  return job;
}

/**
 * While waiting, Ctrl-C stops watching (the job goes on on the CS) with a hint how to resume;
 * returns the function that removes the handler.
 */
export function onInterrupt(jobId: string): () => void {
  const handler = () => {
    process.stderr.write(`\nstopped watching; job ${jobId} goes on on the configuration server: boomerang job watch ${jobId}\n`);
    process.exit(130);
  };
  process.once('SIGINT', handler);
  return () => process.off('SIGINT', handler);
}
