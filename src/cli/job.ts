import { InvalidArgumentError, Option, type Command } from 'commander';
import type { ItemView } from '../cs/inventory/items.js';
import { ConfigError } from '../replication/errors.js';
import type { JobView } from '../cs/jobs/store.js';
import {
  action,
  addCsOptions,
  CONNECTION_HELP,
  EXIT,
  exitCodesHelp,
  formatError,
  indent,
  operatorCommand,
  printJson,
  query,
  renderFields,
  renderTable,
  resolveItem,
  withApi,
  type CsFlags,
} from './cs-api.js';
import { followJob, timeoutOption, type WaitFlags } from './operations.js';
import { bar, percent } from './progress.js';

/** `boomerang job …`: the durable jobs behind every operation. */

const JOB_STATES = ['queued', 'running', 'compensating', 'succeeded', 'failed', 'cancelled'];

const READ_EXIT_HELP = exitCodesHelp([0, 1, 2], { 1: 'the API refused the request, the job or item does not exist, or the CS could not be reached' });

function time(iso: string | null): string {
  return iso === null ? '-' : iso.replace(/\.\d{3}Z$/, 'Z');
}

function jobPath(id: string): string {
  if (id.trim() === '') throw new ConfigError('USAGE', 'a job id is required');
  return `/v1/jobs/${encodeURIComponent(id)}`;
}

function limit(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new InvalidArgumentError('must be an integer from 1 to 1000');
  return n;
}

function itemOf(job: JobView, names: ReadonlyMap<string, string>): string {
  const m = /^item\/(.+)$/.exec(job.resource ?? '');
  if (!m) return job.resource ?? '-';
  return names.get(m[1]!) ?? m[1]!;
}

function listCommand(): Command {
  return addCsOptions(
    operatorCommand('list')
      .description('list jobs, newest first')
      .option('--item <item>', 'only the jobs of this item (id or machine name)')
      .addOption(new Option('--state <state>', 'only jobs in this state').choices(JOB_STATES))
      .addOption(new Option('--limit <n>', 'at most this many').argParser(limit).default(50)),
  )
    .addHelpText('after', `${CONNECTION_HELP}\n${READ_EXIT_HELP}`)
    .action(
      action(async (o: CsFlags & { item?: string; state?: string; limit: number }) =>
        withApi(o, async (api) => {
          const item = o.item === undefined ? undefined : await resolveItem(api, o.item);
          const jobs = await api.get<JobView[]>(`/v1/jobs${query({ state: o.state, resource: item ? `item/${item.id}` : undefined, limit: o.limit })}`);
          if (o.output === 'json') return printJson(jobs);
          const items = item ? [item] : jobs.some((j) => j.resource?.startsWith('item/')) ? await api.get<ItemView[]>('/v1/items') : [];
          const names = new Map(items.map((i) => [i.id, i.machineName]));
          const rows = jobs.map((j) => [j.id, j.kind, itemOf(j, names), j.state, percent(j.state === 'succeeded' ? 1 : j.progress).trim(), time(j.createdAt), time(j.finishedAt), j.error?.code ?? '']);
          process.stdout.write(renderTable(['ID', 'KIND', 'ITEM', 'STATE', 'PROGRESS', 'CREATED', 'FINISHED', 'ERROR'], rows));
          if (rows.length === 0) process.stdout.write('(no jobs)\n');
        }),
      ),
    );
}

