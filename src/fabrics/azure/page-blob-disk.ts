import { randomUUID } from 'node:crypto';
import type { PageBlobClient } from '@azure/storage-blob';
import type { BlockDevice } from '../../replication/disk.js';
import { BoomerangError } from '../../replication/errors.js';
import { Limiter } from './limiter.js';
import { DEFAULT_RETRY, withRetry, type RetryPolicy } from './retry.js';
import { isLeaseConflict, isNotFound, serviceCodeOf, statusOf, storageError } from './storage-errors.js';

/**
 * A disk on an Azure page blob (a managed disk's storage, or Azurite in tests), behind the same
 * BlockDevice interface as a file. Azure's rules are enforced here before anything is sent, since
 * Azurite accepts some requests Azure refuses: writes and trims 512-byte aligned, at most 4 MiB
 * per Put Page (larger writes are split), blob size a multiple of 512 up to 8 TiB.
 *
 * A disk opened for writing holds an infinite lease on the blob and sends the lease id with every
 * write, so a second writer is refused (DISK_LEASED) instead of interleaving its writes with ours.
 * Requests in flight are bounded (`maxInFlight`); transient failures are retried with backoff.
 * Page writes are durable once acknowledged, so flush() only waits for writes in flight.
 */

/** A page: the unit of alignment of every write and trim. */
export const PAGE_SIZE = 512;
/** Largest Put Page Azure accepts. */
export const MAX_PAGE_WRITE = 4 * 1024 * 1024;
/** Largest page blob Azure accepts. */
export const MAX_PAGE_BLOB_SIZE = 8 * 1024 ** 4;
/** Reads are split too, so that one large read uses several requests in flight. */
const READ_CHUNK = 4 * 1024 * 1024;

/** How a page blob disk is opened. */
export interface PageBlobDiskOptions {
  /** Requests sent to the service at once, at most. Default 8. */
  maxInFlight?: number;
  retry?: RetryPolicy;
  /** Reads only: no lease is taken and writes are refused. */
  readOnly?: boolean;
  /**
   * Breaks a lease left by a writer that is gone (a crashed MT) before taking ours. Only for the
   * component that owns the disk; it would also break a live writer's lease.
   */
  takeOver?: boolean;
  /** The blob must have exactly this size (DISK_SIZE otherwise). */
  size?: number;
  /** Name in messages; default the blob's name. */
  name?: string;
}

/** Throws unless `size` is a valid page blob size. */
export function checkPageBlobSize(size: number): void {
  if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0 || size > MAX_PAGE_BLOB_SIZE)
    throw new BoomerangError('DISK_SIZE', `page blob size ${size} must be a positive multiple of ${PAGE_SIZE} of at most ${MAX_PAGE_BLOB_SIZE} bytes`);
}

/** A BlockDevice on one page blob (or, read-only, on one of its snapshots). */
export class PageBlobDisk implements BlockDevice {
  private currentSize: number;
  private readonly limiter: Limiter;
  private readonly retry: RetryPolicy;
  private readonly inFlight = new Set<Promise<void>>();
  /** The first write failure since the last flush: flush reports it, as fsync would. */
  private failure: BoomerangError | undefined;
  private closed = false;

  private constructor(
    readonly client: PageBlobClient,
    readonly name: string,
    size: number,
    /** Our lease on the blob; undefined when read-only. */
    private readonly leaseId: string | undefined,
    options: PageBlobDiskOptions,
  ) {
    this.currentSize = size;
    this.limiter = new Limiter(options.maxInFlight ?? 8);
    this.retry = options.retry ?? DEFAULT_RETRY;
  }

