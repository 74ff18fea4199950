import { Command, InvalidArgumentError, Option } from 'commander';
import type { ItemView } from '../cs/inventory/items.js';
import type { JobView } from '../cs/jobs/store.js';
import { ConfigError } from '../replication/errors.js';
import { action, addCsOptions, CONNECTION_HELP, EXIT, exitCodesHelp, formatError, operatorCommand, operatorOperations, printJson, resolveItem, withApi, type CsApi, type CsFlags } from './cs-api.js';
import { JobProgress, onInterrupt, watchJob } from './progress.js';

/**
 * The lifecycle operations (DESIGN §2) as commands: each starts a job on the configuration server
 * and, by default, follows it to its end with live progress.
 */

export interface WaitFlags {
  wait?: boolean;
  timeout?: number;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a number of seconds greater than 0');
  return n;
}

export const WAIT_HELP = `
Waiting: by default the command waits for the job to end and shows its progress (one line per
task, redrawn in place on a terminal, appended lines otherwise), whether or not stdout is a
terminal, so that the exit code says how the operation ended. --no-wait returns as soon as the
job is queued and prints its id (with -o json: the API's answer, { item, job }); follow it with
\`boomerang job watch <job>\`. With -o json and waiting, stdout gets only the final { item, job }
and progress goes to stderr when stderr is a terminal. Ctrl-C stops watching, not the job.`;

export function addWaitOptions(cmd: Command): Command {
  return cmd
    .option('--wait', 'wait for the job to end, showing its progress (the default)')
    .option('--no-wait', 'return once the job is queued, printing its id')
    .addOption(timeoutOption());
}

export function timeoutOption(): Option {
  return new Option('--timeout <seconds>', 'give up waiting after this long (exit 4; the job goes on)').argParser(seconds);
}

/** Exit codes of a command that starts a job. */
export const OPERATION_EXIT_HELP = exitCodesHelp([0, 1, 2, 3, 4], {
  0: 'the job succeeded (with --no-wait: the job was queued)',
  1: 'the job failed or was cancelled, the API refused the operation (e.g.\n     TRANSITION_NOT_ALLOWED in this state), or the CS could not be reached',
});

/**
 * Prints how a finished job ended (success on stdout unless `quiet`, failure on stderr as
 * `error [CODE]: …` with its remedy); returns the exit code (0 succeeded, 1 otherwise).
 */
export function reportJobEnd(job: JobView, what: string, item?: ItemView, quiet = false): number {
  if (job.state === 'succeeded') {
    const where = item ? `: ${item.machineName} is ${item.state} (replicating ${item.direction})` : '';
    if (!quiet) process.stdout.write(`${what} succeeded${where}\n`);
    return EXIT.OK;
  }
  const failed = job.tasks.find((t) => t.state === 'failed');
  const error = job.error ?? failed?.error ?? { code: 'JOB_FAILED', message: 'the job failed without a recorded error' };
  process.stderr.write(
    job.state === 'cancelled'
      ? formatError('JOB_CANCELLED', `${what} was cancelled (job ${job.id})`, job.error?.remedy)
      : formatError(error.code, `${what} failed${failed ? ` in task ${failed.name}` : ''}: ${error.message}`, error.remedy),
  );
  if (item) {
    const allowed = operatorOperations(item);
    process.stderr.write(`  now: ${item.machineName} is ${item.state} (replicating ${item.direction}); allowed: ${allowed.join(', ') || 'none'}\n`);
  }
  return EXIT.FAILED;
}

/** Follows a job with progress; prints the outcome in the chosen format; returns the exit code. */
export async function followJob(api: CsApi, flags: CsFlags & WaitFlags, job: JobView, what: string, itemId?: string): Promise<number> {
  const progress = flags.output === 'table' ? new JobProgress(process.stdout) : process.stderr.isTTY ? new JobProgress(process.stderr) : undefined;
  const release = onInterrupt(job.id);
  let final: JobView;
  try {
    final = await watchJob(api, job.id, { ...(flags.timeout === undefined ? {} : { timeoutMs: flags.timeout * 1000 }), ...(progress ? { onUpdate: (j: JobView) => progress.update(j) } : {}) });
  } finally {
    release();
  }
  const item = itemId === undefined ? undefined : await api.get<ItemView>(`/v1/items/${encodeURIComponent(itemId)}`);
  if (flags.output === 'json') printJson(item === undefined ? final : { item, job: final });
  return reportJobEnd(final, what, item, flags.output === 'json');
}

/** After the API accepted an operation: --no-wait prints the job id, otherwise the job is followed. */
export async function afterStart(api: CsApi, flags: CsFlags & WaitFlags, started: { item: ItemView; job: JobView }, what: string): Promise<number> {
  if (flags.wait === false) {
    if (flags.output === 'json') printJson(started);
    else {
      process.stdout.write(`${started.job.id}\n`);
      process.stderr.write(`${what} started (job ${started.job.id}); follow it with: boomerang job watch ${started.job.id}\n`);
    }
    return EXIT.OK;
  }
  return followJob(api, flags, started.job, what, started.item.id);
}

