import type { ItemState } from './facts.js';
import { VSPHERE_MESSAGES } from './messages-vsphere.js';
import type { Lang, ParamValue, Term } from './types.js';

/**
 * The texts of every check, by check id. `title` names what is checked and is the message of a
 * passed check; `message` and `remedy` describe a failure. `{name}` placeholders take the check's
 * params and the common ones every report supplies: item, machine, ps, mt.
 *
 * The Japanese follows the terms of Microsoft's Japanese documentation of the same product
 * (構成サーバー, プロセス サーバー, マスター ターゲット サーバー, モビリティ サービス, …).
 */
export interface CheckText {
  title: string;
  message: string;
  remedy: string;
}

export type CheckTexts = Readonly<Record<Lang, CheckText>>;

/** Reported in place of a check whose evaluation threw (a fabric call failing, say). */
export const CHECK_ERROR_ID = 'check-error';

export const MESSAGES: Readonly<Record<string, CheckTexts>> = {
  [CHECK_ERROR_ID]: {
    en: {
      title: 'Check ran',
      message: 'The check {check} could not run: {error}',
      remedy: 'Retry the operation. If the check keeps failing, see the configuration server log.',
    },
    ja: {
      title: 'チェックの実行',
      message: 'チェック {check} を実行できませんでした: {error}',
      remedy: '操作を再試行してください。問題が解決しない場合は、構成サーバーのログを確認してください。',
    },
  },

  // Item state
  'item-migrated': {
    en: {
      title: 'Item is not migrated',
      message: '{item} has been migrated: its migration was completed, so it can no longer be failed over, reprotected or failed back.',
      remedy: 'Nothing can be done with this item. To protect the migrated machine, enable replication for it as a new item.',
    },
    ja: {
      title: 'アイテムの移行状態',
      message: '{item} は移行が完了しているため、フェールオーバー、再保護、フェールバックを実行することはできません。',
      remedy: 'このアイテムに対して実行できる操作はありません。移行したマシンを保護するには、新しいアイテムとしてレプリケーションを有効にしてください。',
    },
  },
  'item-protection-disabled': {
    en: {
      title: 'Protection is enabled',
      message: 'Protection of {item} has been disabled, so it can no longer be failed over, reprotected or failed back.',
      remedy: 'Enable replication for the machine again; it starts over with an initial replication.',
    },
    ja: {
      title: '保護の状態',
      message: '{item} の保護は無効になっているため、フェールオーバー、再保護、フェールバックを実行することはできません。',
      remedy: 'マシンのレプリケーションを再度有効にしてください。初期レプリケーションからやり直しになります。',
    },
  },
  'source-deleted': {
    en: {
      title: 'Source machine exists',
      message:
        'The machine {machine}, which {item} replicates from, is no longer where it was recorded: it was deleted, or moved (an Azure VM to another resource group).',
      remedy:
        'If the machine was moved, move it back (an Azure VM to its original resource group) and let the fabric be discovered again. If it was deleted, this item cannot go on: disable its protection.',
    },
    ja: {
      title: 'レプリケーション元のマシンの存在',
      message:
        '{item} のレプリケーション元であるマシン {machine} が、記録されている場所に存在しません。削除されたか、移動された (Azure 仮想マシンの場合は別のリソース グループに移動された) 可能性があります。',
      remedy:
        'マシンを移動した場合は、元の場所 (Azure 仮想マシンの場合は元のリソース グループ) に戻し、ファブリックを再検出してください。マシンを削除した場合、このアイテムの操作は続行できないため、保護を無効にしてください。',
    },
  },
  'item-already-protected': {
    en: {
      title: 'Item is not protected yet',
      message: 'Replication is already enabled for {item} (state: {state}).',
      remedy: 'Nothing to enable. To start over, disable protection first.',
    },
    ja: {
      title: 'レプリケーションの有効化の可否',
      message: '{item} のレプリケーションは既に有効になっています (状態: {state})。',
      remedy: 'レプリケーションを有効にする必要はありません。最初からやり直すには、先に保護を無効にしてください。',
    },
  },
  'item-not-protected': {
    en: {
      title: 'Item is protected',
      message: '{item} is not protected (state: {state}); failover needs an item whose initial replication or reprotect has finished.',
      remedy: 'Wait until the item is Protected, then fail over.',
    },
    ja: {
      title: 'アイテムの保護状態',
      message: '{item} は保護された状態ではありません (状態: {state})。フェールオーバーするには、初期レプリケーションまたは再保護が完了している必要があります。',
      remedy: 'アイテムが保護された状態になるまで待ってから、フェールオーバーしてください。',
    },
  },
  'item-nothing-to-commit': {
    en: {
      title: 'A failover waits for commit',
      message: '{item} has no failover or failback waiting to be committed (state: {state}).',
      remedy: 'Commit follows a failover or a failback; there is nothing to commit now.',
    },
    ja: {
      title: 'コミット待ちのフェールオーバー',
      message: '{item} には、コミットを待っているフェールオーバーまたはフェールバックがありません (状態: {state})。',
      remedy: 'コミットはフェールオーバーまたはフェールバックの後に実行します。現在コミットするものはありません。',
    },
  },
  'item-not-failed-over': {
    en: {
      title: 'Item is failed over',
      message:
        '{item} is not a failed-over, committed item (state: {state}); reprotect reverses replication only for an item that has been failed over and committed.',
      remedy: 'Fail the item over and commit the failover, then reprotect. If a reprotect is already running, wait for its job to finish.',
    },
    ja: {
      title: 'フェールオーバーの状態',
      message: '{item} は、フェールオーバーしてコミットされた状態ではありません (状態: {state})。再保護は、フェールオーバーしてコミットしたアイテムに対してのみ実行できます。',
      remedy: 'アイテムをフェールオーバーしてコミットしてから、再保護してください。再保護ジョブが既に実行中の場合は、完了するまで待ってください。',
    },
  },
  'item-not-committed': {
    en: {
      title: 'Failover is committed',
      message: 'The failover of {item} has not been committed.',
      remedy: 'Commit the failover, then reprotect.',
    },
    ja: {
      title: 'フェールオーバーのコミット',
      message: '{item} のフェールオーバーがコミットされていません。',
      remedy: 'フェールオーバーをコミットしてから、再保護してください。',
    },
  },
  'item-not-reprotected': {
    en: {
      title: 'Item is reprotected',
      message:
        '{item} is not replicating back to its original site (state: {state}); failback needs an item that was failed over, committed and reprotected.',
      remedy: 'Reprotect the item and wait until it is Protected, then fail back.',
    },
    ja: {
      title: '再保護の状態',
      message:
        '{item} は元のサイトへレプリケートされていません (状態: {state})。フェールバックするには、アイテムをフェールオーバーしてコミットし、再保護しておく必要があります。',
      remedy: 'アイテムを再保護し、保護された状態になるまで待ってから、フェールバックしてください。',
    },
  },
  'failback-not-configured': {
    en: {
      title: 'The item knows where to replicate back to',
      message: '{item} has no recovery machine, failback agent, process server or master target for the way back.',
      remedy: 'Enable replication with recoveryMachineId, failbackAgentName, failbackPsId and failbackMtId (disable and enable the item again), then retry.',
    },
    ja: {
      title: '逆方向のレプリケーション先が設定されている',
      message: '{item} には、逆方向のための復旧マシン、フェールバック エージェント、プロセス サーバー、マスター ターゲットが設定されていません。',
      remedy: 'recoveryMachineId、failbackAgentName、failbackPsId、failbackMtId を指定してレプリケーションを有効にし直してから (保護を無効にして再度有効化)、やり直してください。',
    },
  },
  'item-nothing-to-cancel': {
    en: {
      title: 'A failback can be cancelled',
      message: '{item} has no failback to cancel (state: {state}).',
      remedy: 'Cancel rolls back a failback that has not been committed; there is nothing to cancel now.',
    },
    ja: {
      title: 'キャンセルできるフェールバック',
      message: '{item} には、キャンセルできるフェールバックがありません (状態: {state})。',
      remedy: 'キャンセルは、コミットされていないフェールバックを元に戻す操作です。現在キャンセルするものはありません。',
    },
  },

  // Components
  'agent-not-registered': {
    en: {
      title: 'Mobility service is registered',
      message:
        'The mobility service (agent) on {machine} has not registered with the configuration server: the machine cannot reach the configuration server, or the agent service is not running.',
      remedy:
        'Give {machine} a network path to the configuration server (for an Azure VM: a site-to-site VPN, or ExpressRoute with private peering). If it has one, sign in to the machine, start the Boomerang agent service and set its startup type to Automatic. After a failover the agent can take up to 15 minutes to register.',
    },
    ja: {
      title: 'モビリティ サービスの登録',
      message:
        '{machine} のモビリティ サービスが構成サーバーに登録されていません。{machine} が構成サーバーに到達できないか、マシン上でモビリティ サービスが実行されていない可能性があります。',
      remedy:
        '{machine} が構成サーバーと通信できるようにネットワークを構成してください (Azure 仮想マシンの場合は、サイト間 VPN、またはプライベート ピアリングを使用した ExpressRoute 接続)。既にネットワークを構成している場合は、マシンにログインしてモビリティ サービス (Boomerang エージェント) を確認し、実行中でなければ手動で開始して、サービス開始の種類が [自動] に設定されていることを確認してください。フェールオーバー後、エージェントが構成サーバーに再度登録されるまでに最大 15 分かかることがあります。',
    },
  },
  'source-not-running': {
    en: {
      title: 'Source machine is running',
      message: 'The machine {machine} is not running, has stopped responding, or cannot be reached.',
      remedy:
        'Start {machine}, then retry: it must run so that its mobility service can register with the configuration server and send data to the process server.',
    },
    ja: {
      title: 'マシンの実行状態',
      message: 'マシン {machine} が実行中でないか、応答を停止しているか、アクセスできない状態です。',
      remedy:
        '{machine} を起動してから、再試行してください。モビリティ サービスが構成サーバーに登録され、プロセス サーバーと通信してレプリケーションを開始するには、マシンが実行されている必要があります。',
    },
  },
  'agent-no-heartbeat': {
    en: {
      title: 'Mobility service heartbeat',
      message: 'The configuration server has received no heartbeat from the mobility service on {machine} in the last {timeoutS} s.',
      remedy:
        'Check that the agent service is running on {machine} and that the machine can reach the configuration server and the process server; restart the agent service.',
    },
    ja: {
      title: 'モビリティ サービスのハートビート',
      message: '過去 {timeoutS} 秒間、{machine} のモビリティ サービスから構成サーバーにハートビートが届いていません。',
      remedy:
        '{machine} でモビリティ サービスが実行されていること、およびマシンから構成サーバーとプロセス サーバーに到達できることを確認し、サービスを再起動してください。',
    },
  },
  'ps-no-heartbeat': {
    en: {
      title: 'Process server heartbeat',
      message: 'The configuration server has received no heartbeat from the process server {ps} in the last {timeoutS} s.',
      remedy:
        'Check that the process server service is running on {ps}. From the process server, test the connection to the configuration server’s API port (with curl or Telnet) and ping it; restart the service.',
    },
    ja: {
      title: 'プロセス サーバーのハートビート',
      message: '過去 {timeoutS} 秒間、プロセス サーバー {ps} から構成サーバーにハートビートが届いていません。',
      remedy:
        'プロセス サーバー {ps} のサービスが実行されていることを確認してください。プロセス サーバーから構成サーバーの API ポートへの接続を (curl や Telnet で) 確認し、ping も試してから、サービスを再起動してください。',
    },
  },
  'mt-no-heartbeat': {
    en: {
      title: 'Master target heartbeat',
      message: 'The configuration server has received no heartbeat from the master target {mt} in the last {timeoutS} s.',
      remedy:
        'Check that the master target service is running on {mt} and that it can reach the configuration server and the process server; restart the service.',
    },
    ja: {
      title: 'マスター ターゲット サーバーのハートビート',
      message: '過去 {timeoutS} 秒間、マスター ターゲット サーバー {mt} から構成サーバーにハートビートが届いていません。',
      remedy:
        'マスター ターゲット サーバー {mt} のサービスが実行されていること、および構成サーバーとプロセス サーバーに到達できることを確認し、サービスを再起動してください。',
    },
  },

  // Replication health
  'ps-spool-full': {
    en: {
      title: 'Process server cache has room',
      message: 'The cache (spool) of the process server {ps} is full: it refuses new change data, and agents fall back to a resync.',
      remedy:
        'Wait for the cache to drain to the master target, or give the process server more cache space or more bandwidth to the master target, or move items to another process server.',
    },
    ja: {
      title: 'プロセス サーバーのキャッシュの空き',
      message: 'プロセス サーバー {ps} のキャッシュ (スプール) がいっぱいのため、新しい変更データを受け付けていません。エージェントは再同期に切り替わります。',
      remedy:
        'キャッシュのデータがマスター ターゲット サーバーに送信されるまで待つか、プロセス サーバーのキャッシュ容量またはマスター ターゲット サーバーへの帯域幅を増やすか、アイテムを別のプロセス サーバーに移動してください。',
    },
  },
  'ps-spool-nearly-full': {
    en: {
      title: 'Process server cache usage',
      message: 'The cache (spool) of the process server {ps} is {usedPct}% full; when it fills, agents fall back to a resync.',
      remedy: 'Give the process server more cache space or more bandwidth to the master target, or move items to another process server.',
    },
    ja: {
      title: 'プロセス サーバーのキャッシュ使用率',
      message: 'プロセス サーバー {ps} のキャッシュ (スプール) の使用率が {usedPct}% に達しています。いっぱいになると、エージェントは再同期に切り替わります。',
      remedy: 'プロセス サーバーのキャッシュ容量またはマスター ターゲット サーバーへの帯域幅を増やすか、アイテムを別のプロセス サーバーに移動してください。',
    },
  },
  'rpo-over-threshold': {
    en: {
      title: 'RPO within the policy threshold',
      message: 'The current RPO of {item} is {rpoS} s, over the policy threshold of {thresholdS} s.',
      remedy:
        'A failover now may lose more recent changes than the policy allows, and a failback takes longer to drain. Check the network and the process server, or go ahead if that is acceptable.',
    },
    ja: {
      title: 'RPO しきい値',
      message: '{item} の現在の RPO は {rpoS} 秒で、ポリシーのしきい値 ({thresholdS} 秒) を超えています。',
      remedy:
        'このままフェールオーバーすると、ポリシーで許容される以上の最近の変更が失われる可能性があり、フェールバックでは保留中のデータの同期に時間がかかります。ネットワークとプロセス サーバーの状態を確認するか、許容できる場合はそのまま続行してください。',
    },
  },

  // Retention volume
  'retention-volume-missing': {
    en: {
      title: 'Retention volume exists',
      message: 'The master target {mt} has no volume for the retention path {path}.',
      remedy:
        'Add a new disk to the master target, format it and mount it as {path} (the default retention volume is /mnt/retention on Linux, R: on Windows), or choose another retention path. The master target reports the new volume with its next heartbeat.',
    },
    ja: {
      title: 'リテンション ボリュームの存在',
      message: 'マスター ターゲット サーバー {mt} に、リテンション パス {path} のボリュームがありません。',
      remedy:
        'マスター ターゲット サーバーに新しいディスクを追加してドライブをフォーマットし、{path} としてマウントするか (既定のリテンション ボリュームは、Linux では /mnt/retention、Windows では R ボリュームです)、別のリテンション パスを選択してください。新しいボリュームは、マスター ターゲットの次のハートビートで構成サーバーに報告されます。',
    },
  },
  'retention-volume-replication-target': {
    en: {
      title: 'Retention volume is not a replication target',
      message: 'The retention volume {volume} (retention path {path}) on the master target {mt} is used as a replication target.',
      remedy: 'Use a volume that serves no other purpose: add a new disk to the master target for retention.',
    },
    ja: {
      title: 'リテンション ボリュームの用途',
      message: 'マスター ターゲット サーバー {mt} のリテンション ボリューム {volume} (リテンション パス {path}) は、レプリケーションのターゲットとして使用されています。',
      remedy: '他のどの目的にも使用されていないボリュームを使用してください。リテンション用に新しいディスクをマスター ターゲット サーバーに追加します。',
    },
  },
  'retention-volume-locked': {
    en: {
      title: 'Retention volume is not locked',
      message: 'The retention volume {volume} (retention path {path}) on the master target {mt} is locked.',
      remedy: 'Unlock the volume (a BitLocker-locked drive, for example), or use another volume.',
    },
    ja: {
      title: 'リテンション ボリュームのロック',
      message: 'マスター ターゲット サーバー {mt} のリテンション ボリューム {volume} (リテンション パス {path}) は、ロック モードになっています。',
      remedy: 'ボリュームのロックを解除するか (BitLocker でロックされたドライブなど)、別のボリュームを使用してください。',
    },
  },
  'retention-volume-cache': {
    en: {
      title: 'Retention volume is not the cache volume',
      message:
        'The retention volume {volume} (retention path {path}) on the master target {mt} is the cache or installation volume of the process server or master target, which cannot hold retention.',
      remedy: 'Add a separate disk to the master target for retention.',
    },
    ja: {
      title: 'リテンション ボリュームとキャッシュ ボリューム',
      message:
        'マスター ターゲット サーバー {mt} のリテンション ボリューム {volume} (リテンション パス {path}) は、プロセス サーバーまたはマスター ターゲットのキャッシュ ボリューム (インストール ボリューム) であるため、リテンション ボリュームになる資格がありません。',
      remedy: 'リテンション用に別のディスクをマスター ターゲット サーバーに追加してください。',
    },
  },
  'retention-volume-fat': {
    en: {
      title: 'Retention volume file system',
      message: 'The retention volume {volume} (retention path {path}) on the master target {mt} has a {fsType} file system; FAT and FAT32 volumes cannot hold retention.',
      remedy: 'Format the volume with another file system (NTFS on Windows; ext4 or XFS on Linux), or use another volume.',
    },
    ja: {
      title: 'リテンション ボリュームのファイル システム',
      message:
        'マスター ターゲット サーバー {mt} のリテンション ボリューム {volume} (リテンション パス {path}) のファイル システムの種類は {fsType} です。ファイル システムの種類が FAT または FAT32 のボリュームは、リテンションに使用できません。',
      remedy: 'ボリュームを別のファイル システム (Windows では NTFS、Linux では ext4 や XFS など) でフォーマットするか、別のボリュームを使用してください。',
    },
  },
  'retention-volume-zero-capacity': {
    en: {
      title: 'Retention volume capacity',
      message: 'The retention volume {volume} (retention path {path}) on the master target {mt} reports a capacity of zero.',
      remedy: 'Check that the disk is attached and formatted, or use another volume.',
    },
    ja: {
      title: 'リテンション ボリュームの容量',
      message: 'マスター ターゲット サーバー {mt} のリテンション ボリューム {volume} (リテンション パス {path}) の容量がゼロです。',
      remedy: 'ディスクが接続されてフォーマットされていることを確認するか、別のボリュームを使用してください。',
    },
  },
  'retention-volume-low-space': {
    en: {
      title: 'Retention volume free space',
      message:
        'The retention volume {volume} (retention path {path}) on the master target {mt} has {free} free; retention needs at least {required}.',
      remedy: 'Free space on the volume, extend it, or choose a larger volume.',
    },
    ja: {
      title: 'リテンション ボリュームの空き領域',
      message:
        'マスター ターゲット サーバー {mt} のリテンション ボリューム {volume} (リテンション パス {path}) の空き領域は {free} で、リテンションに必要な {required} に足りません。',
      remedy: 'ボリュームの空き領域を増やすか、ボリュームを拡張するか、より大きなボリュームを選択してください。',
    },
  },
  ...VSPHERE_MESSAGES,
};

