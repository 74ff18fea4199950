import { Type, type Static } from '@sinclair/typebox';
import { DiskId, Timestamp, Uuid } from './names.js';

/**
 * What components report in their heartbeats. Each kind fills its own section; the facts are
 * raw (bytes, flags) so that pre-flight decides eligibility and thresholds in one place.
 */

const Bytes = Type.Integer({ minimum: 0 });

export const PsHealth = Type.Object(
  {
    spoolUsedBytes: Bytes,
    spoolCapacityBytes: Bytes,
    spoolState: Type.Union([Type.Literal('ok'), Type.Literal('nearly-full'), Type.Literal('full')]),
    throughputBytesPerSecond: Type.Number({ minimum: 0 }),
    pendingBatches: Type.Integer({ minimum: 0 }),
    quarantinedFiles: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);

/** The facts that decide whether a volume may hold the retention journal. */
export const MtVolume = Type.Object(
  {
    path: Type.String({ minLength: 1, maxLength: 4096 }),
    fsType: Type.String({ minLength: 1, maxLength: 64 }),
    locked: Type.Boolean(),
    inUseAsTarget: Type.Boolean(),
    cacheOrInstall: Type.Boolean(),
    capacityBytes: Bytes,
    freeBytes: Bytes,
  },
  { additionalProperties: false },
);

/** One disk's journal at the master target: how far it has applied and which span it can recover. */
export const MtJournal = Type.Object(
  {
    diskId: DiskId,
    lineage: Uuid,
    lastSeq: Type.Integer({ minimum: 0 }),
    oldestPointTime: Type.Optional(Timestamp),
    newestPointTime: Type.Optional(Timestamp),
    bytes: Bytes,
  },
  { additionalProperties: false },
);

export const MtHealth = Type.Object(
  {
    /** Decides the default retention path: /mnt/retention on Linux, R: on Windows. */
    platform: Type.Optional(Type.Union([Type.Literal('linux'), Type.Literal('windows')])),
    /** Where the journals are kept; the defaults (/mnt/retention, R:) when absent. */
    retentionPath: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    /** Where agents reach the MT's resync target (delta resync of the disks attached here). */
    resyncEndpoint: Type.Optional(
      Type.Object({ host: Type.String({ minLength: 1, maxLength: 253 }), port: Type.Integer({ minimum: 1, maximum: 65535 }) }, { additionalProperties: false }),
    ),
    volumes: Type.Array(MtVolume, { maxItems: 64 }),
    journals: Type.Array(MtJournal, { maxItems: 4096 }),
  },
  { additionalProperties: false },
);

export const AgentDisk = Type.Object(
  {
    diskId: DiskId,
    lineage: Uuid,
    lastSeq: Type.Integer({ minimum: 0 }),
    ackedSeq: Type.Integer({ minimum: 0 }),
    rpoSeconds: Type.Number({ minimum: 0 }),
    resyncRequired: Type.Boolean(),
    /** False while the disk is only served (passthrough), before protection or after it ends. */
    protected: Type.Optional(Type.Boolean()),
    /** Resync progress in bytes (compared or copied, of the total to do), while one runs. */
    resyncDone: Type.Optional(Type.Integer({ minimum: 0 })),
    resyncTotal: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);

export const AgentHealth = Type.Object(
  {
    disks: Type.Array(AgentDisk, { maxItems: 256 }),
  },
  { additionalProperties: false },
);

export const HealthReport = Type.Object(
  {
    version: Type.Optional(Type.String({ maxLength: 64 })),
    ps: Type.Optional(PsHealth),
    mt: Type.Optional(MtHealth),
    agent: Type.Optional(AgentHealth),
  },
  { additionalProperties: false },
);

export type PsHealth = Static<typeof PsHealth>;
export type MtVolume = Static<typeof MtVolume>;
export type MtHealth = Static<typeof MtHealth>;
export type AgentHealth = Static<typeof AgentHealth>;
export type HealthReport = Static<typeof HealthReport>;
