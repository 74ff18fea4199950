import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { csError } from '../errors.js';
import { fabricWithSecret } from './fabric-secrets.js';
import { parseVsphereConfig, type VsphereConfig } from './vsphere-config.js';

/** A vsphere fabric as the CS's code talks to it: its name, settings and the account's password. */
export interface VsphereFabricAccess {
  id: string;
  name: string;
  config: VsphereConfig;
  password: string;
}

/** Reads a vsphere fabric with its password (see fabricWithSecret). Never put the result in a view or a log line. */
export async function vsphereFabricAccess(db: Kysely<Database>, fabricId: string): Promise<VsphereFabricAccess> {
  const { fabric, secret } = await fabricWithSecret(db, fabricId, 'vsphere', (f) => csError('FABRIC_NO_INVENTORY', { name: f.name, kind: f.kind }));
  const config = parseVsphereConfig(JSON.parse(fabric.config), secret);
  return { id: fabric.id, name: fabric.name, config, password: secret ?? '' };
}
