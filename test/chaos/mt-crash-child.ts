import { ReplicaDisk } from '../../src/mt/replica.js';
import { scriptedBatches } from '../unit/mt-fixtures.js';

/**
 * Child of mt-crash.test: applies the scripted batches after the replica's position and prints
 * "acked <lastSeq>" once each apply has resolved (stdout to a pipe is synchronous on Linux, so a
 * printed ack was acknowledged). The parent kills it with SIGKILL at some point.
 *   node mt-crash-child.js <config json>
 */
interface ChildConfig {
  seed: number;
  lineage: string;
  size: number;
  count: number;
  targetPath: string;
  retentionDir: string;
  segmentBytes: number;
  maxJournalBytes: number;
}

const c = JSON.parse(process.argv[2] ?? '{}') as ChildConfig;
const disk = await ReplicaDisk.open({
  diskId: 'disk-0',
  targetPath: c.targetPath,
  retentionDir: c.retentionDir,
  size: c.size,
  segmentBytes: c.segmentBytes,
  maxJournalBytes: c.maxJournalBytes,
});
const from = disk.position()?.lastSeq ?? 0;
for (const b of scriptedBatches(c.seed, c.lineage, c.size, c.count)) {
  if (b.lastSeq <= from) continue;
  const r = await disk.apply(b);
  if (r.status !== 'applied') throw new Error(`batch ${b.firstSeq}..${b.lastSeq} was ${r.status}`);
  process.stdout.write(`acked ${r.lastSeq}\n`);
}
await disk.close();
process.stdout.write('done\n');
