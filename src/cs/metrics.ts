import { Gauge, Histogram, Registry } from 'prom-client';
import { componentStatus, heartbeatAgeSeconds, type ComponentStatus } from './components/views.js';
import type { CsContext } from './context.js';
import type { ComponentKind } from './db/schema.js';
import type { JobEngine } from './jobs/engine.js';
import type { JobStatus } from './jobs/machine.js';

/**
 * Prometheus metrics in a registry of their own (two servers in one process do not collide).
 * Gauges read the database at scrape time, so they are never stale and cost nothing between
 * scrapes.
 */

const JOB_STATES: readonly JobStatus['state'][] = ['queued', 'running', 'compensating', 'succeeded', 'failed', 'cancelled'];
const KINDS: readonly ComponentKind[] = ['agent', 'ps', 'mt'];
const STATUSES: readonly ComponentStatus[] = ['healthy', 'pending', 'alert', 'revoked'];

export class CsMetrics {
  readonly registry = new Registry();
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;

  constructor(ctx: CsContext, jobs: JobEngine) {
    const registers = [this.registry];
    new Gauge({
      name: 'boomerang_cs_jobs',
      help: 'Jobs by state.',
      labelNames: ['state'],
      registers,
      async collect() {
        const counts = await jobs.countByState();
        for (const state of JOB_STATES) this.set({ state }, counts.get(state) ?? 0);
      },
    });
    const components = () => ctx.db.selectFrom('components').selectAll().execute();
    new Gauge({
      name: 'boomerang_cs_components',
      help: 'Registered components by kind and status (healthy, pending, alert, revoked).',
      labelNames: ['kind', 'status'],
      registers,
      async collect() {
        const rows = await components();
        for (const kind of KINDS) for (const status of STATUSES) this.set({ kind, status }, rows.filter((r) => r.kind === kind && componentStatus(r) === status).length);
      },
    });
    new Gauge({
      name: 'boomerang_cs_component_heartbeat_age_seconds',
      help: 'Seconds since the last heartbeat of each component that is not revoked.',
      labelNames: ['id', 'kind', 'name'],
      registers,
      async collect() {
        this.reset();
        const now = ctx.clock.now();
        for (const r of await components()) {
          const age = heartbeatAgeSeconds(r, now);
          if (r.revoked_at === null && age !== null) this.set({ id: r.id, kind: r.kind, name: r.name }, age);
        }
      },
    });
    this.httpDuration = new Histogram({
      name: 'boomerang_cs_http_request_duration_seconds',
      help: 'API request durations by method, route and status.',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
  }
}
