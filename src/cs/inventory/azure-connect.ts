import { ComputeManagementClient } from '@azure/arm-compute';
import { ClientSecretCredential } from '@azure/identity';
import { AzureArmError, toAzureError } from '../../fabrics/azure/arm-errors.js';
import { errorMessage } from '../../replication/errors.js';
import { CsError, csError } from '../errors.js';
import { azureCredentialsOf, type AzureFabricConfig } from './azure-config.js';

/**
 * Checks an azure fabric's service principal on behalf of the CS before anything is stored: a
 * token from Entra ID, then one Resource Manager call (the first page of the subscription's VMs,
 * which needs the read permission every pre-flight fact needs), under one deadline, with the SDK's
 * errors turned into the CS's coded ones. The secret is never in a message.
 */

const PUBLIC_AUTHORITY = 'https://login.microsoftonline.com';
const PUBLIC_ARM = 'https://management.azure.com';
const ARM_SCOPE = 'https://management.azure.com/.default';
/** How the errors name the two services an azure fabric talks to. */
const ENTRA = 'Microsoft Entra ID';
const ARM = 'Azure Resource Manager';

/** The CS error for a failed check, with the field to correct. */
export function azureFabricError(err: unknown, c: AzureFabricConfig, timeoutMs: number, timedOut: boolean): CsError {
  if (err instanceof CsError) return err;
  const arm = c.armEndpoint ?? PUBLIC_ARM;
  const authority = c.authorityHost ?? PUBLIC_AUTHORITY;
  if (timedOut) return csError('FABRIC_TIMEOUT', { url: arm, seconds: Math.round(timeoutMs / 1000), service: ARM });
  const e = err instanceof AzureArmError ? err : toAzureError(err, 'checking the service principal');
  const code = e.code;
  const armCode = e instanceof AzureArmError ? e.armCode : undefined;
  const status = e instanceof AzureArmError ? e.status : undefined;
  if (code === 'AZURE_AUTH_FAILED') {
    if (status === 403) return csError('FABRIC_PRIVILEGES_MISSING', { username: c.clientId, missing: 'Microsoft.Compute/virtualMachines/read (and the power actions: start, deallocate, powerOff) on the subscription' });
    return csError('FABRIC_LOGIN_FAILED', { url: status === undefined ? authority : arm, username: c.clientId, service: status === undefined ? ENTRA : ARM }).at('clientSecret');
  }
  if (code === 'AZURE_UNREACHABLE') {
    if (/TLS certificate|CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(e.message)) return csError('FABRIC_TLS_UNTRUSTED', { url: arm, message: e.message, service: ARM }).at('config.caPem');
    const atAuthority = armCode === 'endpoints_resolution_error';
    return csError('FABRIC_UNREACHABLE', { url: atAuthority ? authority : arm, message: e.message, service: atAuthority ? ENTRA : ARM }).at(atAuthority ? 'config.authorityHost' : 'config.armEndpoint');
  }
  if (code === 'AZURE_TIMEOUT') return csError('FABRIC_TIMEOUT', { url: arm, seconds: Math.round(timeoutMs / 1000), service: ARM });
  if (armCode === 'SubscriptionNotFound' || armCode === 'InvalidSubscriptionId') {
    return csError('FABRIC_CONFIG_INVALID', { kind: 'azure', message: `subscription ${c.subscriptionId} is not found by ${arm}: ${e.message}` }).at('config.subscriptionId');
  }
  return csError('FABRIC_DISCOVERY_FAILED', { url: arm, message: `[${code}] ${errorMessage(e)}`, service: ARM });
}

/** A token and one ARM read; resolves when both succeed, else throws the CS error (nothing is kept). */
export async function checkAzureLogin(c: AzureFabricConfig, clientSecret: string, timeoutMs: number): Promise<void> {
  const creds = azureCredentialsOf(c, clientSecret);
  const deadline = AbortSignal.timeout(timeoutMs);
  try {
    const credential = new ClientSecretCredential(creds.tenantId, creds.clientId, creds.clientSecret, {
      // A custom authority is trusted as given: instance discovery would ask the public cloud.
      ...(creds.authorityHost !== undefined ? { authorityHost: creds.authorityHost, disableInstanceDiscovery: true } : {}),
      ...(creds.ca !== undefined ? { tlsOptions: { ca: creds.ca } } : {}),
    });
    // The token first: a refused secret is told apart from an ARM that refuses the token.
    await credential.getToken(ARM_SCOPE, { abortSignal: deadline });
    const client = new ComputeManagementClient(credential, c.subscriptionId, {
      ...(creds.armEndpoint !== undefined ? { endpoint: creds.armEndpoint } : {}),
      ...(creds.ca !== undefined ? { tlsOptions: { ca: creds.ca } } : {}),
      retryOptions: { maxRetries: 1 },
      userAgentOptions: { userAgentPrefix: 'boomerang' },
    });
    await client.virtualMachines.listAll({ abortSignal: deadline }).byPage().next();
  } catch (err) {
    throw azureFabricError(err, c, timeoutMs, deadline.aborted);
  }
}
