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
