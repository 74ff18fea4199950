import { X509Certificate } from 'node:crypto';
import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { BoomerangError } from '../../replication/errors.js';
import type { Logger } from '../../runtime/log.js';
import { createCa, issueCertificate, type PemPair } from '../../security/pki.js';
import { generateToken, writeTokenFile } from '../../security/token.js';
import { isoAt } from '../clock.js';
import { openDatabase, type Db } from '../db/open.js';
import { CS_FILES, type CompiledOptions } from '../options.js';
import { generatePassphrase, hashPassphrase, passphraseMatches, type PassphraseHash } from './passphrase.js';
import { secretMatches, sha256 } from './tokens.js';

/**
 * The vault's secrets, created at first start and loaded afterwards: the passphrase components
 * register with, the operator token (admin.token), the CA, and the API's server certificate.
 */
export interface Vault {
  readonly name: string;
  readonly ca: PemPair;
  readonly serverTls: PemPair;
  checkPassphrase(presented: string): Promise<boolean>;
  isOperatorToken(presented: string): boolean;
}

/** Reissue the API certificate this long before it expires. */
const RENEW_BEFORE_MS = 30 * 86_400_000;

export async function openVault(db: Db, o: CompiledOptions): Promise<Vault> {
  let row = await db.selectFrom('vault').selectAll().executeTakeFirst();
  if (row === undefined) {
    const passphrase = o.initialPassphrase ?? generatePassphrase();
    const { hash, salt } = await hashPassphrase(passphrase);
    const ca = await createCa({ commonName: `Boomerang CA (${o.vaultName})` });
    const createdAt = isoAt(o.clock);
    row = { id: 1, name: o.vaultName, passphrase, passphrase_hash: hash, passphrase_salt: salt, admin_token_hash: '', created_at: createdAt };
    const inserted = row;
    await db.transaction().execute(async (trx) => {
      await trx.insertInto('vault').values(inserted).execute();
      await trx.insertInto('ca').values({ id: 1, cert_pem: ca.certPem, key_pem: ca.keyPem, created_at: createdAt }).execute();
    });
    o.log.info({ vault: o.vaultName }, 'vault created: passphrase, certificate authority and operator token generated');
  }
  const adminTokenHash = await ensureOperatorToken(db, o.paths.adminToken, row.admin_token_hash, o.log);
  const caRow = await db.selectFrom('ca').select(['cert_pem', 'key_pem']).executeTakeFirstOrThrow();
  const ca: PemPair = { certPem: caRow.cert_pem, keyPem: caRow.key_pem };
  await writeFileAtomic(o.paths.ca, ca.certPem, 0o644);
  const serverTls = await ensureServerCertificate(db, ca, o.hostnames, o.log);
  const stored: PassphraseHash = { hash: row.passphrase_hash, salt: row.passphrase_salt };
  return Object.freeze({
    name: row.name,
    ca,
    serverTls,
    checkPassphrase: (presented: string) => passphraseMatches(presented, stored),
    isOperatorToken: (presented: string) => secretMatches(presented, adminTokenHash),
  });
}

/**
 * admin.token must hold the token whose hash the vault keeps. When it is missing or stale (a
 * restored database, a deleted file) a new token replaces it: whoever can write the data
 * directory is the operator anyway, and this is how the token is rotated.
 */
async function ensureOperatorToken(db: Db, path: string, storedHash: string, log: Logger): Promise<string> {
  const current = await readFile(path, 'utf8').then(
    (t) => t.trim(),
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    },
  );
  if (current !== undefined && storedHash !== '' && secretMatches(current, storedHash)) return storedHash;
  const token = generateToken();
  const hash = sha256(token);
  await writeTokenFile(path, token);
  await db.updateTable('vault').set({ admin_token_hash: hash }).where('id', '=', 1).execute();
  if (storedHash !== '') log.warn({ path }, 'operator token file missing or stale: a new operator token was written');
  return hash;
}

async function ensureServerCertificate(db: Db, ca: PemPair, hostnames: readonly string[], log: Logger): Promise<PemPair> {
  const names = JSON.stringify([...hostnames].sort());
  const row = await db.selectFrom('server_tls').selectAll().executeTakeFirst();
  // Real time on purpose: TLS peers check validity against their own wall clocks.
  if (row !== undefined && row.names === names && Date.parse(row.not_after) - Date.now() > RENEW_BEFORE_MS && issuedBy(row.cert_pem, ca.certPem)) {
    return { certPem: row.cert_pem, keyPem: row.key_pem };
  }
  const leaf = await issueCertificate(ca, {
    commonName: hostnames[0] ?? 'localhost',
    dnsNames: hostnames.filter((h) => isIP(h) === 0),
    ipAddresses: hostnames.filter((h) => isIP(h) !== 0),
    usage: 'server',
  });
  const notAfter = new Date(new X509Certificate(leaf.certPem).validTo).toISOString();
  const values = { cert_pem: leaf.certPem, key_pem: leaf.keyPem, names, not_after: notAfter };
  await db
    .insertInto('server_tls')
    .values({ id: 1, ...values })
    .onConflict((oc) => oc.column('id').doUpdateSet(values))
    .execute();
  log.info({ names: hostnames, notAfter }, 'API server certificate issued');
  return leaf;
}

function issuedBy(certPem: string, caPem: string): boolean {
  return new X509Certificate(certPem).verify(new X509Certificate(caPem).publicKey);
}

/** Written under a temporary name and renamed, so a reader never sees half a file. */
async function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data, { mode });
  await chmod(tmp, mode);
  await rename(tmp, path);
}

/** For `boomerang cs passphrase`: reads the passphrase without starting (or disturbing) the CS. */
export async function readPassphrase(dataDir: string): Promise<string> {
  const path = join(dataDir, CS_FILES.db);
  const db = await openDatabase(path, { readonly: true });
  try {
    const row = await db.selectFrom('vault').select('passphrase').executeTakeFirst();
    if (row === undefined) throw new BoomerangError('VAULT_MISSING', `${path} holds no vault yet: start the configuration server once to create it`);
    return row.passphrase;
  } finally {
    await db.destroy();
  }
}
