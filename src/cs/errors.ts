import { BoomerangError } from '../replication/errors.js';

/**
 * Every coded error of the configuration server in one place: the API's answers, job and task
 * failures, and the health alerts that pre-flight reads. Each code has a default message and a
 * remedy; callers pass the facts (names, ids, states), never free text for the code's meaning.
 * Codes from the source product (806, 78022, 78174) are kept verbatim.
 */

export interface CatalogueEntry<P> {
  /** HTTP status when the error answers a request. */
  readonly status: number;
  readonly message: (p: P) => string;
  readonly remedy: string;
  /** Japanese text, for the codes that pre-flight shows to operators. */
  readonly ja?: { readonly message: (p: P) => string; readonly remedy: string };
}

function entry<P = void>(status: number, message: (p: P) => string, remedy: string, ja?: CatalogueEntry<P>['ja']): CatalogueEntry<P> {
  return ja === undefined ? { status, message, remedy } : { status, message, remedy, ja };
}

interface Missing {
  name: string;
  id: string;
  ageSeconds: number | null;
}

function heartbeatAge(p: Missing): string {
  return p.ageSeconds === null ? 'it has never sent one' : `the last one was ${Math.round(p.ageSeconds)} s ago`;
}

function heartbeatAgeJa(p: Missing): string {
  return p.ageSeconds === null ? '一度も受信していません' : `最後の受信は ${Math.round(p.ageSeconds)} 秒前です`;
}

