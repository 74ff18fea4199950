import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { BoomerangError } from '../replication/errors.js';

/** The built `boomerang` entry point, for the lab to run components as processes. */
export const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface ComponentProcess<R> {
  proc: ChildProcess;
  exited: Promise<number | null>;
  /** The component's `{"event":"ready",…}` line. */
  ready: R;
}

/**
 * Runs `boomerang <args>` as a child process, its output appended to `logFile`, and resolves with
 * the ready line it prints once listening; rejects if it exits first.
 */
export async function startComponent<R extends { event?: string }>(args: readonly string[], logFile: string, what: string): Promise<ComponentProcess<R>> {
  // A process group of its own: Ctrl-C in the lab's terminal reaches the lab, which stops its
  // machines first (their agents drain to the PS) and the components after, in order.
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const log = createWriteStream(logFile, { flags: 'a' });
  proc.stderr!.pipe(log);
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  const ready = await new Promise<R>((res, rej) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.on('line', (line) => {
      log.write(`${line}\n`);
      try {
        const msg = JSON.parse(line) as R;
        if (msg.event === 'ready') res(msg);
      } catch {
        // a log line, not the ready message
      }
    });
    void exited.then((code) => rej(new BoomerangError('LAB_START', `${what} exited with code ${code} before it was ready; see ${logFile}`)));
  });
  return { proc, exited, ready };
}
