import { BoomerangError } from '../errors.js';

/**
 * A resync that cannot run as asked: disk sizes that do not fit together (`RESYNC_SIZE_MISMATCH`),
 * a layout or cursor that does not validate (`RESYNC_LAYOUT`, `RESYNC_CURSOR`). Malformed
 * messages from a peer are `ProtocolError`s instead; refusals sent by the peer arrive as
 * `RemoteError`s carrying the peer's code.
 */
export class ResyncError extends BoomerangError {}
