import { readFileIfPresent, replaceFileDurably } from '../runtime/durable.js';
import { isLineage, type LineageId } from '../replication/position.js';

/**
 * What the agent remembers of a disk between runs. `clean` is true only after a shutdown that
 * drained every event to the process server: only then may the next run continue the lineage.
 *
 * File format (`<stateDir>/<disk id>.state`, JSON):
 *   { "lineage": uuid, "lastSeq": n, "clean": bool, "protected"?: bool, "passthrough"?: bool,
 *     "resyncTarget"?: { "host", "port" }, "resync"?: { "lineage": uuid, "cursor": n } }
 * Files written before protection (or delta resync) existed lack those fields and read as before.
 */
export interface DiskState {
  lineage: LineageId;
  lastSeq: number;
  clean: boolean;
  /**
   * The operator's explicit choice (protectDisk / unprotectDisk). Absent until one was made: the
   * disk's configuration decides. Once present it wins over the configuration.
   */
  protected?: boolean;
  /**
   * The disk was served in passthrough since the lineage's last captured event: writes may be
   * missing from both the lineage and the write-intent map, so protecting it again needs a full
   * resync in a new lineage.
   */
  passthrough?: boolean;
  /** The master target's resync target for this disk (from the CS's protectDisk): delta resync. */
  resyncTarget?: { host: string; port: number };
  /**
   * A delta resync is pending: everything below `cursor` was compared and its differences are
   * applied at the MT (the dirty map's set bits aside). `lineage` is the lineage that last
   * compared. Removed once the MT applied the batch that ends the resync.
   */
  resync?: { lineage: LineageId; cursor: number };
}

export async function readDiskState(path: string): Promise<DiskState | undefined> {
  const text = await readFileIfPresent(path);
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as Partial<DiskState>;
    if (typeof v.lineage === 'string' && isLineage(v.lineage) && Number.isSafeInteger(v.lastSeq) && typeof v.clean === 'boolean') {
      const state: DiskState = { lineage: v.lineage, lastSeq: v.lastSeq!, clean: v.clean };
      if (typeof v.protected === 'boolean') state.protected = v.protected;
      if (v.passthrough === true) state.passthrough = true;
      const t = v.resyncTarget;
      if (t && typeof t.host === 'string' && t.host.length > 0 && Number.isInteger(t.port) && t.port > 0 && t.port < 65536) state.resyncTarget = { host: t.host, port: t.port };
      const r = v.resync;
      if (r && typeof r.lineage === 'string' && isLineage(r.lineage) && Number.isSafeInteger(r.cursor) && r.cursor >= 0) state.resync = { lineage: r.lineage, cursor: r.cursor };
      return state;
    }
  } catch {
    // fall through: an unreadable state proves nothing, so it is treated as a dirty one
  }
  return undefined;
}

/** tmp, fsync, rename, fsync the directory: the state file is either the old or the new one, never torn. */
export function writeDiskState(path: string, state: DiskState): Promise<void> {
  return replaceFileDurably(path, JSON.stringify(state));
}
