import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { normalizeThumbprint, type VsphereTls } from '../../fabrics/vsphere/tls.js';
import { csError } from '../errors.js';

/** The settings of a vsphere fabric: where vCenter is, who logs in, how its certificate is trusted. */

const THUMBPRINT = '^([0-9A-Fa-f]{2}:?){19}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$';

export const VsphereConfig = Type.Object(
  {
    url: Type.String({ pattern: '^https://[^\\s/]+(/\\S*)?$', maxLength: 2048, description: 'the vCenter SDK endpoint, e.g. https://vcenter.example/sdk' }),
    username: Type.String({ minLength: 1, maxLength: 256, description: 'the vCenter account, e.g. boomerang@vsphere.local' }),
    thumbprint: Type.Optional(Type.String({ pattern: THUMBPRINT, description: 'SHA-1 or SHA-256 fingerprint of the vCenter certificate (hex, colons optional)' })),
    caPem: Type.Optional(Type.String({ minLength: 1, maxLength: 65_536, description: 'PEM of the CA that signs the vCenter certificate' })),
    insecure: Type.Optional(Type.Boolean({ description: 'accept any certificate (labs only)' })),
    masterTargetVms: Type.Optional(
      Type.Record(Type.String({ minLength: 1 }), Type.String({ minLength: 1, maxLength: 80 }), { description: 'the VM each master target runs in, by the master target’s component name' }),
    ),
  },
  { additionalProperties: false },
);
export type VsphereConfig = Static<typeof VsphereConfig>;

/** The password: a secret, accepted on creation, never returned. */
export const Password = Type.String({ minLength: 1, maxLength: 1024, writeOnly: true, description: 'the password of the vCenter account; stored by the CS, never returned' });

/** Validates a vsphere fabric's config; every problem in one FABRIC_CONFIG_INVALID, naming the first field. */
export function parseVsphereConfig(config: unknown, password: string | undefined): VsphereConfig {
  const problems = [...Value.Errors(VsphereConfig, config ?? {})].map((e) => {
    const field = `config${e.path.replace(/\//g, '.')}`;
    // The message names the field and the rule, never the value (it might be a secret pasted in the wrong place).
    return { field, message: `${field} ${e.message}` };
  });
  const c = (problems.length === 0 ? config : {}) as VsphereConfig;
  if (problems.length === 0 && [c.thumbprint, c.caPem, c.insecure === true ? true : undefined].filter((x) => x !== undefined).length > 1) {
    problems.push({ field: 'config.thumbprint', message: 'give only one of config.thumbprint, config.caPem and config.insecure' });
  }
  if (password === undefined) problems.push({ field: 'password', message: 'password is required' });
  const unique = problems.filter((p, i) => problems.findIndex((q) => q.field === p.field) === i);
  const first = unique[0];
  if (first !== undefined) throw csError('FABRIC_CONFIG_INVALID', { kind: 'vsphere', message: unique.map((p) => p.message).join('; ') }).at(first.field).with(unique);
  return c;
}

/** How the vSphere client trusts the certificate, from the config. */
export function tlsOf(c: VsphereConfig): VsphereTls {
  if (c.thumbprint !== undefined) return { thumbprint: normalizeThumbprint(c.thumbprint) };
  if (c.caPem !== undefined) return { caPem: c.caPem };
  return c.insecure === true ? { insecure: true } : {};
}
