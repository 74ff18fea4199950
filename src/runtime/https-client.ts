import { Agent as HttpAgent, request } from 'undici';
import { RemoteError } from '../replication/errors.js';

/** One problem behind an API error: a field of a malformed request, or a failed pre-flight check. */
export interface ApiProblem {
  message: string;
  field?: string;
  id?: string;
  code?: number;
  severity?: string;
  remedy?: string;
}

export interface ApiErrorBody {
  code: string;
  message: string;
  remedy?: string;
  field?: string;
  problems?: ApiProblem[];
}

/** An error answer of one of our APIs, kept whole: status, code, remedy, the field or the problems. */
export class ApiError extends RemoteError {
  constructor(
    readonly status: number,
    readonly body: ApiErrorBody,
  ) {
    super(body.code, `${body.message}${body.remedy ? ` — ${body.remedy}` : ''}`, { retryable: status >= 500 });
  }
}

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
    /** A bearer token, or where to read the current one (a token that is renewed). */
    private readonly token?: string | (() => string),
    /** Sent with every request (Accept-Language, say). */
    private readonly defaultHeaders: Record<string, string> = {},
  ) {
    this.dispatcher = new HttpAgent({ connect: { ca: caPem } });
  }

  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<T> {
    const res = await request(new URL(path, this.baseUrl), {
      method,
      dispatcher: this.dispatcher,
      ...(signal ? { signal } : {}),
      headers: { ...this.defaultHeaders, ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(this.token ? { authorization: `Bearer ${typeof this.token === 'function' ? this.token() : this.token}` } : {}) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    let value: unknown;
    try {
      value = text ? JSON.parse(text) : undefined;
    } catch {
      throw new RemoteError('BAD_RESPONSE', `${method} ${path} answered ${res.statusCode} with something that is not JSON: ${text.slice(0, 200)}`);
    }
    if (res.statusCode >= 400) {
      const e = (value && typeof value === 'object' ? value : {}) as Partial<ApiErrorBody>;
      throw new ApiError(res.statusCode, {
        code: typeof e.code === 'string' ? e.code : `HTTP_${res.statusCode}`,
        message: typeof e.message === 'string' ? e.message : `HTTP ${res.statusCode}`,
        ...(typeof e.remedy === 'string' && e.remedy !== '' ? { remedy: e.remedy } : {}),
        ...(typeof e.field === 'string' ? { field: e.field } : {}),
        ...(Array.isArray(e.problems) ? { problems: e.problems } : {}),
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
