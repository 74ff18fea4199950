import { AuthenticationError, AuthenticationRequiredError, CredentialUnavailableError } from '@azure/identity';
import { BoomerangError, errorMessage } from '../../replication/errors.js';

/**
 * Errors of Azure Resource Manager calls, as typed BoomerangErrors. ARM's own error code
 * (`ResourceNotFound`, `OperationNotAllowed`…) travels in `armCode`; `status` is the HTTP status
 * when there was one. Messages never carry secrets: the SDK's errors hold the request, whose
 * Authorization header the SDK redacts, and only their messages are copied here.
 */
export class AzureArmError extends BoomerangError {
  readonly armCode: string | undefined;
  readonly status: number | undefined;
  constructor(code: AzureErrorCode, message: string, options: { armCode?: string; status?: number; retryable?: boolean; cause?: unknown } = {}) {
    super(code, message, options);
    this.armCode = options.armCode;
    this.status = options.status;
  }
}

export type AzureErrorCode =
  /** The VM (or its resource group) is not where the reference says. */
  | 'AZURE_VM_NOT_FOUND'
  /** Entra ID refused the credentials, or ARM refused the token or the permission. */
  | 'AZURE_AUTH_FAILED'
  /** Any other answer of ARM, or a long-running operation that ended Failed. */
  | 'AZURE_ARM_ERROR'
  /** ARM could not be reached (connection, DNS, TLS). */
  | 'AZURE_UNREACHABLE'
  /** A call or long-running operation did not finish within its bound. */
  | 'AZURE_TIMEOUT'
  /** A VM reference or credentials that do not validate; nothing was sent. */
  | 'AZURE_INVALID_INPUT';

const NOT_FOUND_CODES = new Set(['ResourceNotFound', 'ResourceGroupNotFound', 'NotFound']);
const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME_MISMATCH/;

interface RestErrorLike extends Error {
  statusCode?: number;
  code?: string;
}

function isRestError(err: unknown): err is RestErrorLike {
  return err instanceof Error && err.name === 'RestError';
}

/** The ARM code core-lro puts in the message of a failed operation: "The long-running operation has failed. <code>. <message>". */
function lroFailure(err: Error): { armCode: string; detail: string } | undefined {
  const m = /^The long-running operation has failed\. ([A-Za-z0-9_.]+)\. (.*)$/s.exec(err.message);
  return m ? { armCode: m[1] ?? '', detail: m[2] ?? '' } : undefined;
}

/** Finds a TLS failure in an error's cause chain (bounded). */
function tlsCause(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e instanceof Error; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TLS_CODES.test(code)) return `${code}: ${e.message}`;
    if (TLS_CODES.test(e.message)) return e.message;
    e = e.cause;
  }
  return undefined;
}

/** Maps what the SDK threw while doing `what` to an AzureArmError; BoomerangErrors pass through. */
export function toAzureError(err: unknown, what: string): BoomerangError {
  if (err instanceof BoomerangError) return err;
  if (err instanceof AuthenticationError) {
    const detail = err.errorResponse.errorDescription.split('\n')[0] ?? '';
    return new AzureArmError('AZURE_AUTH_FAILED', `${what}: Microsoft Entra ID refused the credentials (${err.errorResponse.error}): ${detail}`, {
      status: err.statusCode,
      armCode: err.errorResponse.error,
      cause: err,
    });
  }
  // MSAL could not read the authority's OpenID configuration: wrong authorityHost, unreachable, or an untrusted certificate (MSAL drops the cause).
  if (err instanceof CredentialUnavailableError && err.message.startsWith('endpoints_resolution_error')) {
    return new AzureArmError('AZURE_UNREACHABLE', `${what}: the OpenID configuration of Entra ID could not be read (check authorityHost, the network and the CA): ${err.message}`, {
      armCode: 'endpoints_resolution_error',
      retryable: true,
      cause: err,
    });
  }
  if (err instanceof CredentialUnavailableError) return new AzureArmError('AZURE_AUTH_FAILED', `${what}: no token could be obtained: ${err.message}`, { cause: err });
  // What MSAL-node turns a refused client-credentials request into: "<oauth error>: Error(s): <AADSTS codes> - … Description: …".
  if (err instanceof AuthenticationRequiredError) {
    const oauthCode = /^([a-z_]+):/.exec(err.message)?.[1];
    return new AzureArmError('AZURE_AUTH_FAILED', `${what}: Microsoft Entra ID refused the credentials: ${err.message}`, { ...(oauthCode ? { armCode: oauthCode } : {}), cause: err });
  }
  if (isRestError(err)) {
    const status = err.statusCode;
    const armCode = err.code;
    if (status === undefined) {
      const tls = tlsCause(err);
      if (tls !== undefined) return new AzureArmError('AZURE_UNREACHABLE', `${what}: the TLS certificate of ARM is not trusted: ${tls}`, { armCode, cause: err });
      return new AzureArmError('AZURE_UNREACHABLE', `${what}: ARM cannot be reached: ${err.message}`, { armCode, retryable: true, cause: err });
    }
    const base = { armCode, status, cause: err };
    if (status === 401 || status === 403) return new AzureArmError('AZURE_AUTH_FAILED', `${what}: ARM answered ${status} ${armCode ?? ''}: ${err.message}`, base);
    if (status === 404 && armCode !== undefined && NOT_FOUND_CODES.has(armCode)) return new AzureArmError('AZURE_VM_NOT_FOUND', `${what}: ${err.message}`, base);
    return new AzureArmError('AZURE_ARM_ERROR', `${what}: ARM answered ${status} ${armCode ?? ''}: ${err.message}`, { ...base, retryable: status === 429 || status >= 500 });
  }
  if (err instanceof Error) {
    const failed = lroFailure(err);
    if (failed) {
      const code = NOT_FOUND_CODES.has(failed.armCode) ? 'AZURE_VM_NOT_FOUND' : 'AZURE_ARM_ERROR';
      return new AzureArmError(code, `${what}: the operation failed: ${failed.armCode}: ${failed.detail}`, { armCode: failed.armCode, cause: err });
    }
    const tls = tlsCause(err);
    if (tls !== undefined) return new AzureArmError('AZURE_UNREACHABLE', `${what}: the TLS certificate of ARM is not trusted: ${tls}`, { cause: err });
  }
  return new AzureArmError('AZURE_ARM_ERROR', `${what}: ${errorMessage(err)}`, { cause: err });
}
