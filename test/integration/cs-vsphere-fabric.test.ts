import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { inventoryRefresher } from '../../src/cs/inventory/vsphere-inventory.js';
import type { Logger } from '../../src/runtime/log.js';
import { runCli } from '../helpers/cli.js';
import { startVcsim, type Vcsim } from '../helpers/vcsim.js';
import { withCs, type CsHarness, type Reply } from './cs-fixtures.js';

// A vsphere fabric on the configuration server, against vcsim (model: test/vcsim/main.go): added
// through the API (the CS logs in first and stores nothing on failure), its inventory read on
// demand and on the CS's timer, shown through the API and by `boomerang fabric`.

let sim: Vcsim;
let dir: string;
before(async () => {
  sim = await startVcsim();
  dir = await mkdtemp(join(tmpdir(), 'boomerang-vsphere-fabric-'));
});
after(async () => {
  await sim?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Every log line the CS writes, to check that no secret reaches them. */
function capturingLogger(): { logger: Logger; text: () => string } {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString('utf8');
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), text: () => text };
}

const vsphere = (name: string, extra: Record<string, unknown> = {}, password = sim.password) => ({
  kind: 'vsphere',
  name,
  config: { url: sim.url, username: sim.username, thumbprint: sim.thumbprint, ...extra },
  password,
});

/** Records every answer so the test can check that none carries a password. */
function recorder(h: CsHarness): { post: (url: string, body?: unknown) => Promise<Reply>; get: (url: string) => Promise<Reply>; bodies: string[] } {
  const bodies: string[] = [];
  return {
    bodies,
    post: async (url, body) => {
      const r = await h.post(url, body);
      bodies.push(r.text);
      return r;
    },
    get: async (url) => {
      const r = await h.get(url);
      bodies.push(r.text);
      return r;
    },
  };
}

