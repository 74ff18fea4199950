import 'reflect-metadata';
import { createPrivateKey, KeyObject, randomBytes, webcrypto, X509Certificate as NodeCertificate } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { BoomerangError, ConfigError, errorMessage } from '../replication/errors.js';
import type { TlsMaterial } from '../replication/transport.js';
import { readFileIfPresent } from '../runtime/durable.js';

/**
 * TLS material for every data and control hop. Until the configuration server becomes the CA
 * (issuing certificates at registration), a dev/lab command creates a CA and a certificate with
 * ensureDevPki and components load them from files with loadTlsMaterial.
 *
 * All keys are ECDSA P-256 in PKCS#8 PEM; certificates are signed with ECDSA-SHA256.
 */

x509.cryptoProvider.set(webcrypto);

export interface PemPair {
  certPem: string;
  keyPem: string;
}

export type CertificateUsage = 'server' | 'client' | 'both';

export interface IssueOptions {
  commonName: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Default 825 days. */
  validDays?: number;
  /** Start of validity; default five minutes ago so that small clock skew between hosts is harmless. */
  notBefore?: Date;
  usage: CertificateUsage;
}

const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
const SKEW_MS = 5 * 60_000;

function invalid(message: string): never {
  throw new BoomerangError('PKI_INVALID', message);
}

function validity(validDays: number, notBefore: Date | undefined): { notBefore: Date; notAfter: Date } {
  if (!Number.isFinite(validDays) || validDays <= 0) invalid(`validDays ${validDays} must be a positive number`);
  const start = notBefore ?? new Date(Date.now() - SKEW_MS);
  return { notBefore: start, notAfter: new Date(start.getTime() + validDays * DAY_MS) };
}

/** 16 random bytes, first byte in 0x40..0x7f: positive and of fixed length as RFC 5280 asks. */
function randomSerial(): string {
  const b = randomBytes(16);
  b.writeUInt8((b.readUInt8(0) & 0x7f) | 0x40, 0);
  return b.toString('hex');
}

function commonNameOf(options: { commonName: string }): x509.JsonName {
  if (options.commonName.length === 0) invalid('commonName must not be empty');
  return [{ CN: [options.commonName] }];
}

async function newKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify']);
}

function keyToPem(key: webcrypto.CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }).toString();
}

export async function createCa(options: { commonName: string; validDays?: number; notBefore?: Date }): Promise<PemPair> {
  const keys = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: commonNameOf(options),
    ...validity(options.validDays ?? 3650, options.notBefore),
    keys,
    signingAlgorithm: SIGNING,
    extensions: [
      // pathLength 0: this CA signs endpoint certificates only, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: keyToPem(keys.privateKey) };
}

async function importCa(ca: PemPair): Promise<{ cert: x509.X509Certificate; key: webcrypto.CryptoKey }> {
  try {
    const nodeKey = createPrivateKey(ca.keyPem);
    if (!new NodeCertificate(ca.certPem).checkPrivateKey(nodeKey)) invalid('the CA key does not belong to the CA certificate');
    const der = nodeKey.export({ type: 'pkcs8', format: 'der' });
    const key = await webcrypto.subtle.importKey('pkcs8', der, EC_KEY, false, ['sign']);
    return { cert: new x509.X509Certificate(ca.certPem), key };
  } catch (err) {
    if (err instanceof BoomerangError) throw err;
    throw new BoomerangError('PKI_INVALID', `cannot use the CA (an ECDSA P-256 certificate and key are required): ${errorMessage(err)}`, { cause: err });
  }
}

const EXTENDED_USAGES: Record<CertificateUsage, string[]> = {
  server: [x509.ExtendedKeyUsage.serverAuth],
  client: [x509.ExtendedKeyUsage.clientAuth],
  both: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
};

/**
 * Certifies a public key the caller already has (a component's CSR, or a key made here): the one
 * endpoint-certificate profile every certificate of ours follows. Returns the certificate PEM.
 */
export async function certifyPublicKey(ca: PemPair, publicKey: webcrypto.CryptoKey | x509.PublicKey, options: IssueOptions): Promise<string> {
  const issuer = await importCa(ca);
  const dnsNames = options.dnsNames ?? [];
  const ipAddresses = options.ipAddresses ?? [];
  for (const ip of ipAddresses) if (isIP(ip) === 0) invalid(`${JSON.stringify(ip)} is not an IP address`);
  for (const name of dnsNames) if (!/^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(name)) invalid(`${JSON.stringify(name)} is not a DNS name`);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(EXTENDED_USAGES[options.usage]),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(issuer.cert.publicKey),
  ];
  if (dnsNames.length + ipAddresses.length > 0) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension([
        ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
        ...ipAddresses.map((value) => ({ type: 'ip' as const, value })),
      ]),
    );
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: commonNameOf(options),
    issuer: issuer.cert.subjectName,
    ...validity(options.validDays ?? 825, options.notBefore),
    publicKey,
    signingKey: issuer.key,
    signingAlgorithm: SIGNING,
    extensions,
  });
  return cert.toString('pem');
}

