import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { Agent, request } from 'undici';
import { ArmVmClient, AzureArmError, type AzureVmRef } from '../../src/fabrics/azure/arm.js';
import { AzureFabric } from '../../src/fabrics/azure/fabric.js';
import type { FabricMachine } from '../../src/fabrics/fabric.js';
import { FAKE_ARM_API_VERSIONS, type FakeArmRequest } from '../../src/lab/fake-arm.js';
import { startArmSite, type ArmSite } from '../helpers/fake-arm.js';
import { until } from '../helpers/stack.js';

// Azure VM state through Resource Manager: the real SDK (@azure/arm-compute, @azure/identity's
// ClientSecretCredential through MSAL) drives our wrapper against the fake ARM server over HTTPS
// with a certificate of our PKI. Each test uses its own VM, so they do not depend on each other.

let site: ArmSite;
let arm: ArmVmClient;
let sub: string;

before(async () => {
  // Two VMs a page, so finding a moved VM walks nextLink pages.
  site = await startArmSite({ operationPolls: 2, pageSize: 2 });
  sub = site.subscriptionId;
  site.fake.addResourceGroup(sub, 'rg-recovery', 'westeurope');
  site.fake.addResourceGroup(sub, 'rg-other', 'westeurope');
  arm = new ArmVmClient(site.credentials, site.clientOptions);
});
after(async () => {
  await site?.stop();
});

function addVm(name: string, powerState: 'running' | 'stopped' | 'deallocated' = 'running'): AzureVmRef & { vmId: string } {
  const vm = site.fake.addVm({ subscriptionId: sub, resourceGroup: 'rg-recovery', name, powerState, dataDisks: [{ name: `${name}-data0`, sizeGb: 8 }] });
  return { subscriptionId: sub, resourceGroup: 'rg-recovery', vmName: name, vmId: vm.vmId };
}

const fakeKey = (ref: AzureVmRef) => ({ subscriptionId: ref.subscriptionId, resourceGroup: ref.resourceGroup, name: ref.vmName });
const machine = (ref: AzureVmRef): FabricMachine => ({ id: `m-${ref.vmName}`, name: ref.vmName, power: { ...ref } });
const since = (mark: number): FakeArmRequest[] => site.fake.requests.slice(mark);
const posts = (reqs: FakeArmRequest[], action: string) => reqs.filter((r) => r.method === 'POST' && r.path.endsWith(`/${action}`));

async function rejectsWith(p: Promise<unknown>, code: string): Promise<AzureArmError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof AzureArmError, `expected an AzureArmError, got ${inspect(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but it resolved`);
}

test('facts of a running VM come from its instance view, after a real client-credentials token flow', async () => {
  const ref = addVm('vm-facts');
  const mark = site.fake.requests.length;
  const facts = await new ArmVmClient(site.credentials, site.clientOptions).vmFacts(ref);
  assert.deepEqual(facts, {
    exists: true,
    resourceGroupMoved: false,
    resourceGroup: 'rg-recovery',
    powerState: 'running',
    provisioningState: 'Succeeded',
    vmId: ref.vmId,
    location: 'westeurope',
    agentReady: true,
  });
  const reqs = since(mark);
  assert.ok(reqs.some((r) => r.method === 'GET' && r.path === `/${site.tenantId}/v2.0/.well-known/openid-configuration`), 'MSAL read the OpenID configuration');
  assert.ok(reqs.some((r) => r.method === 'POST' && r.path === `/${site.tenantId}/oauth2/v2.0/token` && r.status === 200), 'a token was issued');
  const get = reqs.find((r) => r.path.endsWith('/virtualMachines/vm-facts'));
  assert.ok(get, 'the VM was read');
  assert.equal(get.status, 200);
  assert.equal(get.authorized, true);
  assert.equal(get.query['$expand'], 'instanceView');
  assert.ok(FAKE_ARM_API_VERSIONS.includes(get.query['api-version'] ?? ''), `api-version ${get.query['api-version']}`);
});

