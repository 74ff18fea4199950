import { EventEmitter } from 'node:events';
import { errorMessage } from '../../replication/errors.js';
import { isoAt } from '../clock.js';
import type { CsContext } from '../context.js';
import type { ComponentKind } from '../db/schema.js';

/**
 * Raises the source product's codes for components that stopped sending heartbeats: 806 (process
 * server), 78022 (master target), 78174 (agent). A heartbeat clears the alert (heartbeat.ts).
 * Silence is measured from the last heartbeat or registration, whichever is later.
 */

export const HEARTBEAT_ALERT_CODES = Object.freeze({ ps: '806', mt: '78022', agent: '78174' } as const satisfies Record<ComponentKind, string>);

export interface RaisedAlert {
  componentId: string;
  kind: ComponentKind;
  name: string;
  code: (typeof HEARTBEAT_ALERT_CODES)[ComponentKind];
}

export interface HeartbeatMonitorEvents {
  /** After every check, with the alerts it raised (often none). */
  checked: [RaisedAlert[]];
}

export class HeartbeatMonitor extends EventEmitter<HeartbeatMonitorEvents> {
  private cancelTimer: (() => void) | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(private readonly ctx: CsContext) {
    super();
  }

  /** Checks every heartbeat interval on the injected clock. */
  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelTimer?.();
    await this.chain;
  }

  /** One check now; checks never overlap. */
  check(): Promise<RaisedAlert[]> {
    const run = this.chain.then(() => this.checkOnce());
    this.chain = run.catch(() => undefined);
    return run;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.cancelTimer = this.ctx.clock.setTimeout(() => {
      this.check().then(
        () => this.schedule(),
        (err: unknown) => {
          this.ctx.log.error({ error: errorMessage(err) }, 'heartbeat check failed');
          this.schedule();
        },
      );
    }, this.ctx.options.heartbeatIntervalSeconds * 1000);
  }

  private async checkOnce(): Promise<RaisedAlert[]> {
    const thresholdMs = this.ctx.options.heartbeatTimeoutSeconds * 1000;
    const now = this.ctx.clock.now();
    const rows = await this.ctx.db
      .selectFrom('components')
      .select(['id', 'kind', 'name', 'registered_at', 'last_heartbeat_at'])
      .where('revoked_at', 'is', null)
      .where('alert_code', 'is', null)
      .execute();
    const raised: RaisedAlert[] = [];
    for (const r of rows) {
      // A re-registration counts as a sign of life too.
      const last = Math.max(Date.parse(r.registered_at), r.last_heartbeat_at === null ? 0 : Date.parse(r.last_heartbeat_at));
      if (now - last <= thresholdMs) continue;
      const code = HEARTBEAT_ALERT_CODES[r.kind];
      // Only if nothing changed meanwhile: a heartbeat that just arrived wins.
      const updated = await this.ctx.db
        .updateTable('components')
        .set({ alert_code: code, alert_since: isoAt(this.ctx.clock) })
        .where('id', '=', r.id)
        .where('alert_code', 'is', null)
        .where((eb) => (r.last_heartbeat_at === null ? eb('last_heartbeat_at', 'is', null) : eb('last_heartbeat_at', '=', r.last_heartbeat_at)))
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) continue;
      raised.push({ componentId: r.id, kind: r.kind, name: r.name, code });
      this.ctx.log.warn({ component: r.id, kind: r.kind, name: r.name, code, silentSeconds: Math.round((now - last) / 1000) }, 'no heartbeat from component');
    }
    this.emit('checked', raised);
    return raised;
  }
}