const STATE_LABELS: Readonly<Record<ItemState, Readonly<Record<Lang, string>>>> = {
  Unprotected: { en: 'Unprotected', ja: '未保護' },
  InitialReplication: { en: 'Initial replication', ja: '初期レプリケーション中' },
  Protected: { en: 'Protected', ja: '保護済み' },
  FailingOver: { en: 'Failing over', ja: 'フェールオーバー中' },
  FailedOver: { en: 'Failed over', ja: 'フェールオーバー済み' },
  Committed: { en: 'Committed', ja: 'コミット済み' },
  Reprotecting: { en: 'Reprotecting', ja: '再保護中' },
  FailingBack: { en: 'Failing back', ja: 'フェールバック中' },
  FailedBack: { en: 'Failed back', ja: 'フェールバック済み' },
  FailbackFailed: { en: 'Failback failed', ja: 'フェールバック失敗' },
  CancellingFailback: { en: 'Cancelling failback', ja: 'フェールバックの取り消し中' },
  ProtectionDisabled: { en: 'Protection disabled', ja: '保護無効' },
  Migrated: { en: 'Migrated', ja: '移行済み' },
};

export function stateTerm(state: ItemState): Term {
  return { value: state, label: STATE_LABELS[state] };
}

const PLACEHOLDER = /\{(\w+)\}/g;

/** The `{name}` placeholders of a text, for the catalogue's tests. */
export function placeholders(text: string): string[] {
  return [...text.matchAll(PLACEHOLDER)].map((m) => m[1]!);
}

export function paramText(value: ParamValue, lang: Lang): string {
  return typeof value === 'object' ? value.label[lang] : String(value);
}

/** Fills `{name}` placeholders; one without a param is left as is, so a gap shows rather than hides. */
export function interpolate(text: string, params: Readonly<Record<string, ParamValue>>, lang: Lang): string {
  return text.replace(PLACEHOLDER, (whole, name: string) => {
    const value = params[name];
    return value === undefined ? whole : paramText(value, lang);
  });
}
