import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  BUILTIN_CHECKS,
  CHECK_ERROR_ID,
  DEFAULT_THRESHOLDS,
  LANGS,
  MESSAGES,
  OPERATIONS,
  agentNotRegistered,
  checksFor,
  runPreflight,
  waitForCheck,
  type Check,
  type CheckResult,
  type Clock,
  type ItemState,
  type Lang,
  type Operation,
  type PreflightFacts,
  type PreflightReport,
  type VolumeFacts,
  type VsphereFacts,
} from '../../src/cs/preflight/index.js';

const GiB = 1024 ** 3;

/** The state each operation starts from. */
const START_STATE: Record<Operation, ItemState> = {
  enable: 'Unprotected',
  failover: 'Protected',
  commit: 'FailedOver',
  reprotect: 'Committed',
  failback: 'Protected',
  cancel: 'FailbackFailed',
  disable: 'Protected',
};

function volume(path: string, over: Partial<VolumeFacts> = {}): VolumeFacts {
  return { path, fsType: 'xfs', locked: false, inUseAsTarget: false, cacheOrInstall: false, capacityBytes: 100 * GiB, freeBytes: 80 * GiB, ...over };
}

/** A snapshot in which nothing is wrong for `operation`. */
function healthy(operation: Operation): PreflightFacts {
  return {
    item: {
      id: 'item-1',
      name: 'web01',
      state: START_STATE[operation],
      direction: operation === 'failback' ? 'failback' : 'forward',
      flags: { sourceDeleted: false, migrated: false, protectionDisabled: false },
    },
    source: { name: 'web01-azure', exists: true, powerState: 'running', responding: true },
    agent: { id: 'agent-1', name: 'web01-azure', registered: true, lastHeartbeatAgeMs: 30_000 },
    processServer: { id: 'ps-1', name: 'ps01', registered: true, lastHeartbeatAgeMs: 20_000, spool: { ratio: 0.1, state: 'ok' } },
    masterTarget: {
      id: 'mt-1',
      name: 'mt01',
      registered: true,
      lastHeartbeatAgeMs: 10_000,
      platform: 'linux',
      volumes: [volume('/', { fsType: 'ext4', cacheOrInstall: true }), volume('/mnt/retention')],
    },
    policy: { rpoThresholdS: 900 },
    currentRpoS: 60,
    thresholds: { ...DEFAULT_THRESHOLDS },
    vsphere: healthyVsphere(),
  };
}

/** vCenter facts of an on-premises site where every VMware prerequisite holds. */
function healthyVsphere(): VsphereFacts {
  const host = (name: string) => ({ name, productLine: 'embeddedEsx', licence: { name: 'vSphere 8 Enterprise Plus', readOnlyApi: false }, memoryBytes: 64 * GiB, memoryUsedBytes: 16 * GiB });
  return {
    fabric: 'vc01',
    missingPrivileges: [],
    mtHost: host('esx01'),
    mtVm: { name: 'mt01-vm', powerState: 'poweredOn', snapshots: 0, enableUuid: true, toolsRunning: true, memoryBytes: 8 * GiB, diskUuids: ['6000c291-aaaa'], datastores: ['ds-vmfs'] },
    targetVm: { name: 'web01', powerState: 'poweredOff', snapshots: 0, enableUuid: false, toolsRunning: false, memoryBytes: 4 * GiB, diskUuids: ['6000c292-bbbb'], datastores: ['ds-nfs'] },
    targetHost: host('esx02'),
    datastore: { name: 'ds-nfs', type: 'NFS', accessible: true, mountedReadWrite: true },
    usableDatastores: ['ds-vmfs', 'ds-nfs'],
    moved: [],
  };
}

function vs(f: PreflightFacts): VsphereFacts {
  assert.ok(f.vsphere);
  return f.vsphere;
}

function retentionVolume(f: PreflightFacts): VolumeFacts {
  const v = f.masterTarget.volumes.find((x) => x.path === '/mnt/retention');
  assert.ok(v);
  return v;
}

function failed(report: PreflightReport): CheckResult[] {
  return report.results.filter((r) => !r.passed);
}

function assertNoPlaceholders(r: CheckResult): void {
  assert.doesNotMatch(r.message, /\{\w+\}/, `${r.id}: unfilled placeholder in message: ${r.message}`);
  assert.doesNotMatch(r.remedy, /\{\w+\}/, `${r.id}: unfilled placeholder in remedy: ${r.remedy}`);
}

