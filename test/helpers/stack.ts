import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, type AgentDiskConfig, type AgentOptions } from '../../src/agent/agent.js';
import { NbdClient } from '../../src/agent/nbd/client.js';
import { MasterTarget, type MasterTargetOptions } from '../../src/mt/main.js';
import { ProcessServer } from '../../src/ps/process-server.js';
import { encodeBatch, type Batch } from '../../src/replication/batch.js';
import { connectData, FrameType, batchPayload, parseJson, writeFrame, type Ack, type Nack, type TlsMaterial } from '../../src/replication/transport.js';
import { createLogger } from '../../src/runtime/log.js';
import { ensureDevPki, loadTlsMaterial } from '../../src/security/pki.js';
import { generateToken } from '../../src/security/token.js';

/**
 * The three data-path components in this process (agent → PS → MT on loopback), for tests that
 * call their runtime methods directly: protect/unprotect, attach/freeze/restore/release,
 * drain/discard. Paths: site-a/<disk>.img (source), site-b/<disk>.img (replica).
 * BOOMERANG_TEST_LOG=info (or debug) prints the components' logs.
 */

export const MiB = 1024 * 1024;

let pki: Promise<{ material: TlsMaterial; token: string }> | undefined;

/** One dev CA and certificate per test process, kept in memory (its directory is removed). */
export function testPki(): Promise<{ material: TlsMaterial; token: string }> {
  pki ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'boomerang-pki-'));
    try {
      return { material: await loadTlsMaterial(await ensureDevPki(join(dir, 'pki'))), token: generateToken() };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  })();
  return pki;
}

export async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

export async function withDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), `boomerang-${prefix}-`));
  try {
    return await fn(dir);
  } finally {
    if (process.env.BOOMERANG_KEEP_TEST_DIRS !== '1') await rm(dir, { recursive: true, force: true });
  }
}

/** mulberry32-seeded bytes: reproducible payloads. */
export function seededBytes(seed: number, length: number): Buffer {
  let a = seed >>> 0;
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i += 4) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out.writeUInt32LE((t ^ (t >>> 14)) >>> 0, i);
  }
  return out;
}

/** Writes through NBD and keeps a model of what the disk must hold. */
export class Writer {
  private seed: number;
  constructor(
    readonly client: NbdClient,
    readonly model: Buffer,
    seed: number,
  ) {
    this.seed = seed;
  }

  static async connect(socketPath: string, exportName: string, model: Buffer, seed: number): Promise<Writer> {
    return new Writer(await NbdClient.connect({ socketPath, exportName }), model, seed);
  }

  /** `count` writes of 4–64 KiB at seeded offsets, `concurrency` at a time; every 7th is zeroes. */
  async random(count: number, concurrency = 4): Promise<void> {
    const block = 4096;
    const blocks = this.model.length / block;
    const plan: { offset: number; data: Buffer | undefined; length: number }[] = [];
    for (let i = 0; i < count; i++) {
      const r = seededBytes(this.seed++, 8);
      const len = (1 + (r.readUInt32LE(0) % 16)) * block;
      const offset = (r.readUInt32LE(4) % (blocks - len / block + 1)) * block;
      plan.push({ offset, length: len, data: i % 7 === 6 ? undefined : seededBytes(this.seed++, len) });
    }
    // Writes in one wave never overlap, so the model does not depend on completion order.
    for (let at = 0; at < plan.length; ) {
      const wave: typeof plan = [];
      while (at < plan.length && wave.length < concurrency && !wave.some((w) => w.offset < plan[at]!.offset + plan[at]!.length && plan[at]!.offset < w.offset + w.length)) wave.push(plan[at++]!);
      await Promise.all(wave.map((w) => (w.data ? this.client.write(w.offset, w.data) : this.client.writeZeroes(w.offset, w.length))));
      for (const w of wave) {
        if (w.data) w.data.copy(this.model, w.offset);
        else this.model.fill(0, w.offset, w.offset + w.length);
      }
    }
  }

  async close(): Promise<void> {
    await this.client.disconnect();
  }
}

export interface StackDisk {
  id: string;
  sizeBytes: number;
  protect?: boolean;
}

export interface StackOptions {
  dir: string;
  disks: StackDisk[];
  /** Attach the replicas on the MT at start (default), or leave the MT without disks. */
  attach?: boolean;
  agent?: Partial<AgentOptions>;
  /** Start the agent in this process (default); false when a test runs it elsewhere. */
  startAgent?: boolean;
  /** Overrides of the MT's options (a disk store with storage accounts, say). */
  mt?: Partial<MasterTargetOptions>;
  /** Where the source disk lives instead of site-a/<disk>.img (a page blob location, say). */
  sourceLocation?: (id: string) => string;
  /** Where the replica lives instead of site-b/<disk>.img. */
  replicaLocation?: (id: string) => string;
}

export class Stack {
  mt!: MasterTarget;
  ps!: ProcessServer;
  agent: Agent | undefined;
  material!: TlsMaterial;
  token!: string;

  constructor(readonly o: StackOptions) {}

  source(id: string): string {
    return this.o.sourceLocation?.(id) ?? join(this.o.dir, 'site-a', `${id}.img`);
  }

