import { Type } from '@sinclair/typebox';
import { commandHandler, type CommandHandler } from '../runtime/cs-commands.js';
import type { Agent } from './agent.js';

/** What an agent does for the configuration server's jobs (see src/cs/lifecycle). */

const DiskId = Type.String({ minLength: 1, maxLength: 128 });
const Endpoint = Type.Object({ host: Type.String({ minLength: 1, maxLength: 253 }), port: Type.Integer({ minimum: 1, maximum: 65535 }) });

export function agentCommands(agent: Agent): Record<string, CommandHandler> {
  return {
    protectDisk: commandHandler(Type.Object({ diskId: DiskId, newLineage: Type.Optional(Type.Boolean()), resyncTarget: Type.Optional(Endpoint) }), (p) =>
      agent.protectDisk(p.diskId, { newLineage: p.newLineage ?? false, ...(p.resyncTarget ? { resyncTarget: { host: p.resyncTarget.host, port: p.resyncTarget.port } } : {}) }),
    ),
    unprotectDisk: commandHandler(Type.Object({ diskId: DiskId, timeoutMs: Type.Integer({ minimum: 0, maximum: 3_600_000 }) }), (p) => agent.unprotectDisk(p.diskId, p.timeoutMs)),
    bookmark: commandHandler(Type.Object({ diskId: DiskId, id: Type.String({ minLength: 1, maxLength: 64 }), kind: Type.Union([Type.Literal('crash'), Type.Literal('app'), Type.Literal('group')]) }), async (p) => {
      const b = agent.bookmark(p.diskId, p.kind, p.id);
      return { id: b.id, lineage: b.lineage, seq: b.seq, time: b.time };
    }),
  };
}
