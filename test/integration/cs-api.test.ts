import 'reflect-metadata';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, webcrypto, X509Certificate } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Type } from '@sinclair/typebox';
import { Agent, request } from 'undici';
import { defineJobKind } from '../../src/cs/jobs/types.js';
import { ConfigurationServer } from '../../src/cs/server.js';
import { Gate, PASSPHRASE, withCs } from './cs-fixtures.js';

x509.cryptoProvider.set(webcrypto);

const PS_HEALTH = { ps: { spoolUsedBytes: 1024, spoolCapacityBytes: 1 << 30, spoolState: 'ok', throughputBytesPerSecond: 5e6, pendingBatches: 2, quarantinedFiles: 0 } };

test('first start: private data dir, CA, operator token; restart keeps them and the passphrase can be shown', async () => {
  await withCs({}, async (h) => {
    const dataDir = h.cs.paths.dataDir;
    assert.equal((await stat(dataDir)).mode & 0o777, 0o700);
    assert.equal((await stat(join(dataDir, 'admin.token'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dataDir, 'cs.db'))).mode & 0o777, 0o600);
    const caPem = await readFile(join(dataDir, 'ca.pem'), 'utf8');
    const ca = new X509Certificate(caPem);
    assert.ok(ca.ca);
    assert.equal(await h.cs.passphrase(), PASSPHRASE);
    const token = h.operatorToken;

    await h.cs.stop();
    await h.start({ initialPassphrase: 'another-passphrase-ignored' });
    assert.equal(h.operatorToken, token);
    assert.equal(await readFile(join(dataDir, 'ca.pem'), 'utf8'), caPem);
    assert.equal(await ConfigurationServer.readPassphrase(dataDir), PASSPHRASE);
    assert.equal((await h.get('/v1/fabrics')).status, 200);
  });
});

test('the API speaks HTTPS with a certificate from the CS CA, trusted through ca.pem', async () => {
  await withCs({}, async (h) => {
    const ca = await readFile(h.cs.paths.ca, 'utf8');
    const trusted = new Agent({ connect: { ca } });
    const untrusted = new Agent();
    try {
      const res = await request(`${h.cs.url}/v1/health`, { dispatcher: trusted });
      assert.equal(res.statusCode, 200);
      assert.equal(((await res.body.json()) as { status: string }).status, 'ok');
      const fabrics = await request(`${h.cs.url}/v1/fabrics`, { dispatcher: trusted, headers: { authorization: `Bearer ${h.operatorToken}` } });
      assert.equal(fabrics.statusCode, 200);
      await fabrics.body.dump();
      await assert.rejects(request(`${h.cs.url}/v1/health`, { dispatcher: untrusted }), /certificate/i);
    } finally {
      await trusted.close();
      await untrusted.close();
    }
  });
});

test('stopping the server releases a pending long-poll watch at once', async () => {
  const gate = new Gate();
  const slow = defineJobKind({ name: 'slow', params: Type.Object({}), tasks: [{ name: 'wait', resumable: true, run: (ctx) => gate.wait(ctx.signal) }] });
  await withCs({ jobKinds: [slow] }, async (h) => {
    const job = await h.cs.jobs.enqueue('slow', {});
    await gate.entered;
    const version = (await h.cs.jobs.view(job.id)).version;
    const agent = new Agent({ connect: { ca: await readFile(h.cs.paths.ca, 'utf8') } });
    try {
      // The watch is pending once the engine has a listener for it.
      const events = h.cs.jobs.events as EventEmitter;
      const listening = new Promise<void>((resolve) => {
        const onNew = (name: string | symbol) => {
          if (name !== 'job-updated') return;
          events.off('newListener', onNew);
          resolve();
        };
        events.on('newListener', onNew);
      });
      const watch = request(`${h.cs.url}/v1/jobs/${job.id}/watch?version=${version}&timeoutSeconds=60`, { dispatcher: agent, headers: { authorization: `Bearer ${h.operatorToken}` } });
      await listening;
      const stopped = h.cs.stop();
      const res = await watch;
      assert.equal(res.statusCode, 200);
      assert.equal(((await res.body.json()) as { version: number }).version, version);
      await stopped;
    } finally {
      await agent.close();
    }
  });
});

