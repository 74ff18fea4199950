import type { Logger } from '../runtime/log.js';
import type { Clock } from './clock.js';
import type { Db } from './db/open.js';
import type { FabricClients } from './fabric-clients.js';
import type { CompiledOptions } from './options.js';

/** What every service of the CS is built from; assembled once by the composition root. */
export interface CsContext {
  readonly db: Db;
  readonly clock: Clock;
  readonly log: Logger;
  readonly options: CompiledOptions;
  /** Clients of the fabrics (vCenter sessions and the like), built on first use. */
  readonly fabrics: FabricClients;
}
