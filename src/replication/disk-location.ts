import { resolve as resolvePath } from 'node:path';
import { ConfigError } from './errors.js';

/**
 * Where a disk lives: a local file (any path, as before) or an Azure page blob named
 * `azblob://<account>/<container>/<blob>`, where `<account>` is the name of an entry of the
 * component's `azure.accounts` config section (endpoint and key file), never a host. Keys, SAS
 * tokens and user info never appear in a location: one that carries a query, a fragment, `@` or
 * a percent escape is refused.
 */

/** The URL scheme of a page-blob disk location. */
export const AZBLOB_SCHEME = 'azblob://';

/** A disk in a local file; `path` is absolute. */
export interface FileLocation {
  kind: 'file';
  path: string;
  /** Canonical text: the absolute path. */
  text: string;
}

/** A disk in a page blob of a configured storage account. */
export interface BlobLocation {
  kind: 'blob';
  /** Name of the account in the config's `azure.accounts`. */
  account: string;
  container: string;
  blob: string;
  /** Canonical text: azblob://account/container/blob. */
  text: string;
}

export type DiskLocation = FileLocation | BlobLocation;

/** Names of the config's `azure.accounts` entries. */
export const ACCOUNT_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
/** Azure's container naming rules: 3–63 lowercase letters, digits and single hyphens. */
const CONTAINER_NAME = /^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/;
/** One path segment of a blob name: kept to characters that need no escaping anywhere. */
const BLOB_SEGMENT = /^[A-Za-z0-9._-]+$/;
const MAX_BLOB_NAME = 1024;
/** Any other URL-like scheme (`https://…`) is refused rather than taken for a relative path. */
const OTHER_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;

function malformed(text: string, why: string): ConfigError {
  return new ConfigError('DISK_LOCATION', `disk location ${JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}…` : text)} is not valid: ${why}`);
}

/** Parses a disk location; a malformed one is a DISK_LOCATION error. Does not check the account. */
export function parseDiskLocation(text: string): DiskLocation {
  if (typeof text !== 'string' || text.length === 0) throw malformed(String(text), 'it is empty');
  if (text.includes('\0')) throw malformed(text, 'it contains a NUL character');
  if (text.slice(0, AZBLOB_SCHEME.length).toLowerCase() !== AZBLOB_SCHEME) {
    if (OTHER_SCHEME.test(text)) throw malformed(text, `only local paths and ${AZBLOB_SCHEME}<account>/<container>/<blob> are disk locations`);
    const path = resolvePath(text);
    return { kind: 'file', path, text: path };
  }
  if (!text.startsWith(AZBLOB_SCHEME)) throw malformed(text, `the scheme must be written ${AZBLOB_SCHEME} (lowercase)`);
  const rest = text.slice(AZBLOB_SCHEME.length);
  if (/[?#@%\\\s]/.test(rest)) throw malformed(text, 'a location carries no query, fragment, credentials, escapes or spaces (keys belong in the account’s key file)');
  const [account = '', container = '', ...blobParts] = rest.split('/');
  if (!ACCOUNT_NAME.test(account)) throw malformed(text, `${JSON.stringify(account)} is not an account name (letters, digits, _ and -)`);
  if (!CONTAINER_NAME.test(container)) throw malformed(text, `${JSON.stringify(container)} is not a container name (3–63 lowercase letters, digits and single hyphens)`);
  if (blobParts.length === 0) throw malformed(text, 'the blob name is missing');
  const blob = blobParts.join('/');
  if (blob.length > MAX_BLOB_NAME) throw malformed(text, `the blob name is longer than ${MAX_BLOB_NAME} characters`);
  for (const seg of blobParts) {
    if (!BLOB_SEGMENT.test(seg) || seg === '.' || seg === '..') throw malformed(text, `${JSON.stringify(seg)} is not a blob name segment (letters, digits, ., _ and -; no empty, . or .. segments)`);
  }
  return { kind: 'blob', account, container, blob, text: `${AZBLOB_SCHEME}${account}/${container}/${blob}` };
}

/** The location next to `loc` with `suffix` appended to its name (a temporary copy's). */
export function siblingLocation(loc: DiskLocation, suffix: string): DiskLocation {
  return parseDiskLocation(`${loc.text}${suffix}`);
}