function showCommand(): Command {
  return addCsOptions(operatorCommand('show').description('show one job: its state, every task with progress, timestamps and error').argument('<job>', 'job id'))
    .addHelpText('after', `${CONNECTION_HELP}\n${READ_EXIT_HELP}`)
    .action(
      action(async (id: string, o: CsFlags) =>
        withApi(o, async (api) => {
          const job = await api.get<JobView>(jobPath(id));
          if (o.output === 'json') return printJson(job);
          const fields: [string, string][] = [
            ['Job', job.id],
            ['Kind', job.kind],
            ['State', `${job.state}${job.cancelRequested && !['succeeded', 'failed', 'cancelled'].includes(job.state) ? ' (cancel requested)' : ''}`],
            ['Progress', percent(job.state === 'succeeded' ? 1 : job.progress).trim()],
            ['Resource', job.resource ?? '-'],
            ['Params', JSON.stringify(job.params)],
            ['Created', time(job.createdAt)],
            ['Started', time(job.startedAt)],
            ['Finished', time(job.finishedAt)],
          ];
          if (job.resumes > 0) fields.push(['Resumed', `${job.resumes} time(s) after a CS restart`]);
          process.stdout.write(renderFields(fields));
          process.stdout.write('\nTasks:\n');
          const rows = job.tasks.map((t) => {
            const f = t.state === 'skipped' ? undefined : t.state === 'succeeded' ? 1 : t.progress.total > 0 ? t.progress.done / t.progress.total : 0;
            return [String(t.index + 1), t.name, t.state, `${bar(f, 10)} ${percent(f).trim()}`, t.progress.detail ?? '', time(t.startedAt), time(t.finishedAt), t.runs > 1 ? String(t.runs) : ''];
          });
          process.stdout.write(indent(renderTable(['#', 'TASK', 'STATE', 'PROGRESS', 'DETAIL', 'STARTED', 'FINISHED', 'RUNS'], rows)));
          for (const t of job.tasks) if (t.error) process.stdout.write(`\ntask ${t.name}: ${formatError(t.error.code, t.error.message, t.error.remedy)}`);
          if (job.error) process.stdout.write(`\n${formatError(job.error.code, job.error.message, job.error.remedy)}`);
        }),
      ),
    );
}

function watchCommand(): Command {
  return addCsOptions(
    operatorCommand('watch')
      .description('follow a job until it ends: one line per task with a bar, percentage and detail')
      .argument('<job>', 'job id')
      .addOption(timeoutOption()),
  )
    .addHelpText(
      'after',
      `
On a terminal the lines are redrawn in place; otherwise a line is appended whenever a task's
progress changes. With -o json stdout gets only the final job (the API's JSON). Ctrl-C stops
watching, not the job.
${CONNECTION_HELP}
${exitCodesHelp([0, 1, 2, 4], { 0: 'the job succeeded', 1: 'the job failed or was cancelled, the job does not exist, or the CS could not be reached' })}`,
    )
    .action(
      action(async (id: string, o: CsFlags & WaitFlags) =>
        withApi(o, async (api) => {
          const job = await api.get<JobView>(jobPath(id));
          return followJob(api, o, job, `job ${job.id} (${job.kind})`);
        }),
      ),
    );
}

function cancelCommand(): Command {
  return addCsOptions(operatorCommand('cancel').description('cancel a job: a queued one at once, a running one after its rollback').argument('<job>', 'job id'))
    .addHelpText('after', `\nThe job is asked to stop; follow its rollback with \`boomerang job watch <job>\`.\n${CONNECTION_HELP}\n${exitCodesHelp([0, 1, 2], { 0: 'the cancel was accepted', 1: 'the job has already finished (JOB_FINISHED), does not exist, or the CS could not be reached' })}`)
    .action(
      action(async (id: string, o: CsFlags) =>
        withApi(o, async (api) => {
          const job = await api.post<JobView>(`${jobPath(id)}/cancel`, {});
          if (o.output === 'json') return printJson(job);
          process.stdout.write(`job ${job.id} (${job.kind}): ${job.state}${job.state === 'cancelled' ? '' : ', cancel requested'}\n`);
          return EXIT.OK;
        }),
      ),
    );
}

function confirmCommand(): Command {
  return addCsOptions(
    operatorCommand('confirm').description('confirm that the machines a job waits for (power hooks `manual`) were started or stopped by hand').argument('<job>', 'job id'),
  )
    .addHelpText('after', `\n${CONNECTION_HELP}\n${exitCodesHelp([0, 1, 2], { 0: 'confirmed; the job goes on', 1: 'the job waits for no confirmation (NOTHING_TO_CONFIRM), does not exist, or the CS could not be reached' })}`)
    .action(
      action(async (id: string, o: CsFlags) =>
        withApi(o, async (api) => {
          const r = await api.post<{ confirmed: { machineId: string; action: string }[] }>(`${jobPath(id)}/confirm`, {});
          if (o.output === 'json') return printJson(r);
          for (const c of r.confirmed) process.stdout.write(`confirmed: ${c.action} of machine ${c.machineId}\n`);
          return EXIT.OK;
        }),
      ),
    );
}

export function jobCommand(): Command {
  return operatorCommand('job')
    .description('jobs: list, show, watch live progress, cancel, confirm a manual power operation')
    .addCommand(listCommand())
    .addCommand(showCommand())
    .addCommand(watchCommand())
    .addCommand(cancelCommand())
    .addCommand(confirmCommand());
}
