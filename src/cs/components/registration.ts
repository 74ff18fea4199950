import { randomUUID, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { issueCertificate, type CertificateUsage } from '../../security/pki.js';
import { isoAt } from '../clock.js';
import type { CsContext } from '../context.js';
import type { ComponentKind } from '../db/schema.js';
import { csError } from '../errors.js';
import { issueForRequest } from '../trust/csr.js';
import { issueComponentToken } from '../trust/tokens.js';
import type { Vault } from '../trust/vault.js';

/**
 * A component proves it belongs to the vault with the passphrase and receives its identity: a
 * certificate from the CS's CA (for the data path's mutual TLS) and a token (for the CS API).
 * Registering again under the same kind and name keeps the component's id, so items that use it
 * stay attached (a reinstalled agent), and replaces its certificate and token.
 */

export interface RegistrationRequest {
  passphrase: string;
  kind: ComponentKind;
  name: string;
  /** PEM PKCS#10 request; without it the CS generates the key and returns it. */
  csrPem?: string;
  /** Names the certificate is valid for (process servers and master targets accept connections). */
  hostnames?: string[];
}

export interface Registration {
  componentId: string;
  kind: ComponentKind;
  name: string;
  certificatePem: string;
  privateKeyPem?: string;
  caPem: string;
  token: string;
  tokenExpiresAt: string;
  heartbeatIntervalSeconds: number;
}

// Every component also serves its HTTPS control API (status, bookmarks, restore), so every one is a server too.
const USAGE: Record<ComponentKind, CertificateUsage> = { agent: 'both', ps: 'both', mt: 'both' };
const DNS_NAME = /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/;

export async function register(ctx: CsContext, vault: Vault, req: RegistrationRequest): Promise<Registration> {
  if (!(await vault.checkPassphrase(req.passphrase))) {
    ctx.log.warn({ kind: req.kind, name: req.name }, 'registration refused: wrong passphrase');
    throw csError('BAD_PASSPHRASE');
  }
  const hostnames = req.hostnames ?? [];
  hostnames.forEach((h, i) => {
    if (isIP(h) === 0 && !DNS_NAME.test(h)) throw csError('BAD_REQUEST', { message: `hostnames/${i} ${JSON.stringify(h)} is neither a DNS name nor an IP address` }).at(`hostnames.${i}`);
  });
  const issue = {
    commonName: `${req.kind}:${req.name}`,
    dnsNames: hostnames.filter((h) => isIP(h) === 0),
    ipAddresses: hostnames.filter((h) => isIP(h) !== 0),
    usage: USAGE[req.kind],
  };
  let certificatePem: string;
  let privateKeyPem: string | undefined;
  if (req.csrPem !== undefined) {
    certificatePem = await issueForRequest(vault.ca, req.csrPem, issue);
  } else {
    const pair = await issueCertificate(vault.ca, issue);
    certificatePem = pair.certPem;
    privateKeyPem = pair.keyPem;
  }
  const cert = new X509Certificate(certificatePem);
  const now = isoAt(ctx.clock);
  const { componentId, token } = await ctx.db.transaction().execute(async (trx) => {
    const live = await trx.selectFrom('components').select('id').where('kind', '=', req.kind).where('name', '=', req.name).where('revoked_at', 'is', null).executeTakeFirst();
    const id = live?.id ?? randomUUID();
    const token = issueComponentToken(id, ctx.clock.now(), ctx.options.componentTokenTtlSeconds);
    const identity = {
      cert_serial: cert.serialNumber.toLowerCase(),
      cert_not_after: new Date(cert.validTo).toISOString(),
      token_hash: token.hash,
      token_expires_at: token.expiresAt,
      registered_at: now,
      alert_code: null,
      alert_since: null,
    };
    if (live === undefined) {
      await trx
        .insertInto('components')
        .values({ id, kind: req.kind, name: req.name, last_heartbeat_at: null, health: null, revoked_at: null, ...identity })
        .execute();
    } else {
      await trx.updateTable('components').set(identity).where('id', '=', id).execute();
    }
    return { componentId: id, token };
  });
  ctx.log.info({ component: componentId, kind: req.kind, name: req.name, serial: cert.serialNumber, csr: req.csrPem !== undefined }, 'component registered');
  return {
    componentId,
    kind: req.kind,
    name: req.name,
    certificatePem,
    ...(privateKeyPem === undefined ? {} : { privateKeyPem }),
    caPem: vault.ca.certPem,
    token: token.token,
    tokenExpiresAt: token.expiresAt,
    heartbeatIntervalSeconds: ctx.options.heartbeatIntervalSeconds,
  };
}

/** A new token for a component that still holds a valid one; the old one stops working. */
export async function renewToken(ctx: CsContext, componentId: string): Promise<{ token: string; tokenExpiresAt: string }> {
  const token = issueComponentToken(componentId, ctx.clock.now(), ctx.options.componentTokenTtlSeconds);
  await ctx.db.updateTable('components').set({ token_hash: token.hash, token_expires_at: token.expiresAt }).where('id', '=', componentId).execute();
  return { token: token.token, tokenExpiresAt: token.expiresAt };
}
