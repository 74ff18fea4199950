import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { validateCredentials, type AzureCredentials } from '../../fabrics/azure/arm.js';
import { AzureArmError } from '../../fabrics/azure/arm-errors.js';
import { Uuid } from '../domain/names.js';
import { csError } from '../errors.js';

/**
 * The settings of an azure fabric: the service principal (tenant, client) the CS signs in as, the
 * subscription its VMs are in, and, for a sovereign cloud, Azure Stack or the lab's fake ARM, where
 * Entra ID and Resource Manager are and which CA to trust. The client secret is not a setting: it
 * is given at creation beside the config, stored like a vSphere password and never returned.
 */

const httpsUrl = (description: string) => Type.String({ pattern: '^https://[^\\s/?#@]+(/[^\\s?#@]*)?$', maxLength: 2048, description });

export const AzureFabricConfig = Type.Object(
  {
    tenantId: Type.String({ pattern: '^[0-9A-Za-z.-]{1,256}$', description: 'the Microsoft Entra tenant (GUID or domain) of the service principal' }),
    clientId: Uuid,
    subscriptionId: Uuid,
    authorityHost: Type.Optional(httpsUrl('Entra ID’s address; default https://login.microsoftonline.com (instance discovery is skipped when set)')),
    armEndpoint: Type.Optional(httpsUrl('Resource Manager’s address; default https://management.azure.com')),
    caPem: Type.Optional(Type.String({ minLength: 1, maxLength: 65_536, description: 'PEM of the CA to trust for Entra ID and ARM instead of the system roots' })),
  },
  { additionalProperties: false },
);
export type AzureFabricConfig = Static<typeof AzureFabricConfig>;

/** The client secret of the service principal: accepted on creation, never returned. */
export const ClientSecret = Type.String({ minLength: 1, maxLength: 1024, writeOnly: true, description: 'azure: the client secret of the service principal; stored by the CS, never returned' });

/** The credentials the ARM client takes, from the settings and the stored secret. */
export function azureCredentialsOf(c: AzureFabricConfig, clientSecret: string): AzureCredentials {
  return {
    tenantId: c.tenantId,
    clientId: c.clientId,
    clientSecret,
    ...(c.authorityHost !== undefined ? { authorityHost: c.authorityHost } : {}),
    ...(c.armEndpoint !== undefined ? { armEndpoint: c.armEndpoint } : {}),
    ...(c.caPem !== undefined ? { ca: c.caPem } : {}),
  };
}

/** Validates an azure fabric's config; every problem in one FABRIC_CONFIG_INVALID, naming the first field. */
export function parseAzureConfig(config: unknown, clientSecret: string | undefined): AzureFabricConfig {
  const problems = [...Value.Errors(AzureFabricConfig, config ?? {})].map((e) => {
    const field = `config${e.path.replace(/\//g, '.')}`;
    // The field and the rule, never the value (a secret pasted in the wrong place stays out of the answer).
    return { field, message: `${field} ${e.message}` };
  });
  if (clientSecret === undefined) problems.push({ field: 'clientSecret', message: 'clientSecret is required' });
  if (problems.length === 0) {
    try {
      validateCredentials(azureCredentialsOf(config as AzureFabricConfig, clientSecret as string));
    } catch (err) {
      // The ARM client's own rules (a PEM that is not a certificate, say); its messages never hold the secret.
      if (!(err instanceof AzureArmError)) throw err;
      problems.push({ field: err.message.startsWith('ca ') ? 'config.caPem' : 'config', message: err.message });
    }
  }
  const unique = problems.filter((p, i) => problems.findIndex((q) => q.field === p.field) === i);
  const first = unique[0];
  if (first !== undefined) throw csError('FABRIC_CONFIG_INVALID', { kind: 'azure', message: unique.map((p) => p.message).join('; ') }).at(first.field).with(unique);
  return config as AzureFabricConfig;
}
