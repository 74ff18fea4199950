import type { Readable } from 'node:stream';
import { ProtocolError } from '../../replication/errors.js';

/**
 * NBD wire constants and helpers shared by the server and the client. Everything on the wire is
 * big-endian. Spec: https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md
 */

export const NBD_MAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;

/** Handshake flags (server → client). */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
/** Client flags (client → server). */
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

export const Opt = Object.freeze({
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
});

const REP_ERR = 0x80000000;
export const Rep = Object.freeze({
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  ERR_UNSUP: REP_ERR + 1,
  ERR_POLICY: REP_ERR + 2,
  ERR_INVALID: REP_ERR + 3,
  ERR_UNKNOWN: REP_ERR + 6,
});

export function isErrorReply(type: number): boolean {
  return type >= REP_ERR;
}

export const Info = Object.freeze({ EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 });

/** Transmission flags. */
export const TFlag = Object.freeze({
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
});

export const Cmd = Object.freeze({ READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6 });
export const CmdFlag = Object.freeze({ FUA: 1 << 0, NO_HOLE: 1 << 1 });

/** The error values NBD allows on the wire (not the host's errno numbering). */
export const Errno = Object.freeze({
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
});

export function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(Errno)) if (value === errno) return name;
  return `NBD_ERRNO_${errno}`;
}

/** Block size constraints we advertise: sector alignment, page-sized preferred, 32 MiB payloads. */
export const MIN_BLOCK = 512;
export const PREFERRED_BLOCK = 4096;
export const MAX_PAYLOAD = 32 * 1024 * 1024;
/** Option data is at most a 4 KiB name plus a few fixed fields; anything larger is refused unread. */
export const MAX_OPTION_LENGTH = 4096 + 64;
export const MAX_NAME_LENGTH = 4096;

export const REQUEST_HEADER = 28;
export const SIMPLE_REPLY_HEADER = 16;
export const OPTION_HEADER = 16;
export const OPTION_REPLY_HEADER = 20;

export interface RequestHeader {
  flags: number;
  type: number;
  /** Opaque 8 bytes echoed in the reply. */
  handle: Buffer;
  /** Offsets above 2^53 lose precision but stay above any export size, so range checks hold. */
  offset: number;
  length: number;
}

export function encodeRequest(req: RequestHeader): Buffer {
  const buf = Buffer.allocUnsafe(REQUEST_HEADER);
  buf.writeUInt32BE(REQUEST_MAGIC, 0);
  buf.writeUInt16BE(req.flags, 4);
  buf.writeUInt16BE(req.type, 6);
  req.handle.copy(buf, 8, 0, 8);
  buf.writeBigUInt64BE(BigInt(req.offset), 16);
  buf.writeUInt32BE(req.length, 24);
  return buf;
}

/** Decodes a request header; a wrong magic is a protocol violation (the caller drops the peer). */
export function decodeRequest(buf: Buffer): RequestHeader {
  const magic = buf.readUInt32BE(0);
  if (magic !== REQUEST_MAGIC) throw new ProtocolError('NBD_BAD_MAGIC', `bad NBD request magic 0x${magic.toString(16)}`);
  return {
    flags: buf.readUInt16BE(4),
    type: buf.readUInt16BE(6),
    handle: buf.subarray(8, 16),
    offset: Number(buf.readBigUInt64BE(16)),
    length: buf.readUInt32BE(24),
  };
}

export function encodeSimpleReply(handle: Buffer, error: number): Buffer {
  const buf = Buffer.allocUnsafe(SIMPLE_REPLY_HEADER);
  buf.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  buf.writeUInt32BE(error, 4);
  handle.copy(buf, 8, 0, 8);
  return buf;
}

export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.allocUnsafe(OPTION_HEADER);
  head.writeBigUInt64BE(IHAVEOPT, 0);
  head.writeUInt32BE(option, 8);
  head.writeUInt32BE(data.length, 12);
  return Buffer.concat([head, data]);
}

