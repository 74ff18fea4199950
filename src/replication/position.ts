import { randomUUID } from 'node:crypto';
import { BoomerangError } from './errors.js';

/**
 * A lineage is one unbroken history of a disk's writes. Sequence numbers count every event of a
 * lineage (write, resync extent, bookmark) from 1; (lineage, seq) names a position in a disk's
 * history. When continuity cannot be proven a new lineage starts — we never guess.
 */
export type LineageId = string;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function newLineage(): LineageId {
  return randomUUID();
}

export function isLineage(value: string): boolean {
  return UUID_RE.test(value);
}

export function lineageToBytes(lineage: LineageId, out: Buffer, at: number): void {
  if (!isLineage(lineage)) throw new BoomerangError('BAD_LINEAGE', `not a lineage id: ${JSON.stringify(lineage)}`);
  out.write(lineage.replaceAll('-', ''), at, 16, 'hex');
}

export function lineageFromBytes(buf: Buffer, at: number): LineageId {
  const h = buf.toString('hex', at, at + 16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Disk ids name files and directories on every site, so they are kept to a safe alphabet. */
export const DISK_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isDiskId(value: string): boolean {
  return DISK_ID_RE.test(value) && !value.includes('..');
}

/** Fixed-width hex so that name order is numeric order (spool files, journal segments). */
export function formatHex16(n: number): string {
  return n.toString(16).padStart(16, '0');
}

export function parseHex16(name: string): number | undefined {
  if (!/^[0-9a-f]{16}$/.test(name)) return undefined;
  const n = Number.parseInt(name, 16);
  return Number.isSafeInteger(n) ? n : undefined;
}
