import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, open, rename, writeFile } from 'node:fs/promises';
import { ConfigError, errorMessage } from '../replication/errors.js';

/**
 * Shared bearer tokens (agent → PS, PS → MT, control APIs). A token is a secret: compare it in
 * constant time, keep its file private, and never log it (use redact).
 */

export function generateToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Constant time whatever the lengths: the digests are always 32 bytes. */
export function tokenMatches(presented: string, expected: string): boolean {
  if (expected.length === 0) return false; // a missing token must never match a missing token
  const a = createHash('sha256').update(presented, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** Enough to tell tokens apart in a message, not enough to use one. */
export function redact(s: string): string {
  return s.length > 8 ? `${s.slice(0, 4)}…` : '…';
}

export async function readTokenFile(path: string): Promise<string> {
  let text: string;
  try {
    const fh = await open(path, 'r');
    try {
      // Checked on the open handle, so the file cannot be swapped between check and read.
      const st = await fh.stat();
      if (!st.isFile()) throw new ConfigError('TOKEN_FILE', `token file ${path} is not a regular file`);
      // Windows has no POSIX modes; its ACLs are out of scope here.
      if (process.platform !== 'win32' && (st.mode & 0o077) !== 0)
        throw new ConfigError('TOKEN_FILE', `token file ${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${path}`);
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError('TOKEN_FILE', `cannot read token file ${path}: ${errorMessage(err)}`, { cause: err });
  }
  const token = text.trim();
  if (token.length === 0) throw new ConfigError('TOKEN_FILE', `token file ${path} is empty`);
  return token;
}

export async function writeTokenFile(path: string, token: string): Promise<void> {
  if (token.trim().length === 0) throw new ConfigError('TOKEN_FILE', 'refusing to write an empty token');
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${token}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600); // the file may have existed with another mode
  await rename(tmp, path);
}
