import { EventEmitter } from 'node:events';
import { Type, type Static } from '@sinclair/typebox';
import { isoAt } from '../clock.js';
import type { CsContext } from '../context.js';
import type { CommandRow, ComponentRow } from '../db/schema.js';
import { csError } from '../errors.js';
import type { JsonObject } from '../jobs/types.js';

/**
 * Commands from jobs to components. A job never calls a component: it writes a command row, and
 * the component fetches it with a long poll, carries it out and answers. So components need no
 * inbound connection from the CS (an agent behind NAT or a VPN works as is), a CS that restarts
 * mid-job finds its commands where it left them, and a component that was down gets them when it
 * comes back — unless they expired first, because a late "attach" or "protect" is worse than none.
 * Senders choose the id (job, task, disk), so a resumed task that sends again changes nothing;
 * components must carry out a command they see twice as if once.
 */

export const CommandView = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  params: Type.Record(Type.String(), Type.Unknown()),
  expiresAt: Type.String(),
});
export type CommandView = Static<typeof CommandView>;

export const CommandAnswer = Type.Union([
  Type.Object({ ok: Type.Literal(true), result: Type.Optional(Type.Record(Type.String(), Type.Unknown())) }, { additionalProperties: false }),
  Type.Object(
    { ok: Type.Literal(false), error: Type.Object({ code: Type.String({ minLength: 1, maxLength: 64 }), message: Type.String({ maxLength: 4096 }) }, { additionalProperties: false }) },
    { additionalProperties: false },
  ),
]);
export type CommandAnswer = Static<typeof CommandAnswer>;

export interface SendCommand {
  id: string;
  componentId: string;
  kind: string;
  params: JsonObject;
  jobId?: string;
  /** How long the command may wait to be fetched and answered. */
  timeoutMs: number;
}

const DB_RECHECK_MS = 2000;

export class CommandBus {
  private readonly events = new EventEmitter();

  constructor(private readonly ctx: CsContext) {
    this.events.setMaxListeners(0);
  }

  /** Records the command unless one with its id exists already (a resumed task sending again). */
  async send(c: SendCommand): Promise<void> {
    const now = this.ctx.clock.now();
    await this.ctx.db
      .insertInto('commands')
      .values({
        id: c.id,
        component_id: c.componentId,
        kind: c.kind,
        params: JSON.stringify(c.params),
        state: 'pending',
        result: null,
        error: null,
        job_id: c.jobId ?? null,
        created_at: isoAt(this.ctx.clock),
        expires_at: new Date(now + c.timeoutMs).toISOString(),
        finished_at: null,
      })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
    this.events.emit(`for:${c.componentId}`);
  }

  /** Sends (once) and waits for the answer: the result, or a COMMAND_FAILED / COMMAND_TIMEOUT error. */
  async call(c: SendCommand, signal: AbortSignal): Promise<JsonObject> {
    await this.send(c);
    return this.answer(c.id, signal);
  }

  /** Waits for the command's answer; expires it at its deadline. */
  async answer(id: string, signal: AbortSignal): Promise<JsonObject> {
    for (;;) {
      signal.throwIfAborted();
      const row = await this.ctx.db.selectFrom('commands').selectAll().where('id', '=', id).executeTakeFirst();
      if (row === undefined) throw csError('NOT_FOUND', { what: 'command', id });
      const done = await this.settle(row);
      if (done !== undefined) return done;
      const left = Date.parse(row.expires_at) - this.ctx.clock.now();
      await this.changed(`done:${id}`, Math.max(1, Math.min(left, DB_RECHECK_MS)), signal);
    }
  }