interface Trip {
  id: string;
  code?: number;
  operation: Operation;
  break: (f: PreflightFacts) => void;
  /** Fragments the message and the remedy must contain, per language. */
  expect: Record<Lang, { message: string[]; remedy: string[] }>;
}

const TRIPS: Trip[] = [
  {
    id: 'item-migrated',
    operation: 'reprotect',
    break: (f) => {
      f.item.state = 'Migrated';
    },
    expect: { en: { message: ['web01', 'migrat'], remedy: ['new item'] }, ja: { message: ['web01', '移行が完了', '再保護'], remedy: ['レプリケーションを有効'] } },
  },
  {
    id: 'item-protection-disabled',
    operation: 'failback',
    break: (f) => {
      f.item.flags.protectionDisabled = true;
    },
    expect: { en: { message: ['Protection of web01 has been disabled'], remedy: ['Enable replication'] }, ja: { message: ['保護は無効', 'フェールバック'], remedy: ['レプリケーションを再度有効'] } },
  },
  {
    id: 'source-deleted',
    operation: 'reprotect',
    break: (f) => {
      f.item.flags.sourceDeleted = true;
    },
    expect: {
      en: { message: ['web01-azure', 'deleted', 'resource group'], remedy: ['move it back', 'disable'] },
      ja: { message: ['web01-azure', '削除', 'リソース グループ'], remedy: ['保護を無効'] },
    },
  },
  {
    id: 'item-already-protected',
    operation: 'enable',
    break: (f) => {
      f.item.state = 'Protected';
    },
    expect: { en: { message: ['already enabled', 'state: Protected'], remedy: ['disable protection'] }, ja: { message: ['既に有効', '状態: 保護済み'], remedy: ['保護を無効'] } },
  },
  {
    id: 'item-not-protected',
    operation: 'failover',
    break: (f) => {
      f.item.state = 'InitialReplication';
    },
    expect: {
      en: { message: ['not protected', 'state: Initial replication'], remedy: ['fail over'] },
      ja: { message: ['状態: 初期レプリケーション中', 'フェールオーバー'], remedy: ['フェールオーバー'] },
    },
  },
  {
    id: 'item-nothing-to-commit',
    operation: 'commit',
    break: (f) => {
      f.item.state = 'Protected';
    },
    expect: { en: { message: ['no failover or failback', 'state: Protected'], remedy: ['nothing to commit'] }, ja: { message: ['コミット'], remedy: ['コミット'] } },
  },
  {
    id: 'item-not-failed-over',
    operation: 'reprotect',
    break: (f) => {
      f.item.state = 'Protected';
    },
    expect: {
      en: { message: ['not a failed-over, committed item', 'state: Protected'], remedy: ['Fail the item over', 'commit'] },
      ja: { message: ['フェールオーバー', 'コミット', '状態: 保護済み'], remedy: ['再保護'] },
    },
  },
  {
    id: 'item-not-committed',
    operation: 'reprotect',
    break: (f) => {
      f.item.state = 'FailedOver';
    },
    expect: { en: { message: ['not been committed'], remedy: ['Commit the failover'] }, ja: { message: ['コミットされていません'], remedy: ['コミットしてから、再保護'] } },
  },
  {
    id: 'item-not-reprotected',
    operation: 'failback',
    break: (f) => {
      f.item.direction = 'forward';
    },
    expect: { en: { message: ['not replicating back', 'state: Protected'], remedy: ['Reprotect'] }, ja: { message: ['フェールバック', '再保護'], remedy: ['再保護'] } },
  },
  {
    id: 'item-nothing-to-cancel',
    operation: 'cancel',
    break: (f) => {
      f.item.state = 'Committed';
    },
    expect: { en: { message: ['no failback to cancel', 'state: Committed'], remedy: ['rolls back'] }, ja: { message: ['キャンセル', '状態: コミット済み'], remedy: ['フェールバック'] } },
  },
  {
    id: 'failback-not-configured',
    operation: 'reprotect',
    break: (f) => {
      f.item.flags.failbackConfigured = false;
    },
    expect: { en: { message: ['no recovery machine', 'way back'], remedy: ['failbackAgentName'] }, ja: { message: ['復旧マシン'], remedy: ['failbackAgentName'] } },
  },
  {
    id: 'agent-not-registered',
    code: 95226,
    operation: 'reprotect',
    break: (f) => {
      f.agent.registered = false;
      f.agent.lastHeartbeatAgeMs = null;
    },
    expect: {
      en: { message: ['web01-azure', 'not registered', 'configuration server'], remedy: ['VPN', 'ExpressRoute', 'start the Boomerang agent service'] },
      ja: { message: ['モビリティ サービス', '構成サーバー', '登録されていません'], remedy: ['サイト間 VPN', 'ExpressRoute', '[自動]'] },
    },
  },
  {
    id: 'source-not-running',
    code: 78093,
    operation: 'reprotect',
    break: (f) => {
      f.source.powerState = 'stopped';
    },
    expect: {
      en: { message: ['web01-azure is not running'], remedy: ['Start web01-azure'] },
      ja: { message: ['実行中でないか、応答を停止しているか、アクセスできない状態です'], remedy: ['起動', '構成サーバー'] },
    },
  },
  {
    id: 'agent-no-heartbeat',
    code: 78174,
    operation: 'failback',
    break: (f) => {
      f.agent.lastHeartbeatAgeMs = 10 * 60_000;
    },
    expect: { en: { message: ['no heartbeat', 'web01-azure', '90 s'], remedy: ['agent service'] }, ja: { message: ['90 秒間', 'モビリティ サービス', 'ハートビート'], remedy: ['再起動'] } },
  },
  {
    id: 'ps-no-heartbeat',
    code: 806,
    operation: 'reprotect',
    break: (f) => {
      f.processServer.lastHeartbeatAgeMs = null;
    },
    expect: { en: { message: ['process server ps01'], remedy: ['configuration server'] }, ja: { message: ['プロセス サーバー ps01', 'ハートビート'], remedy: ['構成サーバー', 'ping'] } },
  },
  {
    id: 'mt-no-heartbeat',
    code: 78022,
    operation: 'reprotect',
    // Also shows that the retention checks stay quiet when the MT itself is the problem.
    break: (f) => {
      f.masterTarget.registered = false;
      f.masterTarget.lastHeartbeatAgeMs = null;
      f.masterTarget.volumes = [];
    },
    expect: { en: { message: ['master target mt01'], remedy: ['restart'] }, ja: { message: ['マスター ターゲット サーバー mt01', 'ハートビート'], remedy: ['再起動'] } },
  },
  {
    id: 'ps-spool-full',
    operation: 'reprotect',
    break: (f) => {
      f.processServer.spool = { ratio: 1, state: 'full' };
    },
    expect: { en: { message: ['ps01', 'full'], remedy: ['cache'] }, ja: { message: ['プロセス サーバー ps01', 'いっぱい'], remedy: ['キャッシュ'] } },
  },
  {
    id: 'ps-spool-nearly-full',
    operation: 'failback',
    break: (f) => {
      f.processServer.spool = { ratio: 0.854, state: 'nearly-full' };
    },
    expect: { en: { message: ['ps01', '85% full'], remedy: ['cache space'] }, ja: { message: ['85%', 'キャッシュ'], remedy: ['プロセス サーバー'] } },
  },
  {
    id: 'rpo-over-threshold',
    operation: 'failover',
    break: (f) => {
      f.currentRpoS = 1800;
    },
    expect: { en: { message: ['1800 s', '900 s'], remedy: ['lose'] }, ja: { message: ['RPO', '1800 秒', '900 秒'], remedy: ['フェールオーバー'] } },
  },
  {
    id: 'retention-volume-missing',
    operation: 'reprotect',
    break: (f) => {
      f.masterTarget.platform = 'windows';
      f.masterTarget.volumes = [volume('C:\\', { fsType: 'NTFS', cacheOrInstall: true }), volume('D:', { fsType: 'NTFS', inUseAsTarget: true })];
    },
    expect: { en: { message: ['mt01', 'R:'], remedy: ['Add a new disk', 'R:'] }, ja: { message: ['リテンション パス R:'], remedy: ['R ボリューム', '新しいディスク'] } },
  },
  {
    id: 'retention-volume-replication-target',
    operation: 'reprotect',
    break: (f) => {
      retentionVolume(f).inUseAsTarget = true;
    },
    expect: { en: { message: ['/mnt/retention', 'replication target'], remedy: ['new disk'] }, ja: { message: ['レプリケーションのターゲット'], remedy: ['他のどの目的にも使用されていない'] } },
  },
  {
    id: 'retention-volume-locked',
    operation: 'enable',
    break: (f) => {
      retentionVolume(f).locked = true;
    },
    expect: { en: { message: ['locked'], remedy: ['Unlock'] }, ja: { message: ['ロック モード'], remedy: ['ロックを解除'] } },
  },
  {
    id: 'retention-volume-cache',
    operation: 'reprotect',
    // /mnt/retention is then a directory on the root volume, where the MT is installed.
    break: (f) => {
      f.masterTarget.volumes = f.masterTarget.volumes.filter((v) => v.path !== '/mnt/retention');
    },
    expect: {
      en: { message: ['retention volume / (retention path /mnt/retention)', 'cache or installation volume'], remedy: ['separate disk'] },
      ja: { message: ['キャッシュ ボリューム', 'リテンション ボリュームになる資格がありません'], remedy: ['別のディスク'] },
    },
  },
  {
    id: 'retention-volume-fat',
    operation: 'reprotect',
    break: (f) => {
      retentionVolume(f).fsType = 'vfat';
    },
    expect: { en: { message: ['vfat', 'FAT32'], remedy: ['Format'] }, ja: { message: ['vfat', 'FAT または FAT32'], remedy: ['フォーマット'] } },
  },
  {
    id: 'retention-volume-zero-capacity',
    operation: 'reprotect',
    // Free space is zero too, but that is not reported as a second reason.
    break: (f) => {
      Object.assign(retentionVolume(f), { capacityBytes: 0, freeBytes: 0 });
    },
    expect: { en: { message: ['capacity of zero'], remedy: ['attached'] }, ja: { message: ['容量がゼロ'], remedy: ['フォーマット'] } },
  },
  {
    id: 'retention-volume-low-space',
    operation: 'reprotect',
    break: (f) => {
      retentionVolume(f).freeBytes = GiB / 2;
    },
    expect: { en: { message: ['has 512 MiB free', 'at least 1 GiB'], remedy: ['Free space'] }, ja: { message: ['空き領域は 512 MiB', '1 GiB'], remedy: ['空き領域'] } },
  },
  {
    id: 'vsphere-account-privileges',
    operation: 'reprotect',
    break: (f) => {
      vs(f).missingPrivileges = ['Datastore.Browse'];
      vs(f).mtVm = null; // what the account could not see is not reported again by other checks
    },
    expect: { en: { message: ['vc01', 'Datastore.Browse'], remedy: ['role'] }, ja: { message: ['vc01', '権限'], remedy: ['ロール'] } },
  },
  {
    id: 'vsphere-target-not-esxi',
    operation: 'reprotect',
    break: (f) => {
      vs(f).mtHost = null;
    },
    expect: { en: { message: ['mt01', 'ESXi'], remedy: ['master target VM'] }, ja: { message: ['mt01', 'ESXi'], remedy: ['マスター ターゲット VM'] } },
  },
  {
    id: 'vsphere-free-licence',
    operation: 'failback',
    break: (f) => {
      vs(f).targetHost!.licence = { name: 'VMware vSphere Hypervisor (free)', readOnlyApi: true };
    },
    expect: { en: { message: ['esx02', 'read-only'], remedy: ['licence'] }, ja: { message: ['esx02', '読み取り専用'], remedy: ['ライセンス'] } },
  },
  {
    id: 'mt-vm-snapshots',
    operation: 'reprotect',
    break: (f) => {
      vs(f).mtVm!.snapshots = 2;
    },
    expect: { en: { message: ['mt01-vm', '2 snapshot'], remedy: ['Delete'] }, ja: { message: ['mt01-vm', '2 個'], remedy: ['削除'] } },
  },
  {
    id: 'target-vm-snapshots',
    operation: 'reprotect',
    break: (f) => {
      vs(f).targetVm!.snapshots = 1;
    },
    expect: { en: { message: ['web01', 'consolidate'], remedy: ['copy the VM'] }, ja: { message: ['web01', '統合'], remedy: ['コピー'] } },
  },
  {
    id: 'mt-enable-uuid',
    operation: 'reprotect',
    break: (f) => {
      vs(f).mtVm!.enableUuid = false;
    },
    expect: { en: { message: ['mt01-vm', 'disk.EnableUUID'], remedy: ['disk.EnableUUID = TRUE'] }, ja: { message: ['mt01-vm', 'disk.EnableUUID'], remedy: ['disk.EnableUUID = TRUE'] } },
  },
  {
    id: 'mt-tools-not-running',
    operation: 'reprotect',
    break: (f) => {
      vs(f).mtVm!.toolsRunning = false;
    },
    expect: { en: { message: ['VMware Tools', 'mt01-vm'], remedy: ['open-vm-tools'] }, ja: { message: ['VMware Tools'], remedy: ['open-vm-tools'] } },
  },
  {
    id: 'no-usable-datastore',
    operation: 'reprotect',
    break: (f) => {
      vs(f).usableDatastores = [];
      vs(f).datastore!.accessible = false; // reported by this check alone, not also by 8061
    },
    expect: { en: { message: ['esx01'], remedy: ['NFS and vSAN are supported'] }, ja: { message: ['esx01'], remedy: ['vSAN'] } },
  },
  {
    id: 'datastore-not-accessible',
    code: 8061,
    operation: 'reprotect',
    break: (f) => {
      vs(f).datastore!.mountedReadWrite = false;
    },
    expect: { en: { message: ['ds-nfs', 'esx01'], remedy: ['Mount ds-nfs'] }, ja: { message: ['ds-nfs', 'esx01'], remedy: ['マウント'] } },
  },
  {
    id: 'vm-name-taken',
    code: 78052,
    operation: 'reprotect',
    break: (f) => {
      vs(f).newVm = { name: 'web01', nameTaken: true };
    },
    expect: { en: { message: ['web01', 'esx01'], remedy: ['Rename'] }, ja: { message: ['web01', 'esx01'], remedy: ['名前を変更'] } },
  },
  {
    id: 'disk-uuid-collision',
    operation: 'reprotect',
    break: (f) => {
      vs(f).targetVm!.diskUuids.push('6000C291-AAAA');
    },
    expect: { en: { message: ['web01', 'mt01-vm', '6000C291-AAAA'], remedy: ['template'] }, ja: { message: ['web01', 'mt01-vm'], remedy: ['テンプレート'] } },
  },
  {
    id: 'host-memory',
    code: 8038,
    operation: 'failback',
    break: (f) => {
      vs(f).targetHost!.memoryUsedBytes = 62 * GiB;
    },
    expect: { en: { message: ['esx02', '2048 MiB', '4096 MiB'], remedy: ['Free memory'] }, ja: { message: ['esx02', '2048 MiB', '4096 MiB'], remedy: ['メモリを解放'] } },
  },
  {
    id: 'storage-moved',
    operation: 'failback',
    break: (f) => {
      vs(f).moved = [{ what: 'web01', from: 'ds-nfs', to: 'ds-vmfs' }];
    },
    expect: { en: { message: ['web01', 'ds-nfs', 'ds-vmfs'], remedy: ['Storage vMotion'] }, ja: { message: ['web01', 'ds-nfs', 'ds-vmfs'], remedy: ['ストレージ vMotion'] } },
  },
];

