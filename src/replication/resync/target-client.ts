import type { TLSSocket } from 'node:tls';
import { ProtocolError, RemoteError } from '../errors.js';
import { connectData, FrameType, MAX_FRAME_PAYLOAD, parseJson, type Endpoint, type Frame, type TlsMaterial } from '../transport.js';
import type { TargetHashClient } from './engine.js';
import type { ResyncLayout } from './layout.js';
import {
  decodeDiff,
  decodeId,
  decodeReady,
  decodeRefined,
  encodeCompare,
  encodeId,
  encodeOpen,
  encodeRefine,
  encodeWait,
  encodeWrite,
  encodeZero,
  ResyncFrame,
  type CompareRequest,
  type DiffReply,
  type OpenReply,
  type OpenRequest,
  type RefineReply,
  type RefineRequest,
} from './messages.js';

interface Pending<T> {
  resolve(value: T): void;
  reject(err: Error): void;
}

/**
 * The source side's handle on a resync target across the network: one TLS connection (our CA,
 * token hello) carrying compare requests (many in flight, answered in order) and, for the
 * standalone sink, the differing blocks and flushes. Any malformed answer or refusal fails every
 * pending call with a typed error (ProtocolError, or RemoteError with the target's code) and
 * closes the connection.
 */
export class RemoteTarget implements TargetHashClient {
  private readonly compares: (Pending<DiffReply> & { req: CompareRequest })[] = [];
  /** By compare id: a batch has one refine out at a time. */
  private readonly refines = new Map<number, Pending<RefineReply> & { req: RefineRequest }>();
  private readonly flushes = new Map<number, Pending<void>>();
  private readonly waits = new Map<number, Pending<void>>();
  private opening: Pending<OpenReply> | undefined;
  private layout: ResyncLayout | undefined;
  private failure: Error | undefined;
  private nextFlushId = 1;
  private corked = false;
  private readonly reader: Promise<void>;

  private constructor(
    private readonly socket: TLSSocket,
    frames: AsyncGenerator<Frame>,
  ) {
    this.reader = this.read(frames);
  }

  static async connect(endpoint: Endpoint, material: TlsMaterial, token: string, name = 'resync-source'): Promise<RemoteTarget> {
    const { socket, frames } = await connectData(endpoint, material, { role: 'agent', name, token });
    return new RemoteTarget(socket, frames);
  }

  /** Frame bytes each way so far (inside TLS, which adds about 22 bytes per record of ≤ 16 KiB). */
  get bytes(): { sent: number; received: number } {
    return { sent: this.socket.bytesWritten, received: this.socket.bytesRead };
  }

  open(request: OpenRequest): Promise<OpenReply> {
    if (this.layout) return Promise.reject(new ProtocolError('RESYNC_UNEXPECTED', 'the resync session is already open'));
    this.layout = request.layout;
    const reply = new Promise<OpenReply>((resolve, reject) => (this.opening = { resolve, reject }));
    this.send(ResyncFrame.open, [encodeOpen(request)]).catch((err: Error) => this.fail(err));
    return reply;
  }

  compare(req: CompareRequest): Promise<DiffReply> {
    const reply = new Promise<DiffReply>((resolve, reject) => this.compares.push({ req, resolve, reject }));
    this.send(ResyncFrame.compare, encodeCompare(req)).catch((err: Error) => this.fail(err));
    return reply;
  }

  refine(req: RefineRequest): Promise<RefineReply> {
    if (this.refines.has(req.id)) return Promise.reject(new ProtocolError('RESYNC_UNEXPECTED', `batch ${req.id} already has a refine out`));
    const reply = new Promise<RefineReply>((resolve, reject) => this.refines.set(req.id, { req, resolve, reject }));
    this.send(ResyncFrame.refine, encodeRefine(req)).catch((err: Error) => this.fail(err));
    return reply;
  }

  /** Resolves once the socket has taken `data`: the caller may reuse the buffer then. */
  write(offset: number, data: Buffer): Promise<void> {
    return this.send(ResyncFrame.write, encodeWrite(offset, data));
  }

  zero(offset: number, length: number): Promise<void> {
    return this.send(ResyncFrame.zero, [encodeZero(offset, length)]);
  }

  /** Resolves once the target has made every write sent before it durable. */
  flush(): Promise<void> {
    const id = this.nextFlushId++;
    const done = new Promise<void>((resolve, reject) => this.flushes.set(id, { resolve, reject }));
    this.send(ResyncFrame.flush, [encodeId(id)]).catch((err: Error) => this.fail(err));
    return done;
  }

