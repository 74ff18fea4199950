import { chmod, lstat, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { BlockDevice } from '../../replication/disk.js';
import { BoomerangError, ProtocolError, errorCode, errorMessage } from '../../replication/errors.js';
import {
  Cmd,
  CmdFlag,
  Errno,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  Info,
  MAX_OPTION_LENGTH,
  MAX_PAYLOAD,
  MIN_BLOCK,
  NBD_MAGIC,
  OPTION_HEADER,
  Opt,
  PREFERRED_BLOCK,
  REQUEST_HEADER,
  Rep,
  StreamReader,
  TFlag,
  decodeInfoRequest,
  decodeRequest,
  encodeOptionReply,
  encodeSimpleReply,
  type RequestHeader,
} from './protocol.js';

/**
 * What the server serves: the agent interposes capture here, tests use `fileExport`. Offsets and
 * lengths reaching these methods are validated (aligned to 512, within `size`).
 */
export interface NbdExport {
  readonly name: string;
  readonly size: number;
  readonly readOnly?: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  /** `data` belongs to the handler: it may keep it. */
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  writeZeroes(offset: number, length: number, fua: boolean): Promise<void>;
  trim(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
}

export type NbdLogger = (msg: string, fields?: object) => void;

export interface NbdServerOptions {
  socketPath: string;
  exports: NbdExport[];
  /** Requests executing at once per connection; beyond it the server stops reading the socket. */
  maxInFlight?: number;
  /** Data bytes (write payloads, read lengths) of the requests executing on a connection, likewise. */
  maxBytesInFlight?: number;
  logger?: NbdLogger;
}

export interface NbdServerStats {
  /** Connections open now. */
  connections: number;
  /** Requests received in the transmission phase (DISC excluded). */
  requests: number;
  bytesRead: number;
  bytesWritten: number;
  /** Requests answered with an NBD error. */
  errors: number;
  /** Connections dropped for breaking the protocol. */
  protocolErrors: number;
}

const MAX_OPTIONS = 1024; // per connection: a client haggling forever is cut off
const NO_ZEROES_PADDING = Buffer.alloc(124);

type Counters = Omit<NbdServerStats, 'connections'>;

/** What a connection needs from its server. */
interface ServerContext {
  readonly maxInFlight: number;
  readonly maxBytesInFlight: number;
  readonly log: NbdLogger;
  findExport(name: string): NbdExport | undefined;
  exportNames(): string[];
  count(field: keyof Counters, n?: number): void;
}

/** Serves exports over fixed-newstyle NBD on a unix socket (mode 0600: the filesystem authenticates). */
export class NbdServer {
  readonly socketPath: string;
  private readonly exports = new Map<string, NbdExport>();
  private readonly connections = new Set<Connection>();
  private readonly counters: Counters = { requests: 0, bytesRead: 0, bytesWritten: 0, errors: 0, protocolErrors: 0 };
  private readonly context: ServerContext;
  private server: Server | undefined;

  constructor(options: NbdServerOptions) {
    for (const exp of options.exports) {
      if (this.exports.has(exp.name)) throw new BoomerangError('NBD_DUPLICATE_EXPORT', `export ${exp.name} is listed twice`);
      if (exp.size % MIN_BLOCK !== 0) throw new BoomerangError('NBD_EXPORT_SIZE', `export ${exp.name} size ${exp.size} is not a multiple of ${MIN_BLOCK}`);
      this.exports.set(exp.name, exp);
    }
    this.socketPath = options.socketPath;
    const maxInFlight = options.maxInFlight ?? 64;
    const maxBytesInFlight = options.maxBytesInFlight ?? 64 * 1024 * 1024;
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1 || !(maxBytesInFlight > 0)) {
      throw new BoomerangError('NBD_BAD_LIMIT', `in-flight limits must be positive (${maxInFlight} requests, ${maxBytesInFlight} bytes)`);
    }
    const exports = this.exports;
    const counters = this.counters;
    this.context = {
      maxInFlight,
      maxBytesInFlight,
      log: options.logger ?? (() => {}),
      findExport(name) {
        // The empty name is the spec's "default export": unambiguous only when there is one.
        if (name === '' && exports.size === 1) return exports.values().next().value;
        return exports.get(name);
      },
      exportNames: () => [...exports.keys()],
      count(field, n = 1) {
        counters[field] += n;
      },
    };
  }

  async listen(): Promise<void> {
    if (this.server) throw new BoomerangError('NBD_LISTENING', 'server already listening');
    const server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    this.server = server;
    try {
      await removeStaleSocket(this.socketPath);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.socketPath, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.server = undefined;
      if (err instanceof BoomerangError) throw err;
      throw new BoomerangError('NBD_LISTEN', `cannot listen on ${this.socketPath}: ${errorMessage(err)}`, { cause: err });
    }
    // Between bind and chmod the umask applies; keep the socket in a private directory.
    await chmod(this.socketPath, 0o600);
    server.on('error', (err) => this.context.log('nbd server error', { error: errorMessage(err) }));
  }

  /** Stops listening, lets requests already executing finish, then drops every connection. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    await Promise.all([...this.connections].map((c) => c.stop()));
    await closed;
  }

  stats(): NbdServerStats {
    return { connections: this.connections.size, ...this.counters };
  }

  private accept(socket: Socket): void {
    const conn = new Connection(this.context, socket);
    this.connections.add(conn);
    void conn.finished.then(() => this.connections.delete(conn));
  }
}

/** A leftover socket file from a process that died is removed; a live one is an error. */
async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isSocket()) return;
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new BoomerangError('NBD_SOCKET_IN_USE', `another server is listening on ${path}`);
  await unlink(path);
}

