import { Type } from '@sinclair/typebox';
import { commandHandler, type CommandHandler } from '../runtime/cs-commands.js';
import type { ProcessServer } from './process-server.js';

/** What a process server does for the configuration server's jobs (see src/cs/lifecycle). */

const DiskId = Type.String({ minLength: 1, maxLength: 128 });

export function processServerCommands(ps: ProcessServer): Record<string, CommandHandler> {
  return {
    drainDisk: commandHandler(Type.Object({ diskId: DiskId, timeoutMs: Type.Integer({ minimum: 0, maximum: 3_600_000 }) }), async (p) => ({ drained: await ps.drainDisk(p.diskId, p.timeoutMs) })),
    discardDisk: commandHandler(Type.Object({ diskId: DiskId }), (p) => ps.discardDisk(p.diskId)),
  };
}
