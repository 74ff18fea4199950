import { createCipheriv, type Cipher } from 'node:crypto';

const ZEROES = Buffer.alloc(1024 * 1024);

/**
 * A seeded PRNG: workloads and tests must be repeatable from a seed. Numbers come from
 * mulberry32; bulk bytes from an AES-128-CTR keystream keyed by the seed, which runs at GB/s so
 * that generating data never limits a benchmark.
 */
export class Prng {
  private state: number;
  private readonly stream: Cipher;
  constructor(seed: number) {
    this.state = seed >>> 0;
    const key = Buffer.alloc(16);
    key.writeUInt32LE(this.state, 0);
    this.stream = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(maxExclusive: number): number {
    return Math.floor(this.next() * maxExclusive);
  }
  /** Fills a buffer with pseudo-random bytes. */
  fill(buf: Buffer): Buffer {
    for (let at = 0; at < buf.length; at += ZEROES.length) {
      const n = Math.min(ZEROES.length, buf.length - at);
      this.stream.update(ZEROES.subarray(0, n)).copy(buf, at);
    }
    return buf;
  }
}
