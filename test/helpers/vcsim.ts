import { spawn, execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * vcsim (govmomi's vCenter simulator, built from Debian's golang-github-vmware-govmomi-dev sources
 * with the model in test/vcsim/main.go). The binary is built once into the OS tmpdir, keyed by a
 * hash of the Go sources; each test file starts its own simulator on a port the OS chooses and
 * stops it by PID.
 */

const run = promisify(execFile);
const GOPATH = '/usr/share/gocode';
const here = dirname(fileURLToPath(import.meta.url));
/** dist/test/helpers → repository root */
const SOURCES = resolve(here, '..', '..', '..', 'test', 'vcsim');
const CACHE = join(tmpdir(), 'boomerang-vcsim');

export interface Vcsim {
  /** https://127.0.0.1:<port>/sdk */
  url: string;
  /** The administrator account. */
  username: string;
  password: string;
  /** An account with vSphere's ReadOnly role: it cannot see datastores and gets NoPermission on writes. */
  readOnly: { username: string; password: string };
  /** The free ESXi licence, held by the LicenseManager: assign it to a host with UpdateAssignedLicense. */
  freeLicenseKey: string;
  /** The simulator's self-signed certificate (also its own CA). */
  certPem: string;
  /** SHA-1 thumbprint, colon-separated upper-case hex, as vSphere shows it. */
  thumbprint: string;
  pid: number;
  stop(): Promise<void>;
}

async function sourcesHash(): Promise<string> {
  const h = createHash('sha256');
  for (const name of (await readdir(SOURCES)).filter((n) => n.endsWith('.go')).sort()) {
    h.update(name).update('\0').update(await readFile(join(SOURCES, name))).update('\0');
  }
  h.update(process.arch);
  return h.digest('hex').slice(0, 16);
}

let built: Promise<string> | undefined;

/** Builds the simulator unless a binary for these sources is cached; its path. */
export function vcsimBinary(): Promise<string> {
  built ??= (async () => {
    const bin = join(CACHE, `vcsim-${await sourcesHash()}`);
    if (await stat(bin).then(() => true, () => false)) return bin;
    await mkdir(CACHE, { recursive: true });
    // Built under a private name, then renamed: test files that build at once never see half a binary.
    const tmp = `${bin}.${process.pid}.tmp`;
    const env = { ...process.env, GOPATH, GO111MODULE: 'off', GOFLAGS: '', GOPROXY: 'off', GOCACHE: join(CACHE, 'gocache'), HOME: process.env['HOME'] ?? CACHE };
    await run('go', ['build', '-o', tmp, '.'], { cwd: SOURCES, env, maxBuffer: 16 << 20 });
    await rename(tmp, bin);
    return bin;
  })();
  return built;
}

export async function startVcsim(): Promise<Vcsim> {
  const bin = await vcsimBinary();
  const child = spawn(bin, [], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    if (stderr.length < 8192) stderr += b.toString('utf8');
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const line = await new Promise<string>((res, rej) => {
    const rl = createInterface({ input: child.stdout });
    rl.once('line', (l) => {
      rl.close();
      res(l);
    });
    child.once('error', rej);
    void exited.then(() => rej(new Error(`vcsim exited before it was ready: ${stderr.trim()}`)));
  });
  const { readOnlyUsername, readOnlyPassword, ...info } = JSON.parse(line) as Omit<Vcsim, 'pid' | 'stop' | 'readOnly'> & { readOnlyUsername: string; readOnlyPassword: string };
  const pid = child.pid as number;
  return {
    ...info,
    readOnly: { username: readOnlyUsername, password: readOnlyPassword },
    pid,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGINT'); // SIGINT: it removes its datastore directories
      await exited;
    },
  };
}
