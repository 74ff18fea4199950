import { createConnection, type Socket } from 'node:net';
import { BoomerangError, ProtocolError } from '../../replication/errors.js';
import {
  Cmd,
  CmdFlag,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  Info,
  NBD_MAGIC,
  OPTION_REPLY_HEADER,
  OPTION_REPLY_MAGIC,
  Opt,
  Rep,
  SIMPLE_REPLY_HEADER,
  SIMPLE_REPLY_MAGIC,
  StreamReader,
  TFlag,
  encodeInfoRequest,
  encodeOption,
  encodeRequest,
  errnoName,
  isErrorReply,
} from './protocol.js';

/** An error the server answered a request with; `code` is the errno name ('EINVAL', 'ENOSPC', …). */
export class NbdError extends BoomerangError {
  readonly errno: number;
  constructor(errno: number, message: string) {
    super(errnoName(errno), message);
    this.errno = errno;
  }
}

export interface NbdConnectOptions {
  socketPath: string;
  exportName: string;
}

export interface BlockSizes {
  minimum: number;
  preferred: number;
  maximum: number;
}

interface Pending {
  /** For error messages: command and range. */
  what: string;
  /** Bytes of data the reply carries (reads only). */
  readLength: number;
  resolve(data: Buffer): void;
  reject(err: Error): void;
}

/** Option replies are small (export info, names); a huge one means the stream is not NBD. */
const MAX_OPTION_REPLY = 64 * 1024;
/** Replies to one option we are willing to read (NBD_OPT_LIST sends one per export). */
const MAX_OPTION_REPLIES = 100_000;
const EMPTY = Buffer.alloc(0);
const COMMAND_NAMES: Record<number, string> = {
  [Cmd.READ]: 'read',
  [Cmd.WRITE]: 'write',
  [Cmd.FLUSH]: 'flush',
  [Cmd.TRIM]: 'trim',
  [Cmd.WRITE_ZEROES]: 'write-zeroes',
};

/**
 * A fixed-newstyle NBD client over a unix socket. Requests are pipelined: call as many as you like
 * concurrently; replies are matched by handle. Each request must respect the server's block sizes.
 */
export class NbdClient {
  private readonly pending = new Map<number, Pending>();
  private readonly inFlight = new Set<Promise<Buffer>>();
  private nextHandle = 1;
  private closedError: Error | undefined;
  private readonly closed: Promise<void>;

