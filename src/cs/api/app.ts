import swagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { CommandBus } from '../components/commands.js';
import type { CsContext } from '../context.js';
import type { JobEngine } from '../jobs/engine.js';
import type { CsMetrics } from '../metrics.js';
import type { Vault } from '../trust/vault.js';
import { ComponentAuth, operatorHook } from './auth.js';
import { installErrorHandling } from './errors.js';
import { commandRoutes } from './routes/commands.js';
import { componentReportRoutes } from './routes/component-reports.js';
import { componentRoutes } from './routes/components.js';
import { fabricRoutes } from './routes/fabrics.js';
import { healthRoutes } from './routes/health.js';
import { itemRoutes } from './routes/items.js';
import { preflightRoutes } from './routes/preflight.js';
import { jobRoutes } from './routes/jobs.js';
import { machineRoutes } from './routes/machines.js';
import { operationRoutes } from './routes/operations.js';
import { metricsRoutes } from './routes/metrics.js';
import { policyRoutes } from './routes/policies.js';
import { registrationRoutes } from './routes/registration.js';

export interface ApiDeps {
  ctx: CsContext;
  vault: Vault;
  jobs: JobEngine;
  metrics: CsMetrics;
  commands: CommandBus;
}

/**
 * The HTTP API, in order: error shape and metrics at the root, the OpenAPI collector, then one
 * scope per kind of caller (none, passphrase, component token, operator token) whose onRequest
 * hook authenticates before anything else runs. Schemas compile in ready(): a bad one fails start.
 */
export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const { ctx, vault, jobs, metrics, commands } = deps;
  const app = Fastify({
    https: { key: vault.serverTls.keyPem, cert: vault.serverTls.certPem },
    loggerInstance: ctx.log.child({ part: 'api' }),
    // One line per request at debug from onResponse instead; heartbeats would flood info.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 4 * 1024 * 1024,
    // Command ids name their job, step and disk.
    routerOptions: { maxParamLength: 300 },
    ajv: {
      customOptions: {
        // Report every bad field, and refuse unknown ones instead of dropping them silently.
        allErrors: true,
        removeAdditional: false,
      },
    },
  }) as unknown as FastifyInstance;

  installErrorHandling(app);
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const seconds = reply.elapsedTime / 1000;
    metrics.httpDuration.observe({ method: req.method, route, status: String(reply.statusCode) }, seconds);
    req.log.debug({ method: req.method, route, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
  });

  await app.register(swagger, {
    openapi: {
      info: { title: 'Boomerang configuration server', version: '1', description: 'Control plane of Boomerang: components, fabrics, machines, policies, protected items, jobs.' },
      components: {
        securitySchemes: {
          operator: { type: 'http', scheme: 'bearer', description: 'the operator token in admin.token of the CS data directory' },
          component: { type: 'http', scheme: 'bearer', description: 'the token a component received at registration' },
        },
      },
    },
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(healthRoutes, { ctx, vaultName: vault.name });
  await app.register(registrationRoutes, { ctx, vault });

  await app.register(async (scope) => {
    const auth = new ComponentAuth(ctx);
    scope.addHook('onRequest', auth.hook);
    await scope.register(componentReportRoutes, { ctx, auth });
    await scope.register(commandRoutes, { commands, auth });
  });

  await app.register(async (scope) => {
    scope.addHook('onRequest', operatorHook(vault));
    await scope.register(componentRoutes, { ctx });
    await scope.register(fabricRoutes, { ctx });
    await scope.register(machineRoutes, { ctx });
    await scope.register(policyRoutes, { ctx });
    await scope.register(itemRoutes, { ctx, jobs });
    await scope.register(operationRoutes, { ctx, jobs });
    await scope.register(preflightRoutes, { ctx });
    await scope.register(jobRoutes, { jobs });
    await scope.register(metricsRoutes, { metrics });
  });

  await app.ready();
  return app;
}
