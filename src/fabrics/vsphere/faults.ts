import { BoomerangError } from '../../replication/errors.js';
import { child, type XNode } from './xml.js';

/**
 * vSphere faults as typed errors. `faultType` is the fault's WSDL type (from `xsi:type` in the
 * SOAP detail, or a task's `error.fault`); common ones get their own class so callers can match
 * with `instanceof`, the rest are `VsphereFault`.
 */
export class VsphereFault extends BoomerangError {
  constructor(
    readonly faultType: string,
    message: string,
    code = 'VSPHERE_FAULT',
    options: { retryable?: boolean } = {},
  ) {
    super(code, message, options);
  }
}

export class InvalidLoginError extends VsphereFault {}
export class NoPermissionError extends VsphereFault {}
export class NotAuthenticatedError extends NoPermissionError {}
export class InvalidPowerStateError extends VsphereFault {}
export class ManagedObjectNotFoundError extends VsphereFault {}
export class InvalidArgumentError extends VsphereFault {}
export class MethodNotFoundError extends VsphereFault {}
export class InvalidStateError extends VsphereFault {}
export class DuplicateNameError extends VsphereFault {}
export class FileNotFoundError extends VsphereFault {}

type FaultClass = new (faultType: string, message: string, code?: string, options?: { retryable?: boolean }) => VsphereFault;

const CLASSES: Record<string, [FaultClass, string, boolean?]> = {
  InvalidLogin: [InvalidLoginError, 'VSPHERE_INVALID_LOGIN'],
  NoPermission: [NoPermissionError, 'VSPHERE_NO_PERMISSION'],
  NotAuthenticated: [NotAuthenticatedError, 'VSPHERE_NOT_AUTHENTICATED'],
  InvalidPowerState: [InvalidPowerStateError, 'VSPHERE_INVALID_POWER_STATE'],
  ManagedObjectNotFound: [ManagedObjectNotFoundError, 'VSPHERE_NOT_FOUND'],
  InvalidArgument: [InvalidArgumentError, 'VSPHERE_INVALID_ARGUMENT'],
  InvalidRequest: [InvalidArgumentError, 'VSPHERE_INVALID_ARGUMENT'],
  MethodNotFound: [MethodNotFoundError, 'VSPHERE_METHOD_NOT_FOUND'],
  InvalidState: [InvalidStateError, 'VSPHERE_INVALID_STATE', true],
  TaskInProgress: [InvalidStateError, 'VSPHERE_TASK_IN_PROGRESS', true],
  DuplicateName: [DuplicateNameError, 'VSPHERE_DUPLICATE_NAME'],
  FileNotFound: [FileNotFoundError, 'VSPHERE_FILE_NOT_FOUND'],
};

export function faultFor(faultType: string, message: string): VsphereFault {
  const known = CLASSES[faultType];
  const text = message ? `${faultType}: ${message}` : faultType;
  if (!known) return new VsphereFault(faultType, text);
  const [cls, code, retryable] = known;
  return new cls(faultType, text, code, { retryable: retryable ?? false });
}

/** The fault in a SOAP `<Fault>` element: the type from its detail, the message from faultstring. */
export function faultFromSoap(fault: XNode): VsphereFault {
  const detail = child(fault, 'detail')?.children[0];
  const faultType = detail?.xsiType ?? detail?.name.replace(/Fault$/, '') ?? 'SystemError';
  return faultFor(faultType, child(fault, 'faultstring')?.text ?? '');
}

/** The fault in a task's `info.error` (a LocalizedMethodFault). */
export function faultFromLocalized(error: XNode): VsphereFault {
  const fault = child(error, 'fault');
  return faultFor(fault?.xsiType ?? 'SystemError', child(error, 'localizedMessage')?.text ?? '');
}
