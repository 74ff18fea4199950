import type { Kysely } from 'kysely';
import type { Database, FabricKind, FabricRow } from '../db/schema.js';
import { csError, type CsError } from '../errors.js';

/**
 * A fabric of `kind` with its one secret (`fabric_secrets.password`: a vCenter password, an Azure
 * client secret), for the code that signs in to it. Never put the result in a view or a log line.
 */
export async function fabricWithSecret(db: Kysely<Database>, fabricId: string, kind: FabricKind, wrongKind: (fabric: FabricRow) => CsError): Promise<{ fabric: FabricRow; secret: string | undefined }> {
  const fabric = await db.selectFrom('fabrics').selectAll().where('id', '=', fabricId).executeTakeFirst();
  if (fabric === undefined) throw csError('NOT_FOUND', { what: 'fabric', id: fabricId });
  if (fabric.kind !== kind) throw wrongKind(fabric);
  const row = await db.selectFrom('fabric_secrets').select('password').where('fabric_id', '=', fabricId).executeTakeFirst();
  return { fabric, secret: row?.password };
}
