import { copyFile, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname } from 'node:path';
import { syncDir } from '../runtime/durable.js';
import type { BlobServiceClient, PageBlobClient } from '@azure/storage-blob';
import { blobServiceClient, type StorageAccountConfig } from '../fabrics/azure/azure-storage.js';
import { PageBlobDisk } from '../fabrics/azure/page-blob-disk.js';
import { withRetry } from '../fabrics/azure/retry.js';
import { isNotFound, serviceCodeOf, storageError } from '../fabrics/azure/storage-errors.js';
import { FileDisk, isAllZero, type BlockDevice } from './disk.js';
import type { AzureConfig } from './azure-config.js';
import { ACCOUNT_NAME, parseDiskLocation, type BlobLocation, type DiskLocation } from './disk-location.js';
import { BoomerangError, ConfigError } from './errors.js';

/**
 * The disk operations the agent and the master target need, for both kinds of disk location
 * (disk-location.ts): open, stat, create, rename, remove, sync and copy. Local files keep their
 * exact behaviour (fsync of the file, of both directories after a rename). Page blobs have no
 * rename: it is a server-side copy followed by a delete of the source (repeatable after a crash:
 * the copy is made again), and a page is durable once its write is acknowledged, so sync is a
 * no-op. Both ends of a blob rename or server-side copy must be in the same account.
 */

/** What a disk is opened for. */
export interface DiskOpenOptions {
  /** Required size (DISK_SIZE otherwise); with `create`, the size of a new disk. */
  size?: number;
  /** Create a missing disk (sparse, all zeroes) of `size` bytes. */
  create?: boolean;
  readOnly?: boolean;
  /**
   * Page blobs: break a lease a writer that is gone left on the blob before taking ours. For the
   * disk's owner (the agent for its disk, the MT for its replicas); a live writer that held the
   * lease has its next write refused, so two writers never interleave.
   */
  takeOver?: boolean;
}

/** Facts about an existing disk. */
export interface DiskFacts {
  size: number;
  /** A regular file, or a page blob: something a disk can live in. */
  usable: boolean;
  /** Why it is not usable, for messages. */
  kind: string;
  /** A page blob that is the destination of a copy that has not succeeded (pending, failed, aborted). */
  copyIncomplete?: boolean;
}

/** Bytes per read/write of a client-side copy. */
const COPY_CHUNK = 4 * 1024 * 1024;
/** Polling interval of a server-side copy Azure runs asynchronously. */
const COPY_POLL_MS = 500;

/** Syncs a directory, so a rename, create or delete in it is durable. */

/** Where disks of either kind are opened, created, renamed, removed and copied. */
export class DiskStore {
  private readonly services = new Map<string, BlobServiceClient>();
  private readonly containers = new Map<string, Promise<void>>();

  /** `accounts`: the storage accounts `azblob://<name>/…` locations may name. */
  constructor(private readonly accounts: Readonly<Record<string, StorageAccountConfig>> = {}) {
    for (const name of Object.keys(accounts)) if (!ACCOUNT_NAME.test(name)) throw new ConfigError('AZURE_CONFIG', `${JSON.stringify(name)} is not an account name (letters, digits, _ and -)`);
  }

  /** A store for local files only (no account configured). */
  static local(): DiskStore {
    return new DiskStore();
  }

  /** Builds the store from a component's `azure` section, reading each account's key (and CA) file. */
  static async fromConfig(config: AzureConfig | undefined): Promise<DiskStore> {
    const accounts: Record<string, StorageAccountConfig> = {};
    for (const [name, a] of Object.entries(config?.accounts ?? {})) {
      const accountKey = (await readConfigFile(a.keyFile, `the key file of storage account ${name}`)).trim();
      if (accountKey.length === 0) throw new ConfigError('AZURE_CONFIG', `the key file ${a.keyFile} of storage account ${name} is empty`);
      accounts[name] = {
        url: a.url,
        accountName: a.accountName,
        accountKey,
        ...(a.caFile === undefined ? {} : { caPem: await readConfigFile(a.caFile, `the CA file of storage account ${name}`) }),
      };
    }
    return new DiskStore(accounts);
  }