test('power off, deallocate and start run as long-running operations, polled to the end', async () => {
  const ref = addVm('vm-power');
  let mark = site.fake.requests.length;
  assert.equal(await arm.powerOff(ref, { skipShutdown: true }), 'stopped');
  assert.equal(site.fake.vm(fakeKey(ref))?.powerState, 'stopped');
  const reqs = since(mark);
  const [post] = posts(reqs, 'powerOff');
  assert.equal(post?.status, 202);
  assert.equal(post?.query['skipShutdown'], 'true');
  const statusPolls = reqs.filter((r) => r.path.includes('/operations/') && r.query['monitor'] === undefined);
  assert.equal(statusPolls.length, 3, 'two InProgress answers, then Succeeded (Azure-AsyncOperation)');
  assert.equal(reqs.filter((r) => r.path.includes('/operations/') && r.query['monitor'] === 'true').length, 1, 'then the final GET on Location');
  assert.equal((await arm.vmFacts(ref)).powerState, 'stopped');

  mark = site.fake.requests.length;
  assert.equal(await arm.deallocate(ref), 'deallocated');
  assert.equal(site.fake.vm(fakeKey(ref))?.powerState, 'deallocated');
  assert.equal(posts(since(mark), 'deallocate').length, 1);
  const facts = await arm.vmFacts(ref);
  assert.equal(facts.powerState, 'deallocated');
  assert.equal(facts.agentReady, false, 'a deallocated VM has no guest agent');

  mark = site.fake.requests.length;
  assert.equal(await arm.start(ref), 'running');
  assert.equal(site.fake.vm(fakeKey(ref))?.powerState, 'running');
  assert.equal(posts(since(mark), 'start').length, 1);
  assert.equal((await arm.vmFacts(ref)).powerState, 'running');
});

test('power operations are idempotent: a VM already in the asked state gets no request', async () => {
  const ref = addVm('vm-idem', 'deallocated');
  const mark = site.fake.requests.length;
  assert.equal(await arm.deallocate(ref), 'deallocated');
  // ARM itself refuses powerOff on a deallocated VM (409); ours sees it is already off.
  assert.equal(await arm.powerOff(ref), 'deallocated');
  assert.equal(since(mark).filter((r) => r.method === 'POST').length, 0);
  assert.equal(await arm.start(ref), 'running');
  assert.equal(await arm.start(ref), 'running');
  assert.equal(posts(since(mark), 'start').length, 1, 'one start for two calls');
});

test('a VM already changing state is waited for before deciding', async () => {
  const ref = addVm('vm-transit');
  site.fake.setPowerState(fakeKey(ref), 'stopping');
  const mark = site.fake.requests.length;
  const done = arm.powerOff(ref);
  await until('powerOff to poll the instance view twice', () => (since(mark).filter((r) => r.path.endsWith('/instanceView')).length >= 2 ? true : undefined), 10_000);
  site.fake.setPowerState(fakeKey(ref), 'stopped');
  assert.equal(await done, 'stopped');
  assert.equal(posts(since(mark), 'powerOff').length, 0, 'the VM reached stopped by itself');
});

test('a deleted VM: its facts say it is gone, power fails with AZURE_VM_NOT_FOUND', async () => {
  const ref = addVm('vm-deleted');
  site.fake.deleteVm(fakeKey(ref));
  const facts = await arm.vmFacts(ref);
  assert.equal(facts.exists, false);
  assert.equal(facts.resourceGroupMoved, false);
  assert.equal(facts.resourceGroup, null);
  const err = await rejectsWith(arm.start(ref), 'AZURE_VM_NOT_FOUND');
  assert.equal(err.armCode, 'ResourceNotFound');
  assert.equal(err.status, 404);

  const fabric = new AzureFabric(site.credentials, site.clientOptions);
  const mf = await fabric.machineFacts(machine(ref), AbortSignal.timeout(30_000));
  assert.deepEqual({ exists: mf.exists, powerState: mf.powerState, responding: mf.responding, flags: mf.flags }, {
    exists: false,
    powerState: 'unknown',
    responding: false,
    flags: { sourceDeleted: true, resourceGroupMoved: false },
  });
  await rejectsWith(fabric.powerState(machine(ref), AbortSignal.timeout(30_000)), 'AZURE_VM_NOT_FOUND');
  await rejectsWith(fabric.power(machine({ ...ref, resourceGroup: 'rg-missing' }), 'stop', AbortSignal.timeout(30_000)), 'AZURE_VM_NOT_FOUND');
});

