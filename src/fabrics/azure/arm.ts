import { setTimeout as delay } from 'node:timers/promises';
import { ComputeManagementClient, type VirtualMachine, type VirtualMachineInstanceView } from '@azure/arm-compute';
import { ClientSecretCredential } from '@azure/identity';
import { AzureArmError, toAzureError } from './arm-errors.js';

/**
 * Azure VMs through Resource Manager with the official SDK (`@azure/arm-compute`,
 * `@azure/identity`): the facts behind the pre-flight checks "cloud VM deleted", "moved to another
 * resource group" and "not running" (78093), and the power operations of failover and failback.
 *
 * Power operations are idempotent (a VM already in the asked state is left alone), wait for ARM's
 * long-running operation within a bound, and honour the caller's abort signal. Transient ARM
 * answers (429, 5xx, connection resets) are retried by the SDK's pipeline; what remains surfaces as
 * an AzureArmError (`arm-errors.ts`).
 */

export { AzureArmError, type AzureErrorCode } from './arm-errors.js';

/** Where a VM is recorded. `vmId`, when known (from discovery), tells our VM from another of the same name. */
export interface AzureVmRef {
  subscriptionId: string;
  resourceGroup: string;
  vmName: string;
  vmId?: string;
}

/** A service principal with a client secret. The secret is handed to the SDK's credential and never logged. */
export interface AzureCredentials {
  tenantId: string;
  clientId: string;
  clientSecret: string;
  /** Entra ID's address; default the public cloud's. Instance discovery is skipped when it is set. */
  authorityHost?: string;
  /** ARM's address; default https://management.azure.com. */
  armEndpoint?: string;
  /** PEM of the CA to trust for both, instead of the system's. */
  ca?: string;
}

export interface ArmClientOptions {
  /** Between polls of a long-running operation and of a VM that is changing state; default 5 s. */
  pollIntervalMs?: number;
  /** Bound of one power operation, waiting for a VM already changing state included; default 15 min. */
  operationTimeoutMs?: number;
  /** Bound of one read (retries included); default 60 s. */
  requestTimeoutMs?: number;
  /** The SDK pipeline's retries of 429/5xx/connection errors; its defaults otherwise (3 retries from 1 s). */
  retry?: { maxRetries?: number; retryDelayInMs?: number; maxRetryDelayInMs?: number };
  /** Bound of the subscription-wide listing used to find a moved VM; default 50 pages. */
  maxListPages?: number;
}

export type VmPowerState = 'running' | 'stopped' | 'deallocated' | 'starting' | 'stopping' | 'unknown';