/** A new key and its certificate. */
export async function issueCertificate(ca: PemPair, options: IssueOptions): Promise<PemPair> {
  const keys = await newKeyPair();
  return { certPem: await certifyPublicKey(ca, keys.publicKey, options), keyPem: keyToPem(keys.privateKey) };
}

/** File names inside a dev PKI directory. */
export const DEV_PKI_FILES = Object.freeze({ ca: 'ca.pem', caKey: 'ca-key.pem', cert: 'localhost.pem', key: 'localhost-key.pem' });

export interface DevPkiPaths {
  caPath: string;
  caKeyPath: string;
  certPath: string;
  keyPath: string;
}

/** Written under a temporary name and renamed, so a reader never sees half a file. */
async function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data, { mode });
  await chmod(tmp, mode); // the file may have existed with another mode
  await rename(tmp, path);
}


/** The leaf is signed by the CA, matches its key and stays valid for at least another day. */
function leafUsable(caPem: string, certPem: string, keyPem: string): boolean {
  try {
    const ca = new NodeCertificate(caPem);
    const cert = new NodeCertificate(certPem);
    return cert.verify(ca.publicKey) && cert.checkPrivateKey(createPrivateKey(keyPem)) && Date.parse(cert.validTo) > Date.now() + DAY_MS;
  } catch {
    return false;
  }
}

/**
 * Creates a dev/lab CA and one certificate for 'localhost' (SANs localhost, 127.0.0.1, ::1;
 * usable as server and client) in `dir`, reusing whatever valid material is already there.
 * Keys are written with mode 0600. Call it from one process at a time (the lab command).
 */
export async function ensureDevPki(dir: string): Promise<DevPkiPaths> {
  const paths: DevPkiPaths = {
    caPath: join(dir, DEV_PKI_FILES.ca),
    caKeyPath: join(dir, DEV_PKI_FILES.caKey),
    certPath: join(dir, DEV_PKI_FILES.cert),
    keyPath: join(dir, DEV_PKI_FILES.key),
  };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const [caPem, caKeyPem, certPem, keyPem] = await Promise.all([paths.caPath, paths.caKeyPath, paths.certPath, paths.keyPath].map((p) => readFileIfPresent(p)));
  let ca: PemPair;
  if (caPem !== undefined && caKeyPem !== undefined) {
    ca = { certPem: caPem, keyPem: caKeyPem };
  } else {
    ca = await createCa({ commonName: 'Boomerang dev CA' });
    // Key first: a CA certificate on disk always has its key next to it.
    await writeFileAtomic(paths.caKeyPath, ca.keyPem, 0o600);
    await writeFileAtomic(paths.caPath, ca.certPem, 0o644);
  }
  if (certPem === undefined || keyPem === undefined || !leafUsable(ca.certPem, certPem, keyPem)) {
    const leaf = await issueCertificate(ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'], usage: 'both' });
    await writeFileAtomic(paths.keyPath, leaf.keyPem, 0o600);
    await writeFileAtomic(paths.certPath, leaf.certPem, 0o644);
  }
  return paths;
}

async function readPem(path: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : errorMessage(err);
    throw new ConfigError('TLS_MATERIAL', `cannot read the ${what} ${path}: ${reason}`, { cause: err });
  }
  if (!/-----BEGIN [A-Z0-9 ]+-----/.test(text)) throw new ConfigError('TLS_MATERIAL', `the ${what} ${path} is not a PEM file`);
  return text;
}

function parsed<T>(path: string, what: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new ConfigError('TLS_MATERIAL', `the ${what} ${path} does not parse: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * Reads a component's CA, certificate and key and checks them enough to fail early with a clear
 * message instead of an obscure handshake error later.
 */
export async function loadTlsMaterial(paths: { caPath: string; certPath: string; keyPath: string }): Promise<TlsMaterial> {
  const [ca, cert, key] = await Promise.all([
    readPem(paths.caPath, 'CA certificate'),
    readPem(paths.certPath, 'certificate'),
    readPem(paths.keyPath, 'private key'),
  ]);
  parsed(paths.caPath, 'CA certificate', () => new NodeCertificate(ca));
  const certificate = parsed(paths.certPath, 'certificate', () => new NodeCertificate(cert));
  const privateKey = parsed(paths.keyPath, 'private key', () => createPrivateKey(key));
  if (!certificate.checkPrivateKey(privateKey))
    throw new ConfigError('TLS_MATERIAL', `the private key ${paths.keyPath} does not belong to the certificate ${paths.certPath}`);
  return { ca, cert, key };
}
