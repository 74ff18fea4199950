import { isAbsolute, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BoomerangError } from '../../replication/errors.js';
import { retrieveFromContainer } from './property-collector.js';
import type { VsphereSession } from './session.js';
import { child, textOf, type MoRef } from './xml.js';

/** A malformed `[datastore] path` string, or one that cannot be mapped to a local file. */
export class DatastorePathError extends BoomerangError {}

/** A file on a datastore, as vSphere names it: `[datastore] dir/file.vmdk`. */
export interface DatastorePath {
  readonly datastore: string;
  /** Relative to the datastore's root, `/`-separated; empty for the root itself. */
  readonly path: string;
}

const MAX_LENGTH = 4096;

/**
 * Parses `[ds] dir/x.vmdk`. Refused: a missing or empty `[datastore]`, a `]` or control character
 * in the name, an absolute path, `.`/`..` or empty segments (a path must name one place under the
 * datastore, so that its local mapping cannot leave the datastore's directory).
 */
export function parseDatastorePath(text: string): DatastorePath {
  const bad = (why: string): DatastorePathError => new DatastorePathError('VSPHERE_BAD_DATASTORE_PATH', `datastore path ${JSON.stringify(text.slice(0, 200))}: ${why}`);
  if (text.length > MAX_LENGTH) throw bad(`longer than ${MAX_LENGTH} characters`);
  if (/\p{Cc}/u.test(text)) throw bad('contains a control character');
  const m = /^\[([^\]]*)\](.*)$/s.exec(text);
  if (!m) throw bad('does not start with [datastore]');
  const datastore = m[1] ?? '';
  if (datastore.trim() === '') throw bad('the datastore name is empty');
  if (datastore.includes('[')) throw bad('the datastore name contains "["');
  const path = (m[2] ?? '').replace(/^ /, '');
  if (path === '') return { datastore, path };
  if (path.startsWith('/') || path.startsWith(' ')) throw bad('the path must be relative to the datastore');
  const segments = path.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) throw bad('the path has an empty, "." or ".." segment');
  if (segments.some((s) => s.includes('\\'))) throw bad('the path contains a backslash');
  return { datastore, path };
}

/** `[ds] dir/x.vmdk`; the inverse of parseDatastorePath. */
export function formatDatastorePath(p: DatastorePath): string {
  return p.path === '' ? `[${p.datastore}]` : `[${p.datastore}] ${p.path}`;
}

/** The directory part of a datastore path (`[ds] dir/x.vmdk` → `[ds] dir`). */
export function datastoreDirectory(p: DatastorePath): DatastorePath {
  const i = p.path.lastIndexOf('/');
  return { datastore: p.datastore, path: i < 0 ? '' : p.path.slice(0, i) };
}

/**
 * The local directory behind a datastore URL, when the datastore is a directory of this machine
 * (vcsim's datastores, `file://` URLs). A real ESXi datastore (`ds:///vmfs/volumes/…`) is not:
 * there the MT reaches the disk as the hot-added device found by its UUID (deviceForDiskUuid).
 */
export function localDatastoreRoot(datastoreUrl: string): string {
  if (datastoreUrl.startsWith('file:')) return fileURLToPath(datastoreUrl);
  if (isAbsolute(datastoreUrl)) return resolve(datastoreUrl);
  throw new DatastorePathError('VSPHERE_DATASTORE_NOT_LOCAL', `datastore URL ${datastoreUrl} is not a local directory; the MT must use the hot-added device (by disk UUID)`);
}

/** The local file for a datastore path under a datastore whose URL is `datastoreUrl`. */
export function localFileFor(datastoreUrl: string, p: DatastorePath): string {
  const root = localDatastoreRoot(datastoreUrl);
  const file = join(root, ...p.path.split('/'));
  // parseDatastorePath already refuses `..`; this guards values built by hand.
  if (file !== root && !file.startsWith(root.endsWith(sep) ? root : root + sep)) {
    throw new DatastorePathError('VSPHERE_BAD_DATASTORE_PATH', `${formatDatastorePath(p)} leaves the datastore`);
  }
  return file;
}

/** A datastore found by name: its reference and `summary.url`. */
export interface DatastoreLocation {
  ref: MoRef;
  name: string;
  url: string;
}

/**
 * Finds a datastore by name under `container` (a datacenter — names are unique within one — or the
 * root folder). Not found → DatastorePathError `VSPHERE_DATASTORE_NOT_FOUND`.
 */
export async function findDatastore(session: VsphereSession, name: string, container: MoRef = session.content.rootFolder, signal?: AbortSignal): Promise<DatastoreLocation> {
  const all = await retrieveFromContainer(session, container, [{ type: 'Datastore', paths: ['summary'] }], signal === undefined ? {} : { signal });
  const found = all.filter((o) => textOf(child(o.props.get('summary'), 'name')) === name);
  const [first] = found;
  if (!first) throw new DatastorePathError('VSPHERE_DATASTORE_NOT_FOUND', `no datastore named ${name}`);
  if (found.length > 1) throw new DatastorePathError('VSPHERE_DATASTORE_AMBIGUOUS', `${found.length} datastores are named ${name}; name the datacenter`);
  return { ref: first.obj, name, url: textOf(child(first.props.get('summary'), 'url')) ?? '' };
}

/**
 * Where the MT writes the file named by `[ds] dir/x.vmdk` when the datastore is a local directory
 * (vcsim): the datastore's URL joined with the path.
 */
export async function localFileForDatastorePath(session: VsphereSession, text: string, options: { container?: MoRef; signal?: AbortSignal } = {}): Promise<string> {
  const p = parseDatastorePath(text);
  if (p.path === '') throw new DatastorePathError('VSPHERE_BAD_DATASTORE_PATH', `${text} names the datastore, not a file`);
  const ds = await findDatastore(session, p.datastore, options.container, options.signal);
  return localFileFor(ds.url, p);
}