export interface VmFacts {
  /** The VM is at the recorded place (and, when the reference has a vmId, it is that VM). */
  exists: boolean;
  /** Not at the recorded place, but found in another resource group of the subscription (by vmId, else by name). */
  resourceGroupMoved: boolean;
  /** Where the VM is now: the recorded group, the one it moved to, or null when it is nowhere. */
  resourceGroup: string | null;
  powerState: VmPowerState;
  provisioningState: string | null;
  vmId: string | null;
  location: string | null;
  /** The Azure guest agent reports Ready: the guest is up and answering. */
  agentReady: boolean;
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const RESOURCE_GROUP = /^[\p{L}\p{N}_.()-]{1,90}$/u;
const VM_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
const TENANT = /^[0-9A-Za-z.-]{1,256}$/;

const DEFAULTS = { pollIntervalMs: 5000, operationTimeoutMs: 15 * 60_000, requestTimeoutMs: 60_000, maxListPages: 50 };

const POWER_STATES: Record<string, VmPowerState> = {
  running: 'running',
  stopped: 'stopped',
  deallocated: 'deallocated',
  starting: 'starting',
  stopping: 'stopping',
  deallocating: 'stopping',
};

function invalid(message: string): never {
  throw new AzureArmError('AZURE_INVALID_INPUT', message);
}

/** Throws AZURE_INVALID_INPUT unless `ref` names a VM the way ARM spells names. */
export function validateVmRef(ref: AzureVmRef): AzureVmRef {
  if (typeof ref !== 'object' || ref === null) invalid('an Azure VM reference must be an object');
  if (typeof ref.subscriptionId !== 'string' || !GUID.test(ref.subscriptionId)) invalid(`subscription id ${JSON.stringify(ref.subscriptionId)} is not a GUID`);
  if (typeof ref.resourceGroup !== 'string' || !RESOURCE_GROUP.test(ref.resourceGroup) || ref.resourceGroup.endsWith('.')) {
    invalid(`resource group ${JSON.stringify(ref.resourceGroup)} is not a valid name (1–90 letters, digits, _ . ( ) -, not ending with .)`);
  }
  if (typeof ref.vmName !== 'string' || !VM_NAME.test(ref.vmName) || /[.-]$/.test(ref.vmName)) {
    invalid(`VM name ${JSON.stringify(ref.vmName)} is not a valid name (1–64 letters, digits, _ . -, not ending with . or -)`);
  }
  if (ref.vmId !== undefined && (typeof ref.vmId !== 'string' || !GUID.test(ref.vmId))) invalid(`vmId ${JSON.stringify(ref.vmId)} is not a GUID`);
  return ref;
}

function httpsUrl(name: string, value: string | undefined): void {
  if (value === undefined) return;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    invalid(`${name} ${JSON.stringify(value)} is not a URL`);
  }
  if (url.protocol !== 'https:' || url.username !== '' || url.password !== '' || url.search !== '') invalid(`${name} must be an https:// address without credentials or query`);
}

/** Throws AZURE_INVALID_INPUT for malformed credentials; the message never contains the secret. */
export function validateCredentials(c: AzureCredentials): void {
  if (typeof c !== 'object' || c === null) invalid('Azure credentials must be an object');
  if (typeof c.tenantId !== 'string' || !TENANT.test(c.tenantId)) invalid(`tenant id ${JSON.stringify(c.tenantId)} is not valid`);
  if (typeof c.clientId !== 'string' || !GUID.test(c.clientId)) invalid(`client id ${JSON.stringify(c.clientId)} is not a GUID`);
  if (typeof c.clientSecret !== 'string' || c.clientSecret.length === 0) invalid('the client secret is missing');
  httpsUrl('authorityHost', c.authorityHost);
  httpsUrl('armEndpoint', c.armEndpoint);
  if (c.ca !== undefined && (typeof c.ca !== 'string' || !c.ca.includes('-----BEGIN CERTIFICATE-----'))) invalid('ca must be a PEM certificate');
}

/** The resource group in an ARM resource id (`/subscriptions/…/resourceGroups/<rg>/providers/…`). */
export function resourceGroupOf(id: string | undefined): string | null {
  const m = id === undefined ? null : /\/resourceGroups\/([^/]+)\//i.exec(id);
  return m?.[1] ?? null;
}

/** The power state in an instance view's statuses (`PowerState/<state>`); deallocating counts as stopping. */
export function powerStateOf(view: VirtualMachineInstanceView | undefined): VmPowerState {
  const status = view?.statuses?.find((s) => s.code?.startsWith('PowerState/'));
  return POWER_STATES[status?.code?.slice('PowerState/'.length).toLowerCase() ?? ''] ?? 'unknown';
}

function agentReadyOf(view: VirtualMachineInstanceView | undefined): boolean {
  return view?.vmAgent?.statuses?.some((s) => s.displayStatus === 'Ready') ?? false;
}

const TRANSITIONAL: ReadonlySet<VmPowerState> = new Set(['starting', 'stopping']);

type Action = 'powerOff' | 'deallocate' | 'start';
const DONE_WHEN: Record<Action, ReadonlySet<VmPowerState>> = {
  powerOff: new Set(['stopped', 'deallocated']),
  deallocate: new Set(['deallocated']),
  start: new Set(['running']),
};

