import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { BoomerangError } from '../../src/replication/errors.js';
import { createCa, ensureDevPki, issueCertificate, loadTlsMaterial, type PemPair } from '../../src/security/pki.js';
import { generateToken, readTokenFile, redact, tokenMatches, writeTokenFile } from '../../src/security/token.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-security-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function hasCode(code: string) {
  return (err: unknown) => err instanceof BoomerangError && err.code === code;
}

interface Side {
  authorized?: boolean;
  /** Why the peer's certificate did not verify, when the server lets the handshake finish anyway. */
  authorizationError?: string;
  error?: string;
  peerCommonName?: string;
}

/**
 * One TLS connection between a fresh server and a client; reports what each side saw. The
 * server answers and closes, so the client's 'close' ends the exchange on every path. A server
 * with rejectUnauthorized drops a bad client without saying why (ECONNRESET), so the reason is
 * observed with rejectUnauthorized: false and authorizationError.
 */
async function handshake(serverOptions: tls.TlsOptions, clientOptions: tls.ConnectionOptions): Promise<{ client: Side; server: Side }> {
  const server: Side = {};
  const srv = tls.createServer(serverOptions, (socket) => {
    server.authorized = socket.authorized;
    if (socket.authorizationError !== null && socket.authorizationError !== undefined) server.authorizationError = String(socket.authorizationError);
    const subject = socket.getPeerCertificate().subject as Record<string, string> | undefined;
    if (subject?.CN !== undefined) server.peerCommonName = subject.CN;
    socket.end('hello');
  });
  srv.on('tlsClientError', (err: NodeJS.ErrnoException) => {
    server.error = err.code ?? err.message;
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  try {
    const client: Side = {};
    await new Promise<void>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, ...clientOptions });
      socket.on('secureConnect', () => {
        client.authorized = socket.authorized;
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        client.error ??= err.code ?? err.message;
      });
      socket.on('close', () => resolve());
      socket.resume();
    });
    return { client, server };
  } finally {
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
}

