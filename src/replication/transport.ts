import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { once } from 'node:events';
import { BATCH_LIMITS } from './batch.js';
import { ProtocolError, RemoteError, BoomerangError } from './errors.js';

/**
 * Framing for the data hops (agent → PS → MT): every message is
 *   u32 payload length | u8 type | 3 reserved bytes | payload
 * Control messages are JSON; batches travel as their binary encoding behind a u32 request id.
 * Lengths are checked before anything is allocated.
 */
export const FrameType = Object.freeze({
  hello: 1,
  welcome: 2,
  error: 3,
  batch: 4,
  batchDeflate: 5,
  ack: 6,
  nack: 7,
});

export const PROTOCOL_VERSION = 1;
/**
 * TLS 1.3 only (both ends are ours), suites in our order of preference: AES-128-GCM costs ~15% less CPU than AES-256-GCM
 * per byte here (measured: 1.56 vs 1.81 CPU-s per GiB, both ends), and the data hops are
 * CPU-bound on small machines.
 */
export const DATA_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';
const FRAME_HEADER = 8;
/** A batch, its request id and deflate's worst-case growth fit comfortably. */
export const MAX_FRAME_PAYLOAD = BATCH_LIMITS.maxBytes + 1024 * 1024;
const MAX_JSON_PAYLOAD = 64 * 1024;

export interface Frame {
  type: number;
  payload: Buffer;
}

export interface Hello {
  version: number;
  role: 'agent' | 'ps';
  name: string;
  token: string;
}

export interface Ack {
  id: number;
  status: 'stored' | 'applied' | 'duplicate' | 'obsolete';
  diskId: string;
  lineage: string;
  lastSeq: number;
}

export interface Nack {
  id: number;
  code: string;
  message: string;
  retryable: boolean;
}

/** The refusal a receiver sends for a batch it could not take (typed errors keep their code). */
export function nackFor(id: number, err: unknown): Nack {
  return {
    id,
    code: err instanceof BoomerangError ? err.code : 'INTERNAL',
    message: err instanceof Error ? err.message : String(err),
    retryable: err instanceof BoomerangError ? err.retryable : true,
  };
}

export function jsonPayload(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

export function parseJson<T>(frame: Frame, what: string): T {
  if (frame.payload.length > MAX_JSON_PAYLOAD) throw new ProtocolError('FRAME_TOO_LARGE', `${what} message of ${frame.payload.length} bytes`);
  try {
    const v: unknown = JSON.parse(frame.payload.toString('utf8'));
    if (!v || typeof v !== 'object') throw new Error('not an object');
    return v as T;
  } catch (err) {
    throw new ProtocolError('BAD_MESSAGE', `${what} message is not valid JSON: ${(err as Error).message}`);
  }
}

/** The u32 request id in front of a batch payload. */
export function batchPayload(id: number, ...batch: Buffer[]): Buffer[] {
  const head = Buffer.alloc(4);
  head.writeUInt32LE(id >>> 0, 0);
  return [head, ...batch];
}

export function splitBatchPayload(payload: Buffer): { id: number; body: Buffer } {
  if (payload.length < 4) throw new ProtocolError('BAD_MESSAGE', 'batch frame without a request id');
  return { id: payload.readUInt32LE(0), body: payload.subarray(4) };
}

/**
 * Yields frames from a stream until it ends. Data is gathered into one buffer per frame, so
 * large batches are not re-copied chunk by chunk.
 */
export async function* readFrames(stream: Duplex): AsyncGenerator<Frame> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const take = (n: number): Buffer => {
    const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    const head = all.subarray(0, n);
    const rest = all.subarray(n);
    pending = rest.length > 0 ? [rest] : [];
    pendingBytes = rest.length;
    return head;
  };
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    pending.push(chunk);
    pendingBytes += chunk.length;
    for (;;) {
      if (pendingBytes < FRAME_HEADER) break;
      const header = pending[0]!.length >= FRAME_HEADER ? pending[0]! : Buffer.concat(pending, pendingBytes);
      const length = header.readUInt32LE(0);
      const type = header.readUInt8(4);
      if (length > MAX_FRAME_PAYLOAD) throw new ProtocolError('FRAME_TOO_LARGE', `peer announced a frame of ${length} bytes`);
      if (header.readUIntLE(5, 3) !== 0) throw new ProtocolError('BAD_FRAME', 'frame header reserved bytes are not zero');
      if (pendingBytes < FRAME_HEADER + length) break;
      yield { type, payload: take(FRAME_HEADER + length).subarray(FRAME_HEADER) };
    }
  }
}

