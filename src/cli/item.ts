import { Option, type Command } from 'commander';
import { readFile } from 'node:fs/promises';
import type { ComponentView } from '../cs/components/views.js';
import { ITEM_STATES } from '../cs/domain/item-state.js';
import type { ItemView } from '../cs/inventory/items.js';
import type { MachineView } from '../cs/inventory/machines.js';
import type { PolicyView } from '../cs/inventory/policies.js';
import type { JobView } from '../cs/jobs/store.js';
import { ConfigError, errorMessage } from '../replication/errors.js';
import { parseBytes } from '../runtime/config.js';
import {
  action,
  addCsOptions,
  agentsById,
  CliError,
  CONNECTION_HELP,
  EXIT,
  exitCodesHelp,
  formatBytes,
  formatSeconds,
  indent,
  itemRpoSeconds,
  operatorCommand,
  operatorOperations,
  printJson,
  query,
  renderFields,
  renderTable,
  resolveItem,
  withApi,
  type CsApi,
  type CsFlags,
} from './cs-api.js';
import { addWaitOptions, afterStart, OPERATION_EXIT_HELP, runItemOperation, WAIT_HELP, type WaitFlags } from './operations.js';

/** `boomerang item …`: protected items, as the configuration server sees them. */

const READ_EXIT_HELP = exitCodesHelp([0, 1, 2], { 1: 'the API refused the request, the item does not exist, or the CS could not be reached' });

function time(iso: string | null): string {
  return iso === null ? '-' : iso.replace(/\.\d{3}Z$/, 'Z');
}

function diskSummary(item: ItemView): string {
  const ids = item.disks.map((d) => d.diskId);
  const shown = ids.slice(0, 3).join(',');
  return ids.length > 3 ? `${shown},+${ids.length - 3}` : shown;
}

function rpoText(item: ItemView, agents: ReadonlyMap<string, ComponentView>): string {
  const rpo = itemRpoSeconds(item, agents);
  return rpo === undefined ? '-' : formatSeconds(rpo);
}

function listCommand(): Command {
  return addCsOptions(
    operatorCommand('list')
      .description('list protected items: name, id, state, direction, RPO (when the agent reports it), disks')
      .addOption(new Option('--state <state>', 'only items in this state').choices([...ITEM_STATES])),
  )
    .addHelpText('after', `${CONNECTION_HELP}\n${READ_EXIT_HELP}`)
    .action(
      action(async (o: CsFlags & { state?: string }) =>
        withApi(o, async (api) => {
          const items = await api.get<ItemView[]>(`/v1/items${query({ state: o.state })}`);
          if (o.output === 'json') return printJson(items);
          const agents = items.length > 0 ? await agentsById(api) : new Map<string, ComponentView>();
          const rows = items.map((i) => [i.machineName, i.id, i.state, i.direction, rpoText(i, agents), diskSummary(i)]);
          process.stdout.write(renderTable(['NAME', 'ID', 'STATE', 'DIRECTION', 'RPO', 'DISKS'], rows));
          if (rows.length === 0) process.stdout.write(o.state ? `(no item is ${o.state})\n` : '(no protected items; enable replication with `boomerang item enable`)\n');
        }),
      ),
    );
}