/** One client: handshake, then pipelined transmission with a bound on requests in flight. */
class Connection {
  readonly finished: Promise<void>;
  private readonly reader: StreamReader;
  private inFlight = 0;
  private bytesInFlight = 0;
  private slotWaiters: (() => void)[] = [];

  constructor(
    private readonly server: ServerContext,
    private readonly socket: Socket,
  ) {
    this.reader = new StreamReader(socket);
    this.finished = this.run();
  }

  /** Stops reading requests, waits for those executing, then drops the connection. */
  async stop(): Promise<void> {
    this.reader.cancel();
    await this.drainInFlight();
    this.socket.destroy();
    await this.finished;
  }

  private async run(): Promise<void> {
    try {
      const exp = await this.handshake();
      if (exp) await this.transmit(exp);
    } catch (err) {
      if (!(err instanceof ProtocolError)) {
        this.server.log('nbd connection failed', { code: errorCode(err), error: errorMessage(err) });
      } else if (err.code !== 'NBD_CLOSED' && err.code !== 'NBD_TRUNCATED') {
        // A client hanging up, even mid-message, is not a protocol violation; the rest are.
        this.server.count('protocolErrors');
        this.server.log('nbd client dropped', { code: err.code, error: err.message });
      }
    } finally {
      await this.drainInFlight();
      this.reader.cancel();
      this.socket.destroySoon(); // queued replies still go out, then the socket closes
    }
  }

