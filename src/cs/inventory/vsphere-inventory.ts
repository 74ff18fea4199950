import { lacksPrivileges, type VsphereInventory } from '../../fabrics/vsphere/inventory.js';
import { errorMessage } from '../../replication/errors.js';
import { isoAt } from '../clock.js';
import type { CsContext } from '../context.js';
import { CsError, csError, toCodedError } from '../errors.js';
import { readInventory } from './vsphere-connect.js';
import { vsphereFabricAccess } from './vsphere-credentials.js';
import { inventoryView, type InventoryView } from './vsphere-inventory-view.js';

/**
 * The inventory of vsphere fabrics, kept in the CS database: read on demand (`refresh`) and every
 * `fabricRefreshIntervalSeconds`. Reads of one fabric never overlap: a refresh asked for while
 * one runs gets that one's result. A failed read keeps the last good inventory and records why.
 */

function privilegesError(inv: VsphereInventory, username: string): CsError {
  const p = inv.privileges;
  const parts = [
    ...(p.checked ? [] : ['vCenter refused the privilege check (System.View on the datacenters?)']),
    ...(p.missing.length > 0 ? [p.missing.join(', ')] : []),
    ...(p.hiddenDatastores.length > 0 ? [`cannot see datastores ${p.hiddenDatastores.join(', ')}`] : []),
  ];
  return csError('FABRIC_PRIVILEGES_MISSING', { username, missing: parts.join('; ') });
}

/** The stored inventory of a fabric, as the API shows it. */
export async function getInventory(ctx: CsContext, fabricId: string): Promise<InventoryView> {
  const fabric = await ctx.db.selectFrom('fabrics').select(['id', 'name', 'kind']).where('id', '=', fabricId).executeTakeFirst();
  if (fabric === undefined) throw csError('NOT_FOUND', { what: 'fabric', id: fabricId });
  if (fabric.kind !== 'vsphere') throw csError('FABRIC_NO_INVENTORY', { name: fabric.name, kind: fabric.kind });
  const row = await ctx.db.selectFrom('fabric_inventory').selectAll().where('fabric_id', '=', fabricId).executeTakeFirst();
  return inventoryView(fabric, row ?? { fabric_id: fabricId, status: 'pending', refreshed_at: null, attempted_at: null, error: null, snapshot: null });
}

/** One read of a fabric's vCenter, stored; a failure is stored too, then thrown. */
async function refreshOnce(ctx: CsContext, fabricId: string, signal: AbortSignal): Promise<InventoryView> {
  const fabric = await vsphereFabricAccess(ctx.db, fabricId);
  const { config } = fabric;
  const attemptedAt = isoAt(ctx.clock);
  let failure: CsError | undefined;
  try {
    const inv = await readInventory(config, fabric.password, ctx.options.fabricRefresh.timeoutMs, signal);
    const lacking = lacksPrivileges(inv) ? privilegesError(inv, config.username) : undefined;
    const values = {
      status: lacking === undefined ? ('ok' as const) : ('lacking-privileges' as const),
      refreshed_at: attemptedAt,
      attempted_at: attemptedAt,
      error: lacking === undefined ? null : JSON.stringify(toCodedError(lacking)),
      snapshot: JSON.stringify(inv),
    };
    await ctx.db
      .insertInto('fabric_inventory')
      .values({ fabric_id: fabricId, ...values })
      .onConflict((oc) => oc.column('fabric_id').doUpdateSet(values))
      .execute();
    ctx.log.info({ fabric: fabric.name, status: values.status, hosts: inv.hosts.length, datastores: inv.datastores.length, vms: inv.vms.length }, 'fabric inventory refreshed');
  } catch (err) {
    failure = err instanceof CsError ? err : csError('FABRIC_DISCOVERY_FAILED', { url: config.url, message: errorMessage(err) });
    const values = { status: 'failed' as const, attempted_at: attemptedAt, error: JSON.stringify(toCodedError(failure)) };
    await ctx.db
      .insertInto('fabric_inventory')
      .values({ fabric_id: fabricId, refreshed_at: null, snapshot: null, ...values })
      .onConflict((oc) => oc.column('fabric_id').doUpdateSet(values))
      .execute();
    ctx.log.warn({ fabric: fabric.name, code: failure.code, error: failure.message }, 'fabric inventory refresh failed');
  }
  if (failure !== undefined) throw failure;
  return getInventory(ctx, fabricId);
}

/** Runs the refreshes of one CS: on demand, and on a timer from start() to stop(). */
export class InventoryRefresher {
  private readonly running = new Map<string, Promise<InventoryView>>();
  private readonly stopping = new AbortController();
  private cancelTimer: (() => void) | undefined;
  private round: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly ctx: CsContext) {}

  /** Reads every vsphere fabric each interval (on the CS clock); an interval of 0 turns it off. */
  start(): void {
    this.schedule();
  }

  /** Stops the timer, aborts the reads in flight and waits for them to record their outcome. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelTimer?.();
    this.stopping.abort();
    await Promise.allSettled([this.round, ...this.running.values()]);
  }

  /** Reads the fabric's vCenter now, or joins the read already running. */
  refresh(fabricId: string): Promise<InventoryView> {
    if (this.stopped) return Promise.reject(csError('FABRIC_DISCOVERY_FAILED', { url: fabricId, message: 'the configuration server is stopping' }));
    const current = this.running.get(fabricId);
    if (current !== undefined) return current;
    const run = refreshOnce(this.ctx, fabricId, this.stopping.signal).finally(() => this.running.delete(fabricId));
    this.running.set(fabricId, run);
    return run;
  }

  /** One round over every vsphere fabric, one at a time; failures are recorded per fabric. */
  refreshAll(): Promise<void> {
    const run = this.round.then(async () => {
      const fabrics = await this.ctx.db.selectFrom('fabrics').select('id').where('kind', '=', 'vsphere').orderBy('name').execute();
      for (const f of fabrics) {
        if (this.stopped) return;
        await this.refresh(f.id).catch(() => undefined);
      }
    });
    this.round = run.catch((err: unknown) => this.ctx.log.error({ error: errorMessage(err) }, 'fabric inventory round failed'));
    return this.round;
  }

  /** Resolves once the round and the reads running now have ended. */
  async idle(): Promise<void> {
    await Promise.allSettled([this.round, ...this.running.values()]);
  }

  private schedule(): void {
    const ms = this.ctx.options.fabricRefresh.intervalMs;
    if (this.stopped || ms <= 0) return;
    this.cancelTimer = this.ctx.clock.setTimeout(() => void this.refreshAll().then(() => this.schedule()), ms);
  }
}

const refreshers = new WeakMap<CsContext, InventoryRefresher>();

/** The refresher of a CS (one per context, made on first use). */
export function inventoryRefresher(ctx: CsContext): InventoryRefresher {
  let r = refreshers.get(ctx);
  if (r === undefined) {
    r = new InventoryRefresher(ctx);
    refreshers.set(ctx, r);
  }
  return r;
}