function broken(trip: Trip): PreflightFacts {
  const facts = healthy(trip.operation);
  trip.break(facts);
  return facts;
}

for (const trip of TRIPS) {
  test(`check ${trip.id} trips alone, in English and Japanese`, async () => {
    const check = BUILTIN_CHECKS.find((c) => c.id === trip.id);
    assert.ok(check, `no built-in check ${trip.id}`);
    assert.ok(check.operations.includes(trip.operation));
    for (const lang of LANGS) {
      const report = await runPreflight(trip.operation, broken(trip), { lang });
      assert.equal(report.lang, lang);
      const bad = failed(report);
      assert.deepEqual(
        bad.map((r) => r.id),
        [trip.id],
        `${lang}: ${JSON.stringify(bad)}`,
      );
      const r = bad[0]!;
      assert.equal(r.code, trip.code);
      assert.equal(r.severity, check.severity);
      assert.equal(report.ok, check.severity !== 'error');
      for (const s of trip.expect[lang].message) assert.ok(r.message.includes(s), `${lang} message lacks "${s}": ${r.message}`);
      for (const s of trip.expect[lang].remedy) assert.ok(r.remedy.includes(s), `${lang} remedy lacks "${s}": ${r.remedy}`);
      assertNoPlaceholders(r);
    }
  });
}