async function showItem(api: CsApi, item: ItemView): Promise<void> {
  const [agents, jobs] = await Promise.all([agentsById(api), api.get<JobView[]>(`/v1/jobs${query({ resource: `item/${item.id}`, limit: 5 })}`)]);
  const fields: [string, string][] = [
    ['Name', item.machineName],
    ['ID', item.id],
    ['Machine', item.machineId],
    ['State', item.state],
    ['Direction', item.direction === 'forward' ? 'forward (A→B)' : 'failback (B→A)'],
    ['RPO', rpoText(item, agents)],
    ['Allowed', operatorOperations(item).join(', ') || '-'],
    ['Policy', `${item.forwardPolicyId} (forward), ${item.failbackPolicyId} (failback)`],
    ['Agent', item.agentId],
    ['Process server', item.psId],
    ['Master target', item.mtId],
    ['Recovery machine', item.recoveryMachineId ?? '-'],
    ['Failback agent', item.failbackAgentId ?? (item.failbackAgentName ? `${item.failbackAgentName} (not registered yet)` : '-')],
    ['Failback PS', item.failbackPsId ?? '-'],
    ['Failback MT', item.failbackMtId ?? '-'],
    ['Failover point', item.failoverPoint === null ? '-' : JSON.stringify(item.failoverPoint)],
    ['Created', time(item.createdAt)],
    ['Updated', time(item.updatedAt)],
  ];
  process.stdout.write(renderFields(fields));
  process.stdout.write('\nDisks:\n');
  process.stdout.write(
    indent(renderTable(
      ['DISK', 'SIZE', 'SOURCE', 'TARGET', 'POSITION'],
      item.disks.map((d) => [d.diskId, formatBytes(d.sizeBytes), d.sourcePath, d.targetPath, d.lineage === null ? '-' : `${d.lineage.slice(0, 8)}/${d.lastSeq ?? 0}`]),
    )),
  );
  process.stdout.write('\nRecent jobs:\n');
  if (jobs.length === 0) process.stdout.write('  (none)\n');
  else
    process.stdout.write(
      indent(renderTable(
        ['JOB', 'KIND', 'STATE', 'CREATED', 'FINISHED'],
        jobs.map((j) => [j.id, j.kind, j.state, time(j.createdAt), time(j.finishedAt)]),
      )),
    );
}

function showCommand(): Command {
  return addCsOptions(operatorCommand('show').description('show one item: state, direction, RPO, allowed operations, components, disks, recent jobs').argument('<item>', 'item id or machine name'))
    .addHelpText('after', `${CONNECTION_HELP}\n${READ_EXIT_HELP}`)
    .action(
      action(async (ref: string, o: CsFlags) =>
        withApi(o, async (api) => {
          const item = await resolveItem(api, ref);
          if (o.output === 'json') return printJson(await api.get<ItemView>(`/v1/items/${item.id}`));
          await showItem(api, item);
        }),
      ),
    );
}

// ---------------------------------------------------------------------------------------------
// enable

interface EnableFlags extends CsFlags, WaitFlags {
  file?: string;
  machine?: string;
  policy?: string;
  agent?: string;
  ps?: string;
  mt?: string;
  disk?: string[];
  recoveryMachine?: string;
  failbackAgentName?: string;
  failbackPs?: string;
  failbackMt?: string;
}

const DISK_KEYS: Record<string, 'diskId' | 'sizeBytes' | 'sourcePath' | 'targetPath'> = { id: 'diskId', size: 'sizeBytes', source: 'sourcePath', target: 'targetPath' };

/** `id=disk0,size=10GiB,source=/dev/sdb,target=/srv/replica/disk0.img` */
export function parseDisk(spec: string): { diskId: string; sizeBytes: number; sourcePath: string; targetPath: string } {
  const out: Record<string, string | number> = {};
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? undefined : DISK_KEYS[part.slice(0, eq).trim()];
    if (key === undefined) throw new ConfigError('USAGE', `--disk ${spec}: "${part}" is not one of id=, size=, source=, target=`);
    const value = part.slice(eq + 1).trim();
    out[key] = key === 'sizeBytes' ? parseBytes(value) : value;
  }
  const missing = Object.entries(DISK_KEYS)
    .filter(([, k]) => out[k] === undefined || out[k] === '')
    .map(([flag]) => `${flag}=`);
  if (missing.length > 0) throw new ConfigError('USAGE', `--disk ${spec}: missing ${missing.join(', ')}`);
  return out as { diskId: string; sizeBytes: number; sourcePath: string; targetPath: string };
}

interface Named {
  id: string;
  name: string;
}

