import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { csError } from '../errors.js';
import { parseVsphereConfig, type VsphereConfig } from './vsphere-config.js';

/** A vsphere fabric as the CS's code talks to it: its name, settings and the account's password. */
export interface VsphereFabricAccess {
  id: string;
  name: string;
  config: VsphereConfig;
  password: string;
}

/**
 * Reads a vsphere fabric with its password (from fabric_secrets), for the code that logs in to its
 * vCenter. Never put the result in a view or a log line.
 */
export async function vsphereFabricAccess(db: Kysely<Database>, fabricId: string): Promise<VsphereFabricAccess> {
  const fabric = await db.selectFrom('fabrics').selectAll().where('id', '=', fabricId).executeTakeFirst();
  if (fabric === undefined) throw csError('NOT_FOUND', { what: 'fabric', id: fabricId });
  if (fabric.kind !== 'vsphere') throw csError('FABRIC_NO_INVENTORY', { name: fabric.name, kind: fabric.kind });
  const secret = await db.selectFrom('fabric_secrets').select('password').where('fabric_id', '=', fabricId).executeTakeFirst();
  const config = parseVsphereConfig(JSON.parse(fabric.config), secret?.password);
  return { id: fabric.id, name: fabric.name, config, password: secret?.password ?? '' };
}
