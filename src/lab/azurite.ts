import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { BoomerangError } from '../replication/errors.js';

/**
 * Azurite's blob service (npm `azurite`, pinned in package.json) as a child process, for the lab
 * and the tests: started with node directly (killing an `npx` wrapper would leave the server
 * running), telemetry off, on 127.0.0.1 and a port the OS picks, serving HTTPS with the given
 * certificate; stopped by PID.
 */

/** Where Azurite keeps its data and which certificate it serves. */
export interface AzuriteOptions {
  /** Azurite's data directory (created by Azurite if missing). */
  location: string;
  /** PEM files of the server certificate and key; HTTPS is the only mode we run. */
  certPath: string;
  keyPath: string;
  /** Port to listen on; default 0, the OS picks one. */
  port?: number;
  /** Keep blobs in memory only (faster start; memory grows with everything written). */
  inMemory?: boolean;
  /** Limit on waiting for the service to listen. Default 30 s. */
  startTimeoutMs?: number;
}

/** A running Azurite blob service. */
export interface AzuriteProcess {
  /** https://127.0.0.1:<port>: append the account name for the blob endpoint. */
  origin: string;
  port: number;
  pid: number;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs` (default 10 s). Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

const require = createRequire(import.meta.url);

/** The blob service's entry point inside the installed azurite package. */
export function azuriteBlobMain(): string {
  return join(dirname(require.resolve('azurite/package.json')), 'dist', 'src', 'blob', 'main.js');
}

/** The installed azurite package's version (pinned in package.json). */
export function azuriteVersion(): string {
  return (require('azurite/package.json') as { version: string }).version;
}

/** Resolves once a TCP connection to 127.0.0.1:port succeeds, polling until `deadline`. */
async function waitForPort(port: number, deadline: number): Promise<void> {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const ok = await new Promise<boolean>((res) => {
      const socket = connect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        res(true);
      });
      socket.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > deadline) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new BoomerangError('AZURITE_START', `Azurite does not accept connections on port ${port}`);
}

/** Starts Azurite and resolves once it accepts connections; stops it again if it does not get there. */
export async function startAzurite(options: AzuriteOptions): Promise<AzuriteProcess> {
  const args = [
    azuriteBlobMain(),
    '--blobHost', '127.0.0.1',
    '--blobPort', String(options.port ?? 0),
    '--location', options.location,
    '--cert', options.certPath,
    '--key', options.keyPath,
    '--silent',
    '--skipApiVersionCheck',
    '--disableTelemetry',
    ...(options.inMemory ? ['--inMemoryPersistence'] : []),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new BoomerangError('AZURITE_START', 'cannot start Azurite');
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    if (stderr.length < 8192) stderr += b.toString('utf8');
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  const stop = async (graceMs = 10_000): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    process.kill(pid, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((res) => {
      timer = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
        res();
      }, graceMs);
    });
    await Promise.race([exited, killed]);
    clearTimeout(timer);
    await exited;
  };
  try {
    // Even with --silent, Azurite prints the address it listens on (the port the OS chose).
    const port = await new Promise<number>((res, rej) => {
      const lines = createInterface({ input: child.stdout });
      const timer = setTimeout(() => rej(new BoomerangError('AZURITE_START', 'Azurite did not report its address in time')), Math.max(0, deadline - Date.now()));
      lines.on('line', (line) => {
        const m = /successfully listens on https?:\/\/[^:]+:(\d+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          res(Number(m[1]));
        }
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        rej(new BoomerangError('AZURITE_START', `cannot start Azurite: ${err.message}`, { cause: err }));
      });
      void exited.then(() => {
        clearTimeout(timer);
        rej(new BoomerangError('AZURITE_START', `Azurite exited before it was ready: ${stderr.trim()}`));
      });
    });
    await waitForPort(port, deadline);
    return { origin: `https://127.0.0.1:${port}`, port, pid, stop };
  } catch (err) {
    await stop(2_000);
    throw err;
  }
}
