import type { FastifyRequest } from 'fastify';
import { authenticateComponent, authenticateOperator } from '../components/auth.js';
import type { CsContext } from '../context.js';
import type { ComponentRow } from '../db/schema.js';
import type { Vault } from '../trust/vault.js';

/**
 * onRequest hooks for the two kinds of callers. They run before the body is read, so an
 * unauthenticated request is refused without its payload being parsed or validated.
 */

export function operatorHook(vault: Vault) {
  return async (req: FastifyRequest): Promise<void> => {
    authenticateOperator(vault, req.headers.authorization);
  };
}

/** Authenticates component routes and remembers, per request, which component is calling. */
export class ComponentAuth {
  private readonly callers = new WeakMap<FastifyRequest, ComponentRow>();

  constructor(private readonly ctx: CsContext) {}

  readonly hook = async (req: FastifyRequest): Promise<void> => {
    this.callers.set(req, await authenticateComponent(this.ctx, req.headers.authorization));
  };

  caller(req: FastifyRequest): ComponentRow {
    const c = this.callers.get(req);
    if (c === undefined) throw new Error('component route registered outside the authenticated scope');
    return c;
  }
}