export const CATALOGUE = {
  BAD_REQUEST: entry<{ message: string }>(400, (p) => p.message, 'correct the named field and send the request again'),
  PAYLOAD_TOO_LARGE: entry(413, () => 'the request body is too large', 'send a smaller body'),
  UNSUPPORTED_MEDIA_TYPE: entry(415, () => 'the request body must be JSON', 'send Content-Type: application/json'),
  AUTH_REQUIRED: entry(401, () => 'this route needs credentials', 'send Authorization: Bearer <token> (the operator token from admin.token in the CS data directory, or a component token)'),
  BAD_TOKEN: entry(401, () => 'the bearer token is not valid for this route', 'use the operator token from admin.token in the CS data directory, or the token the component received at registration'),
  TOKEN_EXPIRED: entry<{ expiredAt: string }>(401, (p) => `the component token expired at ${p.expiredAt}`, 'register the component again with the vault passphrase (or renew the token before it expires)'),
  BAD_PASSPHRASE: entry(401, () => 'the vault passphrase is wrong', 'run `boomerang cs passphrase` on the configuration server and register with the passphrase it prints'),
  REVOKED: entry<{ kind: string; name: string }>(
    403,
    (p) => `the credentials of ${p.kind} ${p.name} have been revoked`,
    'if the component should be trusted again, register it again with the vault passphrase: it gets a new identity',
  ),
  COMPONENT_NOT_ALLOWED: entry<{ kind: string; action: string }>(403, (p) => `a ${p.kind} may not ${p.action}`, 'send this request with the credentials of the right component kind'),
  NOT_FOUND: entry<{ what: string; id: string }>(404, (p) => `${p.what} ${p.id} does not exist`, 'list the existing ones and use one of their ids'),
  ROUTE_NOT_FOUND: entry<{ method: string; url: string }>(404, (p) => `no route ${p.method} ${p.url}`, 'see /openapi.json for the routes'),
  NAME_TAKEN: entry<{ what: string; name: string }>(409, (p) => `a ${p.what} named ${p.name} already exists`, 'choose another name'),
  TRANSITION_NOT_ALLOWED: entry<{ item: string; operation: string; state: string; allowed: string }>(
    409,
    (p) => `cannot ${p.operation} item ${p.item}: it is ${p.state}; allowed now: ${p.allowed}`,
    'wait for the running job to finish, or run one of the operations allowed now',
  ),
  ITEM_EXISTS: entry<{ machine: string; item: string }>(409, (p) => `machine ${p.machine} is already protected by item ${p.item}`, 'disable protection of that item first'),
  DISK_IN_USE: entry<{ disk: string; item: string }>(409, (p) => `disk ${p.disk} is already replicated by item ${p.item}`, 'give the disk a unique id'),
  COMPONENT_KIND_MISMATCH: entry<{ id: string; kind: string; expected: string }>(400, (p) => `component ${p.id} is a ${p.kind}, not a ${p.expected}`, 'pick a component of the right kind from GET /v1/components'),
  COMPONENT_REVOKED: entry<{ id: string }>(409, (p) => `component ${p.id} is revoked`, 'pick a component that is not revoked'),
  POLICY_NOT_FORWARD: entry<{ id: string }>(400, (p) => `policy ${p.id} is a failback policy`, 'enable replication with the forward policy of a pair; its failback policy is used automatically'),
  POLICY_INVALID: entry<{ message: string }>(400, (p) => p.message, 'choose values inside the documented ranges'),
  FABRIC_KIND_NOT_AVAILABLE: entry<{ kind: string }>(400, (p) => `the ${p.kind} fabric is not available in this version`, 'use a physical, vsphere or azure fabric'),
  FABRIC_CONFIG_INVALID: entry<{ kind: string; message: string }>(
    400,
    (p) => `the settings of the ${p.kind} fabric are not valid: ${p.message}`,
    'a vsphere fabric takes config.url (https://<vcenter>/sdk), config.username, a password, and one of config.thumbprint, config.caPem or config.insecure; an azure fabric takes config.tenantId, config.clientId, config.subscriptionId (and optionally authorityHost, armEndpoint, caPem) and a clientSecret; a physical fabric takes no secret',
  ),
  FABRIC_LOGIN_FAILED: entry<{ url: string; username: string; service?: string }>(
    400,
    (p) => `${p.service ?? 'vCenter'} ${p.url} refused the login of ${p.username}`,
    'check the account and its secret — vCenter: the user name (a domain account is written user@domain) and the password; Azure: config.tenantId, config.clientId and the clientSecret — then send the request again',
  ),
  FABRIC_TLS_UNTRUSTED: entry<{ url: string; message: string; service?: string }>(
    400,
    (p) => `the certificate of ${p.service ?? 'vCenter'} ${p.url} is not trusted: ${p.message}`,
    'give config.thumbprint (the SHA-1 or SHA-256 fingerprint of the vCenter certificate) or config.caPem (the vCenter CA certificate); config.insecure only in a lab',
  ),
  FABRIC_UNREACHABLE: entry<{ url: string; message: string; service?: string }>(
    502,
    (p) => `cannot reach ${p.service ?? 'vCenter'} ${p.url}: ${p.message}`,
    'check the URL and that the configuration server can reach it on that port (firewall, proxy, DNS); a private CA must be given as config.caPem',
  ),
  FABRIC_TIMEOUT: entry<{ url: string; seconds: number; service?: string }>(
    504,
    (p) => `${p.service ?? 'vCenter'} ${p.url} did not answer within ${p.seconds} s`,
    'check the load of vCenter and the network to it, or start the configuration server with a longer fabricRefreshTimeoutSeconds',
  ),
  FABRIC_DISCOVERY_FAILED: entry<{ url: string; message: string; service?: string }>(
    502,
    (p) => `reading from ${p.service ?? 'vCenter'} ${p.url} failed: ${p.message}`,
    'see the configuration server log, correct the cause and refresh the fabric again',
  ),
  FABRIC_PRIVILEGES_MISSING: entry<{ username: string; missing: string }>(
    403,
    (p) => `the account ${p.username} lacks privileges Boomerang needs: ${p.missing}`,
    'give the account a role with the privileges listed (datastore browse, allocate space and file management; virtual machine inventory, configuration, interaction and snapshot management; resource assignment) on the datacenters, then refresh the fabric',
  ),
  FABRIC_NO_INVENTORY: entry<{ name: string; kind: string }>(409, (p) => `fabric ${p.name} is a ${p.kind} fabric: it has no vCenter inventory`, 'read the inventory of a vsphere fabric'),
  CSR_INVALID: entry<{ reason: string }>(400, (p) => `the certificate signing request is not usable: ${p.reason}`, 'send a PEM PKCS#10 request for an ECDSA P-256 key, signed with that key, or omit csrPem to let the CS generate the key'),
  HEARTBEAT_KIND_MISMATCH: entry<{ kind: string }>(400, (p) => `a ${p.kind} must report its health in the "${p.kind}" section, and only there`, 'send the health section that matches the component kind'),
  JOB_FINISHED: entry<{ id: string; state: string }>(409, (p) => `job ${p.id} has already finished (${p.state})`, 'nothing to cancel'),
  JOB_KIND_UNKNOWN: entry<{ kind: string }>(501, (p) => `this configuration server has no job kind ${p.kind}`, 'start the configuration server with the lifecycle job kinds'),
  JOB_PARAMS_INVALID: entry<{ kind: string; message: string }>(400, (p) => `parameters of job ${p.kind} do not validate: ${p.message}`, 'fix the parameters'),
  JOB_INTERRUPTED: entry<{ task: string }>(
    500,
    (p) => `the configuration server stopped while task "${p.task}" was running, and that task cannot be resumed safely`,
    'check the item and its machines, then run the operation again',
  ),
  TASK_FAILED: entry<{ task: string; message: string }>(500, (p) => `task "${p.task}" failed: ${p.message}`, 'see the configuration server log for details, correct the cause and run the operation again'),
  COMPENSATION_FAILED: entry<{ cause: string; message: string }>(
    500,
    (p) => `rolling back after ${p.cause} failed: ${p.message}`,
    'check the item and its machines by hand; the rollback did not finish',
  ),
  INTERNAL: entry(500, () => 'internal error', 'see the configuration server log'),
  PREFLIGHT_FAILED: entry<{ operation: string; item: string; failed: string }>(
    422,
    (p) => `cannot ${p.operation} item ${p.item}: pre-flight checks failed (${p.failed})`,
    'fix every problem listed (each has its own remedy), or see them with `boomerang check <operation> <item>`, then run the operation again',
  ),
  COMMAND_FAILED: entry<{ kind: string; component: string; code: string; message: string }>(
    502,
    (p) => `${p.component} could not ${p.kind}: [${p.code}] ${p.message}`,
    'see the component log for details, correct the cause and run the operation again',
  ),
  COMMAND_TIMEOUT: entry<{ kind: string; component: string; seconds: number }>(
    504,
    (p) => `${p.component} did not carry out ${p.kind} within ${p.seconds} s`,
    'check that the component is running and can reach the configuration server (its heartbeats), then run the operation again',
  ),
  POWER_HOOK_FAILED: entry<{ machine: string; action: string; message: string }>(
    502,
    (p) => `the power hook could not ${p.action} machine ${p.machine}: ${p.message}`,
    'run the machine’s hook command by hand to see why, fix it (or the machine), then run the operation again',
  ),
  FAILBACK_NOT_CONFIGURED: entry<{ item: string; missing: string }>(
    409,
    (p) => `item ${p.item} has no ${p.missing} for the failback direction`,
    'enable replication with recoveryMachineId, failbackAgentName, failbackPsId and failbackMtId so the item can be reprotected and failed back',
  ),
  NOTHING_TO_CONFIRM: entry<{ job: string }>(409, (p) => `job ${p.job} is not waiting for a power operation to be confirmed`, 'see `boomerang job show` for what the job is doing'),
  NO_RECOVERY_POINT: entry<{ disk: string; point: string }>(
    409,
    (p) => `disk ${p.disk} has no recovery point matching "${p.point}"`,
    'list the recovery points with `boomerang rp list <item>` and choose one that exists',
  ),
  NO_FINAL_BOOKMARK: entry<{ disk: string }>(
    409,
    (p) => `disk ${p.disk} has no final bookmark from the machine's shutdown: its agent did not stop cleanly, so the last writes cannot be proven to have arrived`,
    'start the machine again (cancel the failback), let replication catch up, then fail back again',
  ),
  RESYNC_TIMEOUT: entry<{ disk: string; seconds: number }>(
    504,
    (p) => `disk ${p.disk} did not finish its resync within ${p.seconds} s`,
    'check the agent, process server and master target health and the network between them, then run the operation again',
  ),
  '806': entry<Missing>(
    503,
    (p) => `no heartbeat from process server ${p.name} (${p.id}): ${heartbeatAge(p)}`,
    'restart the process server service (boomerang ps) and check the network between it and the configuration server',
    {
      message: (p) => `プロセス サーバー ${p.name} (${p.id}) からのハートビートがありません: ${heartbeatAgeJa(p)}`,
      remedy: 'プロセス サーバー サービス (boomerang ps) を再起動し、構成サーバーとの間のネットワークを確認してください',
    },
  ),
  '78022': entry<Missing>(
    503,
    (p) => `no heartbeat from master target ${p.name} (${p.id}): ${heartbeatAge(p)}`,
    'restart the master target service (boomerang mt) and check the network between it and the configuration server',
    {
      message: (p) => `マスター ターゲット ${p.name} (${p.id}) からのハートビートがありません: ${heartbeatAgeJa(p)}`,
      remedy: 'マスター ターゲット サービス (boomerang mt) を再起動し、構成サーバーとの間のネットワークを確認してください',
    },
  ),
  '78174': entry<Missing>(
    503,
    (p) => `no heartbeat from the agent on ${p.name} (${p.id}): ${heartbeatAge(p)}`,
    'restart the agent (mobility service, boomerang agent) on the machine and check the network between it and the configuration server',
    {
      message: (p) => `${p.name} (${p.id}) のエージェントからのハートビートがありません: ${heartbeatAgeJa(p)}`,
      remedy: 'マシン上のエージェント (モビリティ サービス、boomerang agent) を再起動し、構成サーバーとの間のネットワークを確認してください',
    },
  ),
  '95226': entry<{ name: string; seconds: number }>(
    504,
    (p) => `the agent ${p.name} on the machine to replicate from has not registered with the configuration server after ${p.seconds} s`,
    'check the network (VPN/ExpressRoute) between the machine and the configuration server and that the agent service runs, then run the operation again',
    {
      message: (p) => `レプリケーション元マシンのエージェント ${p.name} が ${p.seconds} 秒待っても構成サーバーに登録されていません`,
      remedy: 'マシンと構成サーバーの間のネットワーク (VPN/ExpressRoute) とエージェント サービスの稼働を確認してから、操作をもう一度実行してください',
    },
  ),
} as const;

