import { Command, CommanderError, Option } from 'commander';
import { readFile } from 'node:fs/promises';
import type { ComponentView } from '../cs/components/views.js';
import type { ItemView } from '../cs/inventory/items.js';
import { BoomerangError, ConfigError, errorMessage, RemoteError } from '../replication/errors.js';
import { ApiError, HttpsJsonClient, type ApiProblem } from '../runtime/https-client.js';

export { ApiError, type ApiProblem } from '../runtime/https-client.js';
import { readTokenFile } from '../security/token.js';

/**
 * What every operator command shares: the connection to the configuration server (flags with
 * environment fallbacks), a JSON client that keeps the API's whole error (remedy, pre-flight
 * problems), exit codes, error printing, item name resolution and plain tables.
 */

/** Exit codes scripts can rely on. */
export const EXIT = Object.freeze({ OK: 0, FAILED: 1, USAGE: 2, PREFLIGHT: 3, TIMEOUT: 4 });

const EXIT_TEXT: Record<number, string> = {
  0: 'success',
  1: 'failed: the API refused the request or the CS could not be reached',
  2: 'bad usage or configuration (unknown option, no --cs, unreadable CA or\n     token file, ambiguous item name)',
  3: 'pre-flight checks failed; every failed check is printed with its code and remedy',
  4: 'timed out waiting (--timeout); the job goes on on the configuration server',
};

/** The "Exit codes:" block of a command's --help, for the codes the command can give. */
export function exitCodesHelp(codes: readonly number[], overrides: Record<number, string> = {}): string {
  return `\nExit codes:\n${codes.map((c) => `  ${c}  ${overrides[c] ?? EXIT_TEXT[c]}`).join('\n')}\n`;
}

export const ENV = Object.freeze({ cs: 'BOOMERANG_CS', ca: 'BOOMERANG_CA', tokenFile: 'BOOMERANG_TOKEN_FILE' });

export type Lang = 'en' | 'ja';
export type Output = 'table' | 'json';

export interface ConnectionFlags {
  cs?: string;
  ca?: string;
  tokenFile?: string;
  lang?: Lang;
}

export interface CsFlags extends ConnectionFlags {
  output: Output;
  lang: Lang;
}

export const CONNECTION_HELP = `
Connection: --cs, --ca and --token-file, or the environment variables ${ENV.cs},
${ENV.ca} and ${ENV.tokenFile} (a flag wins over its variable). The operator
token is admin.token in the CS data directory; the CA is its ca.pem.`;

/** --cs/--ca/--token-file (each falling back to its environment variable). */
export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .option('--cs <url>', `configuration server, e.g. https://cs.example:9443 (default: $${ENV.cs})`)
    .option('--ca <file>', `the CS’s ca.pem (default: $${ENV.ca})`)
    .option('--token-file <file>', `operator token, admin.token in the CS data dir (default: $${ENV.tokenFile})`);
}

export function langOption(): Option {
  return new Option('--lang <lang>', 'language of messages and remedies (sent as Accept-Language)').choices(['en', 'ja']).default('en');
}

export function outputOption(): Option {
  return new Option('-o, --output <format>', "table for people; json prints the API's JSON and nothing else on stdout").choices(['table', 'json']).default('table');
}

/** The options every operator command takes: connection, -o/--output and --lang. */
export function addCsOptions(cmd: Command): Command {
  return addConnectionOptions(cmd).addOption(outputOption()).addOption(langOption());
}

/**
 * A command whose usage errors reach main's handler (exit 2) instead of exiting 1 inside
 * Commander: addCommand() does not pass the program's exitOverride down.
 */
export function operatorCommand(name: string): Command {
  return new Command(name).exitOverride().showHelpAfterError('(add --help for usage)');
}

/** The wait ended before the job did. */
export class WaitTimeoutError extends BoomerangError {
  constructor(message: string) {
    super('WAIT_TIMEOUT', message);
  }
}

/** A coded failure the CLI found itself (unknown item, unreachable CS), with what to do. */
export class CliError extends BoomerangError {
  constructor(
    code: string,
    message: string,
    readonly remedy?: string,
    readonly exitCode: number = EXIT.FAILED,
  ) {
    super(code, message);
  }
}

function baseUrl(value: string): string {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `https://${value}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError('USAGE', `--cs ${value} is not a URL (e.g. https://cs.example:9443)`);
  }
  if (url.protocol !== 'https:') throw new ConfigError('USAGE', `--cs ${value}: the configuration server speaks HTTPS only`);
  return url.origin;
}

/** A JSON client for the CS operator API: the shared HTTPS client, with the CLI's errors. */
export class CsApi {
  private readonly client: HttpsJsonClient;

  private constructor(
    readonly url: string,
    caPem: string,
    token: string,
    lang: Lang,
  ) {
    this.client = new HttpsJsonClient(url, caPem, token, { accept: 'application/json', 'accept-language': lang });
  }

