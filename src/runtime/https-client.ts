import { Agent as HttpAgent, request } from 'undici';
import { RemoteError } from '../replication/errors.js';

/**
 * A JSON client for our HTTPS APIs (the configuration server, a component's control API): trusts
 * only the given CA, sends a bearer token when it has one, and turns an error answer
 * `{ code, message, remedy? }` into a RemoteError with that code.
 */
export class HttpsJsonClient {
  private readonly dispatcher: HttpAgent;

  constructor(
    private readonly baseUrl: string,
    caPem: string,
    private readonly token?: string,
  ) {
    this.dispatcher = new HttpAgent({ connect: { ca: caPem } });
  }

  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<T> {
    const res = await request(new URL(path, this.baseUrl), {
      method,
      dispatcher: this.dispatcher,
      ...(signal ? { signal } : {}),
      headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    const value: unknown = text ? JSON.parse(text) : undefined;
    if (res.statusCode >= 400) {
      const e = (value ?? {}) as { code?: string; message?: string; remedy?: string; retryable?: boolean };
      throw new RemoteError(e.code ?? `HTTP_${res.statusCode}`, `${e.message ?? `HTTP ${res.statusCode}`}${e.remedy ? ` — ${e.remedy}` : ''}`, {
        retryable: e.retryable ?? res.statusCode >= 500,
      });
    }
    return value as T;
  }

  close(): Promise<void> {
    return this.dispatcher.close();
  }
}

/** https://host:port for an endpoint (IPv6 hosts bracketed). */
export function httpsUrl(endpoint: { host: string; port: number }): string {
  return `https://${endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}`;
}
