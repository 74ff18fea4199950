import { createHash, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { Agent, buildConnector } from 'undici';
import { BoomerangError } from '../../replication/errors.js';

/**
 * How the vCenter's certificate is trusted. Verification is on by default (system CAs, or `caPem`);
 * `thumbprint` pins the certificate itself (SHA-1 or SHA-256, hex with or without colons, as
 * vSphere shows it); `insecure` turns verification off and must be asked for explicitly (labs).
 */
export interface VsphereTls {
  caPem?: string;
  thumbprint?: string;
  insecure?: boolean;
}

export class TlsTrustError extends BoomerangError {}

export function normalizeThumbprint(t: string): string {
  return t.replace(/[:\s]/g, '').toUpperCase();
}

/** The SHA-1 and SHA-256 thumbprints of a PEM certificate, colon-separated upper-case hex. */
export function thumbprintsOf(pem: string): { sha1: string; sha256: string } {
  const cert = new X509Certificate(pem);
  return { sha1: cert.fingerprint, sha256: cert.fingerprint256 };
}

function certThumbprint(raw: Buffer, algorithm: 'sha1' | 'sha256'): string {
  return createHash(algorithm).update(raw).digest('hex').toUpperCase();
}

export function dispatcherFor(tls: VsphereTls = {}): Agent {
  if (tls.thumbprint !== undefined) {
    const want = normalizeThumbprint(tls.thumbprint);
    if (want.length !== 40 && want.length !== 64) throw new TlsTrustError('VSPHERE_TLS', 'a thumbprint is 20 (SHA-1) or 32 (SHA-256) bytes in hex');
    const algorithm = want.length === 40 ? 'sha1' : 'sha256';
    // No TLS session resumption: a resumed session may not present the certificate to check.
    const base = buildConnector({ rejectUnauthorized: false, maxCachedSessions: 0 });
    const connect: buildConnector.connector = (opts, callback) => {
      base(opts, (err, socket) => {
        if (err !== null) return callback(err, null);
        const raw = (socket as TLSSocket).getPeerCertificate().raw;
        if (raw === undefined || certThumbprint(raw, algorithm) !== want) {
          socket.destroy();
          return callback(new TlsTrustError('VSPHERE_TLS', `the server's certificate does not match the pinned thumbprint ${tls.thumbprint}`), null);
        }
        callback(null, socket);
      });
    };
    return new Agent({ connect });
  }
  if (tls.insecure === true) return new Agent({ connect: { rejectUnauthorized: false } });
  return new Agent({ connect: tls.caPem === undefined ? {} : { ca: tls.caPem } });
}