  private constructor(
    private readonly socket: Socket,
    private readonly reader: StreamReader,
    /** Export size in bytes. */
    readonly size: number,
    /** Transmission flags the server sent (see `TFlag`). */
    readonly flags: number,
    readonly blockSizes: BlockSizes | undefined,
  ) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.receive();
  }

  static async connect(options: NbdConnectOptions): Promise<NbdClient> {
    const { socket, reader } = await open(options.socketPath);
    try {
      const noZeroes = await greet(reader, socket);
      const negotiated = (await go(reader, socket, options.exportName)) ?? (await exportName(reader, socket, options.exportName, noZeroes));
      return new NbdClient(socket, reader, negotiated.size, negotiated.flags, negotiated.blockSizes);
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }

  /** The export names a server offers (NBD_OPT_LIST), then a clean abort. */
  static async list(socketPath: string): Promise<string[]> {
    const { socket, reader } = await open(socketPath);
    try {
      await greet(reader, socket);
      socket.write(encodeOption(Opt.LIST));
      const names: string[] = [];
      for (let i = 0; i < MAX_OPTION_REPLIES; i++) {
        const { type, data } = await readOptionReply(reader, Opt.LIST);
        if (type === Rep.ACK) {
          socket.write(encodeOption(Opt.ABORT));
          return names;
        }
        if (type !== Rep.SERVER || data.length < 4) throw optionRefused(Opt.LIST, type, data);
        const nameLength = data.readUInt32BE(0);
        if (4 + nameLength > data.length) throw new ProtocolError('NBD_BAD_REPLY', 'export name overruns its reply');
        names.push(data.toString('utf8', 4, 4 + nameLength));
      }
      throw new ProtocolError('NBD_BAD_REPLY', 'export list does not end');
    } finally {
      socket.end();
    }
  }

  get readOnly(): boolean {
    return (this.flags & TFlag.READ_ONLY) !== 0;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    return this.request(Cmd.READ, 0, offset, length, undefined, length);
  }

  async write(offset: number, data: Buffer, options: { fua?: boolean } = {}): Promise<void> {
    await this.request(Cmd.WRITE, this.fuaFlag(options.fua), offset, data.length, data);
  }

  async writeZeroes(offset: number, length: number, options: { fua?: boolean; noHole?: boolean } = {}): Promise<void> {
    this.require(TFlag.SEND_WRITE_ZEROES, 'write zeroes');
    await this.request(Cmd.WRITE_ZEROES, this.fuaFlag(options.fua) | (options.noHole ? CmdFlag.NO_HOLE : 0), offset, length);
  }

  async trim(offset: number, length: number): Promise<void> {
    this.require(TFlag.SEND_TRIM, 'trim');
    await this.request(Cmd.TRIM, 0, offset, length);
  }

  async flush(): Promise<void> {
    this.require(TFlag.SEND_FLUSH, 'flush');
    await this.request(Cmd.FLUSH, 0, 0, 0);
  }

  /** Waits for requests in flight, sends NBD_CMD_DISC and closes the connection. */
  async disconnect(): Promise<void> {
    await Promise.allSettled(this.inFlight);
    if (!this.closedError) {
      this.fail(new BoomerangError('NBD_CLOSED', 'client disconnected'));
      this.socket.end(encodeRequest({ flags: 0, type: Cmd.DISC, handle: Buffer.alloc(8), offset: 0, length: 0 }));
    }
    await this.closed;
  }

  private require(flag: number, what: string): void {
    if (!(this.flags & flag)) throw new BoomerangError('NBD_UNSUPPORTED', `the server does not support ${what}`);
  }

  private fuaFlag(fua: boolean | undefined): number {
    if (!fua) return 0;
    this.require(TFlag.SEND_FUA, 'FUA');
    return CmdFlag.FUA;
  }

  private request(type: number, flags: number, offset: number, length: number, payload?: Buffer, readLength = 0): Promise<Buffer> {
    if (this.closedError) return Promise.reject(this.closedError);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isInteger(length) || length < 0 || length > 0xffffffff) {
      return Promise.reject(new BoomerangError('NBD_BAD_ARGUMENT', `bad request range ${offset}+${length}`));
    }
    const key = this.nextHandle++;
    const handle = Buffer.allocUnsafe(8);
    handle.writeBigUInt64BE(BigInt(key));
    const promise = new Promise<Buffer>((resolve, reject) => {
      this.pending.set(key, { what: `${COMMAND_NAMES[type]} ${offset}+${length}`, readLength, resolve, reject });
    });
    this.inFlight.add(promise);
    const settled = (): void => void this.inFlight.delete(promise);
    promise.then(settled, settled);
    const header = encodeRequest({ flags, type, handle, offset, length });
    if (payload) {
      this.socket.cork();
      this.socket.write(header);
      this.socket.write(payload);
      this.socket.uncork();
    } else {
      this.socket.write(header);
    }
    return promise;
  }

  /** Reads replies until the connection ends; then every request still pending fails. */
  private async receive(): Promise<void> {
    let cause: Error = new BoomerangError('NBD_CLOSED', 'connection closed by the server', { retryable: true });
    try {
      for (;;) {
        const head = await this.reader.next(SIMPLE_REPLY_HEADER);
        if (!head) break;
        if (head.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new ProtocolError('NBD_BAD_MAGIC', 'bad reply magic');
        const error = head.readUInt32BE(4);
        const key = Number(head.readBigUInt64BE(8));
        const p = this.pending.get(key);
        if (!p) throw new ProtocolError('NBD_BAD_REPLY', `reply for unknown handle ${key}`);
        // A read's data follows its header; the request stays pending until it is all here.
        const data = error === 0 && p.readLength > 0 ? await this.reader.read(p.readLength) : EMPTY;
        this.pending.delete(key);
        if (error !== 0) p.reject(new NbdError(error, `NBD ${p.what} failed: ${errnoName(error)}`));
        else p.resolve(data);
      }
    } catch (err) {
      cause = err instanceof Error ? err : new Error(String(err));
    }
    this.fail(cause);
    this.socket.destroy();
  }

  private fail(err: Error): void {
    this.closedError ??= err;
    for (const p of this.pending.values()) p.reject(this.closedError);
    this.pending.clear();
  }
}

async function open(socketPath: string): Promise<{ socket: Socket; reader: StreamReader }> {
  const socket = createConnection(socketPath);
  const reader = new StreamReader(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve();
    });
    socket.once('error', reject);
  }).catch((err: unknown) => {
    throw new BoomerangError('NBD_CONNECT', `cannot connect to ${socketPath}: ${(err as Error).message}`, { cause: err, retryable: true });
  });
  return { socket, reader };
}

