import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The compiled `boomerang` command, run as a child process the way an operator runs it. */
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `boomerang args…` with the caller's BOOMERANG_* variables only (none inherited from the test's environment). */
export function runCli(args: readonly string[], env: Record<string, string>): Promise<CliRun> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOOMERANG_'))) as Record<string, string>;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...base, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr });
    });
  });
}