const LOCAL = { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'] };

function serverOpts(pair: PemPair, extra: tls.TlsOptions = {}): tls.TlsOptions {
  return { cert: pair.certPem, key: pair.keyPem, ...extra };
}

test('the CA and issued certificates carry the expected constraints, usages and names', async () => {
  const ca = await createCa({ commonName: 'Test CA' });
  const caCert = new X509Certificate(ca.certPem);
  assert.equal(caCert.ca, true);
  assert.equal(caCert.subject, 'CN=Test CA');
  assert.ok(caCert.verify(caCert.publicKey));
  assert.equal(caCert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');

  const a = await issueCertificate(ca, { commonName: 'ps-1', ...LOCAL, usage: 'server' });
  const b = await issueCertificate(ca, { commonName: 'agent-1', usage: 'client' });
  const leaf = new X509Certificate(a.certPem);
  assert.equal(leaf.ca, false);
  assert.ok(leaf.checkIssued(caCert) && leaf.verify(caCert.publicKey));
  assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']);
  assert.deepEqual(new X509Certificate(b.certPem).keyUsage, ['1.3.6.1.5.5.7.3.2']);
  assert.match(leaf.subjectAltName ?? '', /DNS:localhost/);
  assert.match(leaf.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
  assert.match(leaf.subjectAltName ?? '', /IP Address:0:0:0:0:0:0:0:1/);
  assert.notEqual(leaf.serialNumber, new X509Certificate(b.certPem).serialNumber);
  assert.match(a.keyPem, /^-----BEGIN PRIVATE KEY-----/);

  await assert.rejects(issueCertificate(ca, { commonName: 'x', ipAddresses: ['300.1.1.1'], usage: 'server' }), hasCode('PKI_INVALID'));
  await assert.rejects(issueCertificate(ca, { commonName: 'x', usage: 'server', validDays: 0 }), hasCode('PKI_INVALID'));
  const other = await createCa({ commonName: 'Other CA' });
  await assert.rejects(issueCertificate({ certPem: ca.certPem, keyPem: other.keyPem }, { commonName: 'x', usage: 'server' }), hasCode('PKI_INVALID'));
});

test('a client that trusts the CA accepts the server; one that does not is refused', async () => {
  const ca = await createCa({ commonName: 'Test CA' });
  const stranger = await createCa({ commonName: 'Stranger CA' });
  const server = await issueCertificate(ca, { commonName: 'ps', ...LOCAL, usage: 'server' });

  const byName = await handshake(serverOpts(server), { ca: ca.certPem, servername: 'localhost' });
  assert.deepEqual(byName.client, { authorized: true });
  const byIp = await handshake(serverOpts(server), { ca: ca.certPem });
  assert.deepEqual(byIp.client, { authorized: true });

  const untrusted = await handshake(serverOpts(server), { ca: stranger.certPem, servername: 'localhost' });
  assert.equal(untrusted.client.error, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  const systemStore = await handshake(serverOpts(server), { servername: 'localhost' });
  assert.equal(systemStore.client.error, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  const wrongName = await handshake(serverOpts(server), { ca: ca.certPem, servername: 'elsewhere.example' });
  assert.equal(wrongName.client.error, 'ERR_TLS_CERT_ALTNAME_INVALID');
});

test('an expired certificate is refused', async () => {
  const ca = await createCa({ commonName: 'Test CA' });
  const expired = await issueCertificate(ca, { commonName: 'ps', ...LOCAL, usage: 'both', notBefore: new Date(Date.now() - 10 * 86_400_000), validDays: 1 });
  const asServer = await handshake(serverOpts(expired), { ca: ca.certPem, servername: 'localhost' });
  assert.equal(asServer.client.error, 'CERT_HAS_EXPIRED');

  const server = await issueCertificate(ca, { commonName: 'ps', ...LOCAL, usage: 'server' });
  const client = { ca: ca.certPem, servername: 'localhost', cert: expired.certPem, key: expired.keyPem };
  const strict = await handshake(serverOpts(server, { ca: ca.certPem, requestCert: true, rejectUnauthorized: true }), client);
  assert.equal(strict.server.authorized, undefined);
  assert.ok(strict.server.error);
  const lenient = await handshake(serverOpts(server, { ca: ca.certPem, requestCert: true, rejectUnauthorized: false }), client);
  assert.deepEqual(lenient.server, { authorized: false, authorizationError: 'CERT_HAS_EXPIRED', peerCommonName: 'ps' });
});

test('mutual TLS: the server accepts client certificates of its CA with clientAuth only', async () => {
  const ca = await createCa({ commonName: 'Test CA' });
  const stranger = await createCa({ commonName: 'Stranger CA' });
  const server = await issueCertificate(ca, { commonName: 'ps', ...LOCAL, usage: 'server' });
  const mtls = serverOpts(server, { ca: ca.certPem, requestCert: true, rejectUnauthorized: true });
  const trustCa = { ca: ca.certPem, servername: 'localhost' };

  const agent = await issueCertificate(ca, { commonName: 'agent-7', usage: 'client' });
  const ok = await handshake(mtls, { ...trustCa, cert: agent.certPem, key: agent.keyPem });
  assert.deepEqual(ok.server, { authorized: true, peerCommonName: 'agent-7' });
  assert.deepEqual(ok.client, { authorized: true });

  const refusals: [string, tls.ConnectionOptions, string][] = [];
  refusals.push(['no certificate', trustCa, 'UNABLE_TO_GET_ISSUER_CERT']);
  const foreign = await issueCertificate(stranger, { commonName: 'intruder', usage: 'client' });
  refusals.push(['another CA', { ...trustCa, cert: foreign.certPem, key: foreign.keyPem }, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE']);
  const serverOnly = await issueCertificate(ca, { commonName: 'not-a-client', usage: 'server' });
  refusals.push(['no clientAuth usage', { ...trustCa, cert: serverOnly.certPem, key: serverOnly.keyPem }, 'INVALID_PURPOSE']);
  for (const [what, client, reason] of refusals) {
    const strict = await handshake(mtls, client);
    assert.equal(strict.server.authorized, undefined, what);
    assert.ok(strict.server.error, what);
    const lenient = await handshake({ ...mtls, rejectUnauthorized: false }, client);
    assert.equal(lenient.server.authorized, false, what);
    assert.equal(lenient.server.authorizationError, reason, what);
  }
});

test('ensureDevPki creates the material once, reuses it and repairs a missing certificate', () =>
  withDir(async (dir) => {
    const pkiDir = join(dir, 'pki');
    const paths = await ensureDevPki(pkiDir);
    for (const p of [paths.keyPath, paths.caKeyPath]) assert.equal((await stat(p)).mode & 0o777, 0o600);
    const before = await Promise.all([paths.caPath, paths.certPath, paths.keyPath].map((p) => readFile(p, 'utf8')));

    const again = await ensureDevPki(pkiDir);
    assert.deepEqual(again, paths);
    assert.deepEqual(await Promise.all([paths.caPath, paths.certPath, paths.keyPath].map((p) => readFile(p, 'utf8'))), before);

    const m = await loadTlsMaterial(paths);
    // The one certificate serves both ends of a mutual-TLS connection.
    const both = await handshake(
      { cert: m.cert, key: m.key, ca: m.ca, requestCert: true, rejectUnauthorized: true },
      { ca: m.ca, cert: m.cert, key: m.key, servername: 'localhost' },
    );
    assert.deepEqual(both, { client: { authorized: true }, server: { authorized: true, peerCommonName: 'localhost' } });

    await unlink(paths.certPath);
    await ensureDevPki(pkiDir);
    assert.equal(await readFile(paths.caPath, 'utf8'), before[0]);
    assert.notEqual(await readFile(paths.keyPath, 'utf8'), before[2]);
    const cert = new X509Certificate(await readFile(paths.certPath, 'utf8'));
    assert.ok(cert.verify(new X509Certificate(m.ca).publicKey));
  }));

test('loadTlsMaterial reports missing, non-PEM and mismatched files as TLS_MATERIAL', () =>
  withDir(async (dir) => {
    const paths = await ensureDevPki(dir);
    await assert.rejects(loadTlsMaterial({ ...paths, caPath: join(dir, 'absent.pem') }), (err: unknown) => hasCode('TLS_MATERIAL')(err) && /file not found/.test((err as Error).message));
    const junk = join(dir, 'junk.pem');
    await writeFile(junk, 'not a certificate');
    await assert.rejects(loadTlsMaterial({ ...paths, certPath: junk }), (err: unknown) => hasCode('TLS_MATERIAL')(err) && /not a PEM file/.test((err as Error).message));
    const broken = join(dir, 'broken.pem');
    await writeFile(broken, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    await assert.rejects(loadTlsMaterial({ ...paths, caPath: broken }), hasCode('TLS_MATERIAL'));
    await assert.rejects(loadTlsMaterial({ ...paths, keyPath: paths.caKeyPath }), (err: unknown) => hasCode('TLS_MATERIAL')(err) && /does not belong/.test((err as Error).message));
  }));

test('tokens: generation, constant-time comparison and redaction', () => {
  const a = generateToken();
  const b = generateToken();
  assert.match(a, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(a, b);
  assert.equal(tokenMatches(a, a), true);
  assert.equal(tokenMatches(b, a), false);
  assert.equal(tokenMatches(a.slice(0, -1), a), false);
  assert.equal(tokenMatches(`${a}x`, a), false);
  assert.equal(tokenMatches('', ''), false);
  assert.equal(redact(a), `${a.slice(0, 4)}…`);
  assert.ok(!redact(a).includes(a.slice(4, 8)));
  assert.equal(redact('short'), '…');
});

test('token files: written 0600, read trimmed, refused when empty, missing or readable by others', () =>
  withDir(async (dir) => {
    const path = join(dir, 'token');
    const token = generateToken();
    await writeTokenFile(path, token);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal(await readTokenFile(path), token);

    await writeFile(path, `  ${token}\n\n`);
    assert.equal(await readTokenFile(path), token);

    await chmod(path, 0o644);
    await assert.rejects(readTokenFile(path), (err: unknown) => hasCode('TOKEN_FILE')(err) && /chmod 600/.test((err as Error).message));
    await chmod(path, 0o640);
    await assert.rejects(readTokenFile(path), hasCode('TOKEN_FILE'));
    // Rewriting restores the mode even over an existing, too-open file.
    await writeTokenFile(path, token);
    assert.equal((await stat(path)).mode & 0o777, 0o600);

    const empty = join(dir, 'empty');
    await writeFile(empty, ' \n', { mode: 0o600 });
    await assert.rejects(readTokenFile(empty), hasCode('TOKEN_FILE'));
    await assert.rejects(readTokenFile(join(dir, 'absent')), hasCode('TOKEN_FILE'));
    await assert.rejects(readTokenFile(dir), hasCode('TOKEN_FILE'));
    await assert.rejects(writeTokenFile(join(dir, 'blank'), '  '), hasCode('TOKEN_FILE'));
  }));
