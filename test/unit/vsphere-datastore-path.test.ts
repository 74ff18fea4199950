import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pathToFileURL } from 'node:url';
import {
  backingDiskUuid,
  byIdNamesForDiskUuid,
  datastoreDirectory,
  DatastorePathError,
  descriptorDiskUuid,
  DiskUuidError,
  formatDatastorePath,
  localFileFor,
  newDiskUuid,
  normalizeDiskUuid,
  parseDatastorePath,
} from '../../src/fabrics/vsphere/index.js';

// Datastore paths (`[ds] dir/x.vmdk`) and disk UUIDs: parsing, formatting, and the names they map to.

test('a datastore path parses into datastore and relative path, and formats back to the same text', () => {
  for (const [text, datastore, path] of [
    ['[LocalDS_0] vm/vm_0.vmdk', 'LocalDS_0', 'vm/vm_0.vmdk'],
    ['[nfs-ds] a b/c d.vmdk', 'nfs-ds', 'a b/c d.vmdk'],
    ['[datastore 1] x.vmdk', 'datastore 1', 'x.vmdk'],
    ['[ds]', 'ds', ''],
  ] as const) {
    const p = parseDatastorePath(text);
    assert.deepEqual(p, { datastore, path });
    assert.equal(formatDatastorePath(p), text);
  }
  // vSphere also writes the path without the space after `]`.
  assert.deepEqual(parseDatastorePath('[ds]dir/x.vmdk'), { datastore: 'ds', path: 'dir/x.vmdk' });
  assert.deepEqual(datastoreDirectory(parseDatastorePath('[ds] a/b/x.vmdk')), { datastore: 'ds', path: 'a/b' });
  assert.deepEqual(datastoreDirectory(parseDatastorePath('[ds] x.vmdk')), { datastore: 'ds', path: '' });
});

test('malformed datastore paths are DatastorePathErrors with a code', () => {
  for (const text of ['', 'ds/x.vmdk', '[] x.vmdk', '[ ] x.vmdk', '[ds x.vmdk', '[a[b] x.vmdk', '[ds] /etc/passwd', '[ds]  x.vmdk', '[ds] a/../../x.vmdk', '[ds] ./x.vmdk', '[ds] a//x.vmdk', '[ds] a/', '[ds] a\\b.vmdk', '[ds] x\u0000.vmdk', '[ds] x\n.vmdk', `[ds] ${'a'.repeat(5000)}`]) {
    assert.throws(
      () => parseDatastorePath(text),
      (e: unknown) => e instanceof DatastorePathError && e.code === 'VSPHERE_BAD_DATASTORE_PATH',
      JSON.stringify(text.slice(0, 40)),
    );
  }
});

test('a local datastore URL maps a path under its directory; a vmfs URL is not local', () => {
  const p = parseDatastorePath('[LocalDS_0] vm/vm_0.vmdk');
  assert.equal(localFileFor('/tmp/govcsim-DC0-LocalDS_0-1', p), '/tmp/govcsim-DC0-LocalDS_0-1/vm/vm_0.vmdk');
  assert.equal(localFileFor('/tmp/ds/', p), '/tmp/ds/vm/vm_0.vmdk');
  assert.equal(localFileFor(pathToFileURL('/srv/ds').href, p), '/srv/ds/vm/vm_0.vmdk');
  assert.throws(() => localFileFor('ds:///vmfs/volumes/5f0c-1234/', p), (e: unknown) => e instanceof DatastorePathError && e.code === 'VSPHERE_DATASTORE_NOT_LOCAL');
  assert.throws(() => localFileFor('/tmp/ds', { datastore: 'ds', path: '../escape.vmdk' }), (e: unknown) => e instanceof DatastorePathError && e.code === 'VSPHERE_BAD_DATASTORE_PATH');
});

test('a disk UUID converts between the vSphere and descriptor forms and names the by-id devices', () => {
  const backing = '6000C29b-6a2c-35f8-803b-7ee50c7a1d5b';
  const ddb = '60 00 C2 9b 6a 2c 35 f8-80 3b 7e e5 0c 7a 1d 5b';
  assert.equal(normalizeDiskUuid(backing), '6000c29b6a2c35f8803b7ee50c7a1d5b');
  assert.equal(normalizeDiskUuid(ddb), '6000c29b6a2c35f8803b7ee50c7a1d5b');
  assert.equal(descriptorDiskUuid(backing), ddb.toLowerCase());
  assert.equal(backingDiskUuid(ddb), backing);
  assert.deepEqual(byIdNamesForDiskUuid(backing), ['wwn-0x6000c29b6a2c35f8803b7ee50c7a1d5b', 'scsi-36000c29b6a2c35f8803b7ee50c7a1d5b']);
  for (const bad of ['', '6000C29b-6a2c', 'zz00C29b-6a2c-35f8-803b-7ee50c7a1d5b', `${backing}00`]) {
    assert.throws(() => normalizeDiskUuid(bad), (e: unknown) => e instanceof DiskUuidError && e.code === 'VSPHERE_BAD_DISK_UUID');
  }
  const fresh = new Set(Array.from({ length: 50 }, () => newDiskUuid()));
  assert.equal(fresh.size, 50, 'new UUIDs differ');
  for (const u of fresh) assert.match(u, /^6000C29[0-9a-f]-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
});