/** An object by id or name among `all`; a name shared by several is ambiguous (exit 2). */
function pick<T extends Named>(all: readonly T[], ref: string, what: string, flag: string, describe: (x: T) => string = (x) => `${x.name}  ${x.id}`): T {
  const byId = all.find((x) => x.id.toLowerCase() === ref.toLowerCase());
  if (byId) return byId;
  const named = all.filter((x) => x.name === ref);
  if (named.length === 1) return named[0]!;
  if (named.length > 1) throw new CliError(`${what.toUpperCase().replace(/ /g, '_')}_AMBIGUOUS`, `${named.length} ${what}s are named ${ref}:\n${named.map((x) => `  ${describe(x)}`).join('\n')}`, `give ${flag} the id instead`, EXIT.USAGE);
  const known = all.slice(0, 20).map((x) => `  ${describe(x)}`);
  throw new CliError('NOT_FOUND', `no ${what} has the id or name ${ref}${known.length > 0 ? `; known ${what}s:\n${known.join('\n')}` : `; there are none`}`, `give ${flag} one of the ids or names above`, EXIT.USAGE);
}

/** The only one there is, when a flag is left out. */
function onlyOne<T extends Named>(all: readonly T[], what: string, flag: string): T {
  if (all.length === 1) return all[0]!;
  throw new ConfigError('USAGE', all.length === 0 ? `no ${what} is known to the configuration server; register one first` : `there are ${all.length} ${what}s: give ${flag}`);
}

