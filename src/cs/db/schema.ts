import type { Selectable } from 'kysely';

/**
 * The configuration server's tables as Kysely sees them. Timestamps are ISO-8601 text (UTC,
 * sortable as text) and structured values are JSON text, so the same schema and queries run on
 * SQLite now and PostgreSQL later.
 */

/** One row (id 1): the vault this CS manages and its secrets for registration and operators. */
export interface VaultTable {
  id: number;
  name: string;
  /** Kept so `boomerang cs passphrase` can show it; the DB file is 0600 in a 0700 directory. */
  passphrase: string;
  /** `scrypt:<N>:<r>:<p>:<base64 hash>`; checked at registration. */
  passphrase_hash: string;
  passphrase_salt: string;
  /** sha256 of the operator token written to admin.token. */
  admin_token_hash: string;
  created_at: string;
}

/** One row (id 1): the CS's certificate authority. */
export interface CaTable {
  id: number;
  cert_pem: string;
  key_pem: string;
  created_at: string;
}

/** One row (id 1): the certificate the API listens with, reissued when names change or it nears expiry. */
export interface ServerTlsTable {
  id: number;
  cert_pem: string;
  key_pem: string;
  /** JSON array of the DNS names and IP addresses it was issued for. */
  names: string;
  not_after: string;
}

export type ComponentKind = 'agent' | 'ps' | 'mt';

export interface ComponentsTable {
  id: string;
  kind: ComponentKind;
  name: string;
  cert_serial: string;
  cert_not_after: string;
  /** sha256 of the token's secret part. */
  token_hash: string;
  token_expires_at: string;
  registered_at: string;
  last_heartbeat_at: string | null;
  /** JSON of the last heartbeat's health sections. */
  health: string | null;
  /** Raised by the heartbeat monitor (806, 78022, 78174), cleared by the next heartbeat. */
  alert_code: string | null;
  alert_since: string | null;
  revoked_at: string | null;
}

export type FabricKind = 'physical' | 'vsphere' | 'azure';

export interface FabricsTable {
  id: string;
  kind: FabricKind;
  name: string;
  /** JSON object; its shape depends on the kind. */
  config: string;
  created_at: string;
}

/** The password of a vsphere fabric's vCenter account; never part of a view. */
export interface FabricSecretsTable {
  fabric_id: string;
  /** The DB file is 0600 in a 0700 directory, as for the vault passphrase. */
  password: string;
  updated_at: string;
}

export type InventoryStatus = 'pending' | 'ok' | 'lacking-privileges' | 'failed';

/** The last inventory read from a vsphere fabric's vCenter. */
export interface FabricInventoryTable {
  fabric_id: string;
  status: InventoryStatus;
  /** When `snapshot` was read (the last read that succeeded). */
  refreshed_at: string | null;
  /** When the last read was tried, successful or not. */
  attempted_at: string | null;
  /** JSON {code, message, remedy} of the last read that failed, or of the privileges it found missing. */
  error: string | null;
  /** JSON of the inventory (VsphereInventory). */
  snapshot: string | null;
}

export type PowerState = 'unknown' | 'running' | 'stopped';

export interface MachinesTable {
  id: string;
  fabric_id: string;
  name: string;
  /** JSON: the hook commands that start, stop and query the machine (physical fabric). */
  power: string;
  state: PowerState;
  created_at: string;
}

export type PolicyDirection = 'forward' | 'failback';

export interface PoliciesTable {
  id: string;
  /** The forward and failback policies of a pair share it. */
  pair_id: string;
  direction: PolicyDirection;
  name: string;
  rpo_threshold_s: number;
  retention_h: number;
  app_consistent_min: number;
  crash_consistent_min: number;
  /** 1: page-blob replicas keep recovery points as blob snapshots too. */
  blob_snapshots: number;
  created_at: string;
  updated_at: string;
}

export interface ItemsTable {
  id: string;
  machine_id: string;
  state: string;
  direction: PolicyDirection;
  forward_policy_id: string;
  failback_policy_id: string;
  agent_id: string;
  ps_id: string;
  mt_id: string;
  /** The machine that runs the workload after a failover (physical fabric: prepared in advance). */
  recovery_machine_id: string | null;
  /** The name the agent on the recovery machine registers with; found (or waited for) at reprotect. */
  failback_agent_name: string | null;
  failback_agent_id: string | null;
  /** Process server and master target of the failback direction (recovery site → primary site). */
  failback_ps_id: string | null;
  failback_mt_id: string | null;
  /** JSON: the recovery point the last failover (or change of point) used, per disk. */
  failover_point: string | null;
  created_at: string;
  updated_at: string;
}

