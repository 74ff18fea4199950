import { open, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { BoomerangError } from './errors.js';

/**
 * The disk interface every component writes through: the agent's backing disk, the MT's target
 * disk, a restored copy. Offsets and lengths are bytes; callers keep them within `size`.
 * Later fabrics (page blobs, VMDKs on a datastore) implement the same interface.
 */
export interface BlockDevice {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /** Reads into `into` (its whole length) at `offset`; avoids an allocation on hot paths. */
  readInto(into: Buffer, offset: number): Promise<void>;
  write(offset: number, data: Buffer): Promise<void>;
  /** Makes the range read as zeroes (hole punching is a later optimisation; zeroes are written). */
  writeZeroes(offset: number, length: number): Promise<void>;
  /** Everything written so far is durable when this resolves. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

const ZERO_CHUNK = Buffer.alloc(1024 * 1024);

/** A disk backed by a regular file (sparse where never written). */
export class FileDisk implements BlockDevice {
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  /**
   * Opens an existing disk file. With `create`, a missing file is created sparse with `size`
   * bytes; an existing one must already have that size unless `size` is omitted.
   */
  static async open(path: string, options: { size?: number; create?: boolean; readOnly?: boolean } = {}): Promise<FileDisk> {
    const flags = options.readOnly ? constants.O_RDONLY : constants.O_RDWR | (options.create ? constants.O_CREAT : 0);
    let fh: FileHandle;
    try {
      fh = await open(path, flags, 0o600);
    } catch (err) {
      throw new BoomerangError('DISK_OPEN', `cannot open disk ${path}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const st = await fh.stat();
      let size = st.size;
      if (options.size !== undefined) {
        if (options.create && size === 0 && options.size > 0) {
          await fh.truncate(options.size);
          size = options.size;
        } else if (size !== options.size) {
          throw new BoomerangError('DISK_SIZE', `disk ${path} has ${size} bytes, expected ${options.size}`);
        }
      }
      return new FileDisk(path, fh, size);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(buf, offset);
    return buf;
  }

  async readInto(into: Buffer, offset: number): Promise<void> {
    let done = 0;
    while (done < into.length) {
      const { bytesRead } = await this.fh.read(into, done, into.length - done, offset + done);
      if (bytesRead === 0) {
        into.fill(0, done); // past EOF of a file shorter than the disk reads as zeroes
        return;
      }
      done += bytesRead;
    }
  }

  async write(offset: number, data: Buffer): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    for (let at = 0; at < length; at += ZERO_CHUNK.length) {
      await this.write(offset + at, ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.length, length - at)));
    }
  }

  async flush(): Promise<void> {
    await this.fh.datasync();
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

export function isAllZero(buf: Buffer): boolean {
  // Compare 1 MiB at a time against a shared zero buffer: fast (memcmp) and allocation-free.
  for (let at = 0; at < buf.length; at += ZERO_CHUNK.length) {
    const end = Math.min(buf.length, at + ZERO_CHUNK.length);
    if (!buf.subarray(at, end).equals(ZERO_CHUNK.subarray(0, end - at))) return false;
  }
  return true;
}
