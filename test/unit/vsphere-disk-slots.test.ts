import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planScsiSlots, VmDeviceError, type ScsiController } from '../../src/fabrics/vsphere/index.js';

// Choosing SCSI slots for new disks: free units of existing controllers first (never unit 7, the
// controller's own), then new controllers on free buses, at most four controllers.

const slots = (pairs: [number, number][]) => new Set(pairs.map(([c, u]) => `${c}:${u}`));

test('free units on existing controllers come first, lowest bus and unit, skipping unit 7', () => {
  const controllers: ScsiController[] = [
    { key: 1001, busNumber: 1, type: 'lsilogic-sas' },
    { key: 1000, busNumber: 0, type: 'pvscsi' },
  ];
  const used = slots([[1000, 0], [1000, 1], [1000, 3], [200, 0]]);
  const plan = planScsiSlots({ scsiControllers: controllers, usedSlots: used }, 3, 'pvscsi');
  assert.deepEqual(plan.slots, [
    { controllerKey: 1000, unitNumber: 2 },
    { controllerKey: 1000, unitNumber: 4 },
    { controllerKey: 1000, unitNumber: 5 },
  ]);
  assert.deepEqual(plan.newControllers, []);
  const full = slots([...Array(16).keys()].filter((u) => u !== 7).map((u) => [1000, u] as [number, number]));
  const next = planScsiSlots({ scsiControllers: controllers, usedSlots: full }, 1, 'pvscsi');
  assert.deepEqual(next.slots, [{ controllerKey: 1001, unitNumber: 0 }]);
  assert.ok(!planScsiSlots({ scsiControllers: controllers, usedSlots: new Set() }, 30, 'pvscsi').slots.some((s) => s.unitNumber === 7));
});

test('when the controllers are full, new ones are added on free buses; beyond four controllers is an error', () => {
  const plan = planScsiSlots({ scsiControllers: [], usedSlots: new Set() }, 16, 'lsilogic-sas');
  assert.deepEqual(plan.newControllers, [
    { key: -100, busNumber: 0, type: 'lsilogic-sas' },
    { key: -101, busNumber: 1, type: 'lsilogic-sas' },
  ]);
  assert.equal(plan.slots.filter((s) => s.controllerKey === -100).length, 15);
  assert.deepEqual(plan.slots[15], { controllerKey: -101, unitNumber: 0 });
  const one: ScsiController[] = [{ key: 1000, busNumber: 2, type: 'pvscsi' }];
  const more = planScsiSlots({ scsiControllers: one, usedSlots: new Set() }, 16, 'pvscsi');
  assert.deepEqual(more.newControllers.map((c) => c.busNumber), [0], 'the first free bus is used');
  assert.equal(planScsiSlots({ scsiControllers: [], usedSlots: new Set() }, 60, 'pvscsi').newControllers.length, 4);
  assert.throws(() => planScsiSlots({ scsiControllers: [], usedSlots: new Set() }, 61, 'pvscsi'), (e: unknown) => e instanceof VmDeviceError && e.code === 'VSPHERE_NO_SCSI_SLOT');
});