test('logs carry no passphrase, token or key', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  await withCs({ logger: pino({ level: 'trace' }, sink) }, async (h) => {
    const reg = await h.register('ps', 'ps-1');
    await h.post('/v1/register', { passphrase: 'wrong-passphrase', kind: 'ps', name: 'ps-2' }, null);
    await h.post('/v1/heartbeat', { ps: { spoolUsedBytes: 0, spoolCapacityBytes: 1, spoolState: 'ok', throughputBytesPerSecond: 0, pendingBatches: 0, quarantinedFiles: 0 } }, reg.token);
    await h.get('/v1/components');
    const log = lines.join('');
    assert.match(log, /component registered/);
    assert.match(log, /registration refused: wrong passphrase/);
    for (const secret of [PASSPHRASE, 'wrong-passphrase', reg.token.split('.')[1]!, h.operatorToken, 'PRIVATE KEY']) assert.ok(!log.includes(secret), `the log contains ${secret.slice(0, 12)}…`);
  });
});

test('registration with the passphrase: a certificate signed by the CS CA and a token that authenticates heartbeats', async () => {
  await withCs({}, async (h) => {
    const reg = await h.register('ps', 'ps-1', { hostnames: ['ps1.example', '10.0.0.5'] });
    const caPem = await readFile(h.cs.paths.ca, 'utf8');
    const ca = new X509Certificate(caPem);
    const cert = new X509Certificate(reg.certificatePem);
    assert.ok(cert.verify(ca.publicKey), 'signed by the CS CA');
    assert.ok(cert.checkIssued(ca));
    assert.ok(reg.privateKeyPem !== undefined && cert.checkPrivateKey(createPrivateKey(reg.privateKeyPem)));
    assert.equal(reg.caPem, caPem);
    assert.match(cert.subject, /CN=ps:ps-1/);
    assert.match(cert.subjectAltName ?? '', /DNS:ps1\.example/);
    assert.match(cert.subjectAltName ?? '', /IP Address:10\.0\.0\.5/);

    const hb = await h.post('/v1/heartbeat', PS_HEALTH, reg.token);
    assert.equal(hb.status, 200, hb.text);
    assert.equal(hb.json.nextHeartbeatSeconds, 30);
    const shown = await h.get(`/v1/components/${reg.componentId}`);
    assert.equal(shown.json.status, 'healthy');
    assert.deepEqual(shown.json.health, PS_HEALTH);
    assert.equal(shown.json.certificateSerial, cert.serialNumber.toLowerCase());

    // Registering again keeps the id (items stay attached) and replaces the credentials.
    const again = await h.register('ps', 'ps-1');
    assert.equal(again.componentId, reg.componentId);
    assert.equal((await h.post('/v1/heartbeat', PS_HEALTH, reg.token)).json.code, 'BAD_TOKEN');
    assert.equal((await h.post('/v1/heartbeat', PS_HEALTH, again.token)).status, 200);
  });
});

