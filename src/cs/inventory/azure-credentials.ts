import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { csError } from '../errors.js';
import { fabricWithSecret } from './fabric-secrets.js';
import { parseAzureConfig, type AzureFabricConfig } from './azure-config.js';

/** An azure fabric as the CS's code talks to it: its name, settings and the service principal's secret. */
export interface AzureFabricAccess {
  id: string;
  name: string;
  config: AzureFabricConfig;
  clientSecret: string;
}

/** Reads an azure fabric with its client secret (see fabricWithSecret). Never put the result in a view or a log line. */
export async function azureFabricAccess(db: Kysely<Database>, fabricId: string): Promise<AzureFabricAccess> {
  const { fabric, secret } = await fabricWithSecret(db, fabricId, 'azure', (f) => csError('FABRIC_CONFIG_INVALID', { kind: f.kind, message: `fabric ${f.name} is not an azure fabric` }));
  const config = parseAzureConfig(JSON.parse(fabric.config), secret);
  return { id: fabric.id, name: fabric.name, config, clientSecret: secret ?? '' };
}
