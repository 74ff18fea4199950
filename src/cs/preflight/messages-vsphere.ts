import type { CheckTexts } from './messages.js';

/**
 * Texts of the vSphere checks (`checks/vsphere.ts`). Japanese terms follow Microsoft's Japanese
 * documentation (マスター ターゲット サーバー, データストア, VMware Tools, ストレージ vMotion).
 */
export const VSPHERE_MESSAGES: Readonly<Record<string, CheckTexts>> = {
  'vsphere-account-privileges': {
    en: {
      title: 'vCenter account privileges',
      message: 'The vCenter account of {fabric} lacks privileges Boomerang needs: {privileges}. Discovery could not see everything, so the other vSphere checks were not judged.',
      remedy: 'Give the account a role with the privileges listed (datastore browse and allocate space, virtual machine configuration, interaction and inventory, resource assignment), then refresh the fabric’s inventory.',
    },
    ja: {
      title: 'vCenter アカウントの権限',
      message: '{fabric} の vCenter アカウントに必要な権限がありません: {privileges}。検出ですべてを参照できなかったため、ほかの vSphere チェックは判定されていません。',
      remedy: '一覧の権限 (データストアの参照と領域の割り当て、仮想マシンの構成・操作・インベントリ、リソースの割り当て) を含むロールをアカウントに付与し、ファブリックのインベントリを更新してください。',
    },
  },
  'vsphere-target-not-esxi': {
    en: {
      title: 'Master target runs on an ESXi host',
      message: 'The master target {mt} is not a virtual machine on an ESXi host of {fabric} (host: {host}).',
      remedy: 'Reprotect to vSphere needs a master target VM on an ESXi host managed by this vCenter: its target disks are attached to it. Deploy the master target as a VM there, or reprotect to a physical site.',
    },
    ja: {
      title: 'マスター ターゲット サーバーの ESXi ホスト',
      message: 'マスター ターゲット サーバー {mt} は、{fabric} の ESXi ホスト上の仮想マシンではありません (ホスト: {host})。',
      remedy: 'vSphere への再保護には、この vCenter が管理する ESXi ホスト上のマスター ターゲット VM が必要です (ターゲット ディスクをこの VM に接続します)。マスター ターゲット サーバーを VM としてデプロイするか、物理サイトに再保護してください。',
    },
  },
  'vsphere-free-licence': {
    en: {
      title: 'ESXi licence allows writes through the API',
      message: 'The ESXi host {host} has the licence “{licence}”, whose API is read-only: disks cannot be attached, VMs cannot be created or powered on.',
      remedy: 'Assign the host a licence with a writable API (any paid vSphere edition or an evaluation licence), then retry.',
    },
    ja: {
      title: 'ESXi ライセンス (API の書き込み)',
      message: 'ESXi ホスト {host} のライセンス「{licence}」では API が読み取り専用のため、ディスクの接続、VM の作成や電源投入ができません。',
      remedy: '書き込み可能な API を含むライセンス (有償の vSphere エディションまたは評価版) をホストに割り当ててから、再試行してください。',
    },
  },
  'mt-vm-snapshots': {
    en: {
      title: 'No snapshots on the master target VM',
      message: 'The master target VM {vm} has {snapshots} snapshot(s): target disks cannot be attached to a VM with snapshots.',
      remedy: 'Delete the master target VM’s snapshots (Snapshot Manager → Delete All), then retry.',
    },
    ja: {
      title: 'マスター ターゲット VM のスナップショット',
      message: 'マスター ターゲット VM {vm} に {snapshots} 個のスナップショットがあります。スナップショットのある VM にはターゲット ディスクを接続できません。',
      remedy: 'マスター ターゲット VM のスナップショットを削除 (スナップショット マネージャー → すべて削除) してから、再試行してください。',
    },
  },
  'target-vm-snapshots': {
    en: {
      title: 'No snapshots on the on-premises VM',
      message: 'The on-premises VM {vm} has {snapshots} snapshot(s). The reprotect job will consolidate and remove them, because its disks become the replicas.',
      remedy: 'Nothing to do unless you need those snapshots: then copy the VM first.',
    },
    ja: {
      title: 'オンプレミス VM のスナップショット',
      message: 'オンプレミス VM {vm} に {snapshots} 個のスナップショットがあります。ディスクがレプリカになるため、再保護ジョブがスナップショットを統合して削除します。',
      remedy: 'スナップショットが必要な場合を除き、対応は不要です。必要な場合は、先に VM をコピーしてください。',
    },
  },
  'mt-enable-uuid': {
    en: {
      title: 'disk.EnableUUID on the master target VM',
      message: 'The master target VM {vm} does not have disk.EnableUUID set to TRUE: its guest cannot see disk UUIDs, so hot-added target disks cannot be told apart.',
      remedy: 'Power off {vm}, add the configuration parameter disk.EnableUUID = TRUE (VM Options → Advanced → Edit Configuration), power it on, then retry.',
    },
    ja: {
      title: 'マスター ターゲット VM の disk.EnableUUID',
      message: 'マスター ターゲット VM {vm} で disk.EnableUUID が TRUE に設定されていません。ゲストからディスクの UUID が見えないため、接続したターゲット ディスクを識別できません。',
      remedy: '{vm} の電源をオフにし、構成パラメーター disk.EnableUUID = TRUE を追加 (VM オプション → 詳細 → 構成の編集) して電源をオンにしてから、再試行してください。',
    },
  },
  'mt-tools-not-running': {
    en: {
      title: 'VMware Tools running on the master target VM',
      message: 'VMware Tools are not running on the master target VM {vm}.',
      remedy: 'Install or start VMware Tools (open-vm-tools) in {vm}, then retry.',
    },
    ja: {
      title: 'マスター ターゲット VM の VMware Tools',
      message: 'マスター ターゲット VM {vm} で VMware Tools が実行されていません。',
      remedy: '{vm} に VMware Tools (open-vm-tools) をインストールまたは起動してから、再試行してください。',
    },
  },
  'no-usable-datastore': {
    en: {
      title: 'A datastore usable from the master target’s host',
      message: 'The ESXi host {host} of the master target has no accessible datastore mounted read-write.',
      remedy: 'Mount a VMFS, NFS or vSAN datastore read-write on {host} (NFS and vSAN are supported for target disks), then refresh the inventory and retry.',
    },
    ja: {
      title: 'マスター ターゲットのホストから使用できるデータストア',
      message: 'マスター ターゲット サーバーの ESXi ホスト {host} に、読み書き可能でアクセスできるデータストアがありません。',
      remedy: 'VMFS、NFS、または vSAN のデータストアを {host} に読み書き可能でマウントし (ターゲット ディスクには NFS と vSAN も使用できます)、インベントリを更新してから再試行してください。',
    },
  },
  'datastore-not-accessible': {
    en: {
      title: 'Datastore accessible from the master target’s host',
      message: 'The datastore {datastore} is not accessible read-write from the master target’s ESXi host {host}.',
      remedy: 'Mount {datastore} read-write on {host}, or choose a datastore that host can use, then retry.',
    },
    ja: {
      title: 'マスター ターゲットのホストからのデータストアへのアクセス',
      message: 'データストア {datastore} に、マスター ターゲット サーバーの ESXi ホスト {host} から読み書きアクセスできません。',
      remedy: '{datastore} を {host} に読み書き可能でマウントするか、そのホストで使用できるデータストアを選択してから、再試行してください。',
    },
  },
  'vm-name-taken': {
    en: {
      title: 'No VM of the same name on the master target’s host',
      message: 'A VM named {vm} already exists on the ESXi host {host}: the VM for the alternate location cannot be created.',
      remedy: 'Rename or remove the other VM, or reprotect through another master target on another host.',
    },
    ja: {
      title: 'マスター ターゲットのホスト上の同名 VM',
      message: 'ESXi ホスト {host} に {vm} という名前の VM が既に存在するため、代替場所の VM を作成できません。',
      remedy: 'もう一方の VM の名前を変更するか削除してください。または、別のホストの別のマスター ターゲット サーバーを使用して再保護してください。',
    },
  },
  'disk-uuid-collision': {
    en: {
      title: 'Disk UUIDs differ between the VM and the master target',
      message: 'The VM {vm} and the master target VM {mtVm} have a disk with the same UUID ({uuid}): they were made from the same template.',
      remedy: 'Use a master target VM not cloned from the same template as {vm}, or give the master target’s disks new UUIDs (vmkfstools -J setuuid), then retry.',
    },
    ja: {
      title: 'VM とマスター ターゲットのディスク UUID',
      message: 'VM {vm} とマスター ターゲット VM {mtVm} に同じ UUID ({uuid}) のディスクがあります。同じテンプレートから作成されています。',
      remedy: '{vm} と同じテンプレートから複製されていないマスター ターゲット VM を使用するか、マスター ターゲットのディスクに新しい UUID を付与 (vmkfstools -J setuuid) してから、再試行してください。',
    },
  },
  'host-memory': {
    en: {
      title: 'Memory to power on the VM at failback',
      message: 'The ESXi host {host} has {freeMiB} MiB of memory free; {vm} needs {neededMiB} MiB to power on.',
      remedy: 'Free memory on {host} (power off or migrate other VMs) or move {vm} to another host, then retry.',
    },
    ja: {
      title: 'フェールバック時の VM の電源投入に必要なメモリ',
      message: 'ESXi ホスト {host} の空きメモリは {freeMiB} MiB です。{vm} の電源投入には {neededMiB} MiB が必要です。',
      remedy: '{host} のメモリを解放する (ほかの VM の電源をオフにするか移行する) か、{vm} を別のホストに移動してから、再試行してください。',
    },
  },
  'storage-moved': {
    en: {
      title: 'Disks not moved since reprotect',
      message: 'Storage vMotion moved {what} from {from} to {to} after reprotect: the replication no longer writes where the VM’s disks are.',
      remedy: 'Move it back with Storage vMotion (and exclude the VMs from Storage DRS), or reprotect again, then fail back.',
    },
    ja: {
      title: '再保護後のディスクの移動',
      message: '再保護の後に、ストレージ vMotion によって {what} が {from} から {to} に移動されました。レプリケーションの書き込み先が VM のディスクではなくなっています。',
      remedy: 'ストレージ vMotion で元に戻す (VM を Storage DRS の対象外にする) か、再保護をやり直してから、フェールバックしてください。',
    },
  },
};
