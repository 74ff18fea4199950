/** Bitmaps on the wire: bit i is bit (i % 8) of byte i / 8; padding bits are zero. */

export function bitmapBytes(bits: number): number {
  return (bits + 7) >>> 3;
}

export function getBit(map: Uint8Array, i: number): boolean {
  return (map[i >>> 3]! & (1 << (i & 7))) !== 0;
}

export function setBit(map: Uint8Array, i: number): void {
  map[i >>> 3]! |= 1 << (i & 7);
}

export function countBits(map: Uint8Array, bits: number): number {
  let n = 0;
  for (let i = 0; i < bits; i++) if (getBit(map, i)) n++;
  return n;
}

/** A peer must not smuggle state in the unused bits of the last byte. */
export function paddingIsZero(map: Uint8Array, bits: number): boolean {
  const used = bits & 7;
  return used === 0 || (map[map.length - 1]! >>> used) === 0;
}