/** One service principal's view of ARM; one SDK client per subscription. */
export class ArmVmClient {
  readonly #credential: ClientSecretCredential;
  readonly #endpoint: string | undefined;
  readonly #ca: string | undefined;
  readonly #options: Required<Omit<ArmClientOptions, 'retry'>> & Pick<ArmClientOptions, 'retry'>;
  readonly #clients = new Map<string, ComputeManagementClient>();

  constructor(credentials: AzureCredentials, options: ArmClientOptions = {}) {
    validateCredentials(credentials);
    const { tenantId, clientId, clientSecret, authorityHost, armEndpoint, ca } = credentials;
    this.#credential = new ClientSecretCredential(tenantId, clientId, clientSecret, {
      // A custom authority (sovereign cloud, Azure Stack, our fake) is trusted as given: discovery would ask login.microsoftonline.com.
      ...(authorityHost !== undefined ? { authorityHost, disableInstanceDiscovery: true } : {}),
      ...(ca !== undefined ? { tlsOptions: { ca } } : {}),
    });
    this.#endpoint = armEndpoint;
    this.#ca = ca;
    this.#options = { ...DEFAULTS, ...options };
  }

  #client(subscriptionId: string): ComputeManagementClient {
    let client = this.#clients.get(subscriptionId.toLowerCase());
    if (!client) {
      client = new ComputeManagementClient(this.#credential, subscriptionId, {
        ...(this.#endpoint !== undefined ? { endpoint: this.#endpoint } : {}),
        ...(this.#ca !== undefined ? { tlsOptions: { ca: this.#ca } } : {}),
        ...(this.#options.retry !== undefined ? { retryOptions: this.#options.retry } : {}),
        userAgentOptions: { userAgentPrefix: 'boomerang' },
      });
      this.#clients.set(subscriptionId.toLowerCase(), client);
    }
    return client;
  }

  /** Runs `fn` under the caller's signal and a deadline; maps errors (a deadline is AZURE_TIMEOUT, the caller's abort passes through). */
  async #bounded<T>(what: string, timeoutMs: number, signal: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const deadline = AbortSignal.timeout(timeoutMs);
    const combined = signal ? AbortSignal.any([signal, deadline]) : deadline;
    try {
      return await fn(combined);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (deadline.aborted) throw new AzureArmError('AZURE_TIMEOUT', `${what}: no answer within ${Math.round(timeoutMs / 1000)} s`, { retryable: true, cause: err });
      throw toAzureError(err, what);
    }
  }

  /** Where the VM is, what state it is in; never throws for a missing VM (that is a fact). */
  async vmFacts(ref: AzureVmRef, signal?: AbortSignal): Promise<VmFacts> {
    validateVmRef(ref);
    const what = `reading VM ${ref.vmName} in ${ref.resourceGroup}`;
    return this.#bounded(what, this.#options.requestTimeoutMs, signal, async (s) => {
      const vm = await this.#getOrNull(ref, s);
      if (vm !== null && (ref.vmId === undefined || vm.vmId?.toLowerCase() === ref.vmId.toLowerCase())) {
        return {
          exists: true,
          resourceGroupMoved: false,
          resourceGroup: resourceGroupOf(vm.id) ?? ref.resourceGroup,
          powerState: powerStateOf(vm.instanceView),
          provisioningState: vm.provisioningState ?? null,
          vmId: vm.vmId ?? null,
          location: vm.location ?? null,
          agentReady: agentReadyOf(vm.instanceView),
        };
      }
      const moved = await this.#findElsewhere(ref, s);
      const gone: VmFacts = { exists: false, resourceGroupMoved: false, resourceGroup: null, powerState: 'unknown', provisioningState: null, vmId: null, location: null, agentReady: false };
      if (!moved) return gone;
      return { ...gone, resourceGroupMoved: true, resourceGroup: resourceGroupOf(moved.id), vmId: moved.vmId ?? null, location: moved.location ?? null, provisioningState: moved.provisioningState ?? null };
    });
  }

  async #getOrNull(ref: AzureVmRef, abortSignal: AbortSignal): Promise<VirtualMachine | null> {
    try {
      return await this.#client(ref.subscriptionId).virtualMachines.get(ref.resourceGroup, ref.vmName, { expand: 'instanceView', abortSignal });
    } catch (err) {
      const mapped = toAzureError(err, 'get');
      if (mapped.code === 'AZURE_VM_NOT_FOUND') return null;
      throw err;
    }
  }

  /** The VM in another resource group of the subscription: by vmId when the reference has one, else by name. */
  async #findElsewhere(ref: AzureVmRef, abortSignal: AbortSignal): Promise<VirtualMachine | undefined> {
    const pages = this.#client(ref.subscriptionId).virtualMachines.listAll({ abortSignal }).byPage();
    let count = 0;
    for await (const page of pages) {
      if (++count > this.#options.maxListPages) {
        throw new AzureArmError('AZURE_ARM_ERROR', `more than ${this.#options.maxListPages} pages of VMs in subscription ${ref.subscriptionId}: the search for VM ${ref.vmName} stopped there`);
      }
      const match = page.find((vm) =>
        ref.vmId !== undefined
          ? vm.vmId?.toLowerCase() === ref.vmId.toLowerCase() && resourceGroupOf(vm.id)?.toLowerCase() !== ref.resourceGroup.toLowerCase()
          : vm.name?.toLowerCase() === ref.vmName.toLowerCase() && resourceGroupOf(vm.id)?.toLowerCase() !== ref.resourceGroup.toLowerCase(),
      );
      if (match) return match;
    }
    return undefined;
  }

  /** Stops the VM, which keeps its compute allocation (and its bill). `skipShutdown` skips the guest's shutdown. */
  powerOff(ref: AzureVmRef, options: { skipShutdown?: boolean } = {}, signal?: AbortSignal): Promise<VmPowerState> {
    return this.#act(ref, 'powerOff', signal, options.skipShutdown === undefined ? {} : { skipShutdown: options.skipShutdown });
  }

  /** Stops the VM and releases its compute: no compute bill, disks kept. */
  deallocate(ref: AzureVmRef, signal?: AbortSignal): Promise<VmPowerState> {
    return this.#act(ref, 'deallocate', signal, {});
  }

  start(ref: AzureVmRef, signal?: AbortSignal): Promise<VmPowerState> {
    return this.#act(ref, 'start', signal, {});
  }

  /**
   * Waits out a VM that is already changing state, skips the action when the VM is already where
   * it should be, else runs ARM's long-running operation to its end. Returns the final power state.
   */
  async #act(ref: AzureVmRef, action: Action, signal: AbortSignal | undefined, extra: { skipShutdown?: boolean }): Promise<VmPowerState> {
    validateVmRef(ref);
    const what = `${action} of VM ${ref.vmName} in ${ref.resourceGroup}`;
    const { pollIntervalMs, operationTimeoutMs } = this.#options;
    return this.#bounded(what, operationTimeoutMs, signal, async (abortSignal) => {
      const vms = this.#client(ref.subscriptionId).virtualMachines;
      const readState = async () => powerStateOf(await vms.instanceView(ref.resourceGroup, ref.vmName, { abortSignal }));
      let state = await readState();
      // Bounded by the deadline signal: each round waits pollIntervalMs under it.
      while (TRANSITIONAL.has(state)) {
        await delay(pollIntervalMs, undefined, { signal: abortSignal });
        state = await readState();
      }
      if (DONE_WHEN[action].has(state)) return state;
      const options = { ...extra, abortSignal, updateIntervalInMs: pollIntervalMs };
      const poller = action === 'powerOff' ? vms.powerOff(ref.resourceGroup, ref.vmName, options) : action === 'deallocate' ? vms.deallocate(ref.resourceGroup, ref.vmName, options) : vms.start(ref.resourceGroup, ref.vmName, options);
      await poller.pollUntilDone({ abortSignal });
      return readState();
    });
  }
}
