import type { Duplex } from 'node:stream';
import { tokenMatches } from '../../security/token.js';
import type { BlockDevice } from '../disk.js';
import { BoomerangError, ProtocolError } from '../errors.js';
import { createDataServer, FrameType, jsonPayload, writeFrame, type DataServer, type Frame, type TlsMaterial } from '../transport.js';
import { countBits } from './bits.js';
import { BufferPool } from './buffer-pool.js';
import { answerCompare, answerRefine, refineFollows } from './compare.js';
import { createDigester, type Digester } from './hashing.js';
import { checkSizes, maxBatchesInFlight } from './layout.js';
import {
  decodeCompare,
  decodeId,
  decodeOpen,
  decodeRefine,
  decodeWait,
  decodeWrite,
  decodeZero,
  encodeDiff,
  encodeId,
  encodeReady,
  encodeRefined,
  ResyncFrame,
  type NodeChildren,
  type OpenRequest,
  type ResyncFence,
  type ResyncSpan,
} from './messages.js';

export interface ResyncTargetOptions {
  /**
   * Opens the target disk the source names (the service closes it when the session ends). The
   * whole open request is passed on: a replica fed by a replication stream must make its `fence`
   * durable before it resolves (see messages.ts).
   */
  openDisk(diskId: string, request: OpenRequest): Promise<BlockDevice>;
  /**
   * Resolves once the replication stream feeding this target has applied `seq` of `lineage` (the
   * capture sink's flush); rejects when it never will. Without it `wait` is refused: a standalone
   * target has no stream.
   */
  waitApplied?(diskId: string, lineage: string, seq: number, signal: AbortSignal): Promise<void>;
  /** Compare requests read and hashed ahead of the diffs being sent (memory: this many batches). */
  readAhead?: number;
  /** Told of each session once it is open (the object is updated live until the session ends). */
  onOpen?(session: ResyncTargetSession): void;
}

export interface ResyncTargetSession {
  diskId: string | undefined;
  /** The fence the source asked for, if any. */
  fence: ResyncFence | undefined;
  batchesCompared: number;
  regionsDifferent: number;
  bytesWritten: number;
  bytesZeroed: number;
  flushes: number;
  /** `wait` requests answered. */
  waits: number;
  /** Why the session was refused or broke off; undefined when the source closed normally. */
  error: unknown;
}

const noop = () => undefined;
/** After a refusal, how long the source gets to read it and close before the connection is cut. */
const LINGER_MS = 10_000;
const MAX_WRITES_IN_FLIGHT = 64;
const MAX_WRITE_BYTES_IN_FLIGHT = 32 * 1024 * 1024;

interface OpenSession {
  disk: BlockDevice;
  span: ResyncSpan;
  digester: Digester;
  pool: BufferPool;
  /** Batches whose next refine is due, by compare id: the bytes read for the compare, and the level. */
  held: Map<number, { offset: number; length: number; buf: Buffer; level: number }>;
  maxHeld: number;
}

/**
 * The target side of a resync over one connection: answers compare requests with what differs
 * (reading and hashing a few batches ahead, in order) and refines with the children asked for
 * (from the bytes read for the compare, kept until then), applies the standalone sink's writes and
 * makes them durable on flush. Every message is validated before it touches the disk; anything
 * malformed or out of range is refused with its code in the transport's `error` frame, and
 * nothing after it is applied. Resolves when the connection is over; never throws for what the
 * peer did (the session says why it ended).
 */