  replica(id: string): string {
    return this.o.replicaLocation?.(id) ?? join(this.o.dir, 'site-b', `${id}.img`);
  }

  get nbdSocket(): string {
    return join(this.o.dir, 'agent', 'nbd.sock');
  }

  static async start(o: StackOptions): Promise<Stack> {
    const s = new Stack(o);
    ({ material: s.material, token: s.token } = await testPki());
    for (const d of ['site-a', 'site-b', 'agent', 'ps']) await mkdir(join(o.dir, d), { recursive: true });
    try {
      s.mt = await MasterTarget.start(s.mtOptions());
      s.ps = await ProcessServer.start({
        name: 'ps-test',
        listen: { host: '127.0.0.1', port: 0 },
        spoolDir: join(o.dir, 'ps', 'spool'),
        masterTarget: s.mt.endpoint!,
        material: s.material,
        token: s.token,
        log: createLogger('ps', process.env.BOOMERANG_TEST_LOG ?? 'silent'),
      });
      if (o.attach !== false) for (const d of o.disks) await s.mt.attachDisk({ id: d.id, target: s.replica(d.id), sizeBytes: d.sizeBytes });
      if (o.startAgent !== false) await s.startAgent();
    } catch (err) {
      await s.stop();
      throw err;
    }
    return s;
  }

  mtOptions(): MasterTargetOptions {
    return {
      name: 'mt-test',
      listen: { host: '127.0.0.1', port: 0 },
      retentionDir: join(this.o.dir, 'site-b', 'retention'),
      disks: [],
      material: this.material,
      token: this.token,
      log: createLogger('mt', process.env.BOOMERANG_TEST_LOG ?? 'silent'),
      ...this.o.mt,
    };
  }

  async startAgent(overrides: { disks?: AgentDiskConfig[] } = {}): Promise<Agent> {
    this.agent = await Agent.start({
      name: 'agent-test',
      stateDir: join(this.o.dir, 'agent', 'state'),
      nbdSocket: this.nbdSocket,
      processServer: this.ps.endpoint!,
      material: this.material,
      token: this.token,
      disks: overrides.disks ?? this.o.disks.map((d) => ({ id: d.id, path: this.source(d.id), sizeBytes: d.sizeBytes, ...(d.protect === undefined ? {} : { protect: d.protect }) })),
      log: createLogger('agent', process.env.BOOMERANG_TEST_LOG ?? 'silent'),
      bookmarkIntervalMs: 0,
      ...this.o.agent,
    });
    return this.agent;
  }

  async stopAgent(): Promise<ReturnType<Agent['stop']>> {
    const a = this.agent!;
    this.agent = undefined;
    return a.stop({ drainTimeoutMs: 30_000 });
  }

  /**
   * Waits until everything the agent captured (a resync under way included) is at the PS, then
   * until the PS holds nothing more of the disk (the MT applied it). Throws on timeout.
   */
  async sync(diskId: string, timeoutMs = 60_000): Promise<void> {
    if (this.agent && !(await this.agent.drain(timeoutMs))) throw new Error(`agent did not drain within ${timeoutMs} ms`);
    if (!(await this.ps.drainDisk(diskId, timeoutMs))) throw new Error(`PS did not drain disk ${diskId} within ${timeoutMs} ms`);
  }

  async stop(): Promise<void> {
    await this.agent?.stop({ drainTimeoutMs: 0 }).catch(() => undefined);
    await this.ps?.stop().catch(() => undefined);
    await this.mt?.stop().catch(() => undefined);
  }
}

/** Polls `probe` (every few ms) until it returns a value other than undefined; throws after `timeoutMs`. */
export async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** A file of `size` seeded bytes (a disk with history, to adopt or to protect). */
export async function writeSeededFile(path: string, size: number, seed: number): Promise<Buffer> {
  const data = seededBytes(seed, size);
  const fh = await open(path, 'w', 0o600);
  try {
    await fh.writeFile(data);
  } finally {
    await fh.close();
  }
  return data;
}

/** A hand-driven connection in one role ('agent' to a PS, 'ps' to an MT) that sends batches and reads the answers. */
export class RawSender {
  private nextId = 1;
  private constructor(private readonly c: Awaited<ReturnType<typeof connectData>>) {}

  static async open(endpoint: { host: string; port: number }, role: 'agent' | 'ps'): Promise<RawSender> {
    const { material, token } = await testPki();
    return new RawSender(await connectData(endpoint, material, { role, name: `raw-${role}`, token }));
  }

  /** Sends one batch and returns the answer (ack or nack). */
  async send(batch: Batch): Promise<{ ack?: Ack; nack?: Nack }> {
    const id = this.nextId++;
    await writeFrame(this.c.socket, FrameType.batch, batchPayload(id, encodeBatch(batch)));
    const reply = await this.c.frames.next();
    if (reply.done) throw new Error('connection closed without an answer');
    if (reply.value.type === FrameType.ack) return { ack: parseJson<Ack>(reply.value, 'ack') };
    if (reply.value.type === FrameType.nack) return { nack: parseJson<Nack>(reply.value, 'nack') };
    throw new Error(`unexpected frame type ${reply.value.type}`);
  }

  close(): void {
    this.c.socket.destroy();
  }
}
