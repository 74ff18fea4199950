import { SoapTransport, type TransportOptions } from './transport.js';
import { child, moRefOf, path, textOf, type MoRef, type XNode } from './xml.js';
import { ProtocolError } from '../../replication/errors.js';

const SERVICE_INSTANCE: MoRef = { type: 'ServiceInstance', value: 'ServiceInstance' };

/** The parts of ServiceContent Boomerang uses. */
export interface ServiceContent {
  rootFolder: MoRef;
  propertyCollector: MoRef;
  viewManager: MoRef;
  sessionManager: MoRef;
  /** Absent on a bare ESXi without events. */
  eventManager: MoRef | undefined;
  about: { fullName: string; version: string; apiType: string; apiVersion: string; instanceUuid: string | undefined };
}

export interface Credentials {
  username: string;
  password: string;
}

function required(node: XNode | undefined, name: string): MoRef {
  const r = moRefOf(child(node, name));
  if (!r) throw new ProtocolError('VSPHERE_BAD_XML', `ServiceContent has no ${name}`);
  return r;
}

export async function retrieveServiceContent(transport: SoapTransport, signal?: AbortSignal): Promise<ServiceContent> {
  const rv = child(await transport.call('RetrieveServiceContent', SERVICE_INSTANCE, {}, signal), 'returnval');
  const about = child(rv, 'about');
  return {
    rootFolder: required(rv, 'rootFolder'),
    propertyCollector: required(rv, 'propertyCollector'),
    viewManager: required(rv, 'viewManager'),
    sessionManager: required(rv, 'sessionManager'),
    eventManager: moRefOf(child(rv, 'eventManager')),
    about: {
      fullName: textOf(child(about, 'fullName')) ?? '',
      version: textOf(child(about, 'version')) ?? '',
      apiType: textOf(child(about, 'apiType')) ?? '',
      apiVersion: textOf(child(about, 'apiVersion')) ?? '',
      instanceUuid: textOf(child(about, 'instanceUuid')),
    },
  };
}

/**
 * A logged-in session on a vCenter or ESXi: the transport (holding the `vmware_soap_session`
 * cookie) and the service content. `logout` ends it on the server and closes the connections.
 */
export class VsphereSession {
  private constructor(
    readonly transport: SoapTransport,
    readonly content: ServiceContent,
    readonly userName: string,
  ) {}

  static async login(options: TransportOptions & Credentials, signal?: AbortSignal): Promise<VsphereSession> {
    const transport = new SoapTransport(options);
    try {
      const content = await retrieveServiceContent(transport, signal);
      const rv = child(await transport.call('Login', content.sessionManager, { userName: options.username, password: options.password }, signal), 'returnval');
      return new VsphereSession(transport, content, textOf(path(rv, 'userName')) ?? options.username);
    } catch (err) {
      await transport.close();
      throw err;
    }
  }

  async logout(signal?: AbortSignal): Promise<void> {
    try {
      await this.transport.call('Logout', this.content.sessionManager, {}, signal);
    } finally {
      this.transport.clearSession();
      await this.transport.close();
    }
  }
}