  /** Creates a new, empty (all zero, sparse) page blob of `size` bytes and opens it. */
  static async create(client: PageBlobClient, size: number, options: PageBlobDiskOptions = {}): Promise<PageBlobDisk> {
    checkPageBlobSize(size);
    const name = options.name ?? client.name;
    try {
      // If-None-Match: * — never replace an existing disk.
      await withRetry(() => client.create(size, { conditions: { ifNoneMatch: '*' } }), options.retry);
    } catch (err) {
      if (serviceCodeOf(err) === 'BlobAlreadyExists' || statusOf(err) === 409 || statusOf(err) === 412)
        throw new BoomerangError('DISK_EXISTS', `page blob ${name} already exists`, { cause: err });
      throw storageError(err, `create page blob ${name}`);
    }
    return PageBlobDisk.open(client, { ...options, size });
  }

  /** Opens an existing page blob; its size comes from the blob's properties. */
  static async open(client: PageBlobClient, options: PageBlobDiskOptions = {}): Promise<PageBlobDisk> {
    const name = options.name ?? client.name;
    let props;
    try {
      props = await withRetry(() => client.getProperties(), options.retry);
    } catch (err) {
      throw storageError(err, `open page blob ${name}`);
    }
    if (props.blobType !== 'PageBlob') throw new BoomerangError('DISK_NOT_PAGE_BLOB', `blob ${name} is a ${props.blobType ?? 'blob of unknown type'}, not a page blob`);
    const size = props.contentLength ?? 0;
    if (options.size !== undefined && size !== options.size) throw new BoomerangError('DISK_SIZE', `page blob ${name} has ${size} bytes, expected ${options.size}`);
    const leaseId = options.readOnly ? undefined : await PageBlobDisk.acquireLease(client, name, options);
    return new PageBlobDisk(client, name, size, leaseId, options);
  }

  private static async acquireLease(client: PageBlobClient, name: string, options: PageBlobDiskOptions): Promise<string> {
    const lease = client.getBlobLeaseClient(randomUUID());
    try {
      if (options.takeOver) {
        try {
          await withRetry(() => lease.breakLease(0), options.retry);
        } catch (err) {
          if (serviceCodeOf(err) !== 'LeaseNotPresentWithLeaseOperation') throw err;
        }
      }
      await withRetry(() => lease.acquireLease(-1), options.retry);
    } catch (err) {
      if (isLeaseConflict(err)) throw new BoomerangError('DISK_LEASED', `page blob ${name} is open for writing elsewhere (it holds a lease)`, { cause: err });
      throw storageError(err, `lease page blob ${name}`);
    }
    return lease.leaseId;
  }

  get size(): number {
    return this.currentSize;
  }

  /** Whether this disk holds the blob's write lease. */
  get writable(): boolean {
    return this.leaseId !== undefined;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(buf, offset);
    return buf;
  }

  async readInto(into: Buffer, offset: number): Promise<void> {
    this.checkOpen();
    this.checkRange(offset, into.length, 'read');
    const parts: Promise<void>[] = [];
    for (let at = 0; at < into.length; at += READ_CHUNK) {
      const piece = into.subarray(at, Math.min(into.length, at + READ_CHUNK));
      parts.push(this.request(`read ${piece.length} bytes at ${offset + at}`, () => this.readPiece(piece, offset + at)));
    }
    await settleAll(parts);
  }