/** Writes a frame, waiting for the socket to drain when its buffer is full (backpressure). */
export async function writeFrame(socket: Duplex, type: number, payload: Buffer | Buffer[]): Promise<void> {
  const parts = Array.isArray(payload) ? payload : [payload];
  const length = parts.reduce((n, p) => n + p.length, 0);
  const header = Buffer.alloc(FRAME_HEADER);
  if (length > MAX_FRAME_PAYLOAD) throw new ProtocolError('FRAME_TOO_LARGE', `frame of ${length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
  header.writeUInt32LE(length, 0);
  header.writeUInt8(type, 4);
  socket.cork();
  let ok = socket.write(header);
  for (const p of parts) ok = socket.write(p) && ok;
  socket.uncork();
  if (!ok && !socket.destroyed) {
    // A peer that goes away never drains: wait for whichever comes first.
    await new Promise<void>((resolve) => {
      const done = () => {
        socket.off('drain', done);
        socket.off('close', done);
        resolve();
      };
      socket.on('drain', done);
      socket.on('close', done);
    });
  }
}

export interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
}

export interface Endpoint {
  host: string;
  port: number;
}

export function parseEndpoint(value: string): Endpoint {
  const m = /^(?:tls:\/\/)?(\[[^\]]+\]|[^:/]+):(\d{1,5})$/.exec(value);
  if (!m) throw new BoomerangError('BAD_ENDPOINT', `${JSON.stringify(value)} is not host:port`);
  const port = Number(m[2]);
  if (port > 65535) throw new BoomerangError('BAD_ENDPOINT', `port ${port} is out of range`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/**
 * Opens a TLS connection (server verified against our CA, client certificate presented) and
 * performs the hello exchange. Resolves with the socket and its frame reader once welcomed.
 */
export async function connectData(endpoint: Endpoint, material: TlsMaterial, hello: Omit<Hello, 'version'>, timeoutMs = 10_000) {
  const socket = tls.connect({
    host: endpoint.host,
    port: endpoint.port,
    ca: material.ca,
    cert: material.cert,
    key: material.key,
    servername: endpoint.host === '127.0.0.1' || endpoint.host === '::1' ? 'localhost' : endpoint.host,
    ciphers: DATA_CIPHERS,
    minVersion: 'TLSv1.3',
  });
  socket.setNoDelay(true);
  const timer = setTimeout(() => socket.destroy(new RemoteError('CONNECT_TIMEOUT', `no answer from ${endpoint.host}:${endpoint.port} within ${timeoutMs} ms`, { retryable: true })), timeoutMs);
  try {
    await once(socket, 'secureConnect');
    await writeFrame(socket, FrameType.hello, jsonPayload({ ...hello, version: PROTOCOL_VERSION } satisfies Hello));
    const frames = readFrames(socket);
    const first = await frames.next();
    if (first.done) throw new RemoteError('CONNECTION_CLOSED', `${endpoint.host}:${endpoint.port} closed the connection during hello`, { retryable: true });
    if (first.value.type === FrameType.error) {
      const e = parseJson<{ code: string; message: string }>(first.value, 'error');
      throw new RemoteError(e.code, e.message);
    }
    if (first.value.type !== FrameType.welcome) throw new ProtocolError('BAD_MESSAGE', `expected welcome, got frame type ${first.value.type}`);
    return { socket, frames };
  } catch (err) {
    socket.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

export interface DataConnection {
  socket: tls.TLSSocket;
  frames: AsyncGenerator<Frame>;
  hello: Hello;
}

export interface DataServerOptions {
  material: TlsMaterial;
  /** Checks the token presented in the hello; constant-time comparison is the caller's job. */
  authorize(hello: Hello): boolean;
  roles: Hello['role'][];
  onConnection(conn: DataConnection): Promise<void>;
  onError?(err: unknown, peer: string): void;
  helloTimeoutMs?: number;
}

/**
 * A mutually authenticated TLS server for a data hop: the client must present a certificate from
 * our CA and a token in its hello before any batch is read.
 */
export interface DataServer {
  listen(endpoint: Endpoint): Promise<Endpoint>;
  /** Stops accepting and drops every open connection (peers resend what was not acknowledged). */
  close(): Promise<void>;
}

export function createDataServer(options: DataServerOptions): DataServer {
  const connections = new Set<tls.TLSSocket>();
  // What the connections are doing (a spool write, an apply): close() waits for it to finish.
  const handlers = new Set<Promise<void>>();
  const server = tls.createServer({
    ca: options.material.ca,
    cert: options.material.cert,
    key: options.material.key,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    ciphers: DATA_CIPHERS,
    honorCipherOrder: true,
  });
  server.on('secureConnection', (socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
    socket.setNoDelay(true);
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const timer = setTimeout(() => socket.destroy(), options.helloTimeoutMs ?? 10_000);
    const handler = (async () => {
      const frames = readFrames(socket);
      const refuse = async (code: string, message: string) => {
        await writeFrame(socket, FrameType.error, jsonPayload({ code, message })).catch(() => undefined);
        socket.end();
      };
      try {
        const first = await frames.next();
        clearTimeout(timer);
        if (first.done) return;
        if (first.value.type !== FrameType.hello) return await refuse('BAD_MESSAGE', 'the first message must be a hello');
        const hello = parseJson<Hello>(first.value, 'hello');
        if (hello.version !== PROTOCOL_VERSION) return await refuse('PROTOCOL_VERSION', `protocol version ${hello.version} is not supported (this server speaks ${PROTOCOL_VERSION})`);
        if (!options.roles.includes(hello.role)) return await refuse('ROLE_REFUSED', `role ${String(hello.role)} may not connect here`);
        if (typeof hello.token !== 'string' || !options.authorize(hello)) return await refuse('AUTH_FAILED', 'token refused');
        await writeFrame(socket, FrameType.welcome, jsonPayload({ version: PROTOCOL_VERSION }));
        await options.onConnection({ socket, frames, hello });
      } catch (err) {
        options.onError?.(err, peer);
        if (err instanceof ProtocolError) await refuse(err.code, err.message);
        else socket.destroy();
      } finally {
        clearTimeout(timer);
      }
    })();
    handlers.add(handler);
    void handler.finally(() => handlers.delete(handler));
  });
  server.on('tlsClientError', (err, socket) => {
    options.onError?.(err, `${socket.remoteAddress}:${socket.remotePort}`);
  });
  return {
    async listen(endpoint) {
      server.listen(endpoint.port, endpoint.host);
      await once(server, 'listening');
      const addr = server.address();
      if (addr === null || typeof addr === 'string') throw new BoomerangError('LISTEN', 'server has no TCP address');
      return { host: endpoint.host, port: addr.port };
    },
    async close() {
      await new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        for (const s of connections) s.destroy();
      });
      await Promise.allSettled([...handlers]);
    },
  };
}
