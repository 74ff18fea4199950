// pki.ts first: it loads reflect-metadata and sets x509's crypto provider before x509 is used.
import { certifyPublicKey, type IssueOptions, type PemPair } from '../../security/pki.js';
import * as x509 from '@peculiar/x509';
import { errorMessage } from '../../replication/errors.js';
import { csError } from '../errors.js';

/**
 * Certificates for keys the CS never sees: a component sends a PKCS#10 request, proving it holds
 * the key by the request's signature, and gets back a certificate with the same profile as
 * src/security/pki.ts issueCertificate (both go through certifyPublicKey).
 */

const MAX_CSR_BYTES = 16 * 1024;

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
  // The subject comes from the CS (options), never from the request: a component cannot name itself.
  return certifyPublicKey(ca, csr.publicKey, options);
}
