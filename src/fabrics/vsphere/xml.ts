import { XMLParser } from 'fast-xml-parser';
import { ProtocolError } from '../../replication/errors.js';

/**
 * SOAP bodies for the vSphere Web Services API, both ways. Requests are built from a small value
 * model in which every data object carries its type, so `xsi:type` is always sent (vCenter rejects
 * polymorphic values without it; vcsim silently drops them). Responses are parsed into namespace-
 * resolved nodes: the `xsi:type` attribute is found by namespace URI, whatever its prefix
 * (vcsim writes `XMLSchema-instance:type`).
 */

export const XSI_NS = 'http://www.w3.org/2001/XMLSchema-instance';
export const SOAPENV_NS = 'http://schemas.xmlsoap.org/soap/envelope/';
export const VIM_NS = 'urn:vim25';

/** A managed object reference (`<x type="VirtualMachine">vm-42</x>`). */
export interface MoRef {
  readonly type: string;
  readonly value: string;
}

/** A managed object reference as a request value. */
export class RefValue {
  constructor(readonly ref: MoRef) {}
}

/** A data object as a request value; fields are written in insertion order (the WSDL's order). */
export class DataObject {
  constructor(
    readonly xsiType: string,
    readonly fields: Readonly<Record<string, SoapValue | undefined>>,
  ) {}
}

export type SoapValue = string | number | bigint | boolean | RefValue | DataObject | readonly SoapValue[];

export const ref = (r: MoRef): RefValue => new RefValue(r);
export const data = (xsiType: string, fields: Record<string, SoapValue | undefined>): DataObject => new DataObject(xsiType, fields);

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string);
}

function encodeValue(name: string, value: SoapValue): string {
  if (Array.isArray(value)) return (value as readonly SoapValue[]).map((v) => encodeValue(name, v)).join('');
  if (value instanceof RefValue) return `<${name} type="${escapeXml(value.ref.type)}">${escapeXml(value.ref.value)}</${name}>`;
  if (value instanceof DataObject) return `<${name} xsi:type="${escapeXml(value.xsiType)}">${encodeFields(value.fields)}</${name}>`;
  return `<${name}>${escapeXml(String(value))}</${name}>`;
}

function encodeFields(fields: Readonly<Record<string, SoapValue | undefined>>): string {
  let out = '';
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out += encodeValue(k, v);
  return out;
}

/** The envelope for one method call on `thisRef`, arguments in the WSDL's order. */
export function encodeCall(method: string, thisRef: MoRef, args: Readonly<Record<string, SoapValue | undefined>> = {}): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>` +
    `<soapenv:Envelope xmlns:soapenv="${SOAPENV_NS}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="${XSI_NS}">` +
    `<soapenv:Body><${method} xmlns="${VIM_NS}">${encodeValue('_this', ref(thisRef))}${encodeFields(args)}</${method}></soapenv:Body></soapenv:Envelope>`
  );
}

/** One element of a response, names without prefixes, `xsi:type` resolved by namespace. */
export interface XNode {
  readonly name: string;
  readonly xsiType: string | undefined;
  /** Attributes other than namespace declarations and xsi:*, by local name. */
  readonly attrs: Readonly<Record<string, string>>;
  readonly text: string;
  readonly children: readonly XNode[];
}

type Ordered = Record<string, unknown>;

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  processEntities: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
});

function localName(qname: string): [prefix: string, local: string] {
  const i = qname.indexOf(':');
  return i < 0 ? ['', qname] : [qname.slice(0, i), qname.slice(i + 1)];
}

function normalize(entry: Ordered, scope: ReadonlyMap<string, string>): XNode | undefined {
  const tag = Object.keys(entry).find((k) => k !== ':@');
  if (tag === undefined || tag === '#text' || tag.startsWith('?')) return undefined;
  const rawAttrs = (entry[':@'] ?? {}) as Record<string, string>;
  let inner = scope;
  for (const [k, v] of Object.entries(rawAttrs)) {
    if (k === 'xmlns' || k.startsWith('xmlns:')) {
      if (inner === scope) inner = new Map(scope);
      (inner as Map<string, string>).set(k === 'xmlns' ? '' : k.slice(6), v);
    }
  }
  const attrs: Record<string, string> = {};
  let xsiType: string | undefined;
  for (const [k, v] of Object.entries(rawAttrs)) {
    if (k === 'xmlns' || k.startsWith('xmlns:')) continue;
    const [prefix, local] = localName(k);
    if (prefix !== '' && inner.get(prefix) === XSI_NS) {
      if (local === 'type') xsiType = localName(v)[1];
    } else attrs[local] = v;
  }
  let text = '';
  const children: XNode[] = [];
  for (const child of (entry[tag] ?? []) as Ordered[]) {
    if ('#text' in child) text += String(child['#text']);
    else {
      const n = normalize(child, inner);
      if (n) children.push(n);
    }
  }
  return { name: localName(tag)[1], xsiType, attrs, text: children.length > 0 ? text.trim() : text, children };
}

/** Parses a response document; its root element (the Envelope). */
export function parseXml(xml: string): XNode {
  let doc: Ordered[];
  try {
    doc = parser.parse(xml) as Ordered[];
  } catch (err) {
    throw new ProtocolError('VSPHERE_BAD_XML', `the vSphere answer is not XML: ${(err as Error).message}`, { cause: err });
  }
  for (const entry of doc) {
    const n = normalize(entry, new Map());
    if (n) return n;
  }
  throw new ProtocolError('VSPHERE_BAD_XML', 'the vSphere answer has no root element');
}

export function child(node: XNode | undefined, name: string): XNode | undefined {
  return node?.children.find((c) => c.name === name);
}

export function childrenNamed(node: XNode | undefined, name: string): XNode[] {
  return node ? node.children.filter((c) => c.name === name) : [];
}

/** Follows a path of child names (`path(n, 'config', 'product', 'version')`). */
export function path(node: XNode | undefined, ...names: string[]): XNode | undefined {
  let n = node;
  for (const name of names) n = child(n, name);
  return n;
}

export function textOf(node: XNode | undefined): string | undefined {
  return node?.text;
}

export function numberOf(node: XNode | undefined): number | undefined {
  if (node === undefined || node.text === '') return undefined;
  const n = Number(node.text);
  if (!Number.isFinite(n)) throw new ProtocolError('VSPHERE_BAD_XML', `<${node.name}> is not a number: ${node.text}`);
  return n;
}

export function boolOf(node: XNode | undefined): boolean | undefined {
  return node === undefined ? undefined : node.text === 'true' || node.text === '1';
}

export function moRefOf(node: XNode | undefined): MoRef | undefined {
  if (node === undefined) return undefined;
  const type = node.attrs['type'];
  if (type === undefined) throw new ProtocolError('VSPHERE_BAD_XML', `<${node.name}> is not a managed object reference`);
  return { type, value: node.text };
}
