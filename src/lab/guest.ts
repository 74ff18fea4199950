import { createHash, randomInt } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { NbdClient } from '../agent/nbd/client.js';
import { errorMessage } from '../replication/errors.js';
import { runWorkload } from './workload.js';

/**
 * The lab's guest: what runs "inside" a demo machine. It boots on the disk its agent serves over
 * NBD and records the disk's hash as it found it, writes a burst of random data, then idles; on
 * SIGUSR2 it writes another burst; on SIGTERM (shutdown) it finishes the write in flight, flushes
 * and records the disk's hash as it left it. Those two hashes are what the drill compares across
 * a failover or failback: the machine must boot on exactly the disk the other one shut down on.
 */

export interface GuestStatus {
  pid: number;
  state: 'booting' | 'writing' | 'idle' | 'stopped';
  bootHash?: string;
  shutdownHash?: string;
  /** Bursts written, and bursts asked for (one at boot, one per SIGUSR2). */
  bursts: number;
  requested: number;
  bytesWritten: number;
  seed: number;
  error?: string;
}

export interface GuestOptions {
  socketPath: string;
  exportName: string;
  statusPath: string;
  burstBytes: number;
  blockBytes: number;
  /** How long to keep trying to reach the agent's socket. */
  connectTimeoutMs: number;
}

/** Status writes in order, each a whole file (tmp + rename): readers never see a torn or stale one. */
function statusWriter(path: string): (s: GuestStatus) => Promise<void> {
  let chain = Promise.resolve();
  return (s) => {
    const text = `${JSON.stringify(s)}\n`;
    chain = chain.then(async () => {
      await writeFile(`${path}.tmp`, text);
      await rename(`${path}.tmp`, path);
    });
    return chain;
  };
}

async function connect(o: GuestOptions): Promise<NbdClient> {
  const deadline = Date.now() + o.connectTimeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await NbdClient.connect({ socketPath: o.socketPath, exportName: o.exportName });
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`cannot reach export ${o.exportName} at ${o.socketPath}: ${errorMessage(err)}`);
      await sleep(Math.min(50 * 2 ** attempt, 500));
    }
  }
}

/** sha256 of the whole disk, read through the export as the machine sees it. */
export async function hashExport(client: NbdClient): Promise<string> {
  const h = createHash('sha256');
  const piece = 4 * 1024 * 1024;
  for (let offset = 0; offset < client.size; offset += piece) h.update(await client.read(offset, Math.min(piece, client.size - offset)));
  return h.digest('hex');
}

export async function runGuest(o: GuestOptions): Promise<void> {
  const writeStatus = statusWriter(o.statusPath);
  const status: GuestStatus = { pid: process.pid, state: 'booting', bursts: 0, requested: 1, bytesWritten: 0, seed: randomInt(1, 2 ** 31) };
  await writeStatus(status);
  const client = await connect(o);
  status.bootHash = await hashExport(client);
  const stopping = new AbortController();
  let bursts = 0;
  let wake: (() => void) | undefined;
  const onTerm = () => {
    stopping.abort();
    wake?.();
  };
  const onBurst = () => {
    bursts++;
    status.requested++;
    // Said at once, so whoever asked knows the disk is about to change.
    void writeStatus({ ...status, state: 'writing' });
    wake?.();
  };
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onTerm);
  process.on('SIGUSR2', onBurst);
  bursts++; // one at boot
  try {
    while (!stopping.signal.aborted) {
      if (bursts === 0) {
        status.state = 'idle';
        await writeStatus(status);
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      bursts--;
      status.state = 'writing';
      await writeStatus(status);
      const r = await runWorkload(client, {
        seed: status.seed + status.bursts,
        blockBytes: o.blockBytes,
        pattern: 'random',
        concurrency: 4,
        maxWrites: Math.max(1, Math.floor(o.burstBytes / o.blockBytes)),
        zeroEvery: 16,
        signal: stopping.signal,
      });
      status.bursts++;
      status.bytesWritten += r.bytes;
    }
    await client.flush();
    status.shutdownHash = await hashExport(client);
    status.state = 'stopped';
  } catch (err) {
    status.error = errorMessage(err);
    throw err;
  } finally {
    await writeStatus(status);
    await client.disconnect().catch(() => undefined);
  }
}
