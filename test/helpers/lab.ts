import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Drill, type DrillOptions } from '../../src/lab/drill.js';
import { Lab, type LabOptions } from '../../src/lab/two-site.js';

/** A two-site lab in a fresh temp dir; `done()` stops every process and removes the dir. `drillOptions`: hooks of the drill between steps. */
export async function startLab(options: Omit<LabOptions, 'dir'> = {}, drillOptions: DrillOptions = {}): Promise<{ lab: Lab; drill: Drill; lines: string[]; done: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-lab-'));
  const lines: string[] = [];
  const lab = await Lab.up({ dir, machines: ['web01'], diskBytes: 32 * 1024 * 1024, burstBytes: 4 * 1024 * 1024, ...options, print: (l) => lines.push(l) });
  return {
    lab,
    drill: new Drill(lab, (l) => lines.push(l), drillOptions),
    lines,
    done: async () => {
      await lab.down();
      // BOOMERANG_KEEP_TEST_DIRS=1 keeps configs and component logs for a post-mortem.
      if (process.env.BOOMERANG_KEEP_TEST_DIRS !== '1') await rm(dir, { recursive: true, force: true });
    },
  };
}