  /**
   * Resolves once the replication stream that feeds the target (a master target's replica) has
   * applied `seq` of `lineage`: what the capture sink's flush waits for. Many may be pending.
   */
  waitApplied(lineage: string, seq: number): Promise<void> {
    const id = this.nextFlushId++;
    const done = new Promise<void>((resolve, reject) => this.waits.set(id, { resolve, reject }));
    this.send(ResyncFrame.wait, [encodeWait({ id, lineage, seq })]).catch((err: Error) => this.fail(err));
    return done;
  }

  /** Ends the session; the target flushes what it applied and closes its side. */
  async close(): Promise<void> {
    this.socket.end();
    await this.reader;
    this.socket.destroy();
  }

  private send(type: number, parts: Buffer[]): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const chunks = parts.filter((p) => p.length > 0);
    const length = chunks.reduce((n, p) => n + p.length, 0);
    if (length > MAX_FRAME_PAYLOAD) return Promise.reject(new ProtocolError('FRAME_TOO_LARGE', `frame of ${length} bytes exceeds ${MAX_FRAME_PAYLOAD}`));
    // The transport's framing (u32 length | u8 type | 3 reserved), written here because the sink
    // needs the write callback: only then may the caller's buffer be reused.
    const header = Buffer.alloc(8);
    header.writeUInt32LE(length, 0);
    header.writeUInt8(type, 4);
    chunks.unshift(header);
    // Frames sent in the same tick (the extents of a batch) leave in one write: fewer system
    // calls and TLS records than one per frame.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    return new Promise((resolve, reject) => {
      for (let i = 0; i < chunks.length - 1; i++) this.socket.write(chunks[i]!);
      this.socket.write(chunks[chunks.length - 1]!, (err) => (err ? reject(err) : resolve()));
    });
  }

  private async read(frames: AsyncGenerator<Frame>): Promise<void> {
    try {
      for await (const f of frames) this.dispatch(f);
      this.fail(new RemoteError('CONNECTION_CLOSED', 'the resync target closed the connection', { retryable: true }));
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private dispatch(f: Frame): void {
    switch (f.type) {
      case ResyncFrame.ready: {
        const opening = this.opening;
        if (!opening) throw new ProtocolError('RESYNC_UNEXPECTED', 'ready without an open');
        this.opening = undefined;
        opening.resolve(decodeReady(f.payload));
        return;
      }
      case ResyncFrame.diff: {
        const c = this.compares.shift();
        if (!c || !this.layout) throw new ProtocolError('RESYNC_UNEXPECTED', 'diff without a compare');
        try {
          c.resolve(decodeDiff(f.payload, c.req, this.layout));
        } catch (err) {
          c.reject(err as Error);
          throw err;
        }
        return;
      }
      case ResyncFrame.refined: {
        const id = f.payload.length >= 4 ? f.payload.readUInt32LE(0) : -1;
        const r = this.refines.get(id);
        if (!r || !this.layout) throw new ProtocolError('RESYNC_UNEXPECTED', `refined ${id} without a refine`);
        this.refines.delete(id);
        try {
          r.resolve(decodeRefined(f.payload, r.req, this.layout));
        } catch (err) {
          r.reject(err as Error);
          throw err;
        }
        return;
      }
      case ResyncFrame.flushed: {
        const id = decodeId(f.payload, 'flushed');
        const p = this.flushes.get(id);
        if (!p) throw new ProtocolError('RESYNC_UNEXPECTED', `flushed ${id} without a flush`);
        this.flushes.delete(id);
        p.resolve();
        return;
      }
      case ResyncFrame.reached: {
        const id = decodeId(f.payload, 'reached');
        const p = this.waits.get(id);
        if (!p) throw new ProtocolError('RESYNC_UNEXPECTED', `reached ${id} without a wait`);
        this.waits.delete(id);
        p.resolve();
        return;
      }
      case FrameType.error: {
        const e = parseJson<{ code?: unknown; message?: unknown }>(f, 'error');
        throw new RemoteError(String(e.code), `resync target: ${String(e.message)}`);
      }
      default:
        throw new ProtocolError('RESYNC_UNEXPECTED', `frame type ${f.type} is not expected from a resync target`);
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const failure = this.failure;
    this.opening?.reject(failure);
    this.opening = undefined;
    for (const c of this.compares.splice(0)) c.reject(failure);
    for (const r of this.refines.values()) r.reject(failure);
    this.refines.clear();
    for (const p of this.flushes.values()) p.reject(failure);
    this.flushes.clear();
    for (const p of this.waits.values()) p.reject(failure);
    this.waits.clear();
    this.socket.destroy();
  }
}