  private send(buf: Buffer, data?: Buffer): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    if (!data) {
      this.socket.write(buf);
      return;
    }
    this.socket.cork();
    this.socket.write(buf);
    this.socket.write(data);
    this.socket.uncork();
  }

  /** Returns the export chosen, or undefined when the client aborted. */
  private async handshake(): Promise<NbdExport | undefined> {
    const hello = Buffer.allocUnsafe(18);
    hello.writeBigUInt64BE(NBD_MAGIC, 0);
    hello.writeBigUInt64BE(IHAVEOPT, 8);
    hello.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
    this.send(hello);

    const clientFlags = (await this.reader.read(4)).readUInt32BE(0);
    if (!(clientFlags & FLAG_C_FIXED_NEWSTYLE) || clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
      throw new ProtocolError('NBD_CLIENT_FLAGS', `client flags 0x${clientFlags.toString(16)} refused (fixed newstyle required)`);
    }
    const noZeroes = (clientFlags & FLAG_C_NO_ZEROES) !== 0;

    for (let i = 0; i < MAX_OPTIONS; i++) {
      const head = await this.reader.read(OPTION_HEADER);
      if (head.readBigUInt64BE(0) !== IHAVEOPT) throw new ProtocolError('NBD_BAD_MAGIC', 'bad option magic');
      const option = head.readUInt32BE(8);
      const length = head.readUInt32BE(12);
      if (length > MAX_OPTION_LENGTH) throw new ProtocolError('NBD_OPTION_TOO_LONG', `option ${option} carries ${length} bytes`);
      const data = await this.reader.read(length);
      const reply = (type: number, payload?: Buffer): void => this.send(encodeOptionReply(option, type, payload));

      switch (option) {
        case Opt.EXPORT_NAME: {
          const exp = this.server.findExport(data.toString('utf8'));
          // This option has no error reply: the spec says to drop the connection.
          if (!exp) throw new ProtocolError('NBD_UNKNOWN_EXPORT', `unknown export ${JSON.stringify(data.toString('utf8'))}`);
          const info = Buffer.allocUnsafe(10);
          info.writeBigUInt64BE(BigInt(exp.size), 0);
          info.writeUInt16BE(transmissionFlags(exp), 8);
          this.send(info, noZeroes ? undefined : NO_ZEROES_PADDING);
          return exp;
        }
        case Opt.ABORT:
          reply(Rep.ACK);
          return undefined;
        case Opt.LIST:
          if (length !== 0) {
            reply(Rep.ERR_INVALID);
            break;
          }
          for (const name of this.server.exportNames()) {
            const nameBytes = Buffer.from(name, 'utf8');
            const entry = Buffer.allocUnsafe(4 + nameBytes.length);
            entry.writeUInt32BE(nameBytes.length, 0);
            nameBytes.copy(entry, 4);
            reply(Rep.SERVER, entry);
          }
          reply(Rep.ACK);
          break;
        case Opt.INFO:
        case Opt.GO: {
          const name = decodeInfoRequest(data);
          if (name === undefined) {
            reply(Rep.ERR_INVALID);
            break;
          }
          const exp = this.server.findExport(name);
          if (!exp) {
            reply(Rep.ERR_UNKNOWN, Buffer.from(`no export named ${JSON.stringify(name)}`));
            break;
          }
          const info = Buffer.allocUnsafe(12);
          info.writeUInt16BE(Info.EXPORT, 0);
          info.writeBigUInt64BE(BigInt(exp.size), 2);
          info.writeUInt16BE(transmissionFlags(exp), 10);
          reply(Rep.INFO, info);
          const sizes = Buffer.allocUnsafe(14);
          sizes.writeUInt16BE(Info.BLOCK_SIZE, 0);
          sizes.writeUInt32BE(MIN_BLOCK, 2);
          sizes.writeUInt32BE(PREFERRED_BLOCK, 6);
          sizes.writeUInt32BE(MAX_PAYLOAD, 10);
          reply(Rep.INFO, sizes);
          reply(Rep.ACK);
          if (option === Opt.GO) return exp;
          break;
        }
        default:
          // STARTTLS, STRUCTURED_REPLY, metadata contexts…: qemu and others fall back without them.
          reply(Rep.ERR_UNSUP);
      }
    }
    throw new ProtocolError('NBD_TOO_MANY_OPTIONS', `more than ${MAX_OPTIONS} options`);
  }

  private async transmit(exp: NbdExport): Promise<void> {
    for (;;) {
      // Replies the client is not reading pile up here; stop taking requests until they drain.
      if (this.socket.writableNeedDrain) await this.writableDrained();
      const head = await this.reader.next(REQUEST_HEADER);
      if (!head) return;
      const req = decodeRequest(head);
      if (req.type === Cmd.DISC) return;
      this.server.count('requests');

      let payload: Buffer | undefined;
      if (req.type === Cmd.WRITE) {
        if (req.length > MAX_PAYLOAD) {
          // The payload cannot be skipped without reading it all: answer, then hang up.
          this.fail(req, Errno.EINVAL);
          throw new ProtocolError('NBD_PAYLOAD_TOO_LARGE', `write of ${req.length} bytes exceeds ${MAX_PAYLOAD}`);
        }
        payload = await this.reader.read(req.length);
      }

      // Only reads and writes hold data; a 1 GiB trim costs no memory.
      const bytes = req.type === Cmd.READ || req.type === Cmd.WRITE ? req.length : 0;
      this.inFlight++;
      this.bytesInFlight += bytes;
      void this.execute(exp, req, payload).finally(() => {
        this.inFlight--;
        this.bytesInFlight -= bytes;
        const waiters = this.slotWaiters;
        this.slotWaiters = [];
        for (const wake of waiters) wake();
      });
      while (this.inFlight >= this.server.maxInFlight || this.bytesInFlight >= this.server.maxBytesInFlight) await this.slot();
    }
  }

  private slot(): Promise<void> {
    return new Promise((resolve) => this.slotWaiters.push(resolve));
  }

  private async drainInFlight(): Promise<void> {
    while (this.inFlight > 0) await this.slot();
  }

  private writableDrained(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  private fail(req: RequestHeader, errno: number): void {
    this.server.count('errors');
    this.send(encodeSimpleReply(req.handle, errno));
  }

  private async execute(exp: NbdExport, req: RequestHeader, payload: Buffer | undefined): Promise<void> {
    const errno = validate(exp, req);
    if (errno !== 0) return this.fail(req, errno);
    const fua = (req.flags & CmdFlag.FUA) !== 0;
    try {
      switch (req.type) {
        case Cmd.READ: {
          const data = await exp.read(req.offset, req.length);
          if (data.length !== req.length) throw new BoomerangError('NBD_SHORT_READ', `export returned ${data.length} of ${req.length} bytes`);
          this.server.count('bytesRead', req.length);
          this.send(encodeSimpleReply(req.handle, 0), data);
          return;
        }
        case Cmd.WRITE:
          await exp.write(req.offset, payload ?? Buffer.alloc(0), fua);
          this.server.count('bytesWritten', req.length);
          break;
        case Cmd.WRITE_ZEROES:
          await exp.writeZeroes(req.offset, req.length, fua);
          this.server.count('bytesWritten', req.length);
          break;
        case Cmd.TRIM:
          await exp.trim(req.offset, req.length);
          if (fua) await exp.flush();
          break;
        case Cmd.FLUSH:
          await exp.flush();
          break;
      }
      this.send(encodeSimpleReply(req.handle, 0));
    } catch (err) {
      this.server.log('nbd export handler failed', { export: exp.name, type: req.type, offset: req.offset, length: req.length, error: errorMessage(err) });
      this.fail(req, Errno.EIO);
    }
  }
}