async function readBodyFile(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    if (file === '-') {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      text = Buffer.concat(chunks).toString('utf8');
    } else text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError('USAGE', `cannot read --file ${file}: ${errorMessage(err)}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('USAGE', `--file ${file} is not JSON: ${errorMessage(err)}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ConfigError('USAGE', `--file ${file} must hold a JSON object (the body of POST /v1/items)`);
  return value as Record<string, unknown>;
}

/** The POST /v1/items body: --file, then the flags over it, names resolved to ids, defaults filled in. */
export async function enableBody(api: CsApi, o: EnableFlags): Promise<Record<string, unknown>> {
  const body: Record<string, unknown> = o.file === undefined ? {} : await readBodyFile(o.file);
  if (o.disk !== undefined && o.disk.length > 0) body.disks = o.disk.map(parseDisk);
  const missing = [o.machine === undefined && body.machineId === undefined ? '--machine' : undefined, body.disks === undefined ? '--disk (at least one)' : undefined].filter((m) => m !== undefined);
  if (missing.length > 0) throw new ConfigError('USAGE', `item enable needs ${missing.join(' and ')}, or a --file with them`);

  if (o.failbackAgentName !== undefined) body.failbackAgentName = o.failbackAgentName;

  let machine: MachineView | undefined;
  if (o.machine !== undefined || o.recoveryMachine !== undefined) {
    const machines = await api.get<MachineView[]>('/v1/machines');
    const describe = (m: MachineView) => `${m.name}  ${m.id}  fabric ${m.fabricId}`;
    machine = o.machine === undefined ? undefined : pick(machines, o.machine, 'machine', '--machine', describe);
    if (machine) body.machineId = machine.id;
    if (o.recoveryMachine !== undefined) body.recoveryMachineId = pick(machines, o.recoveryMachine, 'machine', '--recovery-machine', describe).id;
  }
  if (o.policy !== undefined || body.policyId === undefined) {
    const policies = (await api.get<PolicyView[]>('/v1/policies')).filter((p) => o.policy !== undefined || p.direction === 'forward');
    body.policyId = (o.policy === undefined ? onlyOne(policies, 'forward policy', '--policy') : pick(policies, o.policy, 'policy', '--policy')).id;
  }
  for (const [flag, field, kind] of [
    ['agent', 'agentId', 'agent'],
    ['ps', 'psId', 'ps'],
    ['mt', 'mtId', 'mt'],
  ] as const) {
    const ref = o[flag];
    if (ref === undefined && body[field] !== undefined) continue;
    const all = (await api.get<ComponentView[]>(`/v1/components?kind=${kind}`)).filter((c) => c.status !== 'revoked');
    const what = kind === 'agent' ? 'agent' : kind === 'ps' ? 'process server' : 'master target';
    if (ref !== undefined) body[field] = pick(all, ref, what, `--${flag}`).id;
    else if (kind === 'agent') {
      // The agent of a machine registers under the machine's name.
      if (machine === undefined && typeof body.machineId === 'string') machine = await api.get<MachineView>(`/v1/machines/${encodeURIComponent(body.machineId)}`);
      const named = machine?.name;
      const own = named === undefined ? [] : all.filter((c) => c.name === named);
      if (own.length !== 1) throw new ConfigError('USAGE', machine ? `no single agent is registered as ${machine.name}: give --agent` : 'give --agent (or agentId in --file)');
      body[field] = own[0]!.id;
    } else body[field] = onlyOne(all, what, `--${flag}`).id;
  }
  for (const [flag, field, kind, what] of [
    ['failbackPs', 'failbackPsId', 'ps', 'process server'],
    ['failbackMt', 'failbackMtId', 'mt', 'master target'],
  ] as const) {
    const ref = o[flag];
    if (ref === undefined) continue;
    const all = (await api.get<ComponentView[]>(`/v1/components?kind=${kind}`)).filter((c) => c.status !== 'revoked');
    body[field] = pick(all, ref, what, flag === 'failbackPs' ? '--failback-ps' : '--failback-mt').id;
  }
  return body;
}

function enableCommand(): Command {
  const cmd = operatorCommand('enable')
    .description('enable replication of a machine: creates the item and runs its initial replication')
    .option('--file <file>', "the body of POST /v1/items as JSON ('-' reads stdin); the flags below override its fields")
    .option('--machine <machine>', 'the machine to protect (name or id)')
    .option('--policy <policy>', 'forward policy (name or id); default: the only forward policy')
    .option('--agent <agent>', "the machine's agent (name or id); default: the agent registered under the machine's name")
    .option('--ps <ps>', 'process server (name or id); default: the only one registered')
    .option('--mt <mt>', 'master target (name or id); default: the only one registered')
    .option('--disk <spec>', 'a disk to replicate, repeatable: id=<disk id>,size=<bytes or 10GiB>,source=<path on the machine>,target=<replica path on the MT>', (v: string, acc: string[] = []) => [...acc, v])
    .option('--recovery-machine <machine>', 'for reprotect and failback: the machine that runs the workload after a failover (name or id)')
    .option('--failback-agent-name <name>', 'for reprotect: the name the agent on the recovery machine registers with')
    .option('--failback-ps <ps>', 'for reprotect: the process server at the recovery site (name or id)')
    .option('--failback-mt <mt>', 'for reprotect: the master target at the primary site (name or id)');
  addWaitOptions(addCsOptions(cmd));
  return cmd
    .addHelpText(
      'after',
      `
Examples:
  boomerang item enable --machine web-1 --disk id=web-1-d0,size=40GiB,source=/dev/sdb,target=/srv/replica/web-1-d0.img
  boomerang item enable --file item.json --no-wait
${WAIT_HELP}
${CONNECTION_HELP}
${OPERATION_EXIT_HELP}`,
    )
    .action(
      action(async (o: EnableFlags) =>
        withApi(o, async (api) => {
          const body = await enableBody(api, o);
          const started = await api.post<{ item: ItemView; job: JobView }>('/v1/items', body);
          return afterStart(api, o, started, `enable replication of ${started.item.machineName}`);
        }),
      ),
    );
}

function disableCommand(): Command {
  const cmd = operatorCommand('disable').description('disable protection of an item: replication stops and the item ends ProtectionDisabled').argument('<item>', 'item id or machine name');
  addWaitOptions(addCsOptions(cmd));
  return cmd
    .addHelpText('after', `${WAIT_HELP}\n${CONNECTION_HELP}\n${OPERATION_EXIT_HELP}`)
    .action(action(async (ref: string, o: CsFlags & WaitFlags) => runItemOperation(o, ref, 'disable', 'disable protection')));
}

export function itemCommand(): Command {
  return operatorCommand('item')
    .description('protected items: list, show, enable replication, disable protection')
    .addCommand(listCommand())
    .addCommand(showCommand())
    .addCommand(enableCommand())
    .addCommand(disableCommand());
}