  /** Flags first, then BOOMERANG_CS / BOOMERANG_CA / BOOMERANG_TOKEN_FILE; a missing one is a usage error (exit 2). */
  static async connect(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): Promise<CsApi> {
    const pick = (flag: string | undefined, name: string): string | undefined => (flag !== undefined && flag !== '' ? flag : env[name] !== undefined && env[name] !== '' ? env[name] : undefined);
    const cs = pick(flags.cs, ENV.cs);
    const ca = pick(flags.ca, ENV.ca);
    const tokenFile = pick(flags.tokenFile, ENV.tokenFile);
    const missing = [
      cs === undefined ? `--cs <url> (or ${ENV.cs})` : undefined,
      ca === undefined ? `--ca <file> (or ${ENV.ca})` : undefined,
      tokenFile === undefined ? `--token-file <file> (or ${ENV.tokenFile})` : undefined,
    ].filter((m) => m !== undefined);
    if (missing.length > 0) throw new ConfigError('USAGE', `no configuration server to talk to: give ${missing.join(', ')}`);
    const url = baseUrl(cs!);
    const caPem = await readFile(ca!, 'utf8').catch((err: Error) => {
      throw new ConfigError('TLS_MATERIAL', `cannot read the CS CA ${ca}: ${err.message}`);
    });
    return new CsApi(url, caPem, await readTokenFile(tokenFile!), flags.lang ?? 'en');
  }

  get<T>(path: string, signal?: AbortSignal): Promise<T> {
    return this.call<T>('GET', path, undefined, signal);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.call<T>('POST', path, body);
  }

  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    try {
      return await this.client.call<T>(method, path, body, {}, signal);
    } catch (err) {
      if (err instanceof RemoteError || signal?.aborted) throw err;
      const code = (err as { code?: string }).code;
      throw new CliError(
        'CS_UNREACHABLE',
        `cannot reach the configuration server at ${this.url}: ${errorMessage(err)}${code && !errorMessage(err).includes(code) ? ` (${code})` : ''}`,
        `check --cs (or ${ENV.cs}), that the configuration server is running, and that --ca (or ${ENV.ca}) is its ca.pem`,
      );
    }
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

/** Opens a client, runs `fn`, closes the client. */
export async function withApi<T>(flags: ConnectionFlags, fn: (api: CsApi) => Promise<T>): Promise<T> {
  const api = await CsApi.connect(flags);
  try {
    return await fn(api);
  } finally {
    await api.close();
  }
}

export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}

// ---------------------------------------------------------------------------------------------
// Errors and exit codes

