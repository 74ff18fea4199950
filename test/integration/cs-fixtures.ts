import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ManualClock } from '../../src/cs/clock.js';
import type { JobView } from '../../src/cs/jobs/store.js';
import { ConfigurationServer, type ConfigurationServerOptions } from '../../src/cs/server.js';

/** A configuration server in a temporary directory, driven through app.inject(). */

/** A promise the test opens; waiting on it rejects when the task's signal aborts. */
export class Gate {
  readonly entered: Promise<void>;
  private enter!: () => void;
  private release!: () => void;
  private readonly opened: Promise<void>;
  constructor() {
    this.entered = new Promise((r) => (this.enter = r));
    this.opened = new Promise((r) => (this.release = r));
  }
  open(): void {
    this.release();
  }
  wait(signal: AbortSignal): Promise<void> {
    this.enter();
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason as Error);
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
      void this.opened.then(resolve);
    });
  }
}


export const PASSPHRASE = 'correct-horse-battery-staple';

export interface Reply {
  status: number;
  headers: Record<string, unknown>;
  // Tests read whatever the route answers.
  json: any;
  text: string;
}

export class CsHarness {
  cs!: ConfigurationServer;
  operatorToken = '';

  constructor(
    readonly dir: string,
    readonly clock: ManualClock,
    private readonly options: Partial<ConfigurationServerOptions>,
  ) {}

  async start(extra: Partial<ConfigurationServerOptions> = {}): Promise<ConfigurationServer> {
    this.cs = await ConfigurationServer.start({
      dataDir: join(this.dir, 'cs'),
      port: 0,
      hostnames: ['localhost', '127.0.0.1'],
      initialPassphrase: PASSPHRASE,
      clock: this.clock,
      logger: pino({ level: 'silent' }),
      progressIntervalMs: 0,
      ...this.options,
      ...extra,
    });
    this.operatorToken = (await readFile(join(this.dir, 'cs', 'admin.token'), 'utf8')).trim();
    return this.cs;
  }

  async request(method: 'GET' | 'POST' | 'PATCH', url: string, options: { token?: string | null; body?: unknown; raw?: string } = {}): Promise<Reply> {
    const token = options.token === undefined ? this.operatorToken : options.token;
    const headers: Record<string, string> = {};
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (options.body !== undefined || options.raw !== undefined) headers['content-type'] = 'application/json';
    const res = await this.cs.app.inject({ method, url, headers, ...(options.raw !== undefined ? { payload: options.raw } : options.body !== undefined ? { payload: JSON.stringify(options.body) } : {}) });
    const isJson = String(res.headers['content-type'] ?? '').includes('json');
    return { status: res.statusCode, headers: res.headers, json: isJson ? res.json() : undefined, text: res.body };
  }

  get(url: string, token?: string | null): Promise<Reply> {
    return this.request('GET', url, token === undefined ? {} : { token });
  }

  post(url: string, body?: unknown, token?: string | null): Promise<Reply> {
    return this.request('POST', url, { ...(body === undefined ? {} : { body }), ...(token === undefined ? {} : { token }) });
  }

  async register(kind: 'agent' | 'ps' | 'mt', name: string, extra: Record<string, unknown> = {}): Promise<{ componentId: string; token: string; certificatePem: string; privateKeyPem?: string; caPem: string }> {
    const r = await this.post('/v1/register', { passphrase: PASSPHRASE, kind, name, ...extra }, null);
    assert.equal(r.status, 201, r.text);
    return r.json;
  }

  /** Plays a component: long-polls its commands until one of `kind` arrives (bounded). */
  async nextCommand(token: string, kind: string): Promise<{ id: string; kind: string; params: Record<string, unknown> }> {
    for (let i = 0; i < 50; i++) {
      const r = await this.get('/v1/commands?waitSeconds=5', token);
      assert.equal(r.status, 200, r.text);
      const found = (r.json as { id: string; kind: string; params: Record<string, unknown> }[]).find((c) => c.kind === kind);
      if (found) return found;
    }
    assert.fail(`no ${kind} command arrived`);
  }

  /** Plays a component: answers a command. */
  async answer(token: string, command: { id: string }, body: object): Promise<void> {
    const r = await this.post(`/v1/commands/${encodeURIComponent(command.id)}/answer`, body, token);
    assert.equal(r.status, 200, r.text);
  }

  /** Long-polls the job through the API until `done` holds (bounded). */
  async waitForJob(id: string, done: (j: JobView) => boolean = (j) => ['succeeded', 'failed', 'cancelled'].includes(j.state)): Promise<JobView> {
    let job = (await this.get(`/v1/jobs/${id}`)).json as JobView;
    for (let i = 0; i < 1000 && !done(job); i++) {
      const r = await this.get(`/v1/jobs/${id}/watch?version=${job.version}&timeoutSeconds=10`);
      assert.equal(r.status, 200, r.text);
      job = r.json as JobView;
    }
    assert.ok(done(job), `job ${id} did not reach the expected state: ${JSON.stringify(job)}`);
    return job;
  }
}

export async function withCs(options: Partial<ConfigurationServerOptions>, fn: (h: CsHarness) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-cs-'));
  const h = new CsHarness(dir, new ManualClock(), options);
  try {
    await h.start();
    await fn(h);
  } finally {
    await h.cs?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
