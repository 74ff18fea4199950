import { errors as undiciErrors, type Agent } from 'undici';
import { BoomerangError, ProtocolError } from '../../replication/errors.js';
import { faultFromSoap } from './faults.js';
import { dispatcherFor, type VsphereTls } from './tls.js';
import { child, encodeCall, parseXml, type MoRef, type SoapValue, type XNode } from './xml.js';

/** The vSphere API version requested in SOAPAction; vcsim 0.24 and vCenter 6.5+ accept it. */
export const DEFAULT_API_VERSION = '6.5';
const SESSION_COOKIE = 'vmware_soap_session';

export interface TransportOptions {
  /** `https://vcenter.example/sdk` */
  url: string;
  tls?: VsphereTls;
  apiVersion?: string;
  timeoutMs?: number;
}

export class VsphereConnectionError extends BoomerangError {}

/**
 * One SOAP endpoint: posts calls, keeps the session cookie, returns the `returnval`-holding
 * response element or throws the fault as a typed error.
 */
export class SoapTransport {
  private readonly dispatcher: Agent;
  private cookie: string | undefined;
  readonly url: string;
  private readonly apiVersion: string;
  private readonly timeoutMs: number;

  constructor(options: TransportOptions) {
    this.url = options.url;
    this.dispatcher = dispatcherFor(options.tls);
    this.apiVersion = options.apiVersion ?? DEFAULT_API_VERSION;
    this.timeoutMs = options.timeoutMs ?? 120_000;
  }

  get sessionCookie(): string | undefined {
    return this.cookie;
  }

  clearSession(): void {
    this.cookie = undefined;
  }

  /** Calls `method` on `thisRef`; the response element (`<MethodResponse>`). */
  async call(method: string, thisRef: MoRef, args: Record<string, SoapValue | undefined> = {}, signal?: AbortSignal): Promise<XNode> {
    const headers: Record<string, string> = { 'content-type': 'text/xml; charset=utf-8', soapaction: `urn:vim25/${this.apiVersion}` };
    if (this.cookie !== undefined) headers['cookie'] = `${SESSION_COOKIE}=${this.cookie}`;
    let status: number;
    let body: string;
    try {
      const res = await this.dispatcher.request({
        origin: new URL(this.url).origin,
        path: new URL(this.url).pathname,
        method: 'POST',
        headers,
        body: encodeCall(method, thisRef, args),
        signal: signal ?? null,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      status = res.statusCode;
      this.keepCookie(res.headers['set-cookie']);
      body = await res.body.text();
    } catch (err) {
      if (signal?.aborted) throw err;
      const cause = err instanceof undiciErrors.UndiciError && err.cause instanceof Error ? err.cause : err;
      if (cause instanceof BoomerangError) throw cause;
      throw new VsphereConnectionError('VSPHERE_CONNECT', `cannot reach ${this.url}: ${(cause as Error).message}`, { retryable: true, cause: err });
    }
    const envelope = this.parse(status, body);
    const soapBody = child(envelope, 'Body');
    const fault = child(soapBody, 'Fault');
    if (fault) throw faultFromSoap(fault);
    if (status !== 200) throw new ProtocolError('VSPHERE_HTTP', `${method}: HTTP ${status} without a SOAP fault`);
    const response = soapBody?.children[0];
    if (!response || response.name !== `${method}Response`) throw new ProtocolError('VSPHERE_BAD_XML', `${method}: no ${method}Response in the answer`);
    return response;
  }

  private parse(status: number, body: string): XNode {
    if (!body.trimStart().startsWith('<')) throw new ProtocolError('VSPHERE_HTTP', `HTTP ${status}: ${body.slice(0, 200)}`);
    return parseXml(body);
  }

  private keepCookie(header: string | string[] | undefined): void {
    for (const line of header === undefined ? [] : Array.isArray(header) ? header : [header]) {
      const m = new RegExp(`(?:^|;\\s*)${SESSION_COOKIE}=([^;]*)`).exec(line);
      if (m?.[1] !== undefined) this.cookie = m[1]; // kept verbatim (vCenter quotes it and wants the quotes back)
    }
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}