test('every built-in check has a trip test', () => {
  assert.deepEqual(
    TRIPS.map((t) => t.id).sort(),
    BUILTIN_CHECKS.map((c) => c.id).sort(),
  );
  assert.equal(new Set(BUILTIN_CHECKS.map((c) => c.id)).size, BUILTIN_CHECKS.length, 'check ids are unique');
});

test('the source codes are kept verbatim', () => {
  const codes = Object.fromEntries(BUILTIN_CHECKS.filter((c) => c.code !== undefined).map((c) => [c.id, c.code]));
  assert.deepEqual(codes, {
    'agent-not-registered': 95226,
    'source-not-running': 78093,
    'agent-no-heartbeat': 78174,
    'ps-no-heartbeat': 806,
    'mt-no-heartbeat': 78022,
    'datastore-not-accessible': 8061,
    'vm-name-taken': 78052,
    'host-memory': 8038,
  });
});

test('a healthy snapshot passes every check of every operation', async () => {
  const ran = new Set<string>();
  for (const operation of OPERATIONS) {
    for (const lang of LANGS) {
      const report = await runPreflight(operation, healthy(operation), { lang });
      assert.equal(report.operation, operation);
      assert.equal(report.itemId, 'item-1');
      assert.equal(report.ok, true, `${operation}: ${JSON.stringify(failed(report))}`);
      assert.deepEqual(
        report.results.map((r) => r.id),
        checksFor(operation).map((c) => c.id),
      );
      for (const r of report.results) {
        assert.equal(r.passed, true, `${operation}/${r.id}`);
        assert.equal(r.message, MESSAGES[r.id]![lang].title);
        assert.equal(r.remedy, '');
        ran.add(r.id);
      }
    }
  }
  assert.equal(ran.size, BUILTIN_CHECKS.length, 'every check applies to some operation');
  assert.equal(checksFor('disable').length, 0, 'disable must work even when components are gone');
});

