import { RestError } from '@azure/storage-blob';
import { BoomerangError, errorMessage } from '../../replication/errors.js';

/**
 * Azure Storage failures translated to ours: a stable code, whether trying again may help, and a
 * message that names the operation and the service's error code but never a URL (it may carry a
 * SAS) or a header (it may carry a key).
 */

/** HTTP statuses Azure Storage answers when the same request may succeed later. */
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** Socket-level failures of a request that never got an answer. */
const NETWORK_CODES = new Set(['REQUEST_SEND_ERROR', 'ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'ECONNABORTED', 'UND_ERR_SOCKET']);

/** Service error codes that mean another writer holds, or took, the blob's lease. */
const LEASE_CODES = new Set([
  'LeaseAlreadyPresent',
  'LeaseIdMismatchWithBlobOperation',
  'LeaseIdMismatchWithLeaseOperation',
  'LeaseLost',
  'LeaseNotPresentWithBlobOperation',
  'LeaseIsBrokenAndCannotBeRenewed',
  'LeaseIsBreakingAndCannotBeAcquired',
]);

/** The HTTP status of a service answer, if the error is one. */
export function statusOf(err: unknown): number | undefined {
  return err instanceof RestError ? err.statusCode : undefined;
}

/** The service's x-ms-error-code (e.g. "BlobNotFound"), when there is one. */
export function serviceCodeOf(err: unknown): string | undefined {
  if (!(err instanceof RestError)) return undefined;
  const details = err.details as { errorCode?: unknown } | undefined;
  if (typeof details?.errorCode === 'string') return details.errorCode;
  return err.code;
}

/** Throttling, a server error, a timeout or a network failure: worth another try. */
export function isTransient(err: unknown): boolean {
  if (err instanceof BoomerangError) return err.retryable;
  const status = statusOf(err);
  if (status !== undefined && status !== 0) return TRANSIENT_STATUS.has(status);
  const code = err && typeof err === 'object' && 'code' in err ? String(err.code) : undefined;
  if (code !== undefined && NETWORK_CODES.has(code)) return true;
  // The SDK aborts a try that exceeds its time limit (tryTimeoutMs): a hung request, not a refusal.
  return err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError');
}

/** Another lease holder refused us (or took the lease from us). */
export function isLeaseConflict(err: unknown): boolean {
  const code = serviceCodeOf(err);
  return code !== undefined && LEASE_CODES.has(code);
}

/** The blob, snapshot or container does not exist. */
export function isNotFound(err: unknown): boolean {
  return statusOf(err) === 404;
}

/** A URL may carry a SAS token: messages name the operation instead. */
function withoutUrls(message: string): string {
  return message.replace(/\bhttps?:\/\/\S+/g, '<url>');
}

/** Our error for a failed storage operation `what` (e.g. "write 4096 bytes at 0 of disk-1"). */
export function storageError(err: unknown, what: string): BoomerangError {
  if (err instanceof BoomerangError) return err;
  if (isLeaseConflict(err)) return new BoomerangError('DISK_LEASED', `${what}: another writer holds the page blob's lease (${serviceCodeOf(err)})`, { cause: err });
  const status = statusOf(err);
  const service = serviceCodeOf(err);
  const detail = status === undefined || status === 0 ? withoutUrls(errorMessage(err).split('\n')[0] ?? '') : `HTTP ${status}${service === undefined ? '' : ` ${service}`}`;
  if (status === 404) return new BoomerangError('DISK_NOT_FOUND', `${what}: the page blob or its container does not exist (${detail})`, { cause: err });
  return new BoomerangError('AZURE_STORAGE', `${what}: ${detail}`, { cause: err, retryable: isTransient(err) });
}