test('registration with a CSR: the certificate is for the requester key, which never leaves it', async () => {
  await withCs({}, async (h) => {
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=whatever-the-agent-claims', keys, signingAlgorithm: alg });
    const reg = await h.register('agent', 'vm-1', { csrPem: csr.toString('pem') });
    assert.equal(reg.privateKeyPem, undefined);
    const cert = new X509Certificate(reg.certificatePem);
    assert.ok(cert.verify(new X509Certificate(reg.caPem).publicKey));
    assert.match(cert.subject, /CN=agent:vm-1/, 'the CS names the component, not the request');
    const privateKey = createPrivateKey({ key: Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), format: 'der', type: 'pkcs8' });
    assert.ok(cert.checkPrivateKey(privateKey));

    const garbage = await h.post('/v1/register', { passphrase: PASSPHRASE, kind: 'agent', name: 'vm-2', csrPem: 'not a csr' }, null);
    assert.equal(garbage.status, 400);
    assert.equal(garbage.json.code, 'CSR_INVALID');
    assert.equal(garbage.json.field, 'csrPem');

    const rsa = await webcrypto.subtle.generateKey({ name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign', 'verify']);
    const rsaCsr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=x', keys: rsa, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } });
    const wrongKey = await h.post('/v1/register', { passphrase: PASSPHRASE, kind: 'agent', name: 'vm-3', csrPem: rsaCsr.toString('pem') }, null);
    assert.equal(wrongKey.json.code, 'CSR_INVALID');
  });
});

test('credentials: wrong passphrase, none, wrong token, revoked, expired each get their status and code', async () => {
  await withCs({ componentTokenTtlSeconds: 3600 }, async (h) => {
    const wrong = await h.post('/v1/register', { passphrase: 'not-the-passphrase', kind: 'agent', name: 'vm-1' }, null);
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.code, 'BAD_PASSPHRASE');
    assert.match(wrong.json.remedy, /boomerang cs passphrase/);

    const none = await h.get('/v1/items', null);
    assert.equal(none.status, 401);
    assert.equal(none.json.code, 'AUTH_REQUIRED');
    assert.equal(none.headers['www-authenticate'], 'Bearer');
    assert.equal((await h.get('/v1/items', 'wrong-token')).json.code, 'BAD_TOKEN');
    assert.equal((await h.request('GET', '/v1/items', { token: null })).status, 401);
    assert.equal((await h.post('/v1/heartbeat', PS_HEALTH, null)).json.code, 'AUTH_REQUIRED');
    // Unauthenticated requests are refused before their body is even validated.
    assert.equal((await h.post('/v1/policies', { nonsense: true }, null)).status, 401);

    const ps = await h.register('ps', 'ps-1');
    const agent = await h.register('agent', 'vm-1');
    assert.equal((await h.get('/v1/items', ps.token)).json.code, 'BAD_TOKEN', 'a component token is not an operator token');
    assert.equal((await h.post('/v1/heartbeat', PS_HEALTH, h.operatorToken)).json.code, 'BAD_TOKEN', 'nor the other way round');
    assert.equal((await h.post('/v1/heartbeat', PS_HEALTH, `${ps.componentId}.forged`)).json.code, 'BAD_TOKEN');

    const revoked = await h.post(`/v1/components/${agent.componentId}/revoke`);
    assert.equal(revoked.status, 200);
    assert.equal(revoked.json.status, 'revoked');
    const refused = await h.post('/v1/heartbeat', { agent: { disks: [] } }, agent.token);
    assert.equal(refused.status, 403);
    assert.equal(refused.json.code, 'REVOKED');
    // Registering again after a revocation gives a new identity.
    const renewedAgent = await h.register('agent', 'vm-1');
    assert.notEqual(renewedAgent.componentId, agent.componentId);

    // Renewal: the new token works, the old one does not.
    const renewed = await h.post('/v1/token', undefined, ps.token);
    assert.equal(renewed.status, 200);
    assert.equal((await h.post('/v1/heartbeat', PS_HEALTH, ps.token)).json.code, 'BAD_TOKEN');
    assert.equal((await h.post('/v1/heartbeat', PS_HEALTH, renewed.json.token)).status, 200);

    h.clock.advance(3601 * 1000);
    const expired = await h.post('/v1/heartbeat', PS_HEALTH, renewed.json.token);
    assert.equal(expired.status, 401);
    assert.equal(expired.json.code, 'TOKEN_EXPIRED');
    assert.match(expired.json.remedy, /register/);
  });
});

