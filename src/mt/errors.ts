import { RemoteError } from '../replication/errors.js';
import type { LineageId } from '../replication/position.js';

/**
 * The batch does not continue the applied history of its lineage. The sender must resend from
 * `expectedSeq`; resending the same batch will not help, so it is not retryable.
 */
export class SequenceGapError extends RemoteError {
  readonly lineage: LineageId;
  readonly expectedSeq: number;
  constructor(lineage: LineageId, expectedSeq: number, firstSeq: number) {
    super('SEQUENCE_GAP', `lineage ${lineage}: expected a batch starting at seq ${expectedSeq}, got one starting at ${firstSeq}`);
    this.lineage = lineage;
    this.expectedSeq = expectedSeq;
  }
}

/**
 * The retention volume has no room for the batch's undo record (ENOSPC, or the size cap cannot be
 * met even after pruning). Nothing was changed; the same batch can be applied once space is freed.
 */
export class RetentionFullError extends RemoteError {
  constructor(message: string, cause?: unknown) {
    super('RETENTION_FULL', message, { retryable: true, cause });
  }
}

export function isNoSpace(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
