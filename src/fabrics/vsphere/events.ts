import { ProtocolError } from '../../replication/errors.js';
import type { VsphereSession } from './session.js';
import { childrenNamed, data, ref, textOf, child, type MoRef } from './xml.js';

/** One event vCenter recorded about a VM (reconfigured, relocated, powered on…). */
export interface VmEvent {
  /** The event's data type, e.g. `VmReconfiguredEvent`, `VmRelocatedEvent`. */
  type: string;
  key: number;
  createdTime: string;
  message: string;
}

/**
 * The events of one VM, oldest first, optionally of some types and since a time: how the CS learns
 * that a VM was reconfigured or moved by Storage vMotion while it was not looking.
 */
export async function queryVmEvents(session: VsphereSession, vm: MoRef, options: { types?: readonly string[]; since?: string; signal?: AbortSignal } = {}): Promise<VmEvent[]> {
  const manager = session.content.eventManager;
  if (manager === undefined) throw new ProtocolError('VSPHERE_NO_EVENTS', 'this endpoint has no event manager');
  const filter = data('EventFilterSpec', {
    entity: data('EventFilterSpecByEntity', { entity: ref(vm), recursion: 'self' }),
    time: options.since === undefined ? undefined : data('EventFilterSpecByTime', { beginTime: options.since }),
    eventTypeId: options.types === undefined ? undefined : [...options.types],
  });
  const response = await session.transport.call('QueryEvents', manager, { filter }, options.signal);
  const events = childrenNamed(response, 'returnval').map((e) => ({
    type: e.xsiType ?? 'Event',
    key: Number(textOf(child(e, 'key')) ?? 0),
    createdTime: textOf(child(e, 'createdTime')) ?? '',
    message: textOf(child(e, 'fullFormattedMessage')) ?? '',
  }));
  return events.filter((e) => options.types === undefined || options.types.includes(e.type)).sort((a, b) => a.key - b.key);
}