test('malformed payloads get 400 naming the field', async () => {
  await withCs({}, async (h) => {
    const missing = await h.post('/v1/policies', { rpoThresholdSeconds: 900 });
    assert.equal(missing.status, 400);
    assert.equal(missing.json.code, 'BAD_REQUEST');
    assert.equal(missing.json.field, 'name');
    assert.match(missing.json.message, /body\.name is required/);

    const range = await h.post('/v1/policies', { name: 'gold', rpoThresholdSeconds: 5 });
    assert.equal(range.json.field, 'rpoThresholdSeconds');
    assert.match(range.json.message, />= 60/);

    const unknown = await h.post('/v1/fabrics', { kind: 'physical', name: 'a', colour: 'red' });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.json.field, 'colour');
    assert.match(unknown.json.message, /not a known field/);

    const several = await h.post('/v1/machines', { fabricId: 'nope', name: '' });
    assert.deepEqual(
      several.json.problems.map((p: { field: string }) => p.field),
      ['fabricId', 'name'],
    );

    const nested = await h.post('/v1/items', { machineId: crypto.randomUUID(), policyId: crypto.randomUUID(), agentId: crypto.randomUUID(), psId: crypto.randomUUID(), mtId: crypto.randomUUID(), disks: [{ diskId: 'd0', sizeBytes: 1000, sourcePath: '/a', targetPath: '/b' }] });
    assert.equal(nested.json.field, 'disks.0.sizeBytes');

    const badId = await h.get('/v1/items/not-a-uuid');
    assert.equal(badId.status, 400);
    assert.equal(badId.json.message, 'params.id must be a UUID');
    assert.equal((await h.get('/v1/jobs?limit=0')).json.field, 'limit');

    const json = await h.request('POST', '/v1/fabrics', { raw: '{"kind": "physical",' });
    assert.equal(json.status, 400);
    assert.equal(json.json.code, 'BAD_REQUEST');

    const ps = await h.register('ps', 'ps-1');
    const wrongSection = await h.post('/v1/heartbeat', { mt: { volumes: [], journals: [] } }, ps.token);
    assert.equal(wrongSection.status, 400);
    assert.equal(wrongSection.json.code, 'HEARTBEAT_KIND_MISMATCH');
    assert.equal(wrongSection.json.field, 'mt');
    const badHealth = await h.post('/v1/heartbeat', { ps: { ...PS_HEALTH.ps, spoolState: 'melting' } }, ps.token);
    assert.equal(badHealth.json.field, 'ps.spoolState');

    assert.equal((await h.get('/v1/nowhere')).json.code, 'ROUTE_NOT_FOUND');
    assert.equal((await h.get(`/v1/items/${crypto.randomUUID()}`)).status, 404);
  });
});

test('/openapi.json documents every route with its schemas and security', async () => {
  await withCs({}, async (h) => {
    const doc = (await h.get('/openapi.json', null)).json;
    assert.match(doc.openapi, /^3\./);
    const routes = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    for (const r of [
      'GET /v1/health',
      'POST /v1/register',
      'POST /v1/heartbeat',
      'POST /v1/token',
      'POST /v1/recovery-points',
      'GET /v1/components',
      'GET /v1/components/{id}',
      'POST /v1/components/{id}/revoke',
      'GET /v1/fabrics',
      'POST /v1/fabrics',
      'GET /v1/fabrics/{id}',
      'GET /v1/machines',
      'POST /v1/machines',
      'GET /v1/machines/{id}',
      'GET /v1/policies',
      'POST /v1/policies',
      'GET /v1/policies/{id}',
      'PATCH /v1/policies/{id}',
      'GET /v1/items',
      'POST /v1/items',
      'GET /v1/items/{id}',
      'GET /v1/items/{id}/recovery-points',
      'GET /v1/jobs',
      'GET /v1/jobs/{id}',
      'GET /v1/jobs/{id}/watch',
      'POST /v1/jobs/{id}/cancel',
      'GET /metrics',
    ]) {
      assert.ok(routes.includes(r), `${r} is documented`);
    }
    assert.deepEqual(Object.keys(doc.components.securitySchemes).sort(), ['component', 'operator']);
    const createPolicy = doc.paths['/v1/policies'].post;
    assert.deepEqual(createPolicy.security, [{ operator: [] }]);
    assert.ok(createPolicy.requestBody.content['application/json'].schema.properties.rpoThresholdSeconds);
    assert.ok(createPolicy.responses['201']);
    assert.ok(createPolicy.responses['400']);
  });
});
