import { csError } from '../errors.js';
import type { TaskDefinition } from '../jobs/types.js';
import { gatherFacts } from '../preflight/gather.js';
import { runPreflight, type Operation } from '../preflight/index.js';
import type { LifecycleDeps } from './steps.js';

/**
 * Pre-flight as a job's first task, for operations whose checks need the item the request has
 * just created (enable). `skip` names checks the request itself already enforced.
 */
export function preflightTask<P extends { itemId: string }>(deps: LifecycleDeps, operation: Operation, skip: readonly string[] = []): TaskDefinition<P> {
  return {
    name: 'preflight',
    resumable: true,
    async run(ctx) {
      const report = await runPreflight(operation, await gatherFacts(deps.context, ctx.params.itemId, operation), { lang: 'en' });
      const failed = report.results.filter((c) => !c.passed && c.severity === 'error' && !skip.includes(c.id));
      if (failed.length > 0) {
        throw csError('PREFLIGHT_FAILED', { operation, item: ctx.params.itemId, failed: failed.map((c) => (c.code === undefined ? c.id : `${c.id} ${c.code}`)).join(', ') }).with(
          failed.map((c) => ({ id: c.id, ...(c.code === undefined ? {} : { code: c.code }), message: c.message, remedy: c.remedy })),
        );
      }
    },
  };
}
