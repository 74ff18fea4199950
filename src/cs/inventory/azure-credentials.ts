import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { csError } from '../errors.js';
import { parseAzureConfig, type AzureFabricConfig } from './azure-config.js';

/** An azure fabric as the CS's code talks to it: its name, settings and the service principal's secret. */
export interface AzureFabricAccess {
  id: string;
  name: string;
  config: AzureFabricConfig;
  clientSecret: string;
}

/**
 * Reads an azure fabric with its client secret. The secret lives in `fabric_secrets.password` (the
 * column holds the one secret of a fabric of any kind: a vCenter password, an Azure client
 * secret). Never put the result in a view or a log line.
 */
export async function azureFabricAccess(db: Kysely<Database>, fabricId: string): Promise<AzureFabricAccess> {
  const fabric = await db.selectFrom('fabrics').selectAll().where('id', '=', fabricId).executeTakeFirst();
  if (fabric === undefined) throw csError('NOT_FOUND', { what: 'fabric', id: fabricId });
  if (fabric.kind !== 'azure') throw csError('FABRIC_CONFIG_INVALID', { kind: fabric.kind, message: `fabric ${fabric.name} is not an azure fabric` });
  const secret = await db.selectFrom('fabric_secrets').select('password').where('fabric_id', '=', fabricId).executeTakeFirst();
  const config = parseAzureConfig(JSON.parse(fabric.config), secret?.password);
  return { id: fabric.id, name: fabric.name, config, clientSecret: secret?.password ?? '' };
}