test('a VM moved to another resource group is found there, by vmId and by name', async () => {
  const ref = addVm('vm-moved');
  site.fake.moveVm(fakeKey(ref), 'rg-other');
  const byId = await arm.vmFacts(ref);
  assert.equal(byId.exists, false);
  assert.equal(byId.resourceGroupMoved, true);
  assert.equal(byId.resourceGroup, 'rg-other');
  assert.equal(byId.vmId, ref.vmId);
  const { vmId: _, ...byNameRef } = ref;
  const byName = await arm.vmFacts(byNameRef);
  assert.equal(byName.resourceGroupMoved, true);
  assert.equal(byName.resourceGroup, 'rg-other');

  assert.ok(site.fake.requests.some((r) => r.path === `/subscriptions/${sub}/providers/Microsoft.Compute/virtualMachines` && r.query['$skiptoken'] !== undefined), 'the listing was paged');
  const onePage = new ArmVmClient(site.credentials, { ...site.clientOptions, maxListPages: 1 });
  await rejectsWith(onePage.vmFacts({ ...byNameRef, vmName: 'vm-nowhere' }), 'AZURE_ARM_ERROR');

  const mf = await new AzureFabric(site.credentials, site.clientOptions).machineFacts(machine(ref), AbortSignal.timeout(30_000));
  assert.equal(mf.exists, false, 'moved: only source-deleted fails, not also 78093');
  assert.deepEqual(mf.flags, { sourceDeleted: true, resourceGroupMoved: true });
});

test('another VM of the same name is not ours: a recorded vmId tells them apart', async () => {
  const ref = addVm('vm-replaced');
  site.fake.deleteVm(fakeKey(ref));
  site.fake.addVm({ subscriptionId: sub, resourceGroup: 'rg-recovery', name: 'vm-replaced' });
  const facts = await arm.vmFacts(ref);
  assert.equal(facts.exists, false, 'same name, other vmId');
  assert.equal(facts.resourceGroupMoved, false);
  const { vmId: _, ...byNameRef } = ref;
  assert.equal((await arm.vmFacts(byNameRef)).exists, true, 'without a vmId the name is all there is');
});

test('machine facts for the pre-flight: running and agent Ready, or not responding', async () => {
  const ref = addVm('vm-preflight');
  const fabric = new AzureFabric(site.credentials, site.clientOptions);
  const signal = AbortSignal.timeout(30_000);
  let mf = await fabric.machineFacts(machine(ref), signal);
  assert.deepEqual({ exists: mf.exists, powerState: mf.powerState, responding: mf.responding, flags: mf.flags }, {
    exists: true,
    powerState: 'running',
    responding: true,
    flags: { sourceDeleted: false, resourceGroupMoved: false },
  });
  site.fake.setAgentReady(fakeKey(ref), false);
  mf = await fabric.machineFacts(machine(ref), signal);
  assert.equal(mf.powerState, 'running');
  assert.equal(mf.responding, false, 'guest agent not Ready');
  await fabric.power(machine(ref), 'stop', signal);
  assert.equal(site.fake.vm(fakeKey(ref))?.powerState, 'deallocated', 'the fabric stops by deallocating');
  assert.equal(await fabric.powerState(machine(ref), signal), 'stopped');
  mf = await fabric.machineFacts(machine(ref), signal);
  assert.equal(mf.powerState, 'stopped');
  assert.equal(mf.responding, false);
  await fabric.power(machine(ref), 'start', signal);
  assert.equal(await fabric.powerState(machine(ref), signal), 'running');
});

test('a wrong client secret fails with AZURE_AUTH_FAILED, and the secret appears nowhere', async () => {
  const ref = addVm('vm-auth');
  const wrongSecret = 'wrong-secret-value-0123456789';
  const mark = site.fake.requests.length;
  const client = new ArmVmClient({ ...site.credentials, clientSecret: wrongSecret }, site.clientOptions);
  const err = await rejectsWith(client.vmFacts(ref), 'AZURE_AUTH_FAILED');
  assert.equal(err.armCode, 'invalid_client');
  assert.match(err.message, /AADSTS7000215/);
  const reqs = since(mark);
  assert.ok(reqs.some((r) => r.path.endsWith('/oauth2/v2.0/token') && r.status === 401));
  assert.equal(reqs.filter((r) => r.path.startsWith('/subscriptions/')).length, 0, 'no ARM request without a token');
  for (const secret of [wrongSecret, site.credentials.clientSecret]) {
    assert.ok(!inspect(err, { depth: 6 }).includes(secret), 'not in the error');
    assert.ok(!inspect(client, { depth: 6 }).includes(secret), 'not in the client');
    assert.ok(!inspect(arm, { depth: 6 }).includes(secret), 'not in the client');
  }
});