test('all failures are reported at once', async () => {
  const facts = healthy('reprotect');
  facts.item.state = 'FailedOver';
  facts.agent.registered = false;
  facts.processServer.lastHeartbeatAgeMs = 3_600_000;
  retentionVolume(facts).fsType = 'FAT32';
  const report = await runPreflight('reprotect', facts, { lang: 'ja' });
  assert.equal(report.ok, false);
  assert.deepEqual(failed(report).map((r) => [r.id, r.code]), [
    ['item-not-committed', undefined],
    ['agent-not-registered', 95226],
    ['ps-no-heartbeat', 806],
    ['retention-volume-fat', undefined],
  ]);
  assert.equal(report.results.length, checksFor('reprotect').length);
});

test('a retention volume that fails several conditions reports each of them', async () => {
  const facts = healthy('reprotect');
  Object.assign(retentionVolume(facts), { fsType: 'msdos', locked: true, inUseAsTarget: true, cacheOrInstall: true, freeBytes: 1024 });
  const report = await runPreflight('reprotect', facts, { lang: 'en' });
  assert.deepEqual(
    failed(report).map((r) => r.id),
    ['retention-volume-replication-target', 'retention-volume-locked', 'retention-volume-cache', 'retention-volume-fat', 'retention-volume-low-space'],
  );
  for (const r of failed(report)) assert.deepEqual(r.details?.['volume'], '/mnt/retention');
});