async function stored(h: CsHarness): Promise<{ fabrics: number; secrets: number; inventories: number }> {
  const count = async (t: 'fabrics' | 'fabric_secrets' | 'fabric_inventory') => Number((await h.cs.db.selectFrom(t).select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
  return { fabrics: await count('fabrics'), secrets: await count('fabric_secrets'), inventories: await count('fabric_inventory') };
}

test('adding a vsphere fabric: refused logins and untrusted certificates store nothing; a good one is read and shown, and no password ever leaves the CS', async () => {
  const log = capturingLogger();
  await withCs({ logger: log.logger, fabricRefreshIntervalSeconds: 0 }, async (h) => {
    const api = recorder(h);
    const wrong = 'not-the-vcsim-password';

    const refused = await api.post('/v1/fabrics', vsphere('vc01', {}, wrong));
    assert.equal(refused.status, 400, refused.text);
    assert.equal(refused.json.code, 'FABRIC_LOGIN_FAILED');
    assert.equal(refused.json.field, 'password');
    assert.match(refused.json.message, new RegExp(`refused the login of ${sim.username}`));

    const untrusted = await api.post('/v1/fabrics', vsphere('vc01', { thumbprint: undefined }));
    assert.equal(untrusted.status, 400, untrusted.text);
    assert.equal(untrusted.json.code, 'FABRIC_TLS_UNTRUSTED', 'a self-signed vCenter without thumbprint or CA is not trusted');

    const pinnedWrong = await api.post('/v1/fabrics', vsphere('vc01', { thumbprint: '00'.repeat(20) }));
    assert.equal(pinnedWrong.json.code, 'FABRIC_TLS_UNTRUSTED');

    const misplaced = await api.post('/v1/fabrics', { ...vsphere('vc01'), config: { url: sim.url, username: sim.username, insecure: true, password: sim.password } });
    assert.equal(misplaced.status, 400, misplaced.text);
    assert.equal(misplaced.json.code, 'FABRIC_CONFIG_INVALID');
    assert.equal(misplaced.json.field, 'config.password');

    const twoTrusts = await api.post('/v1/fabrics', vsphere('vc01', { insecure: true }));
    assert.equal(twoTrusts.json.code, 'FABRIC_CONFIG_INVALID');
    const noPassword = await api.post('/v1/fabrics', { kind: 'vsphere', name: 'vc01', config: { url: sim.url, username: sim.username, insecure: true } });
    assert.equal(noPassword.json.field, 'password');
    const plainHttp = await api.post('/v1/fabrics', vsphere('vc01', { url: sim.url.replace('https:', 'http:') }));
    assert.equal(plainHttp.json.field, 'config.url');

    assert.deepEqual(await stored(h), { fabrics: 0, secrets: 0, inventories: 0 }, 'nothing is stored by a refused request');

    const created = await api.post('/v1/fabrics', vsphere('vc01'));
    assert.equal(created.status, 201, created.text);
    assert.equal(created.json.passwordSet, true);
    assert.deepEqual(created.json.config, { url: sim.url, username: sim.username, thumbprint: sim.thumbprint });
    const id = created.json.id as string;
    assert.deepEqual(await stored(h), { fabrics: 1, secrets: 1, inventories: 1 });

    // Joins the read the creation started, or makes a new one.
    const refreshed = await api.post(`/v1/fabrics/${id}/refresh`);
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.equal(refreshed.json.status, 'ok');
    const inv = (await api.get(`/v1/fabrics/${id}/inventory`)).json;
    assert.equal(inv.status, 'ok');
    assert.equal(inv.error, null);
    assert.equal(inv.vcenter.apiType, 'VirtualCenter');
    assert.deepEqual(inv.datacenters, ['DC0']);
    assert.deepEqual(inv.hosts.map((x: { name: string }) => x.name).sort(), ['DC0_H0', 'DC0_H1']);
    const ds = Object.fromEntries(inv.datastores.map((d: { name: string }) => [d.name, d]));
    assert.equal(ds['nfs-ds'].type, 'NFS');
    assert.equal(ds['nfs41-ds'].type, 'NFS41');
    assert.deepEqual(ds['nfs41-ds'].mounts, [{ host: 'DC0_H1', accessMode: 'readOnly', mounted: true, accessible: true }]);
    const vm = inv.vms.find((v: { name: string }) => v.name === 'DC0_H0_VM0');
    assert.equal(vm.host, 'DC0_H0');
    assert.equal(vm.enableUuid, true);
    assert.equal(vm.toolsRunningStatus, 'guestToolsRunning');
    assert.equal(vm.disks[0].datastore, 'LocalDS_0');
    assert.match(vm.disks[0].uuid, /^6000C29/i);
    assert.equal(inv.hosts[0].licence.editionKey, 'eval');
    assert.ok(Date.parse(inv.refreshedAt) > 0);

    const list = await api.get('/v1/fabrics');
    assert.deepEqual(list.json.map((f: { name: string; passwordSet?: boolean }) => [f.name, f.passwordSet]), [['vc01', true]]);
    await api.get(`/v1/fabrics/${id}`);
    assert.equal((await api.post('/v1/fabrics', vsphere('vc01'))).json.code, 'NAME_TAKEN');

    for (const body of api.bodies) {
      assert.ok(!body.includes(sim.password), `no answer carries the password: ${body.slice(0, 200)}`);
      assert.ok(!body.includes(wrong), 'nor a wrong one');
    }
    assert.ok(log.text().includes('fabric inventory refreshed'), 'the CS logged the read');
    assert.ok(!log.text().includes(sim.password) && !log.text().includes(wrong), 'no log line carries a password');
    const secret = await h.cs.db.selectFrom('fabric_secrets').select('password').where('fabric_id', '=', id).executeTakeFirstOrThrow();
    assert.equal(secret.password, sim.password, 'the CS keeps the password in its database');

    const physical = await api.post('/v1/fabrics', { kind: 'physical', name: 'site-a' });
    assert.equal((await api.get(`/v1/fabrics/${physical.json.id}/inventory`)).json.code, 'FABRIC_NO_INVENTORY');
    assert.equal((await api.post('/v1/fabrics', { kind: 'physical', name: 'site-b', password: 'x' })).json.code, 'FABRIC_CONFIG_INVALID');
  });
});

test('a read-only account is reported as lacking privileges; a failed read keeps the last inventory and says why', async () => {
  await withCs({ fabricRefreshIntervalSeconds: 0 }, async (h) => {
    const ro = await h.post('/v1/fabrics', { kind: 'vsphere', name: 'vc-ro', config: { url: sim.url, username: sim.readOnly.username, caPem: sim.certPem }, password: sim.readOnly.password });
    assert.equal(ro.status, 201, ro.text);
    const inv = (await h.post(`/v1/fabrics/${ro.json.id}/refresh`)).json;
    assert.equal(inv.status, 'lacking-privileges');
    assert.equal(inv.error.code, 'FABRIC_PRIVILEGES_MISSING');
    assert.match(inv.error.message, /Datastore\.Browse/);
    assert.ok(inv.privileges.missing.includes('VirtualMachine.Config.AddExistingDisk'));
    assert.equal(inv.datastores.length, 0);
    assert.ok(inv.privileges.hiddenDatastores.length >= 1, 'the datastores it cannot see are named');
    assert.equal(inv.hosts.length, 2, 'what it can see is kept');

    const ok = await h.post('/v1/fabrics', { kind: 'vsphere', name: 'vc-admin', config: { url: sim.url, username: sim.username, insecure: true }, password: sim.password });
    const first = (await h.post(`/v1/fabrics/${ok.json.id}/refresh`)).json;
    assert.equal(first.status, 'ok');
    // The account's password changes on vCenter: simulated by changing the stored one.
    await h.cs.db.updateTable('fabric_secrets').set({ password: 'changed-on-vcenter' }).where('fabric_id', '=', ok.json.id).execute();
    h.clock.advance(60_000);
    const failed = await h.post(`/v1/fabrics/${ok.json.id}/refresh`);
    assert.equal(failed.status, 400);
    assert.equal(failed.json.code, 'FABRIC_LOGIN_FAILED');
    const kept = (await h.get(`/v1/fabrics/${ok.json.id}/inventory`)).json;
    assert.equal(kept.status, 'failed');
    assert.equal(kept.error.code, 'FABRIC_LOGIN_FAILED');
    assert.equal(kept.refreshedAt, first.refreshedAt, 'the last good read is kept');
    assert.notEqual(kept.attemptedAt, first.attemptedAt);
    assert.equal(kept.vms.length, 4);
  });
});

test('the CS reads every vsphere fabric again each interval on its clock', async () => {
  await withCs({ fabricRefreshIntervalSeconds: 600 }, async (h) => {
    const created = await h.post('/v1/fabrics', vsphere('vc01'));
    assert.equal(created.status, 201, created.text);
    const refresher = inventoryRefresher(h.cs.context);
    await refresher.idle();
    const first = (await h.get(`/v1/fabrics/${created.json.id}/inventory`)).json;
    assert.equal(first.status, 'ok', 'the creation started the first read');
    h.clock.advance(599_000);
    await refresher.idle();
    assert.equal((await h.get(`/v1/fabrics/${created.json.id}/inventory`)).json.attemptedAt, first.attemptedAt, 'not before the interval');
    h.clock.advance(1_000);
    await refresher.idle();
    const second = (await h.get(`/v1/fabrics/${created.json.id}/inventory`)).json;
    assert.equal(second.status, 'ok');
    assert.equal(Date.parse(second.attemptedAt) - Date.parse(first.attemptedAt), 600_000);
  });
});

const cli = runCli;

test('the CLI adds a vCenter from a password file, lists it, refreshes it and prints its inventory', async () => {
  await withCs({ fabricRefreshIntervalSeconds: 0 }, async (h) => {
    const env = { BOOMERANG_CS: h.cs.url, BOOMERANG_CA: h.cs.paths.ca, BOOMERANG_TOKEN_FILE: h.cs.paths.adminToken };
    const passwordFile = join(dir, 'vc.pass');
    await writeFile(passwordFile, `${sim.password}\n`, { mode: 0o600 });
    const vcCa = join(dir, 'vc-ca.pem');
    await writeFile(vcCa, sim.certPem);

    const help = await cli(['fabric', 'add', 'vsphere', '--help'], env);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--password-file <file>/);
    assert.match(help.stdout, /Exactly one of --thumbprint, --vcenter-ca and --insecure/);

    const both = await cli(['fabric', 'add', 'vsphere', '--name', 'vc01', '--url', sim.url, '--username', sim.username, '--password-file', passwordFile, '--insecure', '--thumbprint', sim.thumbprint], env);
    assert.equal(both.code, 2, both.stderr);

    const badMt = await cli(['fabric', 'add', 'vsphere', '--name', 'vc01', '--url', sim.url, '--username', sim.username, '--password-file', passwordFile, '--vcenter-ca', vcCa, '--mt-vm', 'mt-a'], env);
    assert.equal(badMt.code, 2, badMt.stderr);
    const add = await cli(['fabric', 'add', 'vsphere', '--name', 'vc01', '--url', sim.url, '--username', sim.username, '--password-file', passwordFile, '--vcenter-ca', vcCa, '--mt-vm', 'mt-a=DC0_H0_VM0', '--mt-vm', 'mt-b=DC0_H1_VM0'], env);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /masterTargetVms:?\s+mt-a=DC0_H0_VM0, mt-b=DC0_H1_VM0/);
    assert.match(add.stdout, /Password:\s+set/);
    assert.ok(!add.stdout.includes(sim.password));

    const list = await cli(['fabric', 'list'], env);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`vc01\\s+vsphere\\s+\\S+\\s+${sim.url.replace(/[.]/g, '\\.')}\\s+${sim.username}`));

    const refresh = await cli(['fabric', 'refresh', 'vc01', '-o', 'json'], env);
    assert.equal(refresh.code, 0, refresh.stderr);
    assert.equal(JSON.parse(refresh.stdout).status, 'ok');

    const table = await cli(['fabric', 'inventory', 'vc01'], env);
    assert.equal(table.code, 0, table.stderr);
    for (const vm of ['DC0_H0_VM0', 'DC0_H0_VM1', 'DC0_H1_VM0', 'DC0_H1_VM1']) assert.match(table.stdout, new RegExp(`^${vm}\\s+DC0_H\\d\\s+poweredOn\\s+linuxGuest`, 'm'), `${vm} is printed`);
    assert.match(table.stdout, /^nfs41-ds\s+NFS41\s.*DC0_H1:ro$/m);
    assert.match(table.stdout, /^DC0_H0_VM0\s.*Running\s+0\s+TRUE\s+\[LocalDS_0\] DC0_H0_VM0\/disk1\.vmdk 1 MiB pvscsi 6000C29/im);
    assert.match(table.stdout, /^DC0_H0\s+DC0\s+VMware ESXi \S+\s+Evaluation Mode\s/m);

    const json = await cli(['fabric', 'inventory', 'vc01', '-o', 'json'], env);
    assert.equal(JSON.parse(json.stdout).vms.length, 4);

    const unknown = await cli(['fabric', 'inventory', 'nope'], env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /error \[NOT_FOUND\]: no fabric has the id or name nope; known fabrics: vc01 \(vsphere\)/);

    const wrongFile = join(dir, 'wrong.pass');
    await writeFile(wrongFile, 'wrong\n', { mode: 0o600 });
    const refused = await cli(['fabric', 'add', 'vsphere', '--name', 'vc02', '--url', sim.url, '--username', sim.username, '--password-file', wrongFile, '--insecure'], env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /error \[FABRIC_LOGIN_FAILED\]/);
    assert.match(refused.stderr, /remedy: check the account and its secret — vCenter: the user name/);
  });
});