test('without our CA the SDK refuses the fake certificate (verification stays on)', async () => {
  const ref = addVm('vm-tls');
  const { ca: _, ...noCa } = site.credentials;
  const mark = site.fake.requests.length;
  const err = await rejectsWith(new ArmVmClient(noCa, site.clientOptions).vmFacts(ref), 'AZURE_UNREACHABLE');
  assert.equal(err.armCode, 'endpoints_resolution_error');
  assert.equal(since(mark).length, 0, 'no request got past the TLS handshake');
});

test('ARM 500 once is retried by the SDK pipeline; a lasting 500 surfaces as a retryable AZURE_ARM_ERROR', async () => {
  const ref = addVm('vm-500');
  let mark = site.fake.requests.length;
  site.fake.failNext({ status: 500, code: 'InternalServerError', method: 'GET', pathContains: '/virtualMachines/vm-500' });
  assert.equal((await arm.vmFacts(ref)).powerState, 'running');
  assert.deepEqual(
    since(mark)
      .filter((r) => r.path.endsWith('/virtualMachines/vm-500'))
      .map((r) => r.status),
    [500, 200],
  );

  mark = site.fake.requests.length;
  site.fake.failNext({ status: 500, code: 'InternalServerError', method: 'GET', pathContains: '/virtualMachines/vm-500', count: 2 });
  const once = new ArmVmClient(site.credentials, { ...site.clientOptions, retry: { maxRetries: 1, retryDelayInMs: 10 } });
  const err = await rejectsWith(once.vmFacts(ref), 'AZURE_ARM_ERROR');
  site.fake.clearFaults();
  assert.equal(err.status, 500);
  assert.equal(err.armCode, 'InternalServerError');
  assert.equal(err.retryable, true);
  assert.equal(since(mark).filter((r) => r.path.endsWith('/virtualMachines/vm-500') && r.status === 500).length, 2);
});

test('an operation that ends Failed in ARM is a typed error: the VM deleted while it ran', async () => {
  const ref = addVm('vm-op-fails');
  site.fake.operationPolls = 10_000;
  try {
    const mark = site.fake.requests.length;
    const done = arm.deallocate(ref);
    await until('the deallocate operation to be accepted', () => (posts(since(mark), 'deallocate').length > 0 ? true : undefined), 10_000);
    site.fake.deleteVm(fakeKey(ref));
    const err = await rejectsWith(done, 'AZURE_VM_NOT_FOUND');
    assert.equal(err.armCode, 'ResourceNotFound');
  } finally {
    site.fake.operationPolls = 2;
  }
});

test('a long-running operation is bounded by its timeout and by the caller abort', async () => {
  site.fake.operationPolls = 10_000;
  try {
    const slow = addVm('vm-slow');
    // Whichever phase the deadline hits (token, instance view, polls), it is reported as a timeout.
    const bounded = new ArmVmClient(site.credentials, { ...site.clientOptions, operationTimeoutMs: 1000 });
    const t = await rejectsWith(bounded.powerOff(slow), 'AZURE_TIMEOUT');
    assert.equal(t.retryable, true);

    const aborted = addVm('vm-aborted');
    const controller = new AbortController();
    const mark = site.fake.requests.length;
    const done = arm.powerOff(aborted, {}, controller.signal);
    await until('the powerOff operation to be accepted', () => (posts(since(mark), 'powerOff').length > 0 ? true : undefined), 10_000);
    const reason = new Error('operator cancelled');
    controller.abort(reason);
    await assert.rejects(done, (e) => e === reason);
  } finally {
    site.fake.operationPolls = 2;
  }
});

