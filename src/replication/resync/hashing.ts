import { createCipheriv, createSecretKey, hash, randomBytes, type KeyObject } from 'node:crypto';
import { isAllZero } from '../disk.js';
import { bitmapBytes, setBit } from './bits.js';
import { ResyncError } from './errors.js';

/**
 * Digests that decide whether two regions or blocks are equal. Measured here (AMD EPYC with
 * SHA-NI, AES-NI and VPCLMULQDQ, node 20, one call per piece):
 *
 *   piece              4 KiB      32 KiB     64 KiB     1 MiB
 *   gmac-aes128        1.1 GB/s   4.5 GB/s   5.7 GB/s   8.3 GB/s
 *   sha256 (SHA-NI)    1.3 GB/s   1.7 GB/s   1.7 GB/s   1.8 GB/s
 *   at 1 MiB: sha1 1.9, blake2b512 1.0, sha512 0.9, md5 0.8, sha3-256 0.5, crc32 (weak) 4.2 GB/s
 *
 * A whole resync (2 GiB, 1% of blocks changed, both ends on one machine, page cache warm) took
 * 1.55 s with gmac-aes128 and 2.40 s with sha256. GMAC is AES-128-GCM over the data as associated
 * data (nothing encrypted) under a fresh random key per run that only the two ends know (it
 * travels inside TLS). GHASH is a universal hash: two different inputs of n 16-byte blocks
 * collide with probability at most (n + 1) / 2^128 over the key — about 2^-117 for a 32 KiB
 * region, 2^-120 for a 4 KiB block — whatever the data, even data crafted by the guest, which
 * never sees the key or a digest: a proven bound where an unkeyed hash only has a belief.
 * (Poly1305 through chacha20-poly1305 is ~15% faster at 32 KiB but its bound is ~2^-89.) A weak
 * checksum such as crc32 must never decide equality, and as a pre-filter it saves nothing when
 * most blocks are equal, since equal blocks need the strong digest anyway.
 */
export type HashSuite = 'gmac-aes128' | 'sha256';
export const HASH_SUITES: readonly HashSuite[] = ['gmac-aes128', 'sha256'];
export const DIGEST_BYTES = 16;

export function isHashSuite(v: unknown): v is HashSuite {
  return typeof v === 'string' && (HASH_SUITES as readonly string[]).includes(v);
}

/** The key a run's digests are computed with: random for GMAC, none for sha256. */
export function newHashKey(suite: HashSuite): Buffer {
  return suite === 'gmac-aes128' ? randomBytes(16) : Buffer.alloc(0);
}

export function hashKeyBytes(suite: HashSuite): number {
  return suite === 'gmac-aes128' ? 16 : 0;
}

export interface Digester {
  /** Writes the DIGEST_BYTES digest of `data` to `out` at `at`. */
  digestInto(data: Buffer, out: Buffer, at: number): void;
}

// GCM needs an IV; a fixed one is right here: the tag must be a function of the data alone, and
// nothing is ever encrypted under the key, so no keystream can be reused.
const GMAC_IV = Buffer.alloc(12);

export function createDigester(suite: HashSuite, key: Buffer): Digester {
  if (key.length !== hashKeyBytes(suite)) throw new ResyncError('RESYNC_HASH_KEY', `a ${suite} key has ${hashKeyBytes(suite)} bytes, not ${key.length}`);
  if (suite === 'sha256') {
    return {
      digestInto(data, out, at) {
        hash('sha256', data, 'buffer').copy(out, at, 0, DIGEST_BYTES);
      },
    };
  }
  const keyObject: KeyObject = createSecretKey(key);
  return {
    digestInto(data, out, at) {
      const gmac = createCipheriv('aes-128-gcm', keyObject, GMAC_IV);
      gmac.setAAD(data);
      gmac.final();
      gmac.getAuthTag().copy(out, at);
    },
  };
}

/**
 * All zero? Most data is not, and its first byte usually says so: that answer costs no call and
 * no allocation, which adds up over hundreds of thousands of regions and blocks.
 */
export function isZero(data: Buffer): boolean {
  return data.length === 0 || (data[0] === 0 && data[data.length - 1] === 0 && isAllZero(data));
}

/**
 * What one side knows about a run of regions: which are all zero (found by comparison with
 * zeroes, never hashed) and the digests of the others, in order.
 */
export interface RegionSummary {
  zero: Uint8Array;
  digests: Buffer;
}

export function summariseRegions(data: Buffer, regionBytes: number, digester: Digester): RegionSummary {
  const count = Math.ceil(data.length / regionBytes);
  const zero = new Uint8Array(bitmapBytes(count));
  const digests = Buffer.allocUnsafe(count * DIGEST_BYTES);
  let n = 0;
  for (let i = 0; i < count; i++) {
    const region = data.subarray(i * regionBytes, Math.min(data.length, (i + 1) * regionBytes));
    if (isZero(region)) setBit(zero, i);
    else digester.digestInto(region, digests, DIGEST_BYTES * n++);
  }
  return { zero, digests: digests.subarray(0, n * DIGEST_BYTES) };
}

/**
 * The children of a node (a region's sub-regions or blocks, a sub-region's blocks) that are all
 * zero; with a digester, the digests of the others too, in order.
 */
export function summariseChildren(node: Buffer, childBytes: number, digester?: Digester): { zero: Uint8Array; digests: Buffer | undefined } {
  const count = Math.ceil(node.length / childBytes);
  const zero = new Uint8Array(bitmapBytes(count));
  const digests = digester ? Buffer.allocUnsafe(count * DIGEST_BYTES) : undefined;
  let n = 0;
  for (let i = 0; i < count; i++) {
    const child = node.subarray(i * childBytes, Math.min(node.length, (i + 1) * childBytes));
    if (isZero(child)) setBit(zero, i);
    else if (digester && digests) digester.digestInto(child, digests, DIGEST_BYTES * n++);
  }
  return { zero, digests: digests?.subarray(0, n * DIGEST_BYTES) };
}
