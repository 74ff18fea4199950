import { randomBytes, randomInt, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * The vault passphrase: what an installer types to register a component. Stored as a scrypt hash
 * for checking; the parameters travel with the hash so they can be raised later.
 */

const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789'; // no 0/o, 1/l/i: read aloud and typed by hand
const GROUPS = 5;
const GROUP_LENGTH = 6;
const PARAMS = { N: 16_384, r: 8, p: 1 } as const;
const KEY_LENGTH = 32;

/** About 148 bits: 30 characters from 31, in dash-separated groups. */
export function generatePassphrase(): string {
  const groups: string[] = [];
  for (let g = 0; g < GROUPS; g++) {
    let s = '';
    for (let i = 0; i < GROUP_LENGTH; i++) s += ALPHABET[randomInt(ALPHABET.length)];
    groups.push(s);
  }
  return groups.join('-');
}

function derive(passphrase: string, salt: Buffer, params: ScryptOptions & { N: number }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(passphrase.normalize('NFC'), salt, KEY_LENGTH, { ...params, maxmem: 64 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

export interface PassphraseHash {
  hash: string;
  salt: string;
}

export async function hashPassphrase(passphrase: string): Promise<PassphraseHash> {
  const salt = randomBytes(16);
  const key = await derive(passphrase, salt, PARAMS);
  return { hash: `scrypt:${PARAMS.N}:${PARAMS.r}:${PARAMS.p}:${key.toString('base64')}`, salt: salt.toString('base64') };
}

export async function passphraseMatches(presented: string, stored: PassphraseHash): Promise<boolean> {
  const [scheme, n, r, p, expected] = stored.hash.split(':');
  if (scheme !== 'scrypt' || expected === undefined) return false;
  const key = await derive(presented, Buffer.from(stored.salt, 'base64'), { N: Number(n), r: Number(r), p: Number(p) });
  const want = Buffer.from(expected, 'base64');
  return want.length === key.length && timingSafeEqual(key, want);
}
