import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createFlatVmdk,
  deviceForDiskUuid,
  flatExtentName,
  formatVmdkDescriptor,
  openFlatVmdk,
  parseVmdkDescriptor,
  readFlatVmdk,
  VmdkDescriptorError,
  type VmdkDescriptor,
} from '../../src/fabrics/vsphere/index.js';

// Monolithic-flat VMDK descriptors (text) and their extents opened as BlockDevices; the lookup of
// a hot-added disk under /dev/disk/by-id (in a directory of our own).

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-vmdk-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const isCode = (code: string) => (e: unknown) => e instanceof VmdkDescriptorError && e.code === code;

test('a descriptor formats and parses back; it is monolithicFlat with one FLAT extent at offset 0', () => {
  const d: VmdkDescriptor = {
    createType: 'monolithicFlat',
    sizeBytes: 3 * 1024 * 1024,
    extentFile: 'vm_0-flat.vmdk',
    uuid: '6000c29b6a2c35f8803b7ee50c7a1d5b',
    adapterType: 'lsilogic',
    thinProvisioned: true,
    cid: '0a1b2c3d',
  };
  const text = formatVmdkDescriptor(d);
  assert.match(text, /^createType="monolithicFlat"$/m);
  assert.match(text, /^RW 6144 FLAT "vm_0-flat.vmdk" 0$/m);
  assert.match(text, /^ddb\.uuid = "60 00 c2 9b 6a 2c 35 f8-80 3b 7e e5 0c 7a 1d 5b"$/m);
  assert.match(text, /^ddb\.adapterType = "lsilogic"$/m);
  assert.deepEqual(parseVmdkDescriptor(text), d);
  assert.deepEqual(parseVmdkDescriptor(text + '\0'.repeat(512 - (text.length % 512))), d, 'NUL padding to a sector is allowed');
  assert.equal(flatExtentName('vm_0.vmdk'), 'vm_0-flat.vmdk');
  assert.throws(() => flatExtentName('vm_0.img'), isCode('VMDK_BAD_NAME'));
});

test('descriptors that are not one flat extent in the same directory are refused', () => {
  const good = formatVmdkDescriptor({ createType: 'monolithicFlat', sizeBytes: 1 << 20, extentFile: 'a-flat.vmdk', uuid: undefined, adapterType: 'lsilogic', thinProvisioned: false, cid: '00000001' });
  const variants = [
    good.replace('monolithicFlat', 'monolithicSparse'),
    good.replace('RW 2048 FLAT "a-flat.vmdk" 0', 'RW 2048 SPARSE "a-flat.vmdk"'),
    good.replace('RW 2048 FLAT "a-flat.vmdk" 0', 'RW 2048 FLAT "a-flat.vmdk" 0\nRW 2048 FLAT "b-flat.vmdk" 0'),
    good.replace('RW 2048 FLAT "a-flat.vmdk" 0', 'RW 2048 FLAT "../../etc/shadow" 0'),
    good.replace('RW 2048 FLAT "a-flat.vmdk" 0', 'RW 2048 FLAT "a-flat.vmdk" 512'),
    good.replace('RW 2048 FLAT "a-flat.vmdk" 0', 'RW 0 FLAT "a-flat.vmdk" 0'),
    good.replace('RW 2048 FLAT "a-flat.vmdk" 0', ''),
    good.replace('parentCID=ffffffff', 'parentCID=12345678'),
    good.replace('version=1', 'this is not a descriptor line'),
  ];
  for (const text of variants) assert.throws(() => parseVmdkDescriptor(text), isCode('VMDK_BAD_DESCRIPTOR'), text.slice(0, 300));
});

test('createFlatVmdk makes the extent and the descriptor, extends a 0-byte stub, is idempotent, refuses another disk', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'vm_0.vmdk');
    // vSphere's (and vcsim's) stubs: empty descriptor and extent.
    await writeFile(path, '');
    await writeFile(join(dir, 'vm_0-flat.vmdk'), '');
    const uuid = '6000C29b-6a2c-35f8-803b-7ee50c7a1d5b';
    const d = await createFlatVmdk(path, { sizeBytes: 2 << 20, uuid, thin: true });
    assert.equal(d.extentFile, 'vm_0-flat.vmdk');
    assert.equal((await stat(join(dir, 'vm_0-flat.vmdk'))).size, 2 << 20);
    assert.deepEqual(await readFlatVmdk(path), d);

    const again = await createFlatVmdk(path, { sizeBytes: 2 << 20, uuid });
    assert.deepEqual(again, d, 'the same disk again keeps the descriptor');
    const before = await readFile(path, 'utf8');
    await assert.rejects(createFlatVmdk(path, { sizeBytes: 4 << 20 }), isCode('VMDK_EXISTS'));
    await assert.rejects(createFlatVmdk(path, { sizeBytes: 2 << 20, uuid: '6000C290-0000-0000-0000-000000000000' }), isCode('VMDK_EXISTS'));
    assert.equal(await readFile(path, 'utf8'), before, 'a refused create changes nothing');
    for (const sizeBytes of [0, -512, 1000, 1.5 * 512]) await assert.rejects(createFlatVmdk(join(dir, 'x.vmdk'), { sizeBytes }), isCode('VMDK_BAD_SIZE'));

    const { descriptor, disk } = await openFlatVmdk(path);
    try {
      assert.equal(descriptor.uuid, '6000c29b6a2c35f8803b7ee50c7a1d5b');
      assert.equal(disk.size, 2 << 20);
      const data = Buffer.alloc(4096, 0x5a);
      await disk.write(1 << 20, data);
      await disk.flush();
      assert.deepEqual(await disk.read(1 << 20, 4096), data);
    } finally {
      await disk.close();
    }
    await writeFile(join(dir, 'sparse.vmdk'), Buffer.concat([Buffer.from('KDMV'), Buffer.alloc(508)]));
    await assert.rejects(readFlatVmdk(join(dir, 'sparse.vmdk')), isCode('VMDK_BAD_DESCRIPTOR'));
    await assert.rejects(readFlatVmdk(join(dir, 'absent.vmdk')), isCode('VMDK_NOT_FOUND'));
  });
});

test('deviceForDiskUuid resolves the wwn-0x or scsi-3 link named after the disk UUID', async () => {
  await withTempDir(async (dir) => {
    const sdb = join(dir, 'sdb');
    const sdc = join(dir, 'sdc');
    await writeFile(sdb, '');
    await writeFile(sdc, '');
    await symlink(sdb, join(dir, 'wwn-0x6000c29b6a2c35f8803b7ee50c7a1d5b'));
    await symlink(sdc, join(dir, 'scsi-36000c2900000000000000000000000a1'));
    await symlink(join(dir, 'gone'), join(dir, 'wwn-0x6000c29ffffffffffffffffffffffff1'));
    assert.equal(await deviceForDiskUuid('6000C29b-6a2c-35f8-803b-7ee50c7a1d5b', dir), sdb);
    assert.equal(await deviceForDiskUuid('6000C290-0000-0000-0000-0000000000a1', dir), sdc);
    assert.equal(await deviceForDiskUuid('6000C291-0000-0000-0000-000000000000', dir), undefined, 'not (yet) named by udev');
    assert.equal(await deviceForDiskUuid('6000C29f-ffff-ffff-ffff-fffffffffff1', dir), undefined, 'a dangling link is no device');
  });
});
