// A hand-written FAKE of Azure Resource Manager and of the Microsoft Entra token endpoint: no ARM emulator exists.
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { BoomerangError } from '../replication/errors.js';
import { issueCertificate, type PemPair } from '../security/pki.js';

/**
 * What it serves is what `@azure/arm-compute` (24.x, api-version 2026-03-01) and `@azure/identity`
 * (ClientSecretCredential through MSAL) send, read from their code, over HTTPS with a certificate of
 * our PKI:
 *
 * - `GET /{tenant}/v2.0/.well-known/openid-configuration` and `POST /{tenant}/oauth2/v2.0/token`
 *   (client-credentials grant). Instance discovery goes to login.microsoftonline.com, so clients
 *   pointed here must set `disableInstanceDiscovery`.
 * - Virtual machines: get (`$expand=instanceView`), instanceView, list in a resource group, list in
 *   the subscription, and the actions powerOff (`skipShutdown`), deallocate and start as long-running
 *   operations the way Compute answers them: 202 with `Azure-AsyncOperation` (status document) and
 *   `Location` (202 until done, then 200) headers. An operation answers InProgress to
 *   `operationPolls` polls, then completes: state changes are driven by the client's polls, not by
 *   timers, so tests are deterministic.
 *
 * Every ARM request needs a bearer token issued here (401 otherwise) and a supported api-version
 * (400 otherwise). Errors have ARM's shape `{ error: { code, message } }`. The model is in memory:
 * tenants with clients, subscriptions, resource groups, VMs; tests and the lab set conditions
 * with deleteVm, moveVm, setPowerState, setAgentReady and failNext.
 */

export type FakePowerState = 'running' | 'stopped' | 'deallocated' | 'starting' | 'stopping' | 'deallocating';

export interface FakeVmKey {
  subscriptionId: string;
  resourceGroup: string;
  name: string;
}

export interface FakeDiskSpec {
  name: string;
  sizeGb: number;
}

export interface FakeVmSpec extends FakeVmKey {
  location?: string;
  vmSize?: string;
  powerState?: FakePowerState;
  osDisk?: FakeDiskSpec;
  dataDisks?: FakeDiskSpec[];
}

/** A VM as the fake holds it, copied out for assertions. */
export interface FakeVmView extends FakeVmKey {
  vmId: string;
  location: string;
  powerState: FakePowerState;
  provisioningState: string;
  agentReady: boolean;
  /** The action in progress (powerOff, deallocate, start), if any. */
  operation: string | null;
}

export interface FakeArmRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  status: number;
  /** A valid bearer token came with it (ARM requests only). */
  authorized: boolean;
}

export interface FaultSpec {
  status: number;
  code: string;
  message?: string;
  /** How many matching requests fail; default 1. */
  count?: number;
  method?: string;
  /** Matches when the request path (without query) contains it, case-insensitively. */
  pathContains?: string;
}

export interface FakeArmOptions {
  /** Issues the server certificate (for 127.0.0.1 and localhost). */
  ca: PemPair;
  port?: number;
  apiVersions?: readonly string[];
  /** Polls answered InProgress before an operation completes; default 1. */
  operationPolls?: number;
  tokenLifetimeS?: number;
  /** VMs per list page; default 100. */
  pageSize?: number;
}

/** The api-version @azure/arm-compute 24.1 sends for virtual machines and their operations. */
export const FAKE_ARM_API_VERSIONS: readonly string[] = ['2026-03-01'];
/** The audience ARM tokens are asked for (the SDK's default scope). */
export const ARM_SCOPE = 'https://management.azure.com/.default';

const BODY_LIMIT = 64 * 1024;
const LOG_LIMIT = 2000;
const OPERATIONS_KEPT = 1000;
const POWER_DISPLAY: Record<FakePowerState, string> = {
  running: 'VM running',
  stopped: 'VM stopped',
  deallocated: 'VM deallocated',
  starting: 'VM starting',
  stopping: 'VM stopping',
  deallocating: 'VM deallocating',
};

interface Vm {
  name: string;
  vmId: string;
  location: string;
  vmSize: string;
  powerState: FakePowerState;
  provisioningState: string;
  agentReady: boolean;
  osDisk: FakeDiskSpec;
  dataDisks: FakeDiskSpec[];
  created: string;
  operation: Operation | null;
}