  /** Parses `text` and checks that a blob location names a configured account. Sends nothing. */
  locate(text: string): DiskLocation {
    const loc = parseDiskLocation(text);
    if (loc.kind === 'blob' && !Object.hasOwn(this.accounts, loc.account))
      throw new ConfigError('DISK_ACCOUNT_UNKNOWN', `disk location ${loc.text} names storage account ${loc.account}, which is not in this component's azure.accounts`);
    return loc;
  }

  /**
   * The page blob at `text`, for code that talks to Azure Storage itself (agentless replication
   * diffs snapshots). DISK_LOCATION for a file path, DISK_ACCOUNT_UNKNOWN for an unknown account.
   */
  pageBlob(text: string): PageBlobClient {
    const loc = this.locate(text);
    if (loc.kind !== 'blob') throw new ConfigError('DISK_LOCATION', `${loc.text} is not a page blob (azblob://account/container/blob)`);
    return this.blob(loc);
  }

  /** Opens the disk at `loc` (see DiskOpenOptions). */
  async open(loc: DiskLocation, options: DiskOpenOptions = {}): Promise<BlockDevice> {
    if (loc.kind === 'file') {
      return FileDisk.open(loc.path, {
        ...(options.size === undefined ? {} : { size: options.size }),
        ...(options.create ? { create: true } : {}),
        ...(options.readOnly ? { readOnly: true } : {}),
      });
    }
    const client = this.blob(loc);
    const opts = { name: loc.text, ...(options.readOnly ? { readOnly: true } : {}), ...(options.takeOver ? { takeOver: true } : {}) };
    try {
      return await PageBlobDisk.open(client, { ...opts, ...(options.size === undefined ? {} : { size: options.size }) });
    } catch (err) {
      if (!options.create || options.size === undefined || (err as BoomerangError).code !== 'DISK_NOT_FOUND') throw err;
    }
    await this.ensureContainer(loc);
    try {
      return await PageBlobDisk.create(client, options.size, opts);
    } catch (err) {
      // Created by someone else in between: open what is there (its size is checked).
      if ((err as BoomerangError).code !== 'DISK_EXISTS') throw err;
      return PageBlobDisk.open(client, { ...opts, size: options.size });
    }
  }