test('the retention path is matched to the volume that holds it', async () => {
  // Windows: drive letters are case-insensitive, trailing separators do not matter.
  const win = healthy('reprotect');
  win.masterTarget.platform = 'windows';
  win.masterTarget.volumes = [volume('C:\\', { fsType: 'NTFS', cacheOrInstall: true }), volume('r:\\', { fsType: 'ReFS' })];
  assert.equal((await runPreflight('reprotect', win, { lang: 'en' })).ok, true);
  win.masterTarget.retentionPath = 'R:\\journal';
  assert.equal((await runPreflight('reprotect', win, { lang: 'en' })).ok, true);
  win.masterTarget.retentionPath = 'C:/retention';
  assert.deepEqual(failed(await runPreflight('reprotect', win, { lang: 'en' })).map((r) => [r.id, r.details?.['volume']]), [['retention-volume-cache', 'C:\\']]);

  // Linux: a chosen path, and a sibling whose name merely starts like a mount point.
  const linux = healthy('enable');
  linux.masterTarget.retentionPath = '/mnt/retention/';
  assert.equal((await runPreflight('enable', linux, { lang: 'en' })).ok, true);
  linux.masterTarget.retentionPath = '/mnt/retention2';
  assert.deepEqual(failed(await runPreflight('enable', linux, { lang: 'en' })).map((r) => [r.id, r.details?.['volume']]), [['retention-volume-cache', '/']]);
});

