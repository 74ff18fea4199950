import { Type } from '@sinclair/typebox';
import { commandHandler, type CommandHandler } from '../runtime/cs-commands.js';
import type { RecoveryPoint } from './journal-index.js';
import type { MasterTarget } from './main.js';

/** What a master target does for the configuration server's jobs (see src/cs/lifecycle). */

/** The answer to `diskStatus`: where the replica is and the points its journal holds (with their blob snapshots). */
export interface DiskStatusAnswer {
  position: { lineage: string; lastSeq: number } | undefined;
  frozen: boolean;
  points: Array<RecoveryPoint & { blobSnapshot?: string }>;
}

const DiskId = Type.String({ minLength: 1, maxLength: 128 });
const Path = Type.String({ minLength: 1, maxLength: 4096 });

export function masterTargetCommands(mt: MasterTarget): Record<string, CommandHandler> {
  return {
    attachDisk: commandHandler(
      Type.Object({ diskId: DiskId, target: Path, sizeBytes: Type.Integer({ minimum: 512 }), adopt: Type.Optional(Path), blobSnapshots: Type.Optional(Type.Boolean()) }),
      (p) =>
        mt.attachDisk({
          id: p.diskId,
          target: p.target,
          sizeBytes: p.sizeBytes,
          ...(p.adopt === undefined ? {} : { adopt: p.adopt }),
          ...(p.blobSnapshots === undefined ? {} : { blobSnapshots: p.blobSnapshots }),
        }),
    ),
    restoreDisk: commandHandler(Type.Object({ diskId: DiskId, point: Type.String({ minLength: 1, maxLength: 256 }), outPath: Path }), (p) => mt.restoreDiskTo(p.diskId, p.point, p.outPath)),
    releaseDisk: commandHandler(Type.Object({ diskId: DiskId, handTo: Type.Optional(Path) }), async (p) => {
      await mt.releaseDisk(p.diskId, p.handTo === undefined ? {} : { handTo: p.handTo });
    }),
    diskStatus: commandHandler(Type.Object({ diskId: DiskId }), async (p) => {
      const s = mt.diskStatus(p.diskId);
      const answer: DiskStatusAnswer = { position: s.position, frozen: s.frozen, points: s.points };
      return { ...answer };
    }),
  };
}

/** The recovery points a master target reports to the CS with each heartbeat. */
export function recoveryPointReport(mt: MasterTarget) {
  return {
    disks: mt.diskIds().map((id) => ({
      diskId: id,
      points: mt
        .diskStatus(id)
        .points.slice(-1000)
        .map((p) => ({ pointId: p.id, bookmarkId: p.bookmarkId ?? '', kind: p.kind, time: new Date(p.time).toISOString(), lineage: p.lineage, seq: p.seq })),
    })),
  };
}
