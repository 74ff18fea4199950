import { setTimeout as sleep } from 'node:timers/promises';
import type { TSchema, Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { BoomerangError, errorMessage } from '../replication/errors.js';
import { HttpsJsonClient } from './https-client.js';
import type { Logger } from './log.js';

/**
 * The component side of CS commands: a long poll for pending commands, each carried out in
 * arrival order and answered. An answer that cannot be delivered (the CS is down) is kept and
 * delivered first once the CS is back; a command seen again after a restart of the component is
 * carried out again, so every handler must be idempotent.
 */

export interface CommandHandler<S extends TSchema = TSchema> {
  params: S;
  run(params: Static<S>, signal: AbortSignal): Promise<Record<string, unknown> | void>;
}

export function commandHandler<S extends TSchema>(params: S, run: (params: Static<S>, signal: AbortSignal) => Promise<Record<string, unknown> | void>): CommandHandler<S> {
  return { params, run };
}

interface Command {
  id: string;
  kind: string;
  params: unknown;
}

type Answer = { ok: true; result: Record<string, unknown> } | { ok: false; error: { code: string; message: string } };

export interface CommandLoopOptions {
  url: string;
  caPem: string;
  /** The current component token (it is renewed while the loop runs). */
  token: () => string;
  handlers: Readonly<Record<string, CommandHandler>>;
  log: Logger;
  /** @default 25 */
  waitSeconds?: number;
}

export class CommandLoop {
  private readonly client: HttpsJsonClient;
  private readonly stopping = new AbortController();
  private readonly unanswered = new Map<string, Answer>();
  private loop: Promise<void> | undefined;
  /** Commands carried out by this process, for status and tests. */
  executed = 0;

  constructor(private readonly o: CommandLoopOptions) {
    this.client = new HttpsJsonClient(o.url, o.caPem, o.token);
  }

  start(): void {
    this.loop ??= this.run();
  }

  private async run(): Promise<void> {
    const signal = this.stopping.signal;
    let backoffMs = 500;
    while (!signal.aborted) {
      try {
        await this.deliverAnswers(signal);
        const commands = await this.client.call<Command[]>('GET', `/v1/commands?waitSeconds=${this.o.waitSeconds ?? 25}`, undefined, {}, signal);
        for (const c of commands) {
          if (signal.aborted) return;
          if (this.unanswered.has(c.id)) continue;
          const answer = await this.execute(c, signal);
          if (signal.aborted) return; // unanswered: the CS sends it again to the next run
          this.unanswered.set(c.id, answer);
          await this.deliverAnswers(signal);
        }
        backoffMs = 500;
      } catch (err) {
        if (signal.aborted) return;
        this.o.log.warn({ error: errorMessage(err), retryInMs: backoffMs }, 'cannot fetch commands from the configuration server');
        await sleep(backoffMs, undefined, { signal }).catch(() => undefined);
        backoffMs = Math.min(backoffMs * 2, 10_000);
      }
    }
  }

  private async execute(c: Command, signal: AbortSignal): Promise<Answer> {
    const handler = this.o.handlers[c.kind];
    if (!handler) return { ok: false, error: { code: 'UNKNOWN_COMMAND', message: `this component does not know the command ${c.kind}` } };
    if (!Value.Check(handler.params, c.params)) {
      const first = [...Value.Errors(handler.params, c.params)][0];
      return { ok: false, error: { code: 'BAD_COMMAND', message: `parameters of ${c.kind} do not validate${first ? `: ${first.path || '/'} ${first.message}` : ''}` } };
    }
    const started = Date.now();
    this.o.log.info({ command: c.id, kind: c.kind }, 'command started');
    try {
      const result = (await handler.run(c.params, signal)) ?? {};
      this.executed++;
      this.o.log.info({ command: c.id, kind: c.kind, ms: Date.now() - started }, 'command done');
      return { ok: true, result };
    } catch (err) {
      const code = err instanceof BoomerangError ? err.code : 'COMMAND_ERROR';
      this.o.log.warn({ command: c.id, kind: c.kind, code, error: errorMessage(err) }, 'command failed');
      return { ok: false, error: { code, message: errorMessage(err).slice(0, 4000) } };
    }
  }

  private async deliverAnswers(signal: AbortSignal): Promise<void> {
    for (const [id, answer] of this.unanswered) {
      await this.client.call('POST', `/v1/commands/${encodeURIComponent(id)}/answer`, answer, {}, signal);
      this.unanswered.delete(id);
    }
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
    await this.client.close();
  }
}