export async function serveResyncTarget(conn: { socket: Duplex; frames: AsyncGenerator<Frame> }, o: ResyncTargetOptions): Promise<ResyncTargetSession> {
  const { socket, frames } = conn;
  const session: ResyncTargetSession = { diskId: undefined, fence: undefined, batchesCompared: 0, regionsDifferent: 0, bytesWritten: 0, bytesZeroed: 0, flushes: 0, waits: 0, error: undefined };
  let open: OpenSession | undefined;
  let replies: Promise<void> = Promise.resolve();
  // Waits for the replication stream are answered as they resolve, while compares go on.
  const ended = new AbortController();
  const waits = new Set<Promise<void>>();
  // Writes are applied concurrently (they never overlap: each block is sent once per session, and
  // never into a batch still being compared); waiting for each in turn would queue it behind the
  // compare reads in the thread pool and stall the whole pipeline.
  const writes = new Set<Promise<void>>();
  let writeBytes = 0;
  const applying = async (write: Promise<void>, bytes: number): Promise<void> => {
    writeBytes += bytes;
    const done = () => {
      writes.delete(tracked);
      writeBytes -= bytes;
    };
    const tracked: Promise<void> = write.then(done, (err: unknown) => {
      done();
      fail(err);
    });
    writes.add(tracked);
    // Bounded: past this, frames wait in TCP and the source is pushed back.
    while (writes.size >= MAX_WRITES_IN_FLIGHT || writeBytes >= MAX_WRITE_BYTES_IN_FLIGHT) await Promise.race(writes);
  };
  // The first failure ends the session: its code goes to the source, later frames are ignored
  // until the source closes (leaving the loop early would reset the connection before the
  // source has read why).
  const fail = (err: unknown): void => {
    if (session.error !== undefined) return;
    session.error = err;
    void refuse(socket, err);
  };

  const handle = async (f: Frame): Promise<void> => {
    if (!open) {
      if (f.type !== ResyncFrame.open) throw new ProtocolError('RESYNC_UNEXPECTED', `the first resync message must be open, not frame type ${f.type}`);
      const request = decodeOpen(f.payload);
      session.diskId = request.diskId;
      session.fence = request.fence;
      const disk = await o.openDisk(request.diskId, request);
      let end: number;
      try {
        end = checkSizes(request.sourceSize, disk.size, request.allowLargerTarget);
      } catch (err) {
        await disk.close();
        throw err;
      }
      // The pool covers the reads ahead plus every batch the source may leave waiting for a refine,
      // so a compare never waits for a buffer that only a later refine would give back.
      const readAhead = Math.max(1, o.readAhead ?? 8);
      const maxHeld = maxBatchesInFlight(request.layout);
      open = { disk, span: { end, layout: request.layout }, digester: createDigester(request.hash, request.key), pool: new BufferPool(readAhead + maxHeld, request.layout.batchBytes), held: new Map(), maxHeld };
      await writeFrame(socket, ResyncFrame.ready, encodeReady({ targetSize: disk.size }));
      o.onOpen?.(session);
      return;
    }
    const { disk, span, digester, pool, held } = open;
    switch (f.type) {
      case ResyncFrame.compare: {
        const req = decodeCompare(f.payload, span);
        const buf = await pool.take(); // waits while readAhead batches are in flight: TCP pushes back on the source
        const view = buf.subarray(0, req.length);
        const read = disk.readInto(view, req.offset);
        read.catch(noop); // awaited in order below
        replies = replies
          .then(async () => {
            if (session.error !== undefined) return;
            await read;
            const reply = answerCompare(req, view, span.layout, digester);
            keepOrRelease(open!, req.id, { offset: req.offset, length: req.length, buf }, reply.children, 0);
            session.batchesCompared++;
            session.regionsDifferent += countBits(reply.differs, reply.children.length);
            await writeFrame(socket, ResyncFrame.diff, encodeDiff(reply));
          })
          .catch(fail);
        return;
      }
      case ResyncFrame.refine: {
        const req = decodeRefine(f.payload, span);
        // The source refines a batch only after its diff, so the batch is held by now (see keepOrRelease).
        const batch = held.get(req.id);
        if (!batch || batch.offset !== req.offset || batch.length !== req.length || batch.level !== req.level)
          throw new ProtocolError('RESYNC_UNEXPECTED', `refine ${req.id} (${req.offset}+${req.length}, level ${req.level}) is not the one this target waits for`);
        held.delete(req.id);
        const reply = answerRefine(req, batch.buf.subarray(0, batch.length), span.layout, digester);
        keepOrRelease(open, req.id, batch, reply.children, req.level);
        await writeFrame(socket, ResyncFrame.refined, encodeRefined(reply));
        return;
      }
      case ResyncFrame.write: {
        const w = decodeWrite(f.payload, span);
        session.bytesWritten += w.data.length;
        return applying(disk.write(w.offset, w.data), w.data.length);
      }
      case ResyncFrame.zero: {
        const z = decodeZero(f.payload, span);
        session.bytesZeroed += z.length;
        return applying(disk.writeZeroes(z.offset, z.length), 0);
      }
      case ResyncFrame.flush: {
        const id = decodeId(f.payload, 'flush');
        await Promise.all(writes);
        if (session.error !== undefined) return;
        await disk.flush();
        session.flushes++;
        await writeFrame(socket, ResyncFrame.flushed, encodeId(id));
        return;
      }
      case ResyncFrame.wait: {
        const w = decodeWait(f.payload);
        const waitApplied = o.waitApplied;
        if (!waitApplied) throw new ProtocolError('RESYNC_UNEXPECTED', 'this resync target is not fed by a replication stream: wait is not served');
        const diskId = session.diskId!;
        const tracked: Promise<void> = waitApplied(diskId, w.lineage, w.seq, ended.signal)
          .then(async () => {
            if (session.error !== undefined || ended.signal.aborted) return;
            session.waits++;
            await writeFrame(socket, ResyncFrame.reached, encodeId(w.id));
          })
          .catch((err: unknown) => {
            if (!ended.signal.aborted) fail(err);
          })
          .finally(() => waits.delete(tracked));
        waits.add(tracked);
        return;
      }
      default:
        throw new ProtocolError('RESYNC_UNEXPECTED', `frame type ${f.type} is not expected during a resync`);
    }
  };

  try {
    for await (const f of frames) {
      if (session.error !== undefined) continue;
      await handle(f).catch(fail);
    }
  } catch (err) {
    fail(err); // the connection broke
  }
  ended.abort();
  await Promise.all(waits);
  await replies;
  await Promise.all(writes);
  if (open) {
    // Whatever was applied is made durable even if the source went away without a flush.
    await open.disk.flush().catch(fail);
    await open.disk.close();
  }
  return session;
}

