import { once } from 'node:events';
import { Agent, createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { issueCertificate, type PemPair } from '../../src/security/pki.js';

/**
 * A fault injector between the SDK and Azurite, not a mock of Azure: an HTTPS reverse proxy on
 * 127.0.0.1 (certificate from the test CA) that forwards every request to the real Azurite,
 * except the ones it is told to fail with 503. It also records what passed through: requests in
 * flight at most, and the size of every Put Page.
 */
export interface FaultProxy {
  /** https://127.0.0.1:<port>: replaces Azurite's origin in the account URL. */
  origin: string;
  /** Requests received (forwarded or failed). */
  requests: number;
  /** Requests being handled at once, at most, since the last reset. */
  maxConcurrent: number;
  /** Body length of every Put Page (PUT ?comp=page with x-ms-page-write: update). */
  pageWrites: number[];
  /** Answers the next `n` requests matching `match` (default: any) with 503 Server Busy. */
  failNext(n: number, match?: (method: string, url: string) => boolean): void;
  /** 503s answered so far. */
  failed: number;
  resetStats(): void;
  close(): Promise<void>;
}

export async function startFaultProxy(targetOrigin: string, ca: PemPair): Promise<FaultProxy> {
  const leaf = await issueCertificate(ca, { commonName: '127.0.0.1', ipAddresses: ['127.0.0.1'], usage: 'server' });
  const target = new URL(targetOrigin);
  const upstream = new Agent({ keepAlive: true, ca: ca.certPem, maxSockets: 256 });
  let active = 0;
  let toFail = 0;
  let failMatch: (method: string, url: string) => boolean = () => true;
  const proxy: FaultProxy = {
    origin: '',
    requests: 0,
    maxConcurrent: 0,
    pageWrites: [],
    failed: 0,
    failNext(n, match) {
      toFail = n;
      failMatch = match ?? (() => true);
    },
    resetStats() {
      proxy.requests = 0;
      proxy.maxConcurrent = 0;
      proxy.pageWrites = [];
      proxy.failed = 0;
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
      upstream.destroy();
    },
  };
  const server: Server = createServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
    proxy.requests++;
    active++;
    proxy.maxConcurrent = Math.max(proxy.maxConcurrent, active);
    res.once('close', () => active--);
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    if (method === 'PUT' && url.includes('comp=page') && req.headers['x-ms-page-write'] === 'update') proxy.pageWrites.push(Number(req.headers['content-length']));
    if (toFail > 0 && failMatch(method, url)) {
      toFail--;
      proxy.failed++;
      req.resume();
      req.once('end', () => res.writeHead(503, { 'content-length': '0', 'x-ms-error-code': 'ServerBusy' }).end());
      return;
    }
    const out = request(
      { host: target.hostname, port: target.port, method, path: url, headers: req.headers, agent: upstream },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.once('error', () => res.destroy());
    req.pipe(out);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  proxy.origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}
