import { discover } from '../../fabrics/vsphere/discovery.js';
import { InvalidLoginError } from '../../fabrics/vsphere/faults.js';
import type { VsphereInventory } from '../../fabrics/vsphere/inventory.js';
import { VsphereSession } from '../../fabrics/vsphere/session.js';
import { TlsTrustError } from '../../fabrics/vsphere/tls.js';
import { VsphereConnectionError } from '../../fabrics/vsphere/transport.js';
import { BoomerangError, errorMessage } from '../../replication/errors.js';
import { CsError, csError } from '../errors.js';
import { tlsOf, type VsphereConfig } from './vsphere-config.js';

/**
 * Talks to a vsphere fabric's vCenter on behalf of the CS: log in, read the inventory, log out,
 * under one deadline, with the vSphere client's errors turned into the CS's coded ones.
 */

/** Node's codes for a certificate that does not verify (as opposed to a network failure). */
const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS/;

function causeCode(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e instanceof Error; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TLS_CODES.test(code)) return code;
    e = e.cause;
  }
  return '';
}

/** The CS error for a failed login or read. */
export function fabricError(err: unknown, c: VsphereConfig, timeoutMs: number, timedOut: boolean): CsError {
  if (err instanceof CsError) return err;
  if (timedOut) return csError('FABRIC_TIMEOUT', { url: c.url, seconds: Math.round(timeoutMs / 1000) });
  if (err instanceof InvalidLoginError) return csError('FABRIC_LOGIN_FAILED', { url: c.url, username: c.username }).at('password');
  if (err instanceof TlsTrustError) return csError('FABRIC_TLS_UNTRUSTED', { url: c.url, message: errorMessage(err) }).at('config.thumbprint');
  if (err instanceof VsphereConnectionError) {
    return causeCode(err) !== ''
      ? csError('FABRIC_TLS_UNTRUSTED', { url: c.url, message: errorMessage(err) }).at(c.caPem !== undefined ? 'config.caPem' : 'config.thumbprint')
      : csError('FABRIC_UNREACHABLE', { url: c.url, message: errorMessage(err) }).at('config.url');
  }
  return csError('FABRIC_DISCOVERY_FAILED', { url: c.url, message: err instanceof BoomerangError ? `[${err.code}] ${err.message}` : errorMessage(err) });
}

/**
 * Logs in, runs `work`, logs out. The deadline covers all three; `signal` (the CS stopping)
 * aborts as well.
 */
export async function withVcenter<T>(c: VsphereConfig, password: string, timeoutMs: number, signal: AbortSignal | undefined, work: (s: VsphereSession, signal: AbortSignal) => Promise<T>): Promise<T> {
  const deadline = AbortSignal.timeout(timeoutMs);
  const both = signal === undefined ? deadline : AbortSignal.any([deadline, signal]);
  try {
    const session = await VsphereSession.login({ url: c.url, tls: tlsOf(c), timeoutMs, username: c.username, password }, both);
    try {
      return await work(session, both);
    } finally {
      // Bounded: a vCenter that stopped answering must not hold the refresh (or the CS stopping).
      await session.logout(AbortSignal.timeout(5000)).catch(() => undefined);
    }
  } catch (err) {
    throw fabricError(err, c, timeoutMs, deadline.aborted);
  }
}

/** Checks the credentials: a login and a logout. */
export function checkLogin(c: VsphereConfig, password: string, timeoutMs: number): Promise<void> {
  return withVcenter(c, password, timeoutMs, undefined, async () => undefined);
}

/** Reads the whole inventory. */
export function readInventory(c: VsphereConfig, password: string, timeoutMs: number, signal?: AbortSignal): Promise<VsphereInventory> {
  return withVcenter(c, password, timeoutMs, signal, (s, sig) => discover(s, { signal: sig }));
}
