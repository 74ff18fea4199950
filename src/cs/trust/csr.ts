import 'reflect-metadata';
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { errorMessage } from '../../replication/errors.js';
import type { CertificateUsage, IssueOptions, PemPair } from '../../security/pki.js';
import { csError } from '../errors.js';

/**
 * Certificates for keys the CS never sees: a component sends a PKCS#10 request, proving it holds
 * the key by the request's signature, and gets back a certificate with the same profile as
 * src/security/pki.ts issueCertificate (which generates the key itself).
 */

// Same setup as pki.ts (reflect-metadata above, this provider): this module may be the first to load x509.
x509.cryptoProvider.set(webcrypto);

const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
const SKEW_MS = 5 * 60_000;
const MAX_CSR_BYTES = 16 * 1024;

const EXTENDED_USAGES: Record<CertificateUsage, string[]> = {
  server: [x509.ExtendedKeyUsage.serverAuth],
  client: [x509.ExtendedKeyUsage.clientAuth],
  both: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
};

async function parseRequest(csrPem: string): Promise<x509.Pkcs10CertificateRequest> {
  if (csrPem.length > MAX_CSR_BYTES) throw csError('CSR_INVALID', { reason: `larger than ${MAX_CSR_BYTES} bytes` }).at('csrPem');
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw csError('CSR_INVALID', { reason: `it does not parse (${errorMessage(err)})` }).at('csrPem');
  }
  const alg = csr.publicKey.algorithm as EcKeyAlgorithm;
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') throw csError('CSR_INVALID', { reason: `its key is ${alg.name} ${alg.namedCurve ?? ''}`.trim() }).at('csrPem');
  // The signature proves the requester holds the private key of the key it asks us to certify.
  if (!(await csr.verify())) throw csError('CSR_INVALID', { reason: 'its signature does not verify' }).at('csrPem');
  return csr;
}

interface EcKeyAlgorithm {
  name: string;
  namedCurve?: string;
}

/** Returns the certificate (PEM) for the request's key, named and restricted by `options`. */
export async function issueForRequest(ca: PemPair, csrPem: string, options: IssueOptions): Promise<string> {
  const csr = await parseRequest(csrPem);
  const caCert = new x509.X509Certificate(ca.certPem);
  const signingKey = await webcrypto.subtle.importKey('pkcs8', createPrivateKey(ca.keyPem).export({ type: 'pkcs8', format: 'der' }), EC_KEY, false, ['sign']);
  const dnsNames = options.dnsNames ?? [];
  const ipAddresses = options.ipAddresses ?? [];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(EXTENDED_USAGES[options.usage]),
    await x509.SubjectKeyIdentifierExtension.create(csr.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
  ];
  if (dnsNames.length + ipAddresses.length > 0) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension([...dnsNames.map((value) => ({ type: 'dns' as const, value })), ...ipAddresses.map((value) => ({ type: 'ip' as const, value }))]),
    );
  }
  const notBefore = options.notBefore ?? new Date(Date.now() - SKEW_MS);
  const serial = randomBytes(16);
  serial.writeUInt8((serial.readUInt8(0) & 0x7f) | 0x40, 0); // positive, fixed length (RFC 5280)
  // The subject comes from the CS, never from the request: a component cannot name itself.
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toString('hex'),
    subject: [{ CN: [options.commonName] }],
    issuer: caCert.subjectName,
    notBefore,
    notAfter: new Date(notBefore.getTime() + (options.validDays ?? 825) * DAY_MS),
    publicKey: csr.publicKey,
    signingKey,
    signingAlgorithm: SIGNING,
    extensions,
  });
  return cert.toString('pem');
}
