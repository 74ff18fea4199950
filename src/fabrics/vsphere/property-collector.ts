import type { VsphereSession } from './session.js';
import { child, childrenNamed, data, moRefOf, ref, textOf, type MoRef, type SoapValue, type XNode } from './xml.js';
import { ProtocolError } from '../../replication/errors.js';

/** One object from the PropertyCollector: its reference and the properties that are set. */
export interface ObjectProps {
  obj: MoRef;
  props: ReadonlyMap<string, XNode>;
  /** Properties the server could not return (e.g. NoPermission), with the fault type. */
  missing: ReadonlyMap<string, string>;
}

export interface PropertyRequest {
  type: string;
  paths: readonly string[];
}

export interface RetrieveOptions {
  /** Objects per page (options.maxObjects); the rest is fetched with ContinueRetrievePropertiesEx. */
  maxObjects?: number;
  signal?: AbortSignal;
  /** Called with the size of each page as it arrives. */
  onPage?: (objects: number) => void;
}

function decodeObject(node: XNode): ObjectProps {
  const obj = moRefOf(child(node, 'obj'));
  if (!obj) throw new ProtocolError('VSPHERE_BAD_XML', 'ObjectContent without obj');
  const props = new Map<string, XNode>();
  for (const p of childrenNamed(node, 'propSet')) {
    const name = textOf(child(p, 'name'));
    const val = child(p, 'val');
    if (name !== undefined && val !== undefined) props.set(name, val);
  }
  const missing = new Map<string, string>();
  for (const m of childrenNamed(node, 'missingSet')) {
    const name = textOf(child(m, 'path'));
    if (name !== undefined) missing.set(name, child(child(m, 'fault'), 'fault')?.xsiType ?? 'SystemError');
  }
  return { obj, props, missing };
}

function decodeResult(rv: XNode | undefined): { token: string | undefined; objects: ObjectProps[] } {
  return { token: textOf(child(rv, 'token')) || undefined, objects: childrenNamed(rv, 'objects').map(decodeObject) };
}

/** RetrievePropertiesEx, then ContinueRetrievePropertiesEx while a token comes back. */
export async function retrieveAll(session: VsphereSession, specSet: SoapValue, options: RetrieveOptions = {}): Promise<ObjectProps[]> {
  const pc = session.content.propertyCollector;
  const t = session.transport;
  const first = await t.call('RetrievePropertiesEx', pc, { specSet, options: data('RetrieveOptions', { maxObjects: options.maxObjects }) }, options.signal);
  let page = decodeResult(child(first, 'returnval'));
  const out = [...page.objects];
  options.onPage?.(page.objects.length);
  try {
    while (page.token !== undefined) {
      const next = await t.call('ContinueRetrievePropertiesEx', pc, { token: page.token }, options.signal);
      page = decodeResult(child(next, 'returnval'));
      out.push(...page.objects);
      options.onPage?.(page.objects.length);
    }
  } catch (err) {
    // Free the server's result set when a later page fails; the first error is the one reported.
    if (page.token !== undefined) await t.call('CancelRetrievePropertiesEx', pc, { token: page.token }).catch(() => undefined);
    throw err;
  }
  return out;
}

/** Properties of the given objects (no traversal). */
export function retrieveObjects(session: VsphereSession, objects: readonly MoRef[], request: PropertyRequest, options: RetrieveOptions = {}): Promise<ObjectProps[]> {
  const specSet = data('PropertyFilterSpec', {
    propSet: [data('PropertySpec', { type: request.type, pathSet: [...request.paths] })],
    objectSet: objects.map((o) => data('ObjectSpec', { obj: ref(o), skip: false })),
  });
  return retrieveAll(session, specSet, options);
}

/** ObjectSpec.skip for a ContainerView: the view itself is not a result, only what it traverses to. */
const VIEW_ITSELF_NOT_A_RESULT = true;

/**
 * Properties of every object of the requested types under `container` (recursively), through a
 * ContainerView that is destroyed afterwards.
 */
export async function retrieveFromContainer(session: VsphereSession, container: MoRef, requests: readonly PropertyRequest[], options: RetrieveOptions = {}): Promise<ObjectProps[]> {
  const t = session.transport;
  const created = await t.call(
    'CreateContainerView',
    session.content.viewManager,
    { container: ref(container), type: requests.map((r) => r.type), recursive: true },
    options.signal,
  );
  const view = moRefOf(child(created, 'returnval'));
  if (!view) throw new ProtocolError('VSPHERE_BAD_XML', 'CreateContainerView returned no view');
  try {
    const specSet = data('PropertyFilterSpec', {
      propSet: requests.map((r) => data('PropertySpec', { type: r.type, all: false, pathSet: [...r.paths] })),
      objectSet: [
        data('ObjectSpec', {
          obj: ref(view),
          skip: VIEW_ITSELF_NOT_A_RESULT,
          selectSet: [data('TraversalSpec', { name: 'view', type: 'ContainerView', path: 'view', skip: false })],
        }),
      ],
    });
    return await retrieveAll(session, specSet, options);
  } finally {
    await t.call('DestroyView', view).catch(() => undefined);
  }
}