function transmissionFlags(exp: NbdExport): number {
  if (exp.readOnly) return TFlag.HAS_FLAGS | TFlag.READ_ONLY | TFlag.SEND_FLUSH;
  return TFlag.HAS_FLAGS | TFlag.SEND_FLUSH | TFlag.SEND_FUA | TFlag.SEND_TRIM | TFlag.SEND_WRITE_ZEROES;
}

const MODIFIES = new Set<number>([Cmd.WRITE, Cmd.WRITE_ZEROES, Cmd.TRIM]);

/** The NBD error for a request the export must not see, or 0. */
function validate(exp: NbdExport, req: RequestHeader): number {
  const { type, flags, offset, length } = req;
  if (type !== Cmd.READ && type !== Cmd.FLUSH && !MODIFIES.has(type)) return Errno.EINVAL;
  const allowedFlags = CmdFlag.FUA | (type === Cmd.WRITE_ZEROES ? CmdFlag.NO_HOLE : 0);
  if (flags & ~allowedFlags) return Errno.EINVAL;
  if (type === Cmd.FLUSH) return 0; // offset and length are reserved; not worth a refusal
  if (exp.readOnly && MODIFIES.has(type)) return Errno.EPERM;
  // The block size limit applies to payloads; trim and write-zeroes may span the whole export.
  if (length === 0 || ((type === Cmd.READ || type === Cmd.WRITE) && length > MAX_PAYLOAD)) return Errno.EINVAL;
  if (offset + length > exp.size) return type === Cmd.READ || type === Cmd.TRIM ? Errno.EINVAL : Errno.ENOSPC;
  if (offset % MIN_BLOCK !== 0 || length % MIN_BLOCK !== 0) return Errno.EINVAL;
  return 0;
}

/** A passthrough export over a block device; trim writes zeroes so trimmed ranges read back as zeroes. */
export function fileExport(name: string, disk: BlockDevice, options: { readOnly?: boolean } = {}): NbdExport {
  return {
    name,
    size: disk.size,
    readOnly: options.readOnly ?? false,
    read: (offset, length) => disk.read(offset, length),
    async write(offset, data, fua) {
      await disk.write(offset, data);
      if (fua) await disk.flush();
    },
    async writeZeroes(offset, length, fua) {
      await disk.writeZeroes(offset, length);
      if (fua) await disk.flush();
    },
    trim: (offset, length) => disk.writeZeroes(offset, length),
    flush: () => disk.flush(),
  };
}