test('a machine the fabric no longer finds is reported once, as deleted', async () => {
  const facts = healthy('reprotect');
  facts.source.exists = false;
  facts.source.powerState = 'unknown';
  facts.source.responding = false;
  assert.deepEqual(failed(await runPreflight('reprotect', facts, { lang: 'en' })).map((r) => r.id), ['source-deleted']);
});

test('an agent that never heartbeats is reported once, as not registered', async () => {
  const facts = healthy('enable');
  facts.agent.registered = false;
  facts.agent.lastHeartbeatAgeMs = null;
  assert.deepEqual(failed(await runPreflight('enable', facts, { lang: 'en' })).map((r) => r.id), ['agent-not-registered']);
});

test('item states are reported with a stable value in details and a translated label in the message', async () => {
  const facts = healthy('reprotect');
  facts.item.state = 'Reprotecting';
  const [en] = failed(await runPreflight('reprotect', facts, { lang: 'en' }));
  const [ja] = failed(await runPreflight('reprotect', facts, { lang: 'ja' }));
  assert.deepEqual([en?.id, en?.details, ja?.details], ['item-not-failed-over', { state: 'Reprotecting' }, { state: 'Reprotecting' }]);
  assert.ok(ja?.message.includes('状態: 再保護中'), ja?.message);
});

test('the catalogue has every check in both languages with the same placeholders', () => {
  const ids = [...BUILTIN_CHECKS.map((c) => c.id), CHECK_ERROR_ID];
  assert.deepEqual(Object.keys(MESSAGES).sort(), [...ids].sort(), 'no check without texts, no texts without a check');
  const names = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
  for (const id of ids) {
    const texts = MESSAGES[id]!;
    for (const lang of LANGS) {
      const t = texts[lang];
      assert.ok(t.title && t.message && t.remedy, `${id}/${lang} has empty text`);
      assert.deepEqual(names(t.title), [], `${id}/${lang}: a title is shown for passed checks and takes no params`);
    }
    for (const field of ['message', 'remedy'] as const) {
      assert.deepEqual(new Set(names(texts.ja[field])), new Set(names(texts.en[field])), `${id}: ${field} placeholders differ between en and ja`);
    }
    for (const field of ['title', 'message', 'remedy'] as const) {
      assert.match(texts.ja[field], /[\u3040-\u30ff\u4e00-\u9fff]/, `${id}: ja ${field} is not Japanese`);
    }
  }
});

test('a check that throws is reported as failed, and the others still run', async () => {
  const boom = (severity: 'error' | 'warning'): Check => ({
    id: 'retention-volume-missing',
    operations: ['reprotect'],
    severity,
    evaluate: () => Promise.reject(new Error('fabric timed out')),
  });
  const checks = [boom('error'), ...checksFor('reprotect').slice(0, 3)];
  const report = await runPreflight('reprotect', healthy('reprotect'), { lang: 'ja', checks });
  assert.equal(report.results.length, 4);
  assert.equal(report.ok, false);
  const [r] = failed(report);
  assert.equal(r?.id, 'retention-volume-missing');
  assert.equal(r?.message, 'チェック retention-volume-missing を実行できませんでした: fabric timed out');
  assert.deepEqual(r?.details, { error: 'fabric timed out' });

  const warn = await runPreflight('reprotect', healthy('reprotect'), { lang: 'en', checks: [boom('warning')] });
  assert.equal(warn.ok, true);
  assert.equal(warn.results[0]?.passed, false);
});