/** Reads the server greeting and answers it; returns whether the 124 zero bytes are skipped. */
async function greet(reader: StreamReader, socket: Socket): Promise<boolean> {
  const hello = await reader.read(18);
  if (hello.readBigUInt64BE(0) !== NBD_MAGIC || hello.readBigUInt64BE(8) !== IHAVEOPT) {
    throw new ProtocolError('NBD_BAD_MAGIC', 'not a newstyle NBD server');
  }
  const serverFlags = hello.readUInt16BE(16);
  if (!(serverFlags & FLAG_FIXED_NEWSTYLE)) throw new ProtocolError('NBD_NOT_FIXED_NEWSTYLE', 'server does not speak fixed newstyle');
  const noZeroes = (serverFlags & FLAG_NO_ZEROES) !== 0;
  const flags = Buffer.allocUnsafe(4);
  flags.writeUInt32BE(FLAG_C_FIXED_NEWSTYLE | (noZeroes ? FLAG_C_NO_ZEROES : 0));
  socket.write(flags);
  return noZeroes;
}

interface Negotiated {
  size: number;
  flags: number;
  blockSizes: BlockSizes | undefined;
}

/** NBD_OPT_GO; undefined when the server does not know the option (old servers). */
async function go(reader: StreamReader, socket: Socket, name: string): Promise<Negotiated | undefined> {
  socket.write(encodeOption(Opt.GO, encodeInfoRequest(name, [Info.BLOCK_SIZE])));
  let exp: { size: number; flags: number } | undefined;
  let blockSizes: BlockSizes | undefined;
  for (let i = 0; i < MAX_OPTION_REPLIES; i++) {
    const { type, data } = await readOptionReply(reader, Opt.GO);
    if (type === Rep.ACK) {
      if (!exp) throw new ProtocolError('NBD_BAD_REPLY', 'server accepted NBD_OPT_GO without export information');
      return { ...exp, blockSizes };
    }
    if (type === Rep.ERR_UNSUP) return undefined;
    if (type === Rep.ERR_UNKNOWN) throw new BoomerangError('NBD_UNKNOWN_EXPORT', `the server has no export named ${JSON.stringify(name)}`);
    if (type !== Rep.INFO) throw optionRefused(Opt.GO, type, data);
    if (data.length < 2) throw new ProtocolError('NBD_BAD_REPLY', 'empty NBD_REP_INFO');
    const info = data.readUInt16BE(0);
    if (info === Info.EXPORT && data.length >= 12) {
      exp = { size: Number(data.readBigUInt64BE(2)), flags: data.readUInt16BE(10) };
    } else if (info === Info.BLOCK_SIZE && data.length >= 14) {
      blockSizes = { minimum: data.readUInt32BE(2), preferred: data.readUInt32BE(6), maximum: data.readUInt32BE(10) };
    }
  }
  throw new ProtocolError('NBD_BAD_REPLY', 'NBD_OPT_GO replies do not end');
}

/** The legacy way in: no error reply, a server without the export just hangs up. */
async function exportName(reader: StreamReader, socket: Socket, name: string, noZeroes: boolean): Promise<Negotiated> {
  socket.write(encodeOption(Opt.EXPORT_NAME, Buffer.from(name, 'utf8')));
  const info = await reader.read(10 + (noZeroes ? 0 : 124));
  return { size: Number(info.readBigUInt64BE(0)), flags: info.readUInt16BE(8), blockSizes: undefined };
}

async function readOptionReply(reader: StreamReader, option: number): Promise<{ type: number; data: Buffer }> {
  const head = await reader.read(OPTION_REPLY_HEADER);
  if (head.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw new ProtocolError('NBD_BAD_MAGIC', 'bad option reply magic');
  if (head.readUInt32BE(8) !== option) throw new ProtocolError('NBD_BAD_REPLY', `reply to option ${head.readUInt32BE(8)}, expected ${option}`);
  const type = head.readUInt32BE(12);
  const length = head.readUInt32BE(16);
  if (length > MAX_OPTION_REPLY) throw new ProtocolError('NBD_BAD_REPLY', `option reply of ${length} bytes`);
  return { type, data: await reader.read(length) };
}

function optionRefused(option: number, type: number, data: Buffer): Error {
  const detail = isErrorReply(type) && data.length > 0 ? `: ${data.toString('utf8')}` : '';
  return new BoomerangError('NBD_OPTION_REFUSED', `server answered option ${option} with reply type 0x${type.toString(16)}${detail}`);
}
