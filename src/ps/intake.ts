import { decodeBatch } from '../replication/batch.js';
import { BoomerangError } from '../replication/errors.js';
import { FrameType, jsonPayload, nackFor, splitBatchPayload, writeFrame, type Ack, type DataConnection } from '../replication/transport.js';
import type { Spool } from './spool.js';
import type { RecentBatches } from './recent.js';

export interface IntakeStats {
  batches: number;
  bytes: number;
  refused: number;
}

/**
 * Serves one agent connection: each batch is verified, made durable in the spool and only then
 * acknowledged. Batches of one disk are spooled in arrival order; after a refusal the connection
 * is dropped so that nothing behind the refused batch can overtake it (the agent resends from
 * the refused one).
 */
export async function serveAgent(conn: DataConnection, spool: Spool, recent: RecentBatches, stats: IntakeStats, log: (msg: string, f?: object) => void): Promise<void> {
  const chains = new Map<string, Promise<void>>();
  let failed = false;
  const refuse = async (id: number, err: unknown) => {
    if (failed) return;
    failed = true;
    stats.refused++;
    const nack = nackFor(id, err);
    log('batch refused', { agent: conn.hello.name, code: nack.code, message: nack.message });
    await writeFrame(conn.socket, FrameType.nack, jsonPayload(nack)).catch(() => undefined);
    conn.socket.end();
  };
  for await (const frame of conn.frames) {
    if (failed) break;
    if (frame.type !== FrameType.batch) {
      await refuse(0, new BoomerangError('BAD_MESSAGE', `unexpected frame type ${frame.type} from an agent`));
      break;
    }
    const { id, body } = splitBatchPayload(frame.payload);
    let diskId: string;
    try {
      diskId = decodeBatch(body).diskId;
    } catch (err) {
      await refuse(id, err);
      break;
    }
    const prev = chains.get(diskId) ?? Promise.resolve();
    const next = prev.then(async () => {
      if (failed) return;
      try {
        const entry = await spool.put(body);
        recent.set(entry, body);
        stats.batches++;
        stats.bytes += body.length;
        const ack: Ack = { id, status: 'stored', diskId, lineage: entry.lineage, lastSeq: entry.lastSeq };
        await writeFrame(conn.socket, FrameType.ack, jsonPayload(ack));
      } catch (err) {
        await refuse(id, err);
      }
    });
    chains.set(diskId, next);
  }
  await Promise.all(chains.values());
}
