import type { ChildProcess } from 'node:child_process';
import { mkdir, writeFile, access, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BoomerangError } from '../replication/errors.js';
import type { Endpoint } from '../replication/transport.js';
import { ensureDevPki } from '../security/pki.js';
import { generateToken, readTokenFile, writeTokenFile } from '../security/token.js';
import { HttpsJsonClient, httpsUrl } from '../runtime/https-client.js';
import { startComponent } from './process.js';

export type Role = 'agent' | 'ps' | 'mt';

export interface ClusterDisk {
  id: string;
  sizeBytes: number;
}

export interface ClusterOptions {
  dir: string;
  disks: ClusterDisk[];
  /** Extra agent config (bufferBytes, bookmarkIntervalSec, batch…). */
  agent?: Record<string, unknown>;
  ps?: Record<string, unknown>;
  mt?: Record<string, unknown>;
  logLevel?: string;
}

interface Running {
  proc: ChildProcess;
  exited: Promise<number | null>;
  data?: Endpoint;
  control: Endpoint;
}

/**
 * The three data-path components as separate processes on loopback, each with its own config
 * file, certificate and log — what the lab, the end-to-end tests and the benchmark drive. A
 * component can be killed (SIGKILL) and restarted on the same ports.
 */
export class Cluster {
  readonly paths: { source: (id: string) => string; replica: (id: string) => string; nbdSocket: string; retention: string; spool: string; ca: string; token: string };
  private readonly running = new Map<Role, Running>();
  private readonly ports = new Map<Role, { data?: number; resync?: number; control?: number }>();
  private clients = new Map<Role, HttpsJsonClient>();
  private ca = '';
  private token = '';

  constructor(readonly o: ClusterOptions) {
    const dir = resolve(o.dir);
    this.paths = {
      source: (id) => join(dir, 'site-a', `${id}.img`),
      replica: (id) => join(dir, 'site-b', `${id}.img`),
      nbdSocket: join(dir, 'agent', 'nbd.sock'),
      retention: join(dir, 'site-b', 'retention'),
      spool: join(dir, 'ps', 'spool'),
      ca: join(dir, 'pki', 'ca.pem'),
      token: join(dir, 'token'),
    };
  }

  private file(...parts: string[]): string {
    return join(resolve(this.o.dir), ...parts);
  }

  /** Writes PKI, token and the three config files (idempotent). */
  async prepare(): Promise<void> {
    for (const d of ['site-a', 'site-b', 'agent', 'ps', 'mt', 'logs']) await mkdir(this.file(d), { recursive: true, mode: 0o700 });
    const pki = await ensureDevPki(this.file('pki'));
    this.paths.ca = pki.caPath;
    try {
      await access(this.paths.token);
    } catch {
      await writeTokenFile(this.paths.token, generateToken());
    }
    const tls = { ca: pki.caPath, cert: pki.certPath, key: pki.keyPath };
    const common = { tls, tokenFile: this.paths.token };
    await writeFile(
      this.file('mt', 'mt.json'),
      JSON.stringify({
        name: 'mt-b',
        listen: '127.0.0.1:0',
        control: '127.0.0.1:0',
        retention: { dir: this.paths.retention },
        disks: this.o.disks.map((d) => ({ id: d.id, target: this.paths.replica(d.id), size: d.sizeBytes })),
        ...common,
        ...this.o.mt,
      }),
    );
    await writeFile(
      this.file('ps', 'ps.json'),
      JSON.stringify({ name: 'ps-a', listen: '127.0.0.1:0', control: '127.0.0.1:0', masterTarget: '127.0.0.1:1', spool: { dir: this.paths.spool }, ...common, ...this.o.ps }),
    );
    await writeFile(
      this.file('agent', 'agent.json'),
      JSON.stringify({
        name: 'machine-a',
        stateDir: this.file('agent', 'state'),
        nbdSocket: this.paths.nbdSocket,
        processServer: '127.0.0.1:1',
        control: '127.0.0.1:0',
        disks: this.o.disks.map((d) => ({ id: d.id, path: this.paths.source(d.id), size: d.sizeBytes })),
        ...common,
        ...this.o.agent,
      }),
    );
    this.ca = await readFile(pki.caPath, 'utf8');
    this.token = await readTokenFile(this.paths.token);
  }

  /** Trust another CA for the components' control APIs (when they use certificates a CS issued). */
  trustCa(caPem: string): void {
    this.ca = caPem;
  }

  /** Starts MT, PS and agent in that order. */
  async startAll(): Promise<void> {
    await this.start('mt');
    await this.start('ps');
    await this.start('agent');
  }