  /** Facts about the disk at `loc`, or undefined when nothing is there. */
  async stat(loc: DiskLocation): Promise<DiskFacts | undefined> {
    if (loc.kind === 'file') {
      try {
        const st = await stat(loc.path);
        return { size: st.size, usable: st.isFile(), kind: st.isFile() ? 'file' : 'not a regular file' };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
    }
    try {
      const props = await withRetry(() => this.blob(loc).getProperties());
      const page = props.blobType === 'PageBlob';
      const copy = props.copyStatus;
      if (page && copy !== undefined && copy !== 'success') return { size: props.contentLength ?? 0, usable: false, kind: `a page blob whose copy is ${copy}`, copyIncomplete: true };
      return { size: props.contentLength ?? 0, usable: page, kind: page ? 'page blob' : `a ${props.blobType ?? 'blob of unknown type'}, not a page blob` };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storageError(err, `read the properties of ${loc.text}`);
    }
  }

  /** Creates a new, sparse disk of `size` bytes; refused (DISK_EXISTS) when something is there. Durable on return. */
  async create(loc: DiskLocation, size: number): Promise<void> {
    if (loc.kind === 'file') {
      let fh;
      try {
        fh = await open(loc.path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new BoomerangError('DISK_EXISTS', `disk ${loc.path} already exists`, { cause: err });
        throw err;
      }
      try {
        await fh.truncate(size);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await syncDir(dirname(loc.path));
      return;
    }
    await this.ensureContainer(loc);
    await (await PageBlobDisk.create(this.blob(loc), size, { name: loc.text })).close();
  }

  /** Creates the directory (files) or container (blobs) a disk at `loc` goes into. */
  async prepare(loc: DiskLocation): Promise<void> {
    if (loc.kind === 'file') await mkdir(dirname(loc.path), { recursive: true });
    else await this.ensureContainer(loc);
  }

  /**
   * Moves the disk `from` to `to`, replacing what is at `to`; durable on return. Both must be of
   * the same kind (and, for blobs, account): DISK_LOCATION otherwise, before anything changes. A
   * page blob's lease blocks the move (DISK_LEASED) unless `breakLease` (the caller owns the disk).
   */
  async rename(from: DiskLocation, to: DiskLocation, options: { breakLease?: boolean } = {}): Promise<void> {
    DiskStore.checkRenamable(from, to);
    if (from.kind === 'file' && to.kind === 'file') {
      await mkdir(dirname(to.path), { recursive: true });
      await rename(from.path, to.path);
      await syncDir(dirname(to.path));
      if (dirname(from.path) !== dirname(to.path)) await syncDir(dirname(from.path));
      return;
    }
    const src = this.blob(from as BlobLocation);
    await this.freeLease(src, from.text, options.breakLease ?? false);
    await this.serverCopy(from as BlobLocation, to as BlobLocation);
    await this.deleteBlob(src, from.text);
  }

  /** Deletes the disk at `loc` if it exists; durable on return. A page blob's lease is broken first when `breakLease`. */
  async remove(loc: DiskLocation, options: { breakLease?: boolean } = {}): Promise<void> {
    if (loc.kind === 'file') {
      await rm(loc.path, { force: true });
      await syncDir(dirname(loc.path));
      return;
    }
    const client = this.blob(loc);
    if (!(await this.stat(loc))) return;
    await this.freeLease(client, loc.text, options.breakLease ?? false);
    await this.deleteBlob(client, loc.text);
  }

  /** Makes the disk's content durable (fsync of a file; page writes are durable once acknowledged). */
  async sync(loc: DiskLocation): Promise<void> {
    if (loc.kind === 'blob') return;
    const fh = await open(loc.path, constants.O_RDONLY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /**
   * Copies the disk `from` to the new disk `to` (refused with DISK_EXISTS when `to` exists):
   * a reflink (or plain copy) between files, a server-side copy between blobs of one account,
   * otherwise a read/write copy that leaves zero chunks unwritten (sparse).
   */
  async copy(from: DiskLocation, to: DiskLocation): Promise<void> {
    if (from.kind === 'file' && to.kind === 'file') {
      try {
        await copyFile(from.path, to.path, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new BoomerangError('DISK_EXISTS', `disk ${to.path} already exists`, { cause: err });
        throw err;
      }
      return;
    }
    if (await this.stat(to)) throw new BoomerangError('DISK_EXISTS', `disk ${to.text} already exists`);
    if (from.kind === 'blob' && to.kind === 'blob' && from.account === to.account) {
      await this.serverCopy(from, to);
      return;
    }
    const source = await this.open(from, { readOnly: true });
    try {
      await this.prepare(to);
      const target = await this.open(to, { size: source.size, create: true });
      try {
        await copyContent(source, target);
        await target.flush();
      } finally {
        await target.close();
      }
    } finally {
      await source.close();
    }
  }

  /** Refuses (DISK_LOCATION) a rename between kinds or accounts, which would be a full copy, not a rename. */
  static checkRenamable(from: DiskLocation, to: DiskLocation): void {
    const same = from.kind === 'file' ? to.kind === 'file' : to.kind === 'blob' && to.account === from.account;
    if (!same) throw new ConfigError('DISK_LOCATION', `${from.text} cannot be renamed to ${to.text}: both must be local files, or page blobs of one storage account`);
  }

  /** The directory holding a file disk (for volume facts); undefined for a blob. */
  directoryOf(loc: DiskLocation): string | undefined {
    return loc.kind === 'file' ? dirname(loc.path) : undefined;
  }

  private service(account: string): BlobServiceClient {
    let s = this.services.get(account);
    if (!s) {
      const config = this.accounts[account];
      if (!config) throw new ConfigError('DISK_ACCOUNT_UNKNOWN', `storage account ${account} is not in this component's azure.accounts`);
      s = blobServiceClient(config);
      this.services.set(account, s);
    }
    return s;
  }

  private blob(loc: BlobLocation): PageBlobClient {
    return this.service(loc.account).getContainerClient(loc.container).getPageBlobClient(loc.blob);
  }

  private ensureContainer(loc: BlobLocation): Promise<void> {
    const key = `${loc.account}/${loc.container}`;
    let p = this.containers.get(key);
    if (!p) {
      const container = this.service(loc.account).getContainerClient(loc.container);
      p = withRetry(() => container.createIfNotExists()).then(
        () => undefined,
        (err: unknown) => {
          this.containers.delete(key);
          throw storageError(err, `create container ${loc.container} of account ${loc.account}`);
        },
      );
      this.containers.set(key, p);
    }
    return p;
  }

  /** Refuses (DISK_LEASED) a blob someone holds the lease of, or breaks that lease when the caller owns the blob. */
  private async freeLease(client: PageBlobClient, name: string, breakLease: boolean): Promise<void> {
    let props;
    try {
      props = await withRetry(() => client.getProperties());
    } catch (err) {
      throw storageError(err, `read the properties of ${name}`);
    }
    if (props.leaseState !== 'leased' && props.leaseState !== 'breaking') return;
    if (!breakLease) throw new BoomerangError('DISK_LEASED', `${name} is open for writing elsewhere (it holds a lease)`);
    try {
      await withRetry(() => client.getBlobLeaseClient().breakLease(0));
    } catch (err) {
      if (serviceCodeOf(err) !== 'LeaseNotPresentWithLeaseOperation') throw storageError(err, `break the lease of ${name}`);
    }
  }

  /** Server-side copy of a page blob (pages written stay the only pages), waiting until it is done. */
  private async serverCopy(from: BlobLocation, to: BlobLocation): Promise<void> {
    await this.ensureContainer(to);
    const src = this.blob(from);
    const dst = this.blob(to);
    try {
      await withRetry(async () => {
        const poller = await dst.beginCopyFromURL(src.url, { intervalInMs: COPY_POLL_MS });
        const result = await poller.pollUntilDone();
        if (result.copyStatus !== undefined && result.copyStatus !== 'success')
          throw new BoomerangError('DISK_COPY', `the copy of ${from.text} to ${to.text} ended ${result.copyStatus}`, { retryable: true });
      });
    } catch (err) {
      throw storageError(err, `copy ${from.text} to ${to.text}`);
    }
  }

  private async deleteBlob(client: PageBlobClient, name: string): Promise<void> {
    try {
      await withRetry(() => client.deleteIfExists({ deleteSnapshots: 'include' }));
    } catch (err) {
      throw storageError(err, `delete ${name}`);
    }
  }
}

/** Copies every byte of `source` to `target` (same size); all-zero chunks are skipped, `target` being new and zero. */
async function copyContent(source: BlockDevice, target: BlockDevice): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(COPY_CHUNK, source.size));
  for (let at = 0; at < source.size; at += COPY_CHUNK) {
    const chunk = buf.subarray(0, Math.min(COPY_CHUNK, source.size - at));
    await source.readInto(chunk, at);
    // write() may keep the buffer until it resolves: it is awaited before the next read.
    if (!isAllZero(chunk)) await target.write(at, chunk);
  }
}

async function readConfigFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError('AZURE_CONFIG', `cannot read ${what} (${path}): ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}
