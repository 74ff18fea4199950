import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NbdClient, NbdError } from '../../src/agent/nbd/client.js';
import {
  Cmd,
  CmdFlag,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  IHAVEOPT,
  Info,
  OPTION_REPLY_HEADER,
  Opt,
  REQUEST_MAGIC,
  Rep,
  SIMPLE_REPLY_HEADER,
  StreamReader,
  TFlag,
  encodeInfoRequest,
  encodeOption,
  encodeRequest,
} from '../../src/agent/nbd/protocol.js';
import { NbdServer, fileExport, type NbdExport } from '../../src/agent/nbd/server.js';
import { FileDisk } from '../../src/replication/disk.js';
import { BoomerangError } from '../../src/replication/errors.js';

const execFileAsync = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;

interface ExportSpec {
  name: string;
  size: number;
  readOnly?: boolean;
  /** Interposes on the plain file export (spies, gates, failures). */
  wrap?: (base: NbdExport) => NbdExport;
}

interface Fixture {
  socketPath: string;
  server: NbdServer;
  imagePath(name: string): string;
  url(name: string): string;
  connect(name: string): Promise<NbdClient>;
}

/** A temp dir with one sparse image per export and a listening server; all removed afterwards. */
async function withServer(specs: ExportSpec[], body: (f: Fixture) => Promise<void>, limits: { maxInFlight?: number; maxBytesInFlight?: number } = {}): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-nbd-'));
  const disks: FileDisk[] = [];
  let server: NbdServer | undefined;
  try {
    const imagePath = (name: string): string => join(dir, `${name}.img`);
    const exports: NbdExport[] = [];
    for (const spec of specs) {
      const disk = await FileDisk.open(imagePath(spec.name), { size: spec.size, create: true });
      disks.push(disk);
      const base = fileExport(spec.name, disk, { readOnly: spec.readOnly ?? false });
      exports.push(spec.wrap ? spec.wrap(base) : base);
    }
    const socketPath = join(dir, 'nbd.sock');
    server = new NbdServer({ socketPath, exports, ...limits });
    await server.listen();
    await body({
      socketPath,
      server,
      imagePath,
      url: (name) => `nbd+unix:///${name}?socket=${socketPath}`,
      connect: (name) => NbdClient.connect({ socketPath, exportName: name }),
    });
  } finally {
    await server?.close();
    for (const disk of disks) await disk.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs qemu-io against an export; any failed command or pattern mismatch fails the test. */
async function qemuIo(url: string, commands: string[], args: string[] = []): Promise<string> {
  const argv = ['-f', 'raw', ...args, url, ...commands.flatMap((c) => ['-c', c])];
  const { stdout, stderr } = await execFileAsync('qemu-io', argv).catch((err: { stdout?: string; stderr?: string; message: string }) => {
    throw new Error(`qemu-io failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  });
  const output = stdout + stderr;
  assert.doesNotMatch(output, /verification failed|failed|error/i, output);
  return output;
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Deterministic randomness so a failure can be replayed from its seed. */
function prng(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

function isNbdError(code: string): (err: unknown) => boolean {
  return (err) => err instanceof NbdError && err.code === code;
}

/** A hand-driven connection for what our client will not send: bad commands, garbage, huge lengths. */
class RawPeer {
  readonly reader: StreamReader;
  private constructor(readonly socket: Socket) {
    this.reader = new StreamReader(socket);
  }

  static async open(socketPath: string): Promise<RawPeer> {
    const socket = createConnection(socketPath);
    await once(socket, 'connect');
    return new RawPeer(socket);
  }

  /** Greeting plus our client flags; returns the server's handshake flags. */
  async hello(clientFlags = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES): Promise<number> {
    const greeting = await this.reader.read(18);
    assert.equal(greeting.readBigUInt64BE(8), IHAVEOPT);
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(clientFlags >>> 0);
    this.socket.write(flags);
    return greeting.readUInt16BE(16);
  }

  async optionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const head = await this.reader.read(OPTION_REPLY_HEADER);
    return { option: head.readUInt32BE(8), type: head.readUInt32BE(12), data: await this.reader.read(head.readUInt32BE(16)) };
  }

  async go(name: string): Promise<void> {
    this.socket.write(encodeOption(Opt.GO, encodeInfoRequest(name, [])));
    for (let i = 0; i < 8; i++) if ((await this.optionReply()).type === Rep.ACK) return;
    assert.fail('NBD_OPT_GO did not finish');
  }

  request(type: number, offset: number, length: number, flags = 0, handleByte = 7): void {
    this.socket.write(encodeRequest({ flags, type, handle: Buffer.alloc(8, handleByte), offset, length }));
  }

  async reply(): Promise<{ error: number; handle: Buffer }> {
    const head = await this.reader.read(SIMPLE_REPLY_HEADER);
    return { error: head.readUInt32BE(4), handle: head.subarray(8, 16) };
  }

  /** Resolves once the server hangs up (reading and discarding whatever it still sends). */
  async closedByServer(): Promise<void> {
    for (let i = 0; i < 1024; i++) if ((await this.reader.next(1)) === null) return;
    assert.fail('server kept the connection open');
  }
}

test('handshake: exports are listed, GO negotiates size and block sizes, the socket is private', async () => {
  await withServer([{ name: 'disk0', size: 8 * MiB }, { name: 'disk1', size: 4 * MiB, readOnly: true }], async (f) => {
    assert.equal((await stat(f.socketPath)).mode & 0o777, 0o600);
    assert.deepEqual(await NbdClient.list(f.socketPath), ['disk0', 'disk1']);

    const client = await f.connect('disk0');
    assert.equal(client.size, 8 * MiB);
    assert.deepEqual(client.blockSizes, { minimum: 512, preferred: 4096, maximum: 32 * MiB });
    assert.equal(client.flags, TFlag.HAS_FLAGS | TFlag.SEND_FLUSH | TFlag.SEND_FUA | TFlag.SEND_TRIM | TFlag.SEND_WRITE_ZEROES);
    await client.disconnect();
    const ro = await f.connect('disk1');
    assert.equal(ro.readOnly, true);
    await ro.disconnect();
    await assert.rejects(f.connect('nope'), (err: unknown) => err instanceof BoomerangError && err.code === 'NBD_UNKNOWN_EXPORT');

    // qemu's client: list with per-export info, and the image as qemu sees it.
    const { stdout } = await execFileAsync('qemu-nbd', ['-L', '-k', f.socketPath]);
    assert.match(stdout, /exports available: 2/);
    assert.match(stdout, /export: 'disk0'\n\s+size:\s+8388608\n\s+flags: 0x\w+ \( flush fua trim zeroes \)\n\s+min block: 512\n\s+opt block: 4096\n\s+max block: 33554432/);
    assert.match(stdout, /export: 'disk1'\n\s+size:\s+4194304\n\s+flags: 0x\w+ \( readonly flush \)/);
    const info = await execFileAsync('qemu-img', ['info', '--output=json', f.url('disk0')]);
    assert.equal((JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size'], 8 * MiB);
  });
});

test('legacy NBD_OPT_EXPORT_NAME works, with and without the 124 zero bytes', async () => {
  await withServer([{ name: 'disk0', size: 1 * MiB }], async (f) => {
    for (const noZeroes of [true, false]) {
      const peer = await RawPeer.open(f.socketPath);
      await peer.hello(FLAG_C_FIXED_NEWSTYLE | (noZeroes ? FLAG_C_NO_ZEROES : 0));
      peer.socket.write(encodeOption(Opt.EXPORT_NAME, Buffer.from('disk0')));
      const info = await peer.reader.read(10 + (noZeroes ? 0 : 124));
      assert.equal(info.readBigUInt64BE(0), BigInt(1 * MiB));
      if (!noZeroes) assert.ok(info.subarray(10).every((b) => b === 0));
      peer.request(Cmd.READ, 0, 512);
      assert.equal((await peer.reply()).error, 0);
      assert.ok((await peer.reader.read(512)).every((b) => b === 0));
      peer.request(Cmd.DISC, 0, 0);
      await peer.closedByServer();
    }
  });
});

test('random writes, zeroes and trims through our client: the backing file equals the model', async () => {
  const size = 16 * MiB;
  const seed = Date.now() & 0xffff;
  const rand = prng(seed);
  await withServer([{ name: 'disk0', size }], async (f) => {
    const model = Buffer.alloc(size);
    const client = await f.connect('disk0');
    for (let round = 0; round < 30; round++) {
      // Overlapping writes in flight together have no defined order, so each round's are disjoint.
      const extents: { offset: number; length: number }[] = [];
      for (let tries = 0; tries < 200 && extents.length < 32; tries++) {
        const length = (1 + rand(256)) * 512;
        const offset = rand((size - length) / 512 + 1) * 512;
        if (extents.some((e) => offset < e.offset + e.length && e.offset < offset + length)) continue;
        extents.push({ offset, length });
      }
      await Promise.all(
        extents.map(({ offset, length }) => {
          const kind = rand(10);
          if (kind === 0) {
            model.fill(0, offset, offset + length);
            return client.writeZeroes(offset, length, { fua: rand(2) === 0 });
          }
          if (kind === 1) {
            model.fill(0, offset, offset + length);
            return client.trim(offset, length);
          }
          const data = randomBytes(length);
          data.copy(model, offset);
          return client.write(offset, data, { fua: rand(8) === 0 });
        }),
      );
    }
    await client.flush();
    const chunks = await Promise.all(Array.from({ length: size / MiB }, (_, i) => client.read(i * MiB, MiB)));
    assert.equal(sha256(Buffer.concat(chunks)), sha256(model), `read back differs (seed ${seed})`);
    await client.disconnect();
    assert.equal(sha256(await readFile(f.imagePath('disk0'))), sha256(model), `backing file differs (seed ${seed})`);
  });
});

test('writes through qemu-io land in the backing file, qemu-img compare agrees', async () => {
  const size = 8 * MiB;
  await withServer([{ name: 'disk0', size }], async (f) => {
    const model = Buffer.alloc(size);
    const writes: [pattern: number, offset: number, length: number][] = [
      [0xab, 4096, 65536],
      [0x11, 0, 512],
      [0x22, 1 * MiB + 512, 3 * MiB],
      [0x33, size - 4096, 4096],
      [0x44, 200 * KiB + 700, 1000], // unaligned: qemu does read-modify-write of the sectors
      [0x55, 6 * MiB, 256 * KiB],
    ];
    const commands: string[] = [];
    for (const [pattern, offset, length] of writes) {
      commands.push(`write -P ${pattern} ${offset} ${length}`);
      model.fill(pattern, offset, offset + length);
    }
    for (const [pattern, offset, length] of writes) commands.push(`read -P ${pattern} ${offset} ${length}`);
    await qemuIo(f.url('disk0'), commands);
    assert.equal(sha256(await readFile(f.imagePath('disk0'))), sha256(model));
    await execFileAsync('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', f.imagePath('disk0'), f.url('disk0')]);

    // And the other direction: what our client writes, qemu reads.
    const client = await f.connect('disk0');
    await client.write(5 * MiB, Buffer.alloc(128 * KiB, 0x66));
    await client.disconnect();
    await qemuIo(f.url('disk0'), [`read -P 0x66 ${5 * MiB} ${128 * KiB}`, `read -P 0xab 4096 65536`]);
  });
});

test('200 pipelined requests in flight return the right data', async () => {
  await withServer([{ name: 'disk0', size: 16 * MiB }], async (f) => {
    const client = await f.connect('disk0');
    const blocks = Array.from({ length: 200 }, (_, i) => ({ offset: i * 64 * KiB, data: randomBytes(8 * KiB) }));
    await Promise.all(blocks.map((b) => client.write(b.offset, b.data)));
    const reads = await Promise.all(blocks.map((b) => client.read(b.offset, b.data.length)));
    reads.forEach((data, i) => assert.ok(data.equals(blocks[i]!.data), `block ${i}`));

    // Reads of old blocks and writes of new ones, all in flight at once.
    const fresh = blocks.map((b) => ({ offset: b.offset + 32 * KiB, data: randomBytes(4 * KiB) }));
    const [mixed] = await Promise.all([Promise.all(blocks.map((b) => client.read(b.offset, b.data.length))), Promise.all(fresh.map((b) => client.write(b.offset, b.data)))]);
    mixed.forEach((data, i) => assert.ok(data.equals(blocks[i]!.data), `block ${i} (mixed)`));
    const again = await Promise.all(fresh.map((b) => client.read(b.offset, b.data.length)));
    again.forEach((data, i) => assert.ok(data.equals(fresh[i]!.data), `fresh block ${i}`));
    await client.disconnect();

    const stats = f.server.stats();
    assert.equal(stats.requests, 1000);
    assert.equal(stats.bytesWritten, 200 * 8 * KiB + 200 * 4 * KiB);
    assert.equal(stats.bytesRead, 2 * 200 * 8 * KiB + 200 * 4 * KiB);
    assert.equal(stats.errors, 0);
  });
});

const windows: [what: string, limits: { maxInFlight?: number; maxBytesInFlight?: number }, expected: number][] = [
  ['maxInFlight', { maxInFlight: 8 }, 8],
  ['maxBytesInFlight', { maxBytesInFlight: 16 * KiB }, 4], // reads of 4 KiB
];
for (const [what, limits, limit] of windows) {
  test(`requests executing at once per connection stay within ${what}`, async () => {
    const total = 96;
    let active = 0;
    let maxActive = 0;
    let atLimit!: () => void;
    const limitReached = new Promise<void>((resolve) => (atLimit = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    // Reads block until released: the server fills its window and must not go past it.
    const gate = (base: NbdExport): NbdExport => ({
      ...base,
      async read(offset, length) {
        active++;
        maxActive = Math.max(maxActive, active);
        if (active === limit) atLimit();
        await released;
        active--;
        return base.read(offset, length);
      },
    });
    await withServer(
      [{ name: 'disk0', size: 1 * MiB, wrap: gate }],
      async (f) => {
        const client = await f.connect('disk0');
        const reads = Promise.all(Array.from({ length: total }, (_, i) => client.read(i * 4096, 4096)));
        await limitReached;
        // A round trip on another connection: by its end the server has long had all 96 requests
        // in hand, so without the bound it would have started them all.
        try {
          const other = await f.connect('disk0');
          await other.flush();
          await other.disconnect();
          assert.equal(active, limit);
        } finally {
          release(); // even on failure, or closing the server would wait for these reads forever
        }
        await reads;
        await client.disconnect();
        assert.equal(maxActive, limit);
      },
      limits,
    );
  });
}

test('invalid requests get the right NBD error and the connection stays usable', async () => {
  const size = 1 * MiB;
  const failing = (base: NbdExport): NbdExport => ({
    ...base,
    read: () => Promise.reject(new Error('disk on fire')),
    write: () => Promise.reject(new Error('disk on fire')),
  });
  await withServer(
    [
      { name: 'disk0', size },
      { name: 'ro', size, readOnly: true },
      { name: 'broken', size, wrap: failing },
    ],
    async (f) => {
      const client = await f.connect('disk0');
      const cases: [what: string, request: () => Promise<unknown>, code: string][] = [
        ['unaligned read offset', () => client.read(100, 512), 'EINVAL'],
        ['unaligned read length', () => client.read(0, 100), 'EINVAL'],
        ['unaligned write', () => client.write(512, Buffer.alloc(700)), 'EINVAL'],
        ['unaligned trim', () => client.trim(512, 1000), 'EINVAL'],
        ['read past the end', () => client.read(size - 512, 1024), 'EINVAL'],
        ['read far past the end', () => client.read(2 ** 52, 512), 'EINVAL'],
        ['trim past the end', () => client.trim(size, 512), 'EINVAL'],
        ['write past the end', () => client.write(size, Buffer.alloc(512)), 'ENOSPC'],
        ['write zeroes past the end', () => client.writeZeroes(size - 512, 1024), 'ENOSPC'],
        ['zero-length read', () => client.read(0, 0), 'EINVAL'],
        ['zero-length write', () => client.write(0, Buffer.alloc(0)), 'EINVAL'],
        ['read over 32 MiB', () => client.read(0, 32 * MiB + 512), 'EINVAL'],
      ];
      for (const [what, request, code] of cases) {
        await assert.rejects(request(), isNbdError(code), what);
        assert.equal((await client.read(0, 512)).length, 512, `usable after ${what}`);
      }
      // The same, all pipelined together with good requests in between.
      const results = await Promise.allSettled(cases.flatMap(([, request]) => [request(), client.read(4096, 4096)]));
      results.forEach((r, i) => {
        const expected = cases[i >> 1];
        if (i % 2 === 1) assert.equal(r.status, 'fulfilled');
        else assert.ok(r.status === 'rejected' && expected && isNbdError(expected[2])(r.reason), expected?.[0]);
      });
      await client.disconnect();

      const ro = await f.connect('ro');
      assert.equal((await ro.read(0, 4096)).length, 4096);
      await assert.rejects(ro.write(0, Buffer.alloc(512)), isNbdError('EPERM'));
      // A read-only export does not advertise trim, so our client does not even send it.
      await assert.rejects(ro.trim(0, 512), (err: unknown) => err instanceof BoomerangError && err.code === 'NBD_UNSUPPORTED');
      await ro.disconnect();

      const broken = await f.connect('broken');
      await assert.rejects(broken.read(0, 512), isNbdError('EIO'));
      await assert.rejects(broken.write(0, Buffer.alloc(512)), isNbdError('EIO'));
      await broken.flush();
      await broken.disconnect();

      const peer = await RawPeer.open(f.socketPath);
      await peer.hello();
      await peer.go('disk0');
      const raw: [what: string, send: () => void, errno: number][] = [
        ['unknown command', () => peer.request(9, 0, 512), 22],
        ['NBD_CMD_BLOCK_STATUS (not negotiated)', () => peer.request(7, 0, 512), 22],
        ['unknown command flag', () => peer.request(Cmd.READ, 0, 512, 1 << 7), 22],
        ['NO_HOLE on a read', () => peer.request(Cmd.READ, 0, 512, CmdFlag.NO_HOLE), 22],
        ['trim on a read-write export with FUA', () => peer.request(Cmd.TRIM, 0, 512, CmdFlag.FUA), 0],
        ['NO_HOLE on write zeroes', () => peer.request(Cmd.WRITE_ZEROES, 0, 512, CmdFlag.NO_HOLE), 0],
        [
          'offset near 2^64',
          () => {
            const req = encodeRequest({ flags: 0, type: Cmd.READ, handle: Buffer.alloc(8, 7), offset: 0, length: 512 });
            req.writeBigUInt64BE(0xfffffffffffffe00n, 16);
            peer.socket.write(req);
          },
          22,
        ],
      ];
      for (const [what, send, errno] of raw) {
        send();
        const reply = await peer.reply();
        assert.equal(reply.error, errno, what);
        assert.deepEqual(reply.handle, Buffer.alloc(8, 7), what);
      }
      peer.request(Cmd.READ, 0, 512);
      assert.equal((await peer.reply()).error, 0);
      assert.equal((await peer.reader.read(512)).length, 512);
      peer.request(Cmd.DISC, 0, 0);
      await peer.closedByServer();

      // 12 cases twice, 1 EPERM, 2 EIO, 5 raw refusals.
      assert.equal(f.server.stats().errors, 24 + 1 + 2 + 5);
    },
  );
});

test('a write larger than 32 MiB is refused and the connection closed; the server carries on', async () => {
  await withServer([{ name: 'disk0', size: 64 * MiB }], async (f) => {
    const peer = await RawPeer.open(f.socketPath);
    await peer.hello();
    await peer.go('disk0');
    peer.request(Cmd.WRITE, 0, 32 * MiB + 512);
    peer.socket.write(Buffer.alloc(64 * KiB, 0xee)); // the start of a payload the server must not wait for
    const reply = await peer.reply();
    assert.equal(reply.error, 22);
    await peer.closedByServer();
    assert.equal(f.server.stats().protocolErrors, 1);

    const client = await f.connect('disk0');
    await client.write(0, Buffer.alloc(32 * MiB, 0x5a)); // exactly the limit is fine
    assert.ok((await client.read(32 * MiB - 512, 512)).every((b) => b === 0x5a));
    await client.disconnect();
  });
});

test('trim and write-zeroes read back as zeroes; flush and FUA reach the handler', async () => {
  const calls = { flush: 0, fuaWrites: 0, fuaZeroes: 0, trims: 0, zeroes: 0 };
  const spy = (base: NbdExport): NbdExport => ({
    ...base,
    async write(offset, data, fua) {
      if (fua) calls.fuaWrites++;
      await base.write(offset, data, fua);
    },
    async writeZeroes(offset, length, fua) {
      calls.zeroes++;
      if (fua) calls.fuaZeroes++;
      await base.writeZeroes(offset, length, fua);
    },
    async trim(offset, length) {
      calls.trims++;
      await base.trim(offset, length);
    },
    async flush() {
      calls.flush++;
      await base.flush();
    },
  });
  await withServer([{ name: 'disk0', size: 4 * MiB, wrap: spy }], async (f) => {
    const client = await f.connect('disk0');
    await client.write(0, Buffer.alloc(256 * KiB, 0xee));
    await client.trim(64 * KiB, 64 * KiB);
    await client.writeZeroes(192 * KiB, 64 * KiB, { noHole: true, fua: true });
    const data = await client.read(0, 256 * KiB);
    const expected = Buffer.alloc(256 * KiB, 0xee);
    expected.fill(0, 64 * KiB, 128 * KiB);
    expected.fill(0, 192 * KiB, 256 * KiB);
    assert.ok(data.equals(expected));
    assert.equal(calls.flush, 0);
    await client.flush();
    assert.equal(calls.flush, 1);
    await client.write(512 * KiB, Buffer.alloc(4096, 1), { fua: true });
    assert.deepEqual(calls, { flush: 1, fuaWrites: 1, fuaZeroes: 1, trims: 1, zeroes: 1 });
    await client.disconnect();

    // qemu: discard is TRIM, write -z is WRITE_ZEROES (with NO_HOLE), write -f sets FUA (with
    // writeback caching; qemu-io's default writethrough would set it on every write).
    await qemuIo(
      f.url('disk0'),
      [
        `write -P 0x77 ${1 * MiB} ${256 * KiB}`,
        `discard ${1 * MiB} ${64 * KiB}`,
        `write -z ${1 * MiB + 128 * KiB} ${64 * KiB}`,
        `read -P 0 ${1 * MiB} ${64 * KiB}`,
        `read -P 0x77 ${1 * MiB + 64 * KiB} ${64 * KiB}`,
        `read -P 0 ${1 * MiB + 128 * KiB} ${64 * KiB}`,
        `write -f -P 0x12 ${2 * MiB} 4096`,
        'flush',
      ],
      ['-t', 'writeback'],
    );
    assert.equal(calls.trims, 2);
    assert.equal(calls.zeroes, 2);
    assert.equal(calls.fuaWrites, 2);
    assert.ok(calls.flush >= 2, `flushes: ${calls.flush}`);
  });
});

test('garbage in the handshake or the requests drops only that connection', async () => {
  await withServer([{ name: 'disk0', size: 1 * MiB }], async (f) => {
    const dropped = async (script: (peer: RawPeer) => Promise<void>): Promise<void> => {
      const peer = await RawPeer.open(f.socketPath);
      await script(peer);
      await peer.closedByServer();
    };
    const option = (opt: number, declaredLength: number): Buffer => {
      const head = encodeOption(opt);
      head.writeUInt32BE(declaredLength, 12);
      return head;
    };
    const client = await f.connect('disk0'); // a bystander that must not notice anything
    await client.write(0, Buffer.alloc(4096, 0x42));

    await dropped(async (p) => void p.socket.write(randomBytes(4096)));
    await dropped(async (p) => void (await p.hello(0))); // not fixed newstyle
    await dropped(async (p) => void (await p.hello(FLAG_C_FIXED_NEWSTYLE | 0x80))); // unknown client flag
    await dropped(async (p) => {
      await p.hello();
      p.socket.write(randomBytes(16)); // bad option magic
    });
    await dropped(async (p) => {
      await p.hello();
      p.socket.write(option(Opt.GO, 0x40000000)); // 1 GiB option: refused before any allocation
    });
    await dropped(async (p) => {
      await p.hello();
      p.socket.write(encodeOption(Opt.EXPORT_NAME, Buffer.from('nope')));
    });
    await dropped(async (p) => {
      await p.hello();
      await p.go('disk0');
      const req = encodeRequest({ flags: 0, type: Cmd.READ, handle: Buffer.alloc(8), offset: 0, length: 512 });
      req.writeUInt32BE(REQUEST_MAGIC ^ 1, 0);
      p.socket.write(req);
    });
    const protocolErrors = f.server.stats().protocolErrors;
    assert.equal(protocolErrors, 7);

    // Clients that vanish halfway: mid-handshake and mid-request.
    const early = await RawPeer.open(f.socketPath);
    await early.hello();
    early.socket.end(Buffer.alloc(5));
    await early.closedByServer();
    const late = await RawPeer.open(f.socketPath);
    await late.hello();
    await late.go('disk0');
    late.request(Cmd.WRITE, 0, 4096);
    late.socket.end(Buffer.alloc(100));
    await late.closedByServer();

    // Options the server does not support or cannot parse are answered, not fatal.
    const peer = await RawPeer.open(f.socketPath);
    await peer.hello();
    for (const opt of [Opt.STRUCTURED_REPLY, Opt.STARTTLS, 10, 11, 99]) {
      peer.socket.write(encodeOption(opt));
      assert.deepEqual(await peer.optionReply(), { option: opt, type: Rep.ERR_UNSUP, data: Buffer.alloc(0) });
    }
    const lying = encodeInfoRequest('disk0', [Info.BLOCK_SIZE]);
    lying.writeUInt32BE(100, 0);
    peer.socket.write(encodeOption(Opt.INFO, lying));
    assert.equal((await peer.optionReply()).type, Rep.ERR_INVALID);
    peer.socket.write(encodeOption(Opt.LIST, Buffer.alloc(3)));
    assert.equal((await peer.optionReply()).type, Rep.ERR_INVALID);
    peer.socket.write(encodeOption(Opt.GO, encodeInfoRequest('nope', [])));
    assert.equal((await peer.optionReply()).type, Rep.ERR_UNKNOWN);
    peer.socket.write(encodeOption(Opt.ABORT));
    assert.deepEqual(await peer.optionReply(), { option: Opt.ABORT, type: Rep.ACK, data: Buffer.alloc(0) });
    await peer.closedByServer();

    assert.equal(f.server.stats().protocolErrors, protocolErrors);
    assert.ok((await client.read(0, 4096)).every((b) => b === 0x42));
    await client.disconnect();
  });
});

test('two exports on one socket stay separate', async () => {
  await withServer([{ name: 'disk0', size: 2 * MiB }, { name: 'disk1', size: 2 * MiB }], async (f) => {
    const [a, b] = await Promise.all([f.connect('disk0'), f.connect('disk1')]);
    // Our two clients and qemu-io, all at once; qemu-io writes the last block of disk1.
    await Promise.all([
      ...Array.from({ length: 32 }, (_, i) => a!.write(i * 64 * KiB, Buffer.alloc(64 * KiB, 0xa0))),
      ...Array.from({ length: 31 }, (_, i) => b!.write(i * 64 * KiB, Buffer.alloc(64 * KiB, 0xb1))),
      qemuIo(f.url('disk1'), [`write -P 0xb1 ${2 * MiB - 64 * KiB} ${64 * KiB}`]),
    ]);
    await Promise.all([a!.disconnect(), b!.disconnect()]);
    assert.ok((await readFile(f.imagePath('disk0'))).every((x) => x === 0xa0));
    assert.ok((await readFile(f.imagePath('disk1'))).every((x) => x === 0xb1));
    await qemuIo(f.url('disk0'), [`read -P 0xa0 0 ${2 * MiB}`]);
    await qemuIo(f.url('disk1'), [`read -P 0xb1 0 ${2 * MiB}`]);
  });
});

test('close lets executing requests finish, then pending and later requests fail', async () => {
  let entered!: () => void;
  const handlerEntered = new Promise<void>((resolve) => (entered = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let handlerDone = false;
  const slow = (base: NbdExport): NbdExport => ({
    ...base,
    async read(offset, length) {
      entered();
      await released;
      handlerDone = true;
      return base.read(offset, length);
    },
  });
  await withServer([{ name: 'disk0', size: 1 * MiB, wrap: slow }], async (f) => {
    const client = await f.connect('disk0');
    const blocked = client.read(0, 4096);
    await handlerEntered;
    const handshaking = await RawPeer.open(f.socketPath); // a client still in the handshake
    await handshaking.hello();
    const closing = f.server.close();
    release();
    await closing;
    assert.equal(handlerDone, true, 'close resolved while a handler was running');
    assert.equal(f.server.stats().connections, 0);
    await Promise.allSettled([blocked]);
    await assert.rejects(client.read(0, 512), (err: unknown) => err instanceof BoomerangError && err.code === 'NBD_CLOSED');
    await handshaking.closedByServer();
    await assert.rejects(stat(f.socketPath), { code: 'ENOENT' });
    await client.disconnect();
  });
});

test('a stale socket file is replaced; a live one is refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-nbd-'));
  try {
    const socketPath = join(dir, 'nbd.sock');
    // A process killed while listening leaves its socket file behind.
    const script = `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`;
    const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
    await once(child, 'exit');
    assert.ok((await stat(socketPath)).isSocket());
    const disk = await FileDisk.open(join(dir, 'd.img'), { size: 1 * MiB, create: true });
    const server = new NbdServer({ socketPath, exports: [fileExport('disk0', disk)] });
    await server.listen();
    try {
      const other = new NbdServer({ socketPath, exports: [fileExport('disk0', disk)] });
      await assert.rejects(other.listen(), (err: unknown) => err instanceof BoomerangError && err.code === 'NBD_SOCKET_IN_USE');
      const client = await NbdClient.connect({ socketPath, exportName: '' }); // the default export: the only one
      assert.equal(client.size, 1 * MiB);
      await client.disconnect();
    } finally {
      await server.close();
      await disk.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
