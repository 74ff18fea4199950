import { Type } from '@sinclair/typebox';

/** Identifiers and names shared by the API, the heartbeat reports and the data path. */

const DISK_ID = '^[A-Za-z0-9._-]{1,128}$';
const NAME = '^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$';
// A pattern rather than `format`, so TypeBox's own checker (job parameters) accepts it too.
const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

/** The data path's disk id (spool and journal directory names): see src/replication/batch.ts. */
export const DiskId = Type.String({ pattern: DISK_ID, description: 'disk id as used on the data path' });

/** Names of components, fabrics, machines and policies: printable, no path separators. */
export const Name = Type.String({ pattern: NAME, description: 'letters, digits, space, dot, underscore, dash; at most 64' });

export const Uuid = Type.String({ pattern: UUID });

/** What a failed pattern means, in words, for error messages. */
export const PATTERN_MEANING: Readonly<Record<string, string>> = Object.freeze({
  [DISK_ID]: 'must be 1 to 128 letters, digits, dots, underscores or dashes',
  [NAME]: 'must start with a letter or digit and have at most 64 letters, digits, spaces, dots, underscores or dashes',
  [UUID]: 'must be a UUID',
});

export const Timestamp = Type.String({ format: 'date-time' });