interface Group {
  name: string;
  location: string;
  vms: Map<string, Vm>;
}

interface Subscription {
  id: string;
  tenantId: string;
  groups: Map<string, Group>;
}

type Action = 'powerOff' | 'deallocate' | 'start';

interface Operation {
  id: string;
  subscriptionId: string;
  location: string;
  action: Action;
  vm: Vm;
  target: FakePowerState;
  pollsLeft: number;
  status: 'InProgress' | 'Succeeded' | 'Failed';
  startTime: string;
  endTime?: string;
  error?: { code: string; message: string };
}

interface Token {
  tenantId: string;
  clientId: string;
  expiresAt: number;
}

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const ACTIONS: Record<Action, { transitional: FakePowerState; target: FakePowerState }> = {
  powerOff: { transitional: 'stopping', target: 'stopped' },
  deallocate: { transitional: 'deallocating', target: 'deallocated' },
  start: { transitional: 'starting', target: 'running' },
};

const key = (s: string) => s.toLowerCase();
const digest = (s: string) => createHash('sha256').update(s).digest();

function fakeError(message: string): never {
  throw new BoomerangError('FAKE_ARM', message);
}

/** A fake Azure Resource Manager on 127.0.0.1 over HTTPS. */
export class FakeArm {
  /** `https://127.0.0.1:<port>`: the ARM endpoint and the authority host. */
  readonly url: string;
  readonly caPem: string;
  /** The last requests (bounded), oldest first. */
  readonly requests: FakeArmRequest[] = [];
  /** Polls answered InProgress before an operation completes (applies to operations started after a change). */
  operationPolls: number;

  readonly #server: Server;
  readonly #apiVersions: ReadonlySet<string>;
  readonly #tokenLifetimeS: number;
  readonly #pageSize: number;
  readonly #clients = new Map<string, Map<string, Buffer>>();
  readonly #subscriptions = new Map<string, Subscription>();
  readonly #operations = new Map<string, Operation>();
  readonly #tokens = new Map<string, Token>();
  readonly #faults: Array<Required<Pick<FaultSpec, 'status' | 'code' | 'count'>> & FaultSpec> = [];

  private constructor(server: Server, options: FakeArmOptions, caPem: string) {
    this.#server = server;
    this.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    this.caPem = caPem;
    this.#apiVersions = new Set(options.apiVersions ?? FAKE_ARM_API_VERSIONS);
    this.operationPolls = options.operationPolls ?? 1;
    this.#tokenLifetimeS = options.tokenLifetimeS ?? 3600;
    this.#pageSize = options.pageSize ?? 100;
  }