export interface ItemDisksTable {
  item_id: string;
  disk_id: string;
  size_bytes: number;
  source_path: string;
  target_path: string;
  /** Where the master target has applied up to, from its heartbeats. */
  lineage: string | null;
  last_seq: number | null;
}

export interface RecoveryPointsTable {
  item_id: string;
  disk_id: string;
  point_id: string;
  bookmark_id: string;
  kind: 'crash' | 'app' | 'group';
  time: string;
  lineage: string;
  seq: number;
  /** The master target whose journal holds the point. */
  mt_id: string | null;
}

export type CommandStateName = 'pending' | 'done' | 'failed' | 'expired';

/** A command a job sends to a component; the component fetches it, carries it out and answers. */
export interface CommandsTable {
  /** Chosen by the sender so that sending again (a resumed task) is a no-op. */
  id: string;
  component_id: string;
  kind: string;
  params: string;
  state: CommandStateName;
  result: string | null;
  /** JSON {code, message}. */
  error: string | null;
  job_id: string | null;
  created_at: string;
  /** Not delivered after this: a component that comes back late must not act on stale orders. */
  expires_at: string;
  finished_at: string | null;
}

/** A power operation on a machine whose hooks say `manual`: done by a person, confirmed through the API. */
export interface PowerConfirmationsTable {
  job_id: string;
  machine_id: string;
  action: 'start' | 'stop';
  requested_at: string;
  confirmed_at: string | null;
}

export type JobStateName = 'queued' | 'running' | 'compensating' | 'succeeded' | 'failed' | 'cancelled';

export interface JobsTable {
  id: string;
  kind: string;
  state: JobStateName;
  /** JSON of the job's parameters, validated against the kind's schema when enqueued. */
  params: string;
  /** Jobs with the same resource (e.g. `item/<id>`) run one at a time, in creation order. */
  resource: string | null;
  /** While compensating: the state the job ends in once the rollback is done. */
  outcome: 'failed' | 'cancelled' | null;
  /** JSON {code, message, remedy}. */
  error: string | null;
  cancel_requested_at: string | null;
  /** How many times the job was picked up again after a CS restart. */
  resumes: number;
  /** Incremented by every change, so a watcher can ask for "newer than N". */
  version: number;
  /** Creation order (timestamps can tie): queued jobs start in this order. */
  seq: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  updated_at: string;
}

export type TaskStateName = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'skipped';

export interface TasksTable {
  job_id: string;
  idx: number;
  name: string;
  state: TaskStateName;
  /** 1 when the task may run again from its saved details after an interruption. */
  resumable: number;
  /** How many times the task has been started. */
  runs: number;
  progress_done: number;
  progress_total: number;
  progress_detail: string | null;
  /** JSON the task saves to resume where it stopped. */
  details: string;
  error: string | null;
  started_at: string | null;
  finished_at: string | null;
}

export interface Database {
  vault: VaultTable;
  ca: CaTable;
  server_tls: ServerTlsTable;
  components: ComponentsTable;
  fabrics: FabricsTable;
  fabric_secrets: FabricSecretsTable;
  fabric_inventory: FabricInventoryTable;
  machines: MachinesTable;
  policies: PoliciesTable;
  items: ItemsTable;
  item_disks: ItemDisksTable;
  recovery_points: RecoveryPointsTable;
  jobs: JobsTable;
  tasks: TasksTable;
  commands: CommandsTable;
  power_confirmations: PowerConfirmationsTable;
}

export type ComponentRow = Selectable<ComponentsTable>;
export type FabricRow = Selectable<FabricsTable>;
export type FabricInventoryRow = Selectable<FabricInventoryTable>;
export type MachineRow = Selectable<MachinesTable>;
export type PolicyRow = Selectable<PoliciesTable>;
export type ItemRow = Selectable<ItemsTable>;
export type ItemDiskRow = Selectable<ItemDisksTable>;
export type RecoveryPointRow = Selectable<RecoveryPointsTable>;
export type JobRow = Selectable<JobsTable>;
export type TaskRow = Selectable<TasksTable>;
export type CommandRow = Selectable<CommandsTable>;
