import { setTimeout as delay } from 'node:timers/promises';
import { BoomerangError } from '../../replication/errors.js';
import { InvalidPowerStateError, VsphereFault } from './faults.js';
import { retrieveObjects } from './property-collector.js';
import type { VsphereSession } from './session.js';
import { taskOf, waitForTask, type WaitOptions } from './tasks.js';
import { textOf, type MoRef } from './xml.js';
import type { VmPowerState } from './inventory.js';

/** Power operations on one VM, each waited to completion. Wrong state → InvalidPowerStateError. */

export async function vmPowerState(session: VsphereSession, vm: MoRef, signal?: AbortSignal): Promise<VmPowerState> {
  const [o] = await retrieveObjects(session, [vm], { type: 'VirtualMachine', paths: ['runtime.powerState'] }, signal === undefined ? {} : { signal });
  return (textOf(o?.props.get('runtime.powerState')) ?? 'poweredOff') as VmPowerState;
}

export async function powerOnVm(session: VsphereSession, vm: MoRef, options: WaitOptions = {}): Promise<void> {
  await waitForTask(session, taskOf(await session.transport.call('PowerOnVM_Task', vm, {}, options.signal)), options);
}

export async function powerOffVm(session: VsphereSession, vm: MoRef, options: WaitOptions = {}): Promise<void> {
  await waitForTask(session, taskOf(await session.transport.call('PowerOffVM_Task', vm, {}, options.signal)), options);
}

export class GuestShutdownTimeoutError extends BoomerangError {}

export interface GuestShutdownOptions {
  /** How long the guest gets to power itself off (default 5 minutes). */
  timeoutMs?: number;
  /** When the guest does not shut down in time, or cannot (no VMware Tools): power the VM off instead. */
  powerOffOnTimeout?: boolean;
  signal?: AbortSignal;
  /** First and longest interval between polls of the power state. */
  pollMs?: { first: number; max: number };
}

/** How the VM ended up powered off. */
export type GuestShutdownOutcome = 'alreadyOff' | 'guestShutdown' | 'poweredOff';

/**
 * Asks the guest OS to shut down (ShutdownGuest, through VMware Tools), then waits until the VM is
 * poweredOff, polling with a growing interval up to `timeoutMs`. A guest that does not finish in
 * time — or cannot be asked, lacking Tools — is powered off when `powerOffOnTimeout` is set, else
 * GuestShutdownTimeoutError (the guest keeps shutting down). A VM already off is left alone.
 */
export async function shutdownGuest(session: VsphereSession, vm: MoRef, options: GuestShutdownOptions = {}): Promise<GuestShutdownOutcome> {
  const timeoutMs = options.timeoutMs ?? 5 * 60 * 1000;
  const deadline = Date.now() + timeoutMs;
  const signalOpt = options.signal === undefined ? {} : { signal: options.signal };
  if ((await vmPowerState(session, vm, options.signal)) === 'poweredOff') return 'alreadyOff';
  const forceOff = async (): Promise<GuestShutdownOutcome> => {
    try {
      await powerOffVm(session, vm, { timeoutMs: Math.max(30_000, deadline - Date.now()), ...signalOpt });
    } catch (err) {
      // The guest may have finished between the last poll and the power-off.
      if (!(err instanceof InvalidPowerStateError) || (await vmPowerState(session, vm, options.signal)) !== 'poweredOff') throw err;
      return 'guestShutdown';
    }
    return 'poweredOff';
  };
  try {
    await session.transport.call('ShutdownGuest', vm, {}, options.signal);
  } catch (err) {
    if (err instanceof InvalidPowerStateError && (await vmPowerState(session, vm, options.signal)) === 'poweredOff') return 'alreadyOff';
    if (err instanceof VsphereFault && err.faultType === 'ToolsUnavailable' && options.powerOffOnTimeout) return forceOff();
    throw err;
  }
  const { first, max } = options.pollMs ?? { first: 200, max: 5000 };
  for (let interval = first; ; interval = Math.min(interval * 2, max)) {
    if ((await vmPowerState(session, vm, options.signal)) === 'poweredOff') return 'guestShutdown';
    if (Date.now() >= deadline) break;
    await delay(Math.min(interval, Math.max(0, deadline - Date.now())), undefined, signalOpt);
  }
  if (options.powerOffOnTimeout) return forceOff();
  throw new GuestShutdownTimeoutError('VSPHERE_GUEST_SHUTDOWN_TIMEOUT', `the guest of ${vm.value} did not shut down within ${Math.round(timeoutMs / 1000)} s; power it off, or retry with the power-off fallback`, { retryable: true });
}
