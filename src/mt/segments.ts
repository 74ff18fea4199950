import { open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { BoomerangError, CorruptionError } from '../replication/errors.js';
import { formatHex16, parseHex16 } from '../replication/position.js';
import { syncDir } from '../runtime/durable.js';

/**
 * The journal's files: segments named by a fixed-width hex index (`0000000000000007.seg`), so
 * name order is journal order. Records are appended to the newest segment only; a new segment is
 * written aside, synced and renamed into place, so it always starts with a complete record.
 */
const SUFFIX = '.seg';
const TMP_SUFFIX = '.seg.tmp';

export function segmentName(index: number): string {
  return formatHex16(index) + SUFFIX;
}

export interface SegmentFile {
  readonly index: number;
  size: number;
}

/** Where a record sits: segment, byte offset, length including its header. */
export interface RecordRef {
  segment: number;
  offset: number;
  length: number;
}


/** Writes every byte of `parts` at `position` (writev may write less than asked). */
async function writeAll(fh: FileHandle, parts: readonly Buffer[], position: number): Promise<void> {
  let rest = parts.filter((p) => p.length > 0);
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest, position);
    // A regular file that takes no bytes has no room left; report it as such.
    if (bytesWritten === 0) throw Object.assign(new Error('write made no progress'), { code: 'ENOSPC' });
    position += bytesWritten;
    let n = bytesWritten;
    let i = 0;
    for (; i < rest.length; i++) {
      const len = (rest[i] as Buffer).length;
      if (n < len) break;
      n -= len;
    }
    rest = rest.slice(i);
    if (n > 0 && rest[0]) rest[0] = rest[0].subarray(n);
  }
}

export class SegmentStore {
  private appendFh: FileHandle | undefined;
  private readonly readers = new Map<number, Promise<FileHandle>>();

  private constructor(
    readonly dir: string,
    private readonly readOnly: boolean,
    private readonly files: SegmentFile[],
  ) {}

  /** Lists the segments of `dir`. A writer also removes segments left half-created by a crash. */
  static async open(dir: string, options: { readOnly: boolean }): Promise<SegmentStore> {
    const files: SegmentFile[] = [];
    for (const name of (await readdir(dir)).sort()) {
      if (name.endsWith(TMP_SUFFIX)) {
        if (!options.readOnly) await rm(join(dir, name), { force: true });
        continue;
      }
      if (!name.endsWith(SUFFIX)) continue;
      const index = parseHex16(name.slice(0, -SUFFIX.length));
      if (index === undefined) continue;
      const fh = await open(join(dir, name), constants.O_RDONLY);
      try {
        files.push({ index, size: (await fh.stat()).size });
      } finally {
        await fh.close();
      }
    }
    return new SegmentStore(dir, options.readOnly, files);
  }

  list(): ReadonlyArray<Readonly<SegmentFile>> {
    return this.files;
  }

  newest(): Readonly<SegmentFile> {
    return this.last();
  }

  private last(): SegmentFile {
    const f = this.files.at(-1);
    if (!f) throw new CorruptionError('JOURNAL_EMPTY', `journal ${this.dir} has no segments`);
    return f;
  }

  totalBytes(): number {
    let n = 0;
    for (const f of this.files) n += f.size;
    return n;
  }

  private path(index: number): string {
    return join(this.dir, segmentName(index));
  }

  private file(index: number): SegmentFile {
    const f = this.files.find((x) => x.index === index);
    if (!f) throw new BoomerangError('JOURNAL_SEGMENT', `journal segment ${segmentName(index)} does not exist`);
    return f;
  }

  private async appender(): Promise<FileHandle> {
    if (this.readOnly) throw new BoomerangError('JOURNAL_READ_ONLY', `journal ${this.dir} is open read-only`);
    this.appendFh ??= await open(this.path(this.newest().index), constants.O_RDWR);
    return this.appendFh;
  }

  /**
   * Appends one record (not yet durable: call sync). On failure the partial record is cut off
   * again, so the segment ends where it did; if even that fails the error says so.
   */
  async append(parts: readonly Buffer[]): Promise<RecordRef> {
    const fh = await this.appender();
    const f = this.last();
    const offset = f.size;
    let length = 0;
    for (const p of parts) length += p.length;
    try {
      await writeAll(fh, parts, offset);
    } catch (err) {
      try {
        await fh.truncate(offset);
      } catch (cut) {
        throw new BoomerangError('JOURNAL_WRITE', `append to ${segmentName(f.index)} failed and its partial record could not be cut off`, {
          cause: new AggregateError([err, cut]),
        });
      }
      throw err;
    }
    f.size = offset + length;
    return { segment: f.index, offset, length };
  }

  /** Makes every append so far durable. fdatasync suffices: it covers the size of an appended file. */
  async sync(): Promise<void> {
    await (await this.appender()).datasync();
  }

  /** Cuts the newest segment back to `size` bytes (records are only ever removed from the end). */
  async truncateNewest(size: number): Promise<void> {
    await (await this.appender()).truncate(size);
    this.last().size = size;
  }

  /** Creates segment `index` holding `firstRecord`, durably, and makes it the newest. */
  async create(index: number, firstRecord: readonly Buffer[]): Promise<void> {
    if (this.readOnly) throw new BoomerangError('JOURNAL_READ_ONLY', `journal ${this.dir} is open read-only`);
    const last = this.files.at(-1);
    if (last && index <= last.index) throw new BoomerangError('JOURNAL_SEGMENT', `segment ${index} would not be the newest`);
    const tmp = join(this.dir, formatHex16(index) + TMP_SUFFIX);
    let size = 0;
    try {
      const fh = await open(tmp, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o600);
      try {
        await writeAll(fh, firstRecord, 0);
        await fh.datasync();
        size = (await fh.stat()).size;
      } finally {
        await fh.close();
      }
      await rename(tmp, this.path(index));
      await syncDir(this.dir);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    await this.appendFh?.close();
    this.appendFh = undefined;
    this.files.push({ index, size });
  }

  async remove(index: number): Promise<void> {
    const f = this.file(index);
    if (f === this.last()) {
      await this.appendFh?.close();
      this.appendFh = undefined;
    }
    const reader = this.readers.get(index);
    this.readers.delete(index);
    await (await reader)?.close();
    await rm(this.path(index), { force: true });
    await syncDir(this.dir);
    this.files.splice(this.files.indexOf(f), 1);
  }

  /** Reads `length` bytes at `offset` of a segment; the range must lie within the segment. */
  async read(index: number, offset: number, length: number): Promise<Buffer> {
    let opening = this.readers.get(index);
    if (!opening) {
      opening = open(this.path(index), constants.O_RDONLY);
      this.readers.set(index, opening);
      opening.catch(() => this.readers.delete(index));
    }
    const fh = await opening;
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0)
        throw new CorruptionError('JOURNAL_SHORT', `journal segment ${segmentName(index)} ends before offset ${offset + length}`);
      done += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    await this.appendFh?.close();
    this.appendFh = undefined;
    const readers = [...this.readers.values()];
    this.readers.clear();
    for (const fh of await Promise.allSettled(readers)) if (fh.status === 'fulfilled') await fh.value.close();
  }
}
