import type { JobKind } from '../jobs/types.js';
import type { CsServices } from '../options.js';
import { commitKind } from './commit.js';
import { disableKind } from './disable.js';
import { enableKind } from './enable.js';
import { cancelFailbackKind, failbackKind } from './failback.js';
import { changePointKind, failoverKind } from './failover.js';
import { reprotectKind } from './reprotect.js';
import type { LifecycleDeps } from './steps.js';

/**
 * Every lifecycle job kind, for ConfigurationServer.start({ jobKinds: lifecycleJobKinds }). Fabrics
 * come from the CS's clients unless a test gives its own.
 */
export function lifecycleJobKinds(services: CsServices, fabric: LifecycleDeps['fabric'] = (row) => services.context.fabrics.get(row)): readonly JobKind[] {
  const deps: LifecycleDeps = { context: services.context, commands: services.commands, fabric };
  return [enableKind(deps), failoverKind(deps), changePointKind(deps), commitKind(deps), reprotectKind(deps), failbackKind(deps), cancelFailbackKind(deps), disableKind(deps)] as readonly JobKind[];
}