/** Keeps a batch for the refine that follows `children` at `level`, or gives its buffer back. */
function keepOrRelease(open: OpenSession, id: number, batch: { offset: number; length: number; buf: Buffer }, children: readonly (NodeChildren | undefined)[], level: number): void {
  if (!refineFollows(children, level, open.span.layout)) return open.pool.release(batch.buf);
  if (open.held.has(id)) throw new ProtocolError('RESYNC_BAD_MESSAGE', `compare id ${id} is already waiting for a refine`);
  if (open.held.size >= open.maxHeld) throw new ProtocolError('RESYNC_BAD_MESSAGE', `more than ${open.maxHeld} batches wait for a refine: the source's window is too large`);
  open.held.set(id, { offset: batch.offset, length: batch.length, buf: batch.buf, level: level + 1 });
}

/** Tells the source why (code and message), then closes once it has had time to read it. */
async function refuse(socket: Duplex, err: unknown): Promise<void> {
  if (socket.destroyed || !socket.writable) return;
  const code = err instanceof BoomerangError ? err.code : 'RESYNC_TARGET_FAILED';
  const message = err instanceof Error ? err.message : String(err);
  await writeFrame(socket, FrameType.error, jsonPayload({ code, message })).catch(noop);
  socket.end();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

export interface ResyncTargetServerOptions extends ResyncTargetOptions {
  material: TlsMaterial;
  token: string;
  onSession?(session: ResyncTargetSession): void;
  onError?(err: unknown, peer: string): void;
}

/** A TLS server (our CA, client certificates required, token in the hello) for resync sources. */
export function createResyncTargetServer(o: ResyncTargetServerOptions): DataServer {
  return createDataServer({
    material: o.material,
    authorize: (hello) => tokenMatches(hello.token, o.token),
    roles: ['agent'],
    onConnection: async (conn) => {
      const session = await serveResyncTarget(conn, o);
      o.onSession?.(session);
    },
    ...(o.onError ? { onError: o.onError } : {}),
  });
}