  /** `psPort` points the agent at another port (a test proxy in front of the PS). */
  async start(role: Role, overrides: { psPort?: number } = {}): Promise<void> {
    if (this.running.has(role)) throw new BoomerangError('LAB_STATE', `${role} is already running`);
    const ports = this.ports.get(role) ?? {};
    const args = [role, '--config', this.file(role, `${role}.json`), '--log-level', this.o.logLevel ?? 'info'];
    if (role !== 'agent' && ports.data !== undefined) args.push('--listen', `127.0.0.1:${ports.data}`);
    if (role === 'mt' && ports.resync !== undefined) args.push('--resync-listen', `127.0.0.1:${ports.resync}`);
    if (role === 'ps') args.push('--mt', `127.0.0.1:${this.requirePort('mt')}`);
    if (role === 'agent') args.push('--ps', `127.0.0.1:${overrides.psPort ?? this.requirePort('ps')}`);
    if (role === 'agent' && ports.control !== undefined) args.push('--control', `127.0.0.1:${ports.control}`);
    const { proc, exited, ready } = await startComponent<{ event?: string; listen?: Endpoint; resync?: Endpoint; control: Endpoint }>(args, this.file('logs', `${role}.log`), role);
    this.ports.set(role, { ...(ready.listen ? { data: ready.listen.port } : {}), ...(ready.resync ? { resync: ready.resync.port } : {}), control: ready.control.port });
    this.running.set(role, { proc, exited, control: ready.control, ...(ready.listen ? { data: ready.listen } : {}) });
    await this.clients.get(role)?.close();
    this.clients.set(role, new HttpsJsonClient(httpsUrl(ready.control), this.ca, this.token));
  }

  requirePort(role: Role): number {
    const p = this.ports.get(role)?.data;
    if (p === undefined) throw new BoomerangError('LAB_STATE', `${role} has not been started yet`);
    return p;
  }

  /** host:port of a running component's control API (for the CLI). */
  controlAddress(role: Role): string {
    const r = this.running.get(role);
    if (!r) throw new BoomerangError('LAB_STATE', `${role} is not running`);
    return `${r.control.host}:${r.control.port}`;
  }

  client(role: Role): HttpsJsonClient {
    const c = this.clients.get(role);
    if (!c || !this.running.has(role)) throw new BoomerangError('LAB_STATE', `${role} is not running`);
    return c;
  }

  isRunning(role: Role): boolean {
    return this.running.has(role);
  }

  /** SIGKILL: no chance to flush or drain — the crash the fault tests need. */
  async kill(role: Role): Promise<void> {
    const r = this.running.get(role);
    if (!r) return;
    r.proc.kill('SIGKILL');
    await r.exited;
    this.running.delete(role);
  }

  /** SIGTERM: a clean stop (the agent drains first). Resolves with the exit code. */
  async stop(role: Role): Promise<number | null> {
    const r = this.running.get(role);
    if (!r) return null;
    r.proc.kill('SIGTERM');
    const code = await r.exited;
    this.running.delete(role);
    return code;
  }

  /**
   * Waits until everything the agent has captured so far is applied on the MT: drain the agent
   * to the PS, then wait for the MT to reach the agent's last sequence number.
   */
  async sync(diskId: string, timeoutMs = 120_000): Promise<{ lineage: string; seq: number }> {
    const agent = this.client('agent');
    const drained = await agent.call<{ drained: boolean }>('POST', `/drain?timeoutMs=${timeoutMs}`);
    if (!drained.drained) throw new BoomerangError('LAB_TIMEOUT', `agent did not drain to the process server within ${timeoutMs} ms`);
    const status = await agent.call<{ disks: Record<string, { lineage: string; lastSeq: number }> }>('GET', '/status');
    const disk = status.disks[diskId];
    if (!disk) throw new BoomerangError('UNKNOWN_DISK', `agent has no disk ${diskId}`);
    const reached = await this.client('mt').call<{ reached: boolean }>('GET', `/disks/${diskId}/wait?lineage=${disk.lineage}&seq=${disk.lastSeq}&timeoutMs=${timeoutMs}`);
    if (!reached.reached) throw new BoomerangError('LAB_TIMEOUT', `master target did not apply ${diskId} up to ${disk.lineage}/${disk.lastSeq} within ${timeoutMs} ms`);
    return { lineage: disk.lineage, seq: disk.lastSeq };
  }

  async stopAll(): Promise<void> {
    await this.stop('agent');
    await this.stop('ps');
    await this.stop('mt');
    for (const c of this.clients.values()) await c.close();
    this.clients.clear();
  }

  async killAll(): Promise<void> {
    for (const role of ['agent', 'ps', 'mt'] as const) await this.kill(role);
    for (const c of this.clients.values()) await c.close();
    this.clients.clear();
  }
}
