import { join } from 'node:path';
import { readFileIfPresent, replaceFileDurably } from '../runtime/durable.js';
import { BoomerangError } from '../replication/errors.js';
import { isLineage, type LineageId } from '../replication/position.js';

/**
 * What the agentless runner remembers of a cloud disk between runs
 * (`<stateDir>/<disk id>.agentless.json`, JSON):
 *
 *   { "lineage": uuid, "lastSeq": n, "consistent": bool, "base"?: snapshot, "roundOpen"?: true, "retire"?: snapshot }
 *
 * - `base`: the snapshot of the last committed round; the next round diffs from it. Absent: the
 *   next round is full.
 * - `lineage`/`lastSeq`: the lineage of the disk's batches and the last sequence number the
 *   process server acknowledged (a round only commits once every batch is acknowledged).
 * - `consistent`: a round carrying `resyncDone` was acknowledged in this lineage; until then
 *   every round is a resync round (the replica is not a recovery point before its end).
 * - `roundOpen`: batches past `lastSeq` may have reached the process server. A restart cannot
 *   know which, and reusing their sequence numbers for other content would make the master
 *   target skip it as duplicates: the next run starts a new lineage (diffed from `base`).
 * - `retire`: the previous base, to delete (a crash between the state write and the delete).
 */
export interface AgentlessDiskState {
  lineage: LineageId;
  lastSeq: number;
  consistent: boolean;
  base?: string;
  roundOpen?: boolean;
  retire?: string;
}

/** Where the state of disk `diskId` is kept. */
export function statePath(stateDir: string, diskId: string): string {
  return join(stateDir, `${diskId}.agentless.json`);
}

/** Snapshot ids are timestamps (`2026-11-26T00:37:14.1234567Z`); anything else is not one of ours. */
const SNAPSHOT_ID = /^[0-9T:.Z-]{1,64}$/;

/** Reads the state; undefined when there is none. A file that does not parse is refused (STATE_INVALID), never guessed at. */
export async function readAgentlessState(path: string): Promise<AgentlessDiskState | undefined> {
  const text = await readFileIfPresent(path);
  if (text === undefined) return undefined;
  const invalid = (why: string) => new BoomerangError('STATE_INVALID', `the agentless state ${path} is not valid (${why}); remove it to start over with a full round`);
  let v: Partial<AgentlessDiskState>;
  try {
    v = JSON.parse(text) as Partial<AgentlessDiskState>;
  } catch {
    throw invalid('not JSON');
  }
  if (typeof v !== 'object' || v === null) throw invalid('not an object');
  if (typeof v.lineage !== 'string' || !isLineage(v.lineage)) throw invalid('lineage');
  if (!Number.isSafeInteger(v.lastSeq) || v.lastSeq! < 0) throw invalid('lastSeq');
  if (typeof v.consistent !== 'boolean') throw invalid('consistent');
  const state: AgentlessDiskState = { lineage: v.lineage, lastSeq: v.lastSeq!, consistent: v.consistent };
  for (const key of ['base', 'retire'] as const) {
    const s = v[key];
    if (s === undefined) continue;
    if (typeof s !== 'string' || !SNAPSHOT_ID.test(s)) throw invalid(key);
    state[key] = s;
  }
  if (v.roundOpen !== undefined && typeof v.roundOpen !== 'boolean') throw invalid('roundOpen');
  if (v.roundOpen) state.roundOpen = true;
  return state;
}

/** tmp, fsync, rename, fsync the directory: the file is the old state or the new one, never torn. */
export function writeAgentlessState(path: string, state: AgentlessDiskState): Promise<void> {
  return replaceFileDurably(path, JSON.stringify(state));
}
