import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { JobView, TaskView } from '../../src/cs/jobs/store.js';
import { JobProgress, bar, percent, taskLine } from '../../src/cli/progress.js';
import { formatError, renderTable } from '../../src/cli/cs-api.js';
import { parsePoint } from '../../src/cli/operations.js';
import { parseDisk } from '../../src/cli/item.js';

function task(index: number, name: string, state: TaskView['state'], done: number, total: number, detail: string | null = null): TaskView {
  return { index, name, state, resumable: true, runs: 1, startedAt: null, finishedAt: null, progress: { done, total, detail }, error: null };
}

function job(version: number, state: JobView['state'], tasks: TaskView[]): JobView {
  return {
    id: '00000000-0000-4000-8000-000000000001',
    kind: 'failover',
    state,
    resource: null,
    params: {},
    version,
    resumes: 0,
    cancelRequested: false,
    createdAt: '2030-01-01T00:00:00.000Z',
    startedAt: null,
    finishedAt: null,
    updatedAt: '2030-01-01T00:00:00.000Z',
    progress: 0.25,
    error: null,
    tasks,
  };
}

class Sink {
  text = '';
  constructor(
    readonly isTTY: boolean,
    readonly columns?: number,
  ) {}
  write(s: string): boolean {
    this.text += s;
    return true;
  }
}

test('progress on a terminal: the block of lines is redrawn in place, cut to the terminal width', () => {
  const out = new Sink(true, 60);
  const p = new JobProgress(out);
  p.update(job(1, 'running', [task(0, 'restore', 'running', 1, 4, 'disk 1 of 4'), task(1, 'switch', 'pending', 0, 0)]));
  assert.doesNotMatch(out.text, /\x1b\[\d+A/, 'nothing to go back over the first time');
  assert.equal(out.text.split('\n').length - 1, 3, 'a header and one line per task');
  const first = out.text.length;
  p.update(job(2, 'running', [task(0, 'restore', 'running', 3, 4, 'disk 3 of 4 with a detail far too long for the terminal width'), task(1, 'switch', 'pending', 0, 0)]));
  const second = out.text.slice(first);
  assert.ok(second.startsWith('\x1b[3A'), 'the cursor goes back up over the three lines');
  assert.equal(second.match(/\x1b\[2K/g)?.length, 3, 'each line is cleared before it is written');
  assert.match(second, /restore\s+\[#{15}\.{5}\]\s+75%/);
  for (const line of second.split('\n')) assert.ok(line.replace(/\r?\x1b\[(\d+A|2K)/g, '').length <= 59, `fits: ${JSON.stringify(line)}`);
});

test('progress elsewhere: lines are appended only when something changed; pending tasks stay quiet', () => {
  const out = new Sink(false);
  const p = new JobProgress(out);
  const a = job(1, 'running', [task(0, 'restore', 'running', 1, 4, 'disk 1'), task(1, 'switch', 'pending', 0, 0)]);
  p.update(a);
  p.update({ ...a, version: 2, progress: 0.3 });
  assert.doesNotMatch(out.text, /\x1b/);
  assert.equal(out.text, 'job 00000000-0000-4000-8000-000000000001 failover: running\n  restore  [#####...............]  25%  running    disk 1\n', 'the header comes again only with a new state');
  p.update(job(3, 'succeeded', [task(0, 'restore', 'succeeded', 4, 4, 'disk 4'), task(1, 'switch', 'succeeded', 0, 0)]));
  assert.match(out.text, /restore\s+\[#{20}\]\s+100%\s+succeeded\s+disk 4/);
  assert.match(out.text, /switch\s+\[#{20}\]\s+100%\s+succeeded/, 'a finished task without a total counts as done');
  assert.match(out.text, /failover: succeeded\n/);
});

test('bars, percentages, errors, tables, points and disks', () => {
  assert.equal(bar(0.5, 10), '[#####.....]');
  assert.equal(bar(undefined, 4), '[    ]');
  assert.equal(percent(0.999), ' 99%');
  assert.match(taskLine({ ...task(0, 'x', 'failed', 0, 1), error: { code: 'E', message: 'broke' } }, 4), /failed\s+\[E\] broke$/);
  assert.equal(
    formatError('PREFLIGHT_FAILED', 'cannot', 'fix them', [{ id: 'mt-no-heartbeat', code: 78022, message: 'no heartbeat', remedy: 'restart it' }, { field: 'disks.0', message: 'bad' }]),
    'error [PREFLIGHT_FAILED]: cannot\n  remedy: fix them\n  FAIL mt-no-heartbeat (78022): no heartbeat\n       remedy: restart it\n  - disks.0: bad\n',
  );
  assert.equal(renderTable(['A', 'BB'], [['xyz', '1'], ['', '22']]), 'A    BB\nxyz  1\n     22\n');
  assert.equal(parsePoint('latest-app'), 'latest-app');
  assert.equal(parsePoint('2030-01-01 12:00:00Z'), '2030-01-01T12:00:00.000Z');
  assert.equal(parsePoint('2030-01-01'), '2030-01-01T00:00:00.000Z');
  assert.throws(() => parsePoint('2030-02-30T25:00:00Z'), /not a valid one/);
  assert.deepEqual(parseDisk('id=d0,size=1MiB,source=/dev/vdb,target=/r/d0.img'), { diskId: 'd0', sizeBytes: 1 << 20, sourcePath: '/dev/vdb', targetPath: '/r/d0.img' });
  assert.throws(() => parseDisk('id=d0,size=1MiB'), /missing source=, target=/);
  assert.throws(() => parseDisk('name=d0'), /is not one of/);
});
