import { createHash, timingSafeEqual } from 'node:crypto';
import { generateToken } from '../../security/token.js';

/**
 * Bearer tokens of the control plane. A component token is `<component id>.<secret>`: the id
 * finds the row, the secret is checked against its stored sha256 in constant time. Only hashes
 * are stored, so the database alone does not let anyone act as a component or an operator.
 */

export function sha256(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Constant time: both sides are sha256 digests of the same length. */
export function secretMatches(presented: string, storedHash: string): boolean {
  const a = Buffer.from(sha256(presented), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface IssuedToken {
  token: string;
  hash: string;
  expiresAt: string;
}

export function issueComponentToken(componentId: string, nowMs: number, ttlSeconds: number): IssuedToken {
  const secret = generateToken();
  return { token: `${componentId}.${secret}`, hash: sha256(secret), expiresAt: new Date(nowMs + ttlSeconds * 1000).toISOString() };
}

export function parseComponentToken(token: string): { componentId: string; secret: string } | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0 || dot === token.length - 1) return undefined;
  return { componentId: token.slice(0, dot), secret: token.slice(dot + 1) };
}

/** The token of an `Authorization: Bearer …` header, or undefined when there is none. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}