  static async start(options: FakeArmOptions): Promise<FakeArm> {
    const tls = await issueCertificate(options.ca, { commonName: 'fake-arm', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], usage: 'server' });
    const server = createServer({ cert: tls.certPem, key: tls.keyPem });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
    });
    // Attached before anyone knows the port, so no request can come first.
    const fake = new FakeArm(server, options, options.ca.certPem);
    server.on('request', (req, res) => void fake.#handle(req, res));
    return fake;
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  // ---- model set-up and conditions -------------------------------------------------------------

  /** Registers an app (service principal) of a tenant and its client secret. */
  addClient(tenantId: string, clientId: string, clientSecret: string): void {
    let clients = this.#clients.get(key(tenantId));
    if (!clients) this.#clients.set(key(tenantId), (clients = new Map()));
    clients.set(key(clientId), digest(clientSecret));
  }

  addSubscription(subscriptionId: string, tenantId: string): void {
    this.#subscriptions.set(key(subscriptionId), { id: subscriptionId, tenantId, groups: new Map() });
  }

  addResourceGroup(subscriptionId: string, name: string, location = 'westeurope'): void {
    const sub = this.#subscriptions.get(key(subscriptionId)) ?? fakeError(`no subscription ${subscriptionId}`);
    if (!sub.groups.has(key(name))) sub.groups.set(key(name), { name, location, vms: new Map() });
  }

  addVm(spec: FakeVmSpec): FakeVmView {
    const group = this.#group(spec);
    if (group.vms.has(key(spec.name))) fakeError(`VM ${spec.name} already exists in ${spec.resourceGroup}`);
    const vm: Vm = {
      name: spec.name,
      vmId: randomUUID(),
      location: spec.location ?? group.location,
      vmSize: spec.vmSize ?? 'Standard_D2s_v5',
      powerState: spec.powerState ?? 'running',
      provisioningState: 'Succeeded',
      agentReady: true,
      osDisk: spec.osDisk ?? { name: `${spec.name}_OsDisk_1`, sizeGb: 30 },
      dataDisks: spec.dataDisks ?? [],
      created: new Date().toISOString(),
      operation: null,
    };
    group.vms.set(key(spec.name), vm);
    return this.#view(spec.subscriptionId, group, vm);
  }

  vm(ref: FakeVmKey): FakeVmView | undefined {
    const group = this.#subscriptions.get(key(ref.subscriptionId))?.groups.get(key(ref.resourceGroup));
    const vm = group?.vms.get(key(ref.name));
    return group && vm ? this.#view(ref.subscriptionId, group, vm) : undefined;
  }

  deleteVm(ref: FakeVmKey): void {
    const group = this.#group(ref);
    if (!group.vms.delete(key(ref.name))) fakeError(`no VM ${ref.name} in ${ref.resourceGroup}`);
  }

  /** Moves a VM (with its vmId and disks) to another resource group of its subscription, as the portal's "Move" does. */
  moveVm(ref: FakeVmKey, toResourceGroup: string): void {
    const from = this.#group(ref);
    const to = this.#group({ ...ref, resourceGroup: toResourceGroup });
    const vm = this.#vm(from, ref.name);
    if (to.vms.has(key(vm.name))) fakeError(`VM ${vm.name} already exists in ${toResourceGroup}`);
    from.vms.delete(key(vm.name));
    to.vms.set(key(vm.name), vm);
  }

  /** Sets the power state outright, as if changed outside ARM's control (a guest shutdown, an outage). */
  setPowerState(ref: FakeVmKey, state: FakePowerState): void {
    this.#vm(this.#group(ref), ref.name).powerState = state;
  }

  setAgentReady(ref: FakeVmKey, ready: boolean): void {
    this.#vm(this.#group(ref), ref.name).agentReady = ready;
  }

  /** The next `count` authorised ARM requests that match answer `status` with an ARM error body. */
  failNext(fault: FaultSpec): void {
    const count = fault.count ?? 1;
    if (!Number.isInteger(count) || count < 1) fakeError(`a fault count must be a positive integer, not ${count}`);
    this.#faults.push({ ...fault, count });
  }

  /** Drops the faults that have not fired yet. */
  clearFaults(): void {
    this.#faults.length = 0;
  }

  #group(ref: { subscriptionId: string; resourceGroup: string }): Group {
    const sub = this.#subscriptions.get(key(ref.subscriptionId)) ?? fakeError(`no subscription ${ref.subscriptionId}`);
    return sub.groups.get(key(ref.resourceGroup)) ?? fakeError(`no resource group ${ref.resourceGroup}`);
  }

  #vm(group: Group, name: string): Vm {
    return group.vms.get(key(name)) ?? fakeError(`no VM ${name} in ${group.name}`);
  }

  #view(subscriptionId: string, group: Group, vm: Vm): FakeVmView {
    return {
      subscriptionId,
      resourceGroup: group.name,
      name: vm.name,
      vmId: vm.vmId,
      location: vm.location,
      powerState: vm.powerState,
      provisioningState: vm.provisioningState,
      agentReady: vm.agentReady,
      operation: vm.operation?.action ?? null,
    };
  }

  // ---- HTTP ------------------------------------------------------------------------------------

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const entry: FakeArmRequest = { method: req.method ?? '', path: url.pathname, query: Object.fromEntries(url.searchParams), status: 0, authorized: false };
    res.on('finish', () => {
      entry.status = res.statusCode;
      this.requests.push(entry);
      if (this.requests.length > LOG_LIMIT) this.requests.splice(0, this.requests.length - LOG_LIMIT);
    });
    try {
      const body = await readBody(req);
      const segments = url.pathname.split('/').filter((s) => s.length > 0);
      if (key(segments[0] ?? '') === 'subscriptions') {
        entry.authorized = this.#authorize(req, segments[1]);
        this.#checkApiVersion(url);
        this.#injectFault(entry);
        this.#arm(req.method ?? '', segments, url, res);
      } else {
        this.#identity(req, segments, body, res);
      }
    } catch (err) {
      if (err instanceof HttpFailure) sendJson(res, err.status, { error: { code: err.code, message: err.message } });
      else sendJson(res, 500, { error: { code: 'InternalServerError', message: 'the fake ARM server failed' } });
    }
  }

  // Microsoft Entra ID: just what MSAL's client-credentials flow needs.
  #identity(req: IncomingMessage, segments: string[], body: string, res: ServerResponse): void {
    const [tenant, a, b, c] = segments;
    if (req.method === 'GET' && tenant !== undefined && a === 'v2.0' && b === '.well-known' && c === 'openid-configuration' && segments.length === 4) {
      const base = `${this.url}/${tenant}`;
      sendJson(res, 200, {
        issuer: `${base}/v2.0`,
        token_endpoint: `${base}/oauth2/v2.0/token`,
        authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
        end_session_endpoint: `${base}/oauth2/v2.0/logout`,
        jwks_uri: `${base}/discovery/v2.0/keys`,
        response_types_supported: ['code', 'id_token', 'token'],
        token_endpoint_auth_methods_supported: ['client_secret_post'],
      });
      return;
    }
    if (req.method === 'POST' && tenant !== undefined && a === 'oauth2' && b === 'v2.0' && c === 'token' && segments.length === 4) {
      this.#token(req, tenant, body, res);
      return;
    }
    sendOAuthError(res, 404, 'invalid_request', 'AADSTS90002', `this fake serves no ${req.method} ${segments.join('/')}`);
  }

  #token(req: IncomingMessage, tenant: string, body: string, res: ServerResponse): void {
    if (!(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) {
      return sendOAuthError(res, 400, 'invalid_request', 'AADSTS900144', 'The request body must be application/x-www-form-urlencoded.');
    }
    const form = new URLSearchParams(body);
    if (form.get('grant_type') !== 'client_credentials') return sendOAuthError(res, 400, 'unsupported_grant_type', 'AADSTS70003', 'The app requested an unsupported grant type.');
    const clients = this.#clients.get(key(tenant));
    if (!clients) return sendOAuthError(res, 400, 'invalid_request', 'AADSTS90002', `Tenant '${tenant}' not found.`);
    const clientId = form.get('client_id') ?? '';
    const secretDigest = clients.get(key(clientId));
    if (!secretDigest) return sendOAuthError(res, 400, 'unauthorized_client', 'AADSTS700016', `Application with identifier '${clientId}' was not found in the directory '${tenant}'.`);
    if (!timingSafeEqual(secretDigest, digest(form.get('client_secret') ?? ''))) {
      return sendOAuthError(res, 401, 'invalid_client', 'AADSTS7000215', `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`);
    }
    const scopes = (form.get('scope') ?? '').split(' ');
    if (!scopes.includes(ARM_SCOPE)) return sendOAuthError(res, 400, 'invalid_scope', 'AADSTS70011', `The provided value for scope is not valid; this fake issues tokens for ${ARM_SCOPE} only.`);
    const now = Date.now();
    for (const [t, v] of this.#tokens) if (v.expiresAt <= now) this.#tokens.delete(t);
    const accessToken = randomBytes(32).toString('base64url');
    this.#tokens.set(accessToken, { tenantId: key(tenant), clientId: key(clientId), expiresAt: now + this.#tokenLifetimeS * 1000 });
    sendJson(res, 200, { token_type: 'Bearer', expires_in: this.#tokenLifetimeS, ext_expires_in: this.#tokenLifetimeS, access_token: accessToken });
  }

  #authorize(req: IncomingMessage, subscriptionId: string | undefined): boolean {
    const header = req.headers['authorization'];
    if (header === undefined) throw new HttpFailure(401, 'AuthenticationFailed', "Authentication failed. The 'Authorization' header is missing.");
    const match = /^Bearer (\S+)$/.exec(header);
    if (!match?.[1]) throw new HttpFailure(401, 'AuthenticationFailed', "Authentication failed. The 'Authorization' header is provided in an invalid format.");
    const token = this.#tokens.get(match[1]);
    if (!token) throw new HttpFailure(401, 'InvalidAuthenticationToken', 'The access token is invalid.');
    if (token.expiresAt <= Date.now()) throw new HttpFailure(401, 'ExpiredAuthenticationToken', 'The access token expiry UTC time is earlier than current UTC time.');
    const sub = subscriptionId === undefined ? undefined : this.#subscriptions.get(key(subscriptionId));
    if (sub && key(sub.tenantId) !== token.tenantId) {
      throw new HttpFailure(401, 'InvalidAuthenticationTokenTenant', `The access token is from the wrong issuer. It must match the tenant associated with subscription '${sub.id}'.`);
    }
    return true;
  }

  #checkApiVersion(url: URL): void {
    const version = url.searchParams.get('api-version');
    if (version === null) throw new HttpFailure(400, 'MissingApiVersionParameter', "The api-version query parameter (?api-version=) is required for all requests.");
    if (!this.#apiVersions.has(version)) {
      throw new HttpFailure(400, 'InvalidApiVersionParameter', `The api-version '${version}' is invalid. The supported versions are '${[...this.#apiVersions].join(',')}'.`);
    }
  }

  #injectFault(entry: FakeArmRequest): void {
    const i = this.#faults.findIndex((f) => (f.method === undefined || f.method === entry.method) && (f.pathContains === undefined || key(entry.path).includes(key(f.pathContains))));
    const fault = this.#faults[i];
    if (!fault) return;
    if (--fault.count <= 0) this.#faults.splice(i, 1);
    throw new HttpFailure(fault.status, fault.code, fault.message ?? `injected ${fault.code}`);
  }

  #arm(method: string, segments: string[], url: URL, res: ServerResponse): void {
    const s = segments.map(key);
    const sub = this.#subscription(segments[1]);
    // /subscriptions/{s}/providers/Microsoft.Compute/...
    if (s[2] === 'providers' && s[3] === 'microsoft.compute') {
      if (s.length === 5 && s[4] === 'virtualmachines') {
        requireMethod(method, 'GET');
        return this.#list(sub, [...sub.groups.values()], url, res);
      }
      if (s.length === 8 && s[4] === 'locations' && s[6] === 'operations') {
        requireMethod(method, 'GET');
        return this.#operationStatus(sub, segments[7] ?? '', url, res);
      }
      throw unknownPath(segments);
    }
    // /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines[/{vm}[/{action}]]
    if (s[2] !== 'resourcegroups' || s.length < 7 || s[4] !== 'providers' || s[5] !== 'microsoft.compute' || s[6] !== 'virtualmachines') throw unknownPath(segments);
    const group = sub.groups.get(s[3] ?? '');
    if (!group) throw new HttpFailure(404, 'ResourceGroupNotFound', `Resource group '${segments[3]}' could not be found.`);
    if (s.length === 7) {
      requireMethod(method, 'GET');
      return this.#list(sub, [group], url, res);
    }
    const vm = group.vms.get(s[7] ?? '');
    if (!vm) {
      throw new HttpFailure(404, 'ResourceNotFound', `The Resource 'Microsoft.Compute/virtualMachines/${segments[7]}' under resource group '${segments[3]}' was not found.`);
    }
    if (s.length === 8) {
      requireMethod(method, 'GET');
      const expand = url.searchParams.get('$expand');
      if (expand !== null && !['instanceview', 'userdata', 'resiliencyview'].includes(key(expand))) {
        throw new HttpFailure(400, 'InvalidParameter', `The value '${expand}' of parameter '$expand' is not valid.`);
      }
      return sendJson(res, 200, this.#vmJson(sub, group, vm, expand !== null && key(expand) === 'instanceview'));
    }
    if (s.length === 9 && s[8] === 'instanceview') {
      requireMethod(method, 'GET');
      return sendJson(res, 200, instanceViewJson(vm));
    }
    const action = (['powerOff', 'deallocate', 'start'] as const).find((a) => key(a) === s[8]);
    if (s.length === 9 && action) {
      requireMethod(method, 'POST');
      return this.#act(sub, vm, action, url, res);
    }
    throw unknownPath(segments);
  }

  #subscription(id: string | undefined): Subscription {
    const sub = id === undefined ? undefined : this.#subscriptions.get(key(id));
    if (!sub) throw new HttpFailure(404, 'SubscriptionNotFound', `The subscription '${id ?? ''}' could not be found.`);
    return sub;
  }

  #list(sub: Subscription, groups: Group[], url: URL, res: ServerResponse): void {
    const all = groups.flatMap((g) => [...g.vms.values()].map((vm) => this.#vmJson(sub, g, vm, false)));
    const skip = Number(url.searchParams.get('$skiptoken') ?? '0');
    if (!Number.isInteger(skip) || skip < 0) throw new HttpFailure(400, 'InvalidParameter', "The value of parameter '$skiptoken' is not valid.");
    const page = all.slice(skip, skip + this.#pageSize);
    const next = new URL(url);
    next.searchParams.set('$skiptoken', String(skip + this.#pageSize));
    sendJson(res, 200, { value: page, ...(skip + this.#pageSize < all.length ? { nextLink: next.toString() } : {}) });
  }

  #act(sub: Subscription, vm: Vm, action: Action, url: URL, res: ServerResponse): void {
    for (const flag of ['skipShutdown', 'hibernate', 'forceDeallocate']) {
      const v = url.searchParams.get(flag);
      if (v !== null && v !== 'true' && v !== 'false') throw new HttpFailure(400, 'InvalidParameter', `The value '${v}' of parameter '${flag}' is not a boolean.`);
    }
    if (url.searchParams.get('hibernate') === 'true') throw new HttpFailure(400, 'OperationNotAllowed', `Hibernation is not enabled on VM '${vm.name}'.`);
    if (vm.operation) {
      throw new HttpFailure(409, 'OperationNotAllowed', `Operation '${action}' is not allowed on VM '${vm.name}' since the VM is running operation '${vm.operation.action}'.`);
    }
    if (action === 'powerOff' && vm.powerState === 'deallocated') {
      throw new HttpFailure(409, 'OperationNotAllowed', `Operation 'powerOff' is not allowed on VM '${vm.name}' since the VM is deallocated.`);
    }
    const { transitional, target } = ACTIONS[action];
    const op: Operation = {
      id: randomUUID(),
      subscriptionId: sub.id,
      location: vm.location,
      action,
      vm,
      target,
      pollsLeft: this.operationPolls,
      status: 'InProgress',
      startTime: new Date().toISOString(),
    };
    this.#operations.set(op.id, op);
    // Bounded memory for long labs: the oldest finished operations are forgotten (Map keeps insertion order).
    for (const [id, old] of this.#operations) {
      if (this.#operations.size <= OPERATIONS_KEPT) break;
      if (old.status !== 'InProgress') this.#operations.delete(id);
    }
    vm.operation = op;
    vm.powerState = transitional;
    vm.provisioningState = 'Updating';
    const version = url.searchParams.get('api-version') ?? '';
    const base = `${this.url}/subscriptions/${sub.id}/providers/Microsoft.Compute/locations/${op.location}/operations/${op.id}`;
    res.writeHead(202, {
      'azure-asyncoperation': `${base}?p=${randomUUID()}&api-version=${version}`,
      location: `${base}?p=${randomUUID()}&monitor=true&api-version=${version}`,
      'content-length': '0',
      'x-ms-request-id': randomUUID(),
    });
    res.end();
  }

  #operationStatus(sub: Subscription, id: string, url: URL, res: ServerResponse): void {
    const op = this.#operations.get(key(id));
    if (!op || key(op.subscriptionId) !== key(sub.id)) throw new HttpFailure(404, 'NotFound', `The operation '${id}' was not found.`);
    this.#advance(op);
    if (url.searchParams.get('monitor') === 'true') {
      if (op.status === 'InProgress') return sendEmpty(res, 202);
      if (op.status === 'Failed') return sendJson(res, 409, { error: op.error });
      return sendEmpty(res, 200);
    }
    sendJson(res, 200, {
      name: op.id,
      status: op.status,
      startTime: op.startTime,
      ...(op.endTime ? { endTime: op.endTime } : {}),
      ...(op.error ? { error: op.error } : {}),
    });
  }

  // A VM deleted while its operation runs fails the operation at the next poll, as ARM does.
  #advance(op: Operation): void {
    if (op.status !== 'InProgress') return;
    const stillThere = [...(this.#subscriptions.get(key(op.subscriptionId))?.groups.values() ?? [])].some((g) => g.vms.get(key(op.vm.name)) === op.vm);
    if (stillThere && op.pollsLeft-- > 0) return;
    op.endTime = new Date().toISOString();
    op.vm.operation = null;
    op.vm.provisioningState = 'Succeeded';
    if (!stillThere) {
      op.status = 'Failed';
      op.error = { code: 'ResourceNotFound', message: `The VM '${op.vm.name}' was deleted while operation '${op.action}' ran.` };
      return;
    }
    op.status = 'Succeeded';
    op.vm.powerState = op.target;
  }

  #vmJson(sub: Subscription, group: Group, vm: Vm, withInstanceView: boolean): Record<string, unknown> {
    const groupPath = `/subscriptions/${sub.id}/resourceGroups/${group.name}/providers/Microsoft.Compute`;
    const disk = (d: FakeDiskSpec) => ({ name: d.name, diskSizeGB: d.sizeGb, managedDisk: { id: `${groupPath}/disks/${d.name}`, storageAccountType: 'Premium_LRS' } });
    return {
      name: vm.name,
      id: `${groupPath}/virtualMachines/${vm.name}`,
      type: 'Microsoft.Compute/virtualMachines',
      location: vm.location,
      properties: {
        vmId: vm.vmId,
        hardwareProfile: { vmSize: vm.vmSize },
        storageProfile: {
          osDisk: { osType: 'Linux', createOption: 'Attach', caching: 'ReadWrite', ...disk(vm.osDisk) },
          dataDisks: vm.dataDisks.map((d, lun) => ({ lun, createOption: 'Attach', caching: 'None', ...disk(d) })),
        },
        provisioningState: vm.provisioningState,
        timeCreated: vm.created,
        ...(withInstanceView ? { instanceView: instanceViewJson(vm) } : {}),
      },
    };
  }
}

function instanceViewJson(vm: Vm): Record<string, unknown> {
  const now = new Date().toISOString();
  const running = vm.powerState === 'running';
  return {
    ...(running ? { computerName: vm.name, osName: 'ubuntu', osVersion: '22.04' } : {}),
    ...(running
      ? {
          vmAgent: {
            vmAgentVersion: '2.9.1.1',
            statuses: [
              vm.agentReady
                ? { code: 'ProvisioningState/succeeded', level: 'Info', displayStatus: 'Ready', message: 'Guest Agent is running', time: now }
                : { code: 'ProvisioningState/Unavailable', level: 'Warning', displayStatus: 'Not Ready', message: 'VM agent is unresponsive.', time: now },
            ],
          },
        }
      : {}),
    disks: [vm.osDisk, ...vm.dataDisks].map((d) => ({ name: d.name, statuses: [{ code: 'ProvisioningState/succeeded', level: 'Info', displayStatus: 'Provisioning succeeded', time: vm.created }] })),
    statuses: [
      { code: `ProvisioningState/${vm.provisioningState.toLowerCase()}`, level: 'Info', displayStatus: vm.provisioningState === 'Succeeded' ? 'Provisioning succeeded' : 'Updating', time: now },
      { code: `PowerState/${vm.powerState}`, level: 'Info', displayStatus: POWER_DISPLAY[vm.powerState] },
    ],
  };
}

function requireMethod(method: string, allowed: string): void {
  if (method !== allowed) throw new HttpFailure(405, 'MethodNotAllowed', `The requested resource does not support http method '${method}'.`);
}

function unknownPath(segments: string[]): HttpFailure {
  return new HttpFailure(404, 'InvalidResourceType', `The fake ARM server does not serve '/${segments.join('/')}'.`);
}

// An oversized body is drained and refused, never held in memory.
function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= BODY_LIMIT) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > BODY_LIMIT) reject(new HttpFailure(413, 'RequestEntityTooLarge', `The request body exceeds ${BODY_LIMIT} bytes.`));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'x-ms-request-id': randomUUID() });
  res.end(text);
}

function sendEmpty(res: ServerResponse, status: number): void {
  res.writeHead(status, { 'content-length': '0', 'x-ms-request-id': randomUUID() });
  res.end();
}

function sendOAuthError(res: ServerResponse, status: number, error: string, aadsts: string, description: string): void {
  sendJson(res, status, {
    error,
    error_description: `${aadsts}: ${description}`,
    error_codes: [Number(aadsts.slice(6))],
    timestamp: new Date().toISOString(),
    trace_id: randomUUID(),
    correlation_id: randomUUID(),
  });
}
