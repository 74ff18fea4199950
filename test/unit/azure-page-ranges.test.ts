import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normaliseRanges, planRound, splitRanges, subtractRanges, type ByteRange, type PageRangeItem } from '../../src/fabrics/azure/page-ranges.js';
import { Prng } from '../../src/lab/prng.js';

const MiB = 1024 * 1024;
const r = (offset: number, length: number): ByteRange => ({ offset, length });

test('normalise sorts, merges overlapping and adjacent ranges, widens to pages and clamps to the size', () => {
  assert.deepEqual(normaliseRanges([r(4096, 512), r(0, 512), r(512, 512), r(1000, 100), r(8192, 0), r(9000, 4000)], 10240), [
    r(0, 1536),
    r(4096, 512),
    r(8704, 1536),
  ]);
  assert.deepEqual(normaliseRanges([r(20480, 512), r(-512, 1024)], 10240), [r(0, 512)]);
});

test('subtract removes every byte of the second list from the first', () => {
  const a = [r(0, 4096), r(8192, 4096)];
  assert.deepEqual(subtractRanges(a, [r(512, 512), r(2048, 8192)]), [r(0, 512), r(1024, 1024), r(10240, 2048)]);
  assert.deepEqual(subtractRanges(a, []), a);
  assert.deepEqual(subtractRanges(a, [r(0, 16384)]), []);
  assert.deepEqual(subtractRanges([r(0, 1024)], [r(2048, 512)]), [r(0, 1024)]);
});

test('split yields pieces of at most the limit, covering each range exactly', () => {
  const pieces = [...splitRanges([r(0, 9 * MiB), r(16 * MiB, 512)], 4 * MiB)];
  assert.deepEqual(pieces, [r(0, 4 * MiB), r(4 * MiB, 4 * MiB), r(8 * MiB, MiB), r(16 * MiB, 512)]);
  assert.throws(() => [...splitRanges([r(0, 1024)], 1000)], RangeError);
});

/** Hand-written in the shape Azurite 3.37 answers: each adjacent 4 KiB write comes back as its own range. */
const AZURITE_UNMERGED: PageRangeItem[] = [
  { start: 0, end: 4095, isClear: false },
  { start: 4096, end: 8191, isClear: false },
  { start: 8192, end: 12287, isClear: false },
  { start: 16384, end: 20479, isClear: false },
  { start: 20480, end: 24575, isClear: false },
];

test('a first round sends written ranges merged and everything else as zeroes', () => {
  const plan = planRound({ size: 64 * 1024, diff: AZURITE_UNMERGED, full: true });
  assert.deepEqual(plan.data, [r(0, 12288), r(16384, 8192)]);
  assert.deepEqual(plan.zero, [r(12288, 4096), r(24576, 40960)]);
});

/** Hand-written Azure Get Page Ranges Diff answer (REST reference shape: PageRange and ClearRange items). */
const AZURE_DIFF: PageRangeItem[] = [
  { start: 0, end: 511, isClear: false },
  { start: 1048576, end: 1049599, isClear: true },
  { start: 4194304, end: 12582911, isClear: false },
];

test('an Azure diff: changed ranges are read, cleared ranges become zero extents', () => {
  const plan = planRound({ size: 16 * MiB, diff: AZURE_DIFF });
  assert.deepEqual(plan.data, [r(0, 512), r(4 * MiB, 8 * MiB)]);
  assert.deepEqual(plan.zero, [r(MiB, 1024)]);
});

test('a range reported both changed and cleared is read, not zeroed', () => {
  const plan = planRound({ size: MiB, diff: [{ start: 0, end: 8191, isClear: false }, { start: 4096, end: 12287, isClear: true }] });
  assert.deepEqual(plan.data, [r(0, 8192)]);
  assert.deepEqual(plan.zero, [r(8192, 4096)]);
});

test('an Azurite diff (full list, no clears) still zeroes pages written before and cleared since', () => {
  const previousWritten = AZURITE_UNMERGED;
  const currentWritten: PageRangeItem[] = [
    { start: 0, end: 4095, isClear: false },
    { start: 20480, end: 24575, isClear: false },
    { start: 32768, end: 33279, isClear: false },
  ];
  const plan = planRound({ size: 64 * 1024, diff: currentWritten, previousWritten, currentWritten });
  assert.deepEqual(plan.data, [r(0, 4096), r(20480, 4096), r(32768, 512)]);
  assert.deepEqual(plan.zero, [r(4096, 8192), r(16384, 4096)]);
});

/**
 * A model disk of pages: each page holds a version (0 = never written or cleared). Random rounds
 * of writes and clears; each round's plan, built from the diff an Azure-like and an Azurite-like
 * service would answer, is applied to a replica, which must then equal the disk.
 */
function simulate(style: 'azure' | 'azurite', seed: number): void {
  const PAGES = 256;
  const size = PAGES * 512;
  const rng = new Prng(seed);
  const disk = new Array<number>(PAGES).fill(0);
  const replica = new Array<number>(PAGES).fill(-1); // garbage: a full round must overwrite all
  let previous: number[] | undefined;
  let version = 0;
  const written = (pages: number[]): PageRangeItem[] =>
    pages.flatMap((v, i) => (v !== 0 ? [{ start: i * 512, end: i * 512 + 511, isClear: false }] : []));
  for (let round = 0; round < 12; round++) {
    for (let op = 0; op < 10; op++) {
      const first = rng.int(PAGES);
      const count = 1 + rng.int(Math.min(16, PAGES - first));
      const clear = rng.int(3) === 0;
      version++;
      for (let p = first; p < first + count; p++) disk[p] = clear ? 0 : version;
    }
    let diff: PageRangeItem[];
    if (previous === undefined || style === 'azurite') diff = written(disk);
    else {
      const before = previous;
      diff = disk.flatMap((v, i) =>
        v === before[i] ? [] : [{ start: i * 512, end: i * 512 + 511, isClear: v === 0 }],
      );
    }
    const plan =
      previous === undefined
        ? planRound({ size, diff, full: true })
        : style === 'azure'
          ? planRound({ size, diff })
          : planRound({ size, diff, previousWritten: written(previous), currentWritten: written(disk) });
    for (const e of plan.data) for (let p = e.offset / 512; p < (e.offset + e.length) / 512; p++) replica[p] = disk[p]!;
    for (const e of plan.zero) for (let p = e.offset / 512; p < (e.offset + e.length) / 512; p++) replica[p] = 0;
    assert.deepEqual(replica, disk, `${style} seed ${seed} round ${round}`);
    if (previous !== undefined && style === 'azure') {
      const changed = disk.filter((v, i) => v !== previous![i]).length;
      const sent = (plan.data.reduce((n, e) => n + e.length, 0) + plan.zero.reduce((n, e) => n + e.length, 0)) / 512;
      assert.equal(sent, changed, 'a true diff is sent exactly');
    }
    previous = [...disk];
  }
}

test('replaying random rounds from true diffs keeps the replica equal and sends only the changes', () => {
  for (let seed = 1; seed <= 20; seed++) simulate('azure', seed);
});

test('replaying random rounds from Azurite-style full lists keeps the replica equal (clears included)', () => {
  for (let seed = 1; seed <= 20; seed++) simulate('azurite', seed);
});