  private async settle(row: CommandRow): Promise<JsonObject | undefined> {
    if (row.state === 'done') return row.result === null ? {} : (JSON.parse(row.result) as JsonObject);
    const component = await this.componentName(row.component_id);
    if (row.state === 'failed') {
      const e = JSON.parse(row.error ?? '{}') as { code?: string; message?: string };
      throw csError('COMMAND_FAILED', { kind: row.kind, component, code: e.code ?? 'UNKNOWN', message: e.message ?? '' });
    }
    const timeout = () => csError('COMMAND_TIMEOUT', { kind: row.kind, component, seconds: Math.round((Date.parse(row.expires_at) - Date.parse(row.created_at)) / 1000) });
    if (row.state === 'expired') throw timeout();
    if (Date.parse(row.expires_at) <= this.ctx.clock.now()) {
      await this.ctx.db.updateTable('commands').set({ state: 'expired', finished_at: isoAt(this.ctx.clock) }).where('id', '=', row.id).where('state', '=', 'pending').execute();
      // An answer may have arrived in between: read again rather than guess.
      const again = await this.ctx.db.selectFrom('commands').selectAll().where('id', '=', row.id).executeTakeFirstOrThrow();
      if (again.state !== 'expired') return this.settle(again);
      throw timeout();
    }
    return undefined;
  }

  private async componentName(id: string): Promise<string> {
    const c = await this.ctx.db.selectFrom('components').select(['kind', 'name']).where('id', '=', id).executeTakeFirst();
    return c === undefined ? `component ${id}` : `${c.kind === 'mt' ? 'master target' : c.kind === 'ps' ? 'process server' : 'agent'} ${c.name}`;
  }

  /** The component's pending, unexpired commands, oldest first; waits up to waitMs for one. */
  async pending(component: ComponentRow, waitMs: number, signal: AbortSignal): Promise<CommandView[]> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const rows = await this.ctx.db
        .selectFrom('commands')
        .selectAll()
        .where('component_id', '=', component.id)
        .where('state', '=', 'pending')
        .where('expires_at', '>', isoAt(this.ctx.clock))
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      const left = deadline - Date.now();
      if (rows.length > 0 || left <= 0 || signal.aborted) return rows.map((r) => ({ id: r.id, kind: r.kind, params: JSON.parse(r.params) as JsonObject, expiresAt: r.expires_at }));
      await this.changed(`for:${component.id}`, left, signal).catch(() => undefined);
    }
  }

  /** A component's answer. Answering twice, or after expiry, is accepted and changes nothing. */
  async complete(component: ComponentRow, id: string, answer: CommandAnswer): Promise<{ accepted: boolean }> {
    const r = await this.ctx.db
      .updateTable('commands')
      .set(
        answer.ok
          ? { state: 'done', result: JSON.stringify(answer.result ?? {}), finished_at: isoAt(this.ctx.clock) }
          : { state: 'failed', error: JSON.stringify(answer.error), finished_at: isoAt(this.ctx.clock) },
      )
      .where('id', '=', id)
      .where('component_id', '=', component.id)
      .where('state', '=', 'pending')
      .executeTakeFirst();
    const accepted = Number(r.numUpdatedRows) === 1;
    if (!accepted) {
      const row = await this.ctx.db.selectFrom('commands').select('id').where('id', '=', id).where('component_id', '=', component.id).executeTakeFirst();
      if (row === undefined) throw csError('NOT_FOUND', { what: 'command', id });
    }
    this.events.emit(`done:${id}`);
    if (accepted) this.ctx.log.info({ command: id, component: component.name, ok: answer.ok, ...(answer.ok ? {} : { error: answer.error }) }, 'command answered');
    return { accepted };
  }

  private changed(event: string, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const done = () => {
        clearTimeout(timer);
        this.events.off(event, done);
        signal.removeEventListener('abort', aborted);
        resolve();
      };
      const aborted = () => {
        clearTimeout(timer);
        this.events.off(event, done);
        reject(signal.reason);
      };
      const timer = setTimeout(done, ms);
      this.events.once(event, done);
      signal.addEventListener('abort', aborted, { once: true });
    });
  }
}