test('a check without catalogue texts is refused', async () => {
  const stray: Check = { id: 'no-such-text', operations: ['enable'], severity: 'warning', evaluate: () => ({ passed: true }) };
  await assert.rejects(runPreflight('enable', healthy('enable'), { lang: 'en', checks: [stray] }), /no-such-text/);
});

test('README documents every check with its code, operations and severity', () => {
  const readme = readFileSync(new URL('../../../src/cs/preflight/README.md', import.meta.url), 'utf8');
  const rows = readme
    .split('\n')
    .filter((l) => /^\| `[a-z-]+` \|/.test(l))
    .map((l) => l.split('|').map((c) => c.trim()));
  const documented = rows.map(([, id, code, ops, severity]) => ({
    id: id!.replace(/`/g, ''),
    code: code === '' ? undefined : Number(code),
    operations: ops!.split(',').map((s) => s.trim()),
    severity,
  }));
  assert.deepEqual(
    documented,
    BUILTIN_CHECKS.map((c) => ({ id: c.id, code: c.code, operations: [...c.operations], severity: c.severity })),
  );
});

/** Time that moves only when slept through. */
function fakeClock(): Clock & { sleeps: number[] } {
  let now = 0;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => now,
    sleep: async (ms, signal) => {
      signal?.throwIfAborted();
      sleeps.push(ms);
      now += ms;
    },
  };
}

/** Facts whose agent registers on the `registersAt`-th refresh (never when 0). */
function registering(registersAt: number): { refresh: () => Promise<PreflightFacts>; calls: () => number } {
  let calls = 0;
  return {
    calls: () => calls,
    refresh: async () => {
      calls++;
      const facts = healthy('reprotect');
      facts.agent.registered = registersAt > 0 && calls >= registersAt;
      return facts;
    },
  };
}

test('waitForCheck passes once the agent registers', async () => {
  const clock = fakeClock();
  const polls: unknown[] = [];
  const source = registering(4);
  const result = await waitForCheck(agentNotRegistered, source.refresh, {
    timeoutMs: 15 * 60_000,
    intervalMs: 10_000,
    clock,
    onPoll: (p) => polls.push(p),
  });
  assert.equal(result.passed, true);
  assert.equal(result.polls, 4);
  assert.equal(result.elapsedMs, 30_000);
  assert.equal(result.facts.agent.registered, true);
  assert.deepEqual(clock.sleeps, [10_000, 10_000, 10_000]);
  assert.deepEqual(polls, [
    { attempt: 1, elapsedMs: 0, passed: false },
    { attempt: 2, elapsedMs: 10_000, passed: false },
    { attempt: 3, elapsedMs: 20_000, passed: false },
    { attempt: 4, elapsedMs: 30_000, passed: true },
  ]);
  // The job then runs the whole pre-flight on the facts the wait ended with.
  assert.equal((await runPreflight('reprotect', result.facts, { lang: 'en' })).ok, true);
});

test('waitForCheck times out, evaluating one last time at the deadline', async () => {
  const clock = fakeClock();
  const source = registering(0);
  const result = await waitForCheck(agentNotRegistered, source.refresh, { timeoutMs: 25_000, intervalMs: 10_000, clock });
  assert.equal(result.passed, false);
  assert.equal(result.polls, 4);
  assert.equal(source.calls(), 4);
  assert.equal(result.elapsedMs, 25_000);
  assert.deepEqual(clock.sleeps, [10_000, 10_000, 5_000]);
  const report = await runPreflight('reprotect', result.facts, { lang: 'ja' });
  assert.deepEqual(failed(report).map((r) => r.code), [95226]);
});

test('waitForCheck passing at once does not sleep, and an abort stops it', async () => {
  const clock = fakeClock();
  const once = await waitForCheck(agentNotRegistered, registering(1).refresh, { timeoutMs: 60_000, clock });
  assert.deepEqual([once.passed, once.polls, clock.sleeps], [true, 1, []]);

  const controller = new AbortController();
  const source = registering(0);
  await assert.rejects(
    waitForCheck(agentNotRegistered, source.refresh, {
      timeoutMs: 60 * 60_000,
      clock: fakeClock(),
      signal: controller.signal,
      onPoll: (p) => {
        if (p.attempt === 3) controller.abort(new Error('job cancelled'));
      },
    }),
    /job cancelled/,
  );
  assert.equal(source.calls(), 3);
});
