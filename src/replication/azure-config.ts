import { Type, type Static } from '@sinclair/typebox';

/**
 * The `azure` section of the agent's and the master target's config files: the storage accounts
 * that page-blob disk locations (`azblob://<account>/<container>/<blob>`) may name. The key is
 * read from a file (mode 0600), so it is in neither the config nor any location.
 *
 *   azure:
 *     accounts:
 *       cloud: { url: https://acct.blob.core.windows.net, accountName: acct, keyFile: /etc/boomerang/acct.key }
 */
export const AzureConfigSchema = Type.Object(
  {
    accounts: Type.Record(
      Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' }),
      Type.Object(
        {
          url: Type.String({ pattern: '^https://', description: 'blob endpoint (https)' }),
          accountName: Type.String({ minLength: 1, maxLength: 64 }),
          keyFile: Type.String({ minLength: 1, description: 'file holding the base64 shared key' }),
          caFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM CA to trust instead of the system roots' })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, description: 'storage accounts that azblob:// disk locations name' },
);

/** A component's `azure` config section. */
export type AzureConfig = Static<typeof AzureConfigSchema>;