/** POST /v1/items/:id/<path> for the resolved item, then afterStart. */
export async function runItemOperation(flags: CsFlags & WaitFlags, ref: string, path: string, verb: string, body: Record<string, unknown> = {}): Promise<number> {
  return withApi(flags, async (api) => {
    const item = await resolveItem(api, ref);
    const started = await api.post<{ item: ItemView; job: JobView }>(`/v1/items/${encodeURIComponent(item.id)}/${path}`, body);
    return afterStart(api, flags, started, `${verb} of ${item.machineName}`);
  });
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/i;

/** A recovery point choice: a keyword or a point id as given, a time normalised to ISO 8601 UTC. */
export function parsePoint(value: string): string {
  const v = value.trim();
  if (v === '') throw new ConfigError('USAGE', '--point must not be empty');
  if (!ISO_TIME.test(v)) return v;
  const ms = Date.parse(v.replace(' ', 'T'));
  if (Number.isNaN(ms)) throw new ConfigError('USAGE', `--point ${value} looks like a time but is not a valid one (e.g. 2030-01-01T12:00:00Z)`);
  return new Date(ms).toISOString();
}

const POINT_HELP =
  "latest (drain pending changes first, the default), latest-processed, latest-app (app-consistent), an ISO 8601 time, or a recovery point id from `boomerang rp list <item>`";

interface OperationSpec {
  name: string;
  path: string;
  verb: string;
  description: string;
  configure?: (cmd: Command) => Command;
  body?: (opts: Record<string, unknown>) => Record<string, unknown>;
  help?: string;
}

function itemOperationCommand(spec: OperationSpec): Command {
  let cmd = operatorCommand(spec.name).description(spec.description).argument('<item>', 'item id or machine name');
  if (spec.configure) cmd = spec.configure(cmd);
  addWaitOptions(addCsOptions(cmd));
  cmd.addHelpText('after', `${spec.help ?? ''}${WAIT_HELP}\n${CONNECTION_HELP}\n${OPERATION_EXIT_HELP}`);
  return cmd.action(
    action(async (ref: string, opts: CsFlags & WaitFlags & Record<string, unknown>) => runItemOperation(opts, ref, spec.path, spec.verb, spec.body ? spec.body(opts) : {})),
  );
}

export function failoverCommand(): Command {
  return itemOperationCommand({
    name: 'failover',
    path: 'failover',
    verb: 'failover',
    description: 'fail an item over to the recovery site at a recovery point (then commit, or change-point)',
    configure: (c) => c.option('--point <point>', POINT_HELP).option('--shutdown-source', 'shut the source machine down first (drains pending changes for a planned failover)'),
    body: (o) => ({ ...(o.point === undefined ? {} : { point: parsePoint(String(o.point)) }), ...(o.shutdownSource === true ? { shutdownSource: true } : {}) }),
    help: '\nUntil commit another recovery point can be chosen with `boomerang change-point`.\n',
  });
}

export function changePointCommand(): Command {
  return itemOperationCommand({
    name: 'change-point',
    path: 'change-point',
    verb: 'change of recovery point',
    description: 'after a failover and before commit, bring the failed-over machine up at another recovery point',
    configure: (c) => c.requiredOption('--point <point>', POINT_HELP.replace(', the default', '')),
    body: (o) => ({ point: parsePoint(String(o.point)) }),
  });
}

export function commitCommand(): Command {
  return itemOperationCommand({
    name: 'commit',
    path: 'commit',
    verb: 'commit',
    description: 'commit a failover or failback: the recovery point can no longer be changed, the item can be reprotected',
  });
}

export function reprotectCommand(): Command {
  return itemOperationCommand({
    name: 'reprotect',
    path: 'reprotect',
    verb: 'reprotect',
    description: 'replicate a committed item the other way (delta resync when the disks of the other side still exist)',
    configure: (c) =>
      c
        .addOption(new Option('--location <where>', 'original: the machine and disks the item came from (delta resync); alternate: a new machine and disks (full copy)').choices(['original', 'alternate']))
        .option('--machine-name <name>', 'alternate location on vSphere: name of the VM created on the master target’s host (default: <machine>-recovered)')
        .option('--datastore <name>', 'alternate location on vSphere: datastore of the new VM’s disks (default: the master target VM’s)'),
    body: (o) => ({
      ...(o.location === undefined ? {} : { location: o.location }),
      ...(o.machineName === undefined ? {} : { machineName: o.machineName }),
      ...(o.datastore === undefined ? {} : { datastore: o.datastore }),
    }),
  });
}

export function failbackCommand(): Command {
  return itemOperationCommand({
    name: 'failback',
    path: 'failback',
    verb: 'failback',
    description: 'planned failover back to the original site: stop the recovery machine, drain every change, start the original one',
    help: '\nA failback that failed can be run again, or cancelled with `boomerang cancel <item>`.\n',
  });
}

export function cancelCommand(): Command {
  return itemOperationCommand({
    name: 'cancel',
    path: 'cancel-failback',
    verb: 'cancel of the failback',
    description: 'cancel a failed failback: the item goes back to replicating to the original site as before the failback',
  });
}
