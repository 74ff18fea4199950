import type { CsContext } from '../context.js';
import type { ComponentRow } from '../db/schema.js';
import { csError } from '../errors.js';
import { bearerToken, parseComponentToken, secretMatches } from '../trust/tokens.js';
import type { Vault } from '../trust/vault.js';

/**
 * Who is calling. The secret is checked before anything else is revealed: only a caller that
 * holds a component's token learns that it is revoked or expired.
 */

export function authenticateOperator(vault: Vault, authorization: string | undefined): void {
  if (authorization === undefined) throw csError('AUTH_REQUIRED');
  const token = bearerToken(authorization);
  if (token === undefined || !vault.isOperatorToken(token)) throw csError('BAD_TOKEN');
}

export async function authenticateComponent(ctx: CsContext, authorization: string | undefined): Promise<ComponentRow> {
  if (authorization === undefined) throw csError('AUTH_REQUIRED');
  const token = bearerToken(authorization);
  const parsed = token === undefined ? undefined : parseComponentToken(token);
  if (parsed === undefined) throw csError('BAD_TOKEN');
  const row = await ctx.db.selectFrom('components').selectAll().where('id', '=', parsed.componentId).executeTakeFirst();
  if (row === undefined || !secretMatches(parsed.secret, row.token_hash)) throw csError('BAD_TOKEN');
  if (row.revoked_at !== null) throw csError('REVOKED', { kind: row.kind, name: row.name });
  if (Date.parse(row.token_expires_at) <= ctx.clock.now()) throw csError('TOKEN_EXPIRED', { expiredAt: row.token_expires_at });
  return row;
}
