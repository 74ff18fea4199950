/**
 * Typed errors shared by every component. Each carries a stable code that logs, API answers and
 * tests can match on; `retryable` says whether the same request may succeed later.
 */
export class BoomerangError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  constructor(code: string, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** A batch that does not parse: truncated, over a limit, bad checksum, misaligned extent… */
export class BatchFormatError extends BoomerangError {}

/** A peer broke the wire protocol (bad frame, unknown message, wrong order). */
export class ProtocolError extends BoomerangError {}

/** A request that is refused by its receiver (auth, sequence gap, spool full, volume full…). */
export class RemoteError extends BoomerangError {}

/** A configuration file or flag that does not validate. */
export class ConfigError extends BoomerangError {}

/** Journal or spool contents that fail their checks on read. */
export class CorruptionError extends BoomerangError {}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function errorCode(err: unknown): string | undefined {
  if (err instanceof BoomerangError) return err.code;
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}