function write(stream: NodeJS.WritableStream, text: string): void {
  stream.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** `error [CODE]: message`, the remedy, and every problem (pre-flight checks with code and remedy, or fields). */
export function formatError(code: string, message: string, remedy?: string, problems: readonly ApiProblem[] = []): string {
  const lines = [`error [${code}]: ${message}`];
  if (remedy) lines.push(`  remedy: ${remedy}`);
  for (const p of problems) {
    if (p.id !== undefined) {
      lines.push(`  FAIL ${p.id}${p.code === undefined ? '' : ` (${p.code})`}: ${p.message}`);
      if (p.remedy) lines.push(`       remedy: ${p.remedy}`);
    } else {
      lines.push(`  - ${p.field ? `${p.field}: ` : ''}${p.message}`);
      if (p.remedy) lines.push(`    remedy: ${p.remedy}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Prints an error the way scripts and people expect it and returns its exit code. */
export function reportError(err: unknown, stream: NodeJS.WritableStream = process.stderr): number {
  if (err instanceof ApiError) {
    write(stream, formatError(err.body.code, err.body.message, err.body.remedy, err.body.problems));
    return err.body.code === 'PREFLIGHT_FAILED' ? EXIT.PREFLIGHT : EXIT.FAILED;
  }
  if (err instanceof WaitTimeoutError) {
    write(stream, formatError(err.code, err.message));
    return EXIT.TIMEOUT;
  }
  if (err instanceof CliError) {
    write(stream, formatError(err.code, err.message, err.remedy));
    return err.exitCode;
  }
  if (err instanceof ConfigError) {
    write(stream, formatError(err.code, err.message));
    return EXIT.USAGE;
  }
  if (err instanceof BoomerangError) {
    write(stream, formatError(err.code, err.message));
    return EXIT.FAILED;
  }
  throw err;
}

/**
 * Wraps a command action: its result is the exit code; errors are printed by reportError.
 * Commander's own errors (usage, --help) and unexpected ones go on to main.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      if (code !== undefined && code !== 0) process.exitCode = code;
    } catch (err) {
      if (err instanceof CommanderError) throw err;
      process.exitCode = reportError(err);
    }
  };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

// ---------------------------------------------------------------------------------------------
// Tables and formats

/** Columns padded to their widest cell, two spaces apart, no trailing blanks. */
export function renderTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

/** Indents every line that has something on it. */
export function indent(text: string, by = '  '): string {
  return text.replace(/^(?=.)/gm, by);
}

/** `Key:  value` lines, keys aligned. */
export function renderFields(fields: readonly (readonly [string, string])[]): string {
  const w = Math.max(...fields.map(([k]) => k.length)) + 1;
  return fields.map(([k, v]) => `${`${k}:`.padEnd(w)}  ${v}`.trimEnd()).join('\n') + '\n';
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

export function formatSeconds(s: number): string {
  const t = Math.round(s);
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m${t % 60 === 0 ? '' : `${t % 60}s`}`;
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  return `${h}h${m === 0 ? '' : `${m}m`}`;
}

// ---------------------------------------------------------------------------------------------
// Items

/** States in which an item no longer holds its machine (as the CS's RELEASED_STATES). */
const RELEASED: readonly string[] = ['ProtectionDisabled', 'Migrated'];

function describeItems(items: readonly ItemView[]): string {
  return items.map((i) => `  ${i.machineName}  ${i.id}  ${i.state}`).join('\n');
}

/**
 * An item by id or machine name. Several items can carry one name (machines of the same name in
 * two fabrics, or a machine protected again after its protection was disabled): when exactly
 * one of them is live it is chosen, otherwise the name is ambiguous (exit 2) and the candidates
 * are listed. An unknown name or id exits 1, like the API's 404, listing similar names.
 */
export async function resolveItem(api: CsApi, ref: string): Promise<ItemView> {
  if (ref.trim() === '') throw new ConfigError('USAGE', 'the item must be an item id or a machine name');
  const items = await api.get<ItemView[]>('/v1/items');
  const byId = items.find((i) => i.id.toLowerCase() === ref.toLowerCase());
  if (byId) return byId;
  const named = items.filter((i) => i.machineName === ref);
  const live = named.filter((i) => !RELEASED.includes(i.state));
  if (named.length === 1) return named[0]!;
  if (live.length === 1) return live[0]!;
  if (named.length > 1) {
    throw new CliError('ITEM_AMBIGUOUS', `${named.length} items are named ${ref}:\n${describeItems(named)}`, 'give the item id instead of the name', EXIT.USAGE);
  }
  const lower = ref.toLowerCase();
  const similar = items.filter((i) => i.machineName.toLowerCase().includes(lower) || lower.includes(i.machineName.toLowerCase()));
  const shown = (similar.length > 0 ? similar : items).slice(0, 20);
  const list = shown.length === 0 ? 'there are no protected items' : `${similar.length > 0 ? 'similar' : 'known'} items:\n${describeItems(shown)}${items.length > shown.length && similar.length === 0 ? `\n  … and ${items.length - shown.length} more (boomerang item list)` : ''}`;
  throw new CliError('NOT_FOUND', `no item has the id or machine name ${ref}; ${list}`, 'give an item id or machine name from `boomerang item list`');
}

/** What an operator can do to the item now (the jobs' own …Done/…Aborted/…Failed steps left out). */
export function operatorOperations(item: ItemView): string[] {
  return item.allowedOperations.filter((op) => !/(Done|Aborted|Failed)$/.test(op));
}

/** States in which data flows, so an RPO means something. */
const REPLICATING: readonly string[] = ['InitialReplication', 'Protected', 'Reprotecting', 'FailingBack'];

/**
 * The item's current RPO in seconds when it is known: the view's own figure if the CS provides
 * one, else the largest RPO the replicating agent reports in its heartbeats for the item's disks.
 */
export function itemRpoSeconds(item: ItemView, agents: ReadonlyMap<string, ComponentView>): number | undefined {
  const own = (item as { rpoSeconds?: unknown }).rpoSeconds;
  if (typeof own === 'number') return own;
  if (!REPLICATING.includes(item.state)) return undefined;
  const agentId = item.direction === 'failback' ? item.failbackAgentId : item.agentId;
  const agent = agentId === null ? undefined : agents.get(agentId);
  if (!agent || agent.status === 'revoked') return undefined;
  const disks = new Set(item.disks.map((d) => d.diskId));
  const rpos = (agent.health?.agent?.disks ?? []).filter((d) => disks.has(d.diskId)).map((d) => d.rpoSeconds);
  return rpos.length === 0 ? undefined : Math.max(...rpos);
}

/** The agents by id, for itemRpoSeconds; empty when they cannot be read (the RPO is then unknown). */
export async function agentsById(api: CsApi): Promise<Map<string, ComponentView>> {
  try {
    const agents = await api.get<ComponentView[]>('/v1/components?kind=agent');
    return new Map(agents.map((a) => [a.id, a]));
  } catch (err) {
    if (err instanceof ApiError) return new Map();
    throw err;
  }
}