  private async readPiece(into: Buffer, offset: number): Promise<void> {
    const res = await this.client.download(offset, into.length);
    const body = res.readableStreamBody;
    if (!body) throw new BoomerangError('AZURE_STORAGE', 'the read answer has no body', { retryable: true });
    let at = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (at + chunk.length > into.length) throw new BoomerangError('AZURE_STORAGE', `the read answer is longer than the ${into.length} bytes asked for`);
      chunk.copy(into, at);
      at += chunk.length;
    }
    if (at !== into.length) throw new BoomerangError('AZURE_STORAGE', `the read answer has ${at} of ${into.length} bytes`, { retryable: true });
  }

  /** Writes `data` at `offset`; `data` must not change until this resolves. */
  async write(offset: number, data: Buffer): Promise<void> {
    this.checkWrite(offset, data.length, 'write');
    const conditions = { leaseId: this.leaseId };
    const parts: Promise<void>[] = [];
    for (let at = 0; at < data.length; at += MAX_PAGE_WRITE) {
      const piece = data.subarray(at, Math.min(data.length, at + MAX_PAGE_WRITE));
      const where = offset + at;
      parts.push(this.tracked(this.request(`write ${piece.length} bytes at ${where}`, () => this.client.uploadPages(piece, where, piece.length, { conditions }))));
    }
    await settleAll(parts);
  }

  /** Clears the pages (Clear Page): they read as zeroes and stop counting as written. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.checkWrite(offset, length, 'trim');
    if (length === 0) return;
    const conditions = { leaseId: this.leaseId };
    await this.tracked(this.request(`clear ${length} bytes at ${offset}`, () => this.client.clearPages(offset, length, { conditions })));
  }

  /** Waits for every write issued before the call; throws the first write failure since the last flush. */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
    const failure = this.failure;
    this.failure = undefined;
    if (failure) throw failure;
  }

  /** Changes the blob's size (growing adds zeroes, shrinking drops the tail). */
  async resize(size: number): Promise<void> {
    this.checkOpen();
    checkPageBlobSize(size);
    if (this.leaseId === undefined) throw new BoomerangError('DISK_READ_ONLY', `page blob ${this.name} is open read-only`);
    await this.flush();
    const conditions = { leaseId: this.leaseId };
    await this.request(`resize to ${size} bytes`, () => this.client.resize(size, { conditions }));
    this.currentSize = size;
  }

  /** Flushes, then releases the lease. Later calls do nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    let failure: unknown;
    try {
      await this.flush();
    } catch (err) {
      failure = err;
    }
    if (this.leaseId !== undefined) {
      const lease = this.client.getBlobLeaseClient(this.leaseId);
      try {
        await withRetry(() => lease.releaseLease(), this.retry);
      } catch (err) {
        // A blob deleted meanwhile has no lease left to release.
        if (!isNotFound(err)) failure ??= storageError(err, `release the lease of page blob ${this.name}`);
      }
    }
    if (failure) throw failure;
  }

  /** One storage request: waits for a slot, retries transient failures, maps the error. */
  private async request(what: string, send: () => Promise<unknown>): Promise<void> {
    try {
      await this.limiter.run(() => withRetry(send, this.retry));
    } catch (err) {
      throw storageError(err, `${what} of page blob ${this.name}`);
    }
  }

  /** Remembers a write until it settles, for flush(). */
  private tracked(write: Promise<void>): Promise<void> {
    const settled = write.then(
      () => undefined,
      (err: BoomerangError) => {
        this.failure ??= err;
      },
    );
    this.inFlight.add(settled);
    void settled.finally(() => this.inFlight.delete(settled));
    return write;
  }

  private checkOpen(): void {
    if (this.closed) throw new BoomerangError('DISK_CLOSED', `page blob ${this.name} is closed`);
  }

  private checkRange(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.currentSize)
      throw new BoomerangError('DISK_RANGE', `${what} of ${length} bytes at ${offset} is outside page blob ${this.name} (${this.currentSize} bytes)`);
  }

  private checkWrite(offset: number, length: number, what: string): void {
    this.checkOpen();
    if (this.leaseId === undefined) throw new BoomerangError('DISK_READ_ONLY', `page blob ${this.name} is open read-only`);
    this.checkRange(offset, length, what);
    if (offset % PAGE_SIZE !== 0 || length % PAGE_SIZE !== 0)
      throw new BoomerangError('DISK_UNALIGNED', `${what} of ${length} bytes at ${offset} on page blob ${this.name} is not aligned to ${PAGE_SIZE} bytes`);
  }
}

/** Waits for every part (none is left running unobserved) and throws the first failure. */
async function settleAll(parts: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(parts);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}
