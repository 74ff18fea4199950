import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import type { Endpoint, TlsMaterial } from '../replication/transport.js';
import { BoomerangError } from '../replication/errors.js';
import { tokenMatches } from '../security/token.js';

/**
 * A component's control API: HTTPS with a bearer token on every route. Used by the CLI, tests
 * and (later) the configuration server; the data hops have their own framed protocol.
 */
export function createControlApi(options: { material: TlsMaterial; token: string; component: string }): FastifyInstance {
  const app = Fastify({
    https: { key: options.material.key, cert: options.material.cert },
    logger: false,
    bodyLimit: 1024 * 1024,
  });
  app.addHook('onRequest', async (req, reply) => {
    const header = req.headers.authorization ?? '';
    const presented = header.startsWith('Bearer ') ? header.slice(7) : '';
    if (!presented || !tokenMatches(presented, options.token)) {
      await reply.code(401).header('www-authenticate', 'Bearer').send({ code: 'AUTH_FAILED', message: `${options.component}: missing or wrong bearer token` });
    }
  });
  app.setErrorHandler(async (err: unknown, _req, reply) => {
    if (err instanceof BoomerangError) {
      const status = err.code.endsWith('NOT_FOUND') || err.code === 'UNKNOWN_DISK' || err.code === 'UNKNOWN_POINT' ? 404 : err.retryable ? 409 : 400;
      await reply.code(status).send({ code: err.code, message: err.message, retryable: err.retryable });
      return;
    }
    const e = err as { statusCode?: number; validation?: unknown; message?: string };
    if (e.validation) {
      await reply.code(400).send({ code: 'BAD_REQUEST', message: e.message ?? 'invalid request' });
      return;
    }
    await reply.code(e.statusCode && e.statusCode >= 400 && e.statusCode < 500 ? e.statusCode : 500).send({ code: 'INTERNAL', message: e.message ?? String(err) });
  });
  return app;
}

/** Starts listening and returns the endpoint actually bound (port 0 picks a free one). */
export async function listenControl(app: FastifyInstance, endpoint: Endpoint): Promise<Endpoint> {
  await app.listen({ host: endpoint.host, port: endpoint.port });
  return { host: endpoint.host, port: (app.server.address() as AddressInfo).port };
}