export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.allocUnsafe(OPTION_REPLY_HEADER);
  head.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  head.writeUInt32BE(option, 8);
  head.writeUInt32BE(type, 12);
  head.writeUInt32BE(data.length, 16);
  return Buffer.concat([head, data]);
}

/** Option data of NBD_OPT_INFO / NBD_OPT_GO: name, then the information types requested. */
export function encodeInfoRequest(name: string, infos: number[]): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const buf = Buffer.allocUnsafe(4 + nameBytes.length + 2 + 2 * infos.length);
  buf.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(buf, 4);
  let at = buf.writeUInt16BE(infos.length, 4 + nameBytes.length);
  for (const info of infos) at = buf.writeUInt16BE(info, at);
  return buf;
}

/** Returns the export name, or undefined when the lengths inside do not add up. */
export function decodeInfoRequest(data: Buffer): string | undefined {
  if (data.length < 6) return undefined;
  const nameLength = data.readUInt32BE(0);
  if (nameLength > MAX_NAME_LENGTH || 4 + nameLength + 2 > data.length) return undefined;
  const count = data.readUInt16BE(4 + nameLength);
  if (4 + nameLength + 2 + 2 * count !== data.length) return undefined;
  return data.toString('utf8', 4, 4 + nameLength);
}

/**
 * Reads exact-length messages from a stream. Every returned buffer is a fresh copy the caller
 * may keep. Flow control: when more than `highWater` bytes sit unread (the consumer is not
 * asking), the stream is paused, so a peer that outruns us is held back by the kernel.
 */
export class StreamReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private failure: Error | undefined;
  private waiter: { length: number; resolve: (buf: Buffer | null) => void; reject: (err: Error) => void } | undefined;

  constructor(
    private readonly stream: Readable,
    private readonly highWater = 256 * 1024,
  ) {
    stream.on('data', (chunk: Buffer) => {
      if (this.ended) return;
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      this.settle();
      if (!this.waiter && this.buffered >= this.highWater) stream.pause();
    });
    stream.on('error', (err) => {
      this.failure ??= err;
    });
    const end = (): void => {
      this.ended = true;
      this.settle();
    };
    stream.on('end', end);
    stream.on('close', end);
  }

  /** Resolves with `length` bytes, or null if the stream ended cleanly before any of them. */
  next(length: number): Promise<Buffer | null> {
    if (this.waiter) throw new Error('StreamReader: one read at a time');
    return new Promise((resolve, reject) => {
      this.waiter = { length, resolve, reject };
      this.settle();
      if (this.waiter || this.buffered < this.highWater) this.stream.resume();
    });
  }

  /** Drops buffered and further input; a pending or later `next` resolves null. */
  cancel(): void {
    this.chunks.length = 0;
    this.buffered = 0;
    this.ended = true;
    this.settle();
    this.stream.resume(); // discard what still arrives so the stream can reach its end
  }

  /** Resolves with `length` bytes; the stream ending first is an error. */
  async read(length: number): Promise<Buffer> {
    const buf = await this.next(length);
    if (buf === null) throw this.closedError();
    return buf;
  }

  private settle(): void {
    const waiter = this.waiter;
    if (!waiter) return;
    if (this.buffered >= waiter.length) {
      this.waiter = undefined;
      waiter.resolve(this.take(waiter.length));
    } else if (this.ended) {
      this.waiter = undefined;
      if (this.buffered === 0) waiter.resolve(null);
      else waiter.reject(new ProtocolError('NBD_TRUNCATED', `connection closed inside a message (${this.buffered} of ${waiter.length} bytes)`));
    }
  }

  private closedError(): Error {
    return new ProtocolError('NBD_CLOSED', 'connection closed', this.failure ? { cause: this.failure } : {});
  }

  private take(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const head = this.chunks[0];
      if (!head) break;
      const n = Math.min(head.length, length - filled);
      head.copy(out, filled, 0, n);
      filled += n;
      if (n === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(n);
    }
    this.buffered -= length;
    return out;
  }
}
