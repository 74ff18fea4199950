import { setTimeout as delay } from 'node:timers/promises';
import { BoomerangError, ProtocolError } from '../../replication/errors.js';
import { faultFromLocalized } from './faults.js';
import { retrieveObjects } from './property-collector.js';
import type { VsphereSession } from './session.js';
import { child, moRefOf, numberOf, textOf, type MoRef, type XNode } from './xml.js';

export class TaskTimeoutError extends BoomerangError {}

export interface WaitOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Progress in percent, when the server reports it. */
  onProgress?: (percent: number) => void;
  /** First and longest interval between polls of `info`. */
  pollMs?: { first: number; max: number };
}

export interface TaskResult {
  task: MoRef;
  /** `info.result`, for tasks that return something (e.g. CreateVM_Task: the VM's reference). */
  result: XNode | undefined;
}

/** The task's reference from a `*_Task` method response. */
export function taskOf(response: XNode): MoRef {
  const task = moRefOf(child(response, 'returnval'));
  if (!task || task.type !== 'Task') throw new ProtocolError('VSPHERE_BAD_XML', `${response.name} returned no task`);
  return task;
}

/**
 * Waits for a task to finish, polling its `info` with a growing interval. A task in error throws
 * its fault as a typed error; a timeout throws TaskTimeoutError (the task itself keeps running on
 * the server).
 */
export async function waitForTask(session: VsphereSession, task: MoRef, options: WaitOptions = {}): Promise<TaskResult> {
  const timeoutMs = options.timeoutMs ?? 30 * 60 * 1000;
  const deadline = Date.now() + timeoutMs;
  const { first, max } = options.pollMs ?? { first: 100, max: 2000 };
  let interval = first;
  let lastProgress = -1;
  for (;;) {
    const [obj] = await retrieveObjects(session, [task], { type: 'Task', paths: ['info'] }, options.signal === undefined ? {} : { signal: options.signal });
    const info = obj?.props.get('info');
    if (!info) throw new ProtocolError('VSPHERE_BAD_XML', `task ${task.value} has no info`);
    const state = textOf(child(info, 'state'));
    const progress = numberOf(child(info, 'progress'));
    if (progress !== undefined && progress !== lastProgress) {
      lastProgress = progress;
      options.onProgress?.(progress);
    }
    if (state === 'success') return { task, result: child(info, 'result') };
    if (state === 'error') {
      const error = child(info, 'error');
      throw error ? faultFromLocalized(error) : new ProtocolError('VSPHERE_BAD_XML', `task ${task.value} failed without an error`);
    }
    if (Date.now() >= deadline) throw new TaskTimeoutError('VSPHERE_TASK_TIMEOUT', `task ${task.value} (${textOf(child(info, 'descriptionId')) ?? 'unknown'}) did not finish within ${Math.round(timeoutMs / 1000)} s`, { retryable: true });
    await delay(Math.min(interval, Math.max(0, deadline - Date.now())), undefined, options.signal === undefined ? {} : { signal: options.signal });
    interval = Math.min(interval * 2, max);
  }
}