test('malformed references and credentials are refused before any request', async () => {
  const mark = site.fake.requests.length;
  await rejectsWith(arm.vmFacts({ subscriptionId: 'not-a-guid', resourceGroup: 'rg', vmName: 'vm' }), 'AZURE_INVALID_INPUT');
  await rejectsWith(arm.vmFacts({ subscriptionId: sub, resourceGroup: 'rg/../x', vmName: 'vm' }), 'AZURE_INVALID_INPUT');
  await rejectsWith(arm.start({ subscriptionId: sub, resourceGroup: 'rg-recovery', vmName: 'vm?x=1' }), 'AZURE_INVALID_INPUT');
  await rejectsWith(arm.vmFacts({ subscriptionId: sub, resourceGroup: 'rg-recovery', vmName: 'vm', vmId: 'nope' }), 'AZURE_INVALID_INPUT');
  const fabric = new AzureFabric(site.credentials, site.clientOptions);
  await rejectsWith(fabric.machineFacts({ id: 'm', name: 'm', power: { start: ['/bin/true'] } }, AbortSignal.timeout(5000)), 'AZURE_INVALID_INPUT');
  assert.throws(() => new ArmVmClient({ ...site.credentials, armEndpoint: 'http://127.0.0.1:1' }), (e) => e instanceof AzureArmError && e.code === 'AZURE_INVALID_INPUT');
  assert.throws(
    () => new ArmVmClient({ ...site.credentials, clientId: 'x' }),
    (e) => e instanceof AzureArmError && e.code === 'AZURE_INVALID_INPUT' && !e.message.includes(site.credentials.clientSecret),
  );
  assert.equal(since(mark).length, 0);
});

test('the fake refuses ARM requests without a valid bearer token (401) and answers ARM-shaped errors', async () => {
  const dispatcher = new Agent({ connect: { ca: site.fake.caPem } });
  try {
    const vmPath = `/subscriptions/${sub}/resourceGroups/rg-recovery/providers/Microsoft.Compute/virtualMachines`;
    const version = `api-version=${FAKE_ARM_API_VERSIONS[0]}`;
    const call = async (path: string, headers: Record<string, string> = {}, method: 'GET' | 'POST' = 'GET') => {
      const r = await request(`${site.fake.url}${path}`, { dispatcher, headers, method });
      return { status: r.statusCode, body: (await r.body.json()) as { error?: { code: string; message: string } } };
    };
    addVm('vm-raw');
    addVm('vm-raw-off', 'deallocated');
    let r = await call(`${vmPath}/vm-raw?${version}`);
    assert.equal(r.status, 401);
    assert.equal(r.body.error?.code, 'AuthenticationFailed');
    r = await call(`${vmPath}/vm-raw?${version}`, { authorization: 'Bearer made-up' });
    assert.equal(r.status, 401);
    assert.equal(r.body.error?.code, 'InvalidAuthenticationToken');

    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: site.credentials.clientId, client_secret: site.credentials.clientSecret, scope: 'https://management.azure.com/.default' });
    const t = await request(`${site.fake.url}/${site.tenantId}/oauth2/v2.0/token`, { dispatcher, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() });
    assert.equal(t.statusCode, 200);
    const token = ((await t.body.json()) as { access_token: string }).access_token;
    const auth = { authorization: `Bearer ${token}` };
    assert.equal((await call(`${vmPath}/vm-raw?${version}`, auth)).status, 200);
    const cases: Array<[string, number, string]> = [
      [`${vmPath}/vm-raw`, 400, 'MissingApiVersionParameter'],
      [`${vmPath}/vm-raw?api-version=2015-01-01`, 400, 'InvalidApiVersionParameter'],
      [`${vmPath}/vm-raw?${version}&$expand=everything`, 400, 'InvalidParameter'],
      [`${vmPath}/vm-none?${version}`, 404, 'ResourceNotFound'],
      [`/subscriptions/${sub}/resourceGroups/rg-none/providers/Microsoft.Compute/virtualMachines/vm-raw?${version}`, 404, 'ResourceGroupNotFound'],
      [`/subscriptions/${sub}/providers/Microsoft.Storage/storageAccounts?${version}`, 404, 'InvalidResourceType'],
    ];
    const postCases: Array<[string, number, string]> = [
      [`${vmPath}/vm-raw-off/powerOff?${version}`, 409, 'OperationNotAllowed'],
      [`${vmPath}/vm-raw/powerOff?${version}&skipShutdown=maybe`, 400, 'InvalidParameter'],
      [`${vmPath}/vm-raw/restart?${version}`, 404, 'InvalidResourceType'],
    ];
    for (const [path, status, code] of [...cases, ...postCases]) {
      const answer = await call(path, auth, postCases.some((c) => c[0] === path) ? 'POST' : 'GET');
      assert.equal(answer.status, status, path);
      assert.equal(answer.body.error?.code, code, path);
      assert.equal(typeof answer.body.error?.message, 'string');
    }
  } finally {
    await dispatcher.close();
  }
});