export type CsErrorCode = keyof typeof CATALOGUE;
type ParamsOf<C extends CsErrorCode> = (typeof CATALOGUE)[C] extends CatalogueEntry<infer P> ? P : never;
type Args<C extends CsErrorCode> = ParamsOf<C> extends void ? [] : [params: ParamsOf<C>];

/** A coded error with the HTTP status and remedy to show; `field` names the input at fault. */
export class CsError extends BoomerangError {
  readonly status: number;
  readonly remedy: string;
  field: string | undefined;
  /** Several findings behind one error (pre-flight results), shown to the caller as they are. */
  problems: readonly object[] | undefined;
  constructor(code: string, status: number, message: string, remedy: string, options: { cause?: unknown; field?: string } = {}) {
    super(code, message, options.cause === undefined ? {} : { cause: options.cause });
    this.status = status;
    this.remedy = remedy;
    this.field = options.field;
  }

  /** Names the request field at fault; returns this so it chains after csError(). */
  at(field: string): this {
    this.field = field;
    return this;
  }

  with(problems: readonly object[]): this {
    this.problems = problems;
    return this;
  }
}

export function csError<C extends CsErrorCode>(code: C, ...args: Args<C>): CsError {
  const e = CATALOGUE[code] as CatalogueEntry<unknown>;
  return new CsError(code, e.status, e.message(args[0]), e.remedy);
}

/** Message and remedy of a code in a language, for pre-flight and health views. */
export function describe<C extends CsErrorCode>(code: C, lang: 'en' | 'ja', ...args: Args<C>): { code: C; message: string; remedy: string } {
  const e = CATALOGUE[code] as CatalogueEntry<unknown>;
  const text = lang === 'ja' && e.ja !== undefined ? e.ja : e;
  return { code, message: text.message(args[0]), remedy: text.remedy };
}

/** The wire shape of an error: what the API answers and what a failed job or task records. */
export interface CodedError {
  code: string;
  message: string;
  remedy?: string;
}

export function toCodedError(err: CsError): CodedError & { problems?: readonly object[] } {
  return { code: err.code, message: err.message, remedy: err.remedy, ...(err.problems === undefined ? {} : { problems: err.problems }) };
}
