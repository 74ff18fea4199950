import { open, readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { FabricView } from '../cs/inventory/fabrics.js';
import type { InventoryView } from '../cs/inventory/vsphere-inventory-view.js';
import { ConfigError, errorMessage } from '../replication/errors.js';
import {
  action,
  addCsOptions,
  CliError,
  CONNECTION_HELP,
  exitCodesHelp,
  formatBytes,
  formatError,
  operatorCommand,
  printJson,
  renderFields,
  renderTable,
  withApi,
  type CsApi,
  type CsFlags,
} from './cs-api.js';

/** `boomerang fabric …`: where machines live; for vCenter, the inventory the CS reads from it. */

const READ_EXIT_HELP = exitCodesHelp([0, 1, 2], { 1: 'the API refused the request, the fabric does not exist, or the CS could not be reached' });

function time(iso: string | null): string {
  return iso === null ? '-' : iso.replace(/\.\d{3}Z$/, 'Z');
}

/** A fabric by id or name; an unknown one exits 1 and lists the fabrics there are. */
async function resolveFabric(api: CsApi, ref: string): Promise<FabricView> {
  if (ref.trim() === '') throw new ConfigError('USAGE', 'the fabric must be a fabric id or name');
  const fabrics = await api.get<FabricView[]>('/v1/fabrics');
  const found = fabrics.find((f) => f.id.toLowerCase() === ref.toLowerCase()) ?? fabrics.find((f) => f.name === ref);
  if (found) return found;
  const known = fabrics.length === 0 ? 'there are no fabrics' : `known fabrics: ${fabrics.map((f) => `${f.name} (${f.kind})`).join(', ')}`;
  throw new CliError('NOT_FOUND', `no fabric has the id or name ${ref}; ${known}`, 'give a fabric id or name from `boomerang fabric list`');
}

/**
 * The password from its file: a regular file only its owner can read (like the token files);
 * one trailing newline is dropped, nothing else (a password may end in spaces).
 */
async function readPasswordFile(path: string): Promise<string> {
  let text: string;
  try {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new ConfigError('PASSWORD_FILE', `password file ${path} is not a regular file`);
      if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) throw new ConfigError('PASSWORD_FILE', `password file ${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${path}`);
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError('PASSWORD_FILE', `cannot read password file ${path}: ${errorMessage(err)}`, { cause: err });
  }
  const password = text.replace(/\r?\n$/, '');
  if (password === '') throw new ConfigError('PASSWORD_FILE', `password file ${path} is empty`);
  return password;
}

function printFabric(f: FabricView): void {
  const fields: [string, string][] = [
    ['Fabric', f.id],
    ['Name', f.name],
    ['Kind', f.kind],
  ];
  for (const [k, v] of Object.entries(f.config)) {
    const shown = k === 'caPem' ? '(a CA certificate)' : typeof v === 'object' && v !== null ? Object.entries(v).map(([a, b]) => `${a}=${String(b)}`).join(', ') : String(v);
    fields.push([k, shown]);
  }
  if (f.passwordSet !== undefined) fields.push(['Password', f.passwordSet ? 'set (kept by the CS, never shown)' : 'not set']);
  if (f.secretSet !== undefined) fields.push(['Client secret', f.secretSet ? 'set (kept by the CS, never shown)' : 'not set']);
  fields.push(['Created', time(f.createdAt)]);
  process.stdout.write(renderFields(fields));
}

interface AddVsphereFlags extends CsFlags {
  name: string;
  url: string;
  username: string;
  passwordFile: string;
  thumbprint?: string;
  vcenterCa?: string;
  insecure?: boolean;
  mtVm: Record<string, string>;
}

/** `--mt-vm mt01=mt01-vm`, repeatable: the VM each master target runs in. */
function collectMtVm(value: string, previous: Record<string, string>): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0 || at === value.length - 1) throw new ConfigError('USAGE', `--mt-vm takes <master target>=<VM name>, not ${value}`);
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

function addVsphereCommand(): Command {
  return addCsOptions(
    operatorCommand('vsphere')
      .description('add a vCenter: the CS logs in with the account first and stores nothing if that fails, then reads its inventory')
      .requiredOption('--name <name>', 'the fabric’s name in Boomerang')
      .requiredOption('--url <url>', 'the vCenter SDK endpoint, e.g. https://vcenter.example/sdk')
      .requiredOption('--username <user>', 'the vCenter account, e.g. boomerang@vsphere.local')
      .requiredOption('--password-file <file>', 'file holding the account’s password (mode 0600; one trailing newline is ignored)')
      .option('--thumbprint <hex>', 'trust the vCenter certificate with this SHA-1 or SHA-256 fingerprint')
      .option('--vcenter-ca <pem-file>', 'trust the vCenter certificate signed by this CA (PEM file; --ca is the CS’s own CA)')
      .option('--insecure', 'accept any vCenter certificate (labs only)')
      .option('--mt-vm <mt=vm>', 'the VM a master target runs in (repeat for each MT at this site); needed to reprotect to vSphere', collectMtVm, {}),
  )
    .addHelpText(
      'after',
      `
Exactly one of --thumbprint, --vcenter-ca and --insecure says how the vCenter
certificate is trusted. The password is sent to the CS, which keeps it and never
shows it again (fabric list shows "Password: set").

Examples:
  boomerang fabric add vsphere --name vc01 --url https://vc01.example/sdk \\
    --username boomerang@vsphere.local --password-file ~/.vc01.pass \\
    --thumbprint 5E:8F:…:A1 --mt-vm mt-a=mt01-vm

Reprotect to vSphere hot-adds the VM's disks to its master target's VM, so each
master target of the site is named with --mt-vm (its component name = its VM).
${CONNECTION_HELP}
${exitCodesHelp([0, 1, 2], { 1: 'vCenter refused the login, its certificate is not trusted, it cannot be reached, or the CS refused the request', 2: 'bad usage, or an unreadable password or CA file' })}`,
    )
    .action(
      action(async (o: AddVsphereFlags) => {
        const trust = [o.thumbprint, o.vcenterCa, o.insecure ? true : undefined].filter((x) => x !== undefined);
        if (trust.length !== 1) throw new ConfigError('USAGE', 'give exactly one of --thumbprint, --vcenter-ca and --insecure');
        const password = await readPasswordFile(o.passwordFile);
        const caPem =
          o.vcenterCa === undefined
            ? undefined
            : await readFile(o.vcenterCa, 'utf8').catch((err: Error) => {
                throw new ConfigError('USAGE', `cannot read the vCenter CA ${o.vcenterCa}: ${err.message}`);
              });
        const config = {
          url: o.url,
          username: o.username,
          ...(o.thumbprint ? { thumbprint: o.thumbprint } : {}),
          ...(caPem ? { caPem } : {}),
          ...(o.insecure ? { insecure: true } : {}),
          ...(Object.keys(o.mtVm).length > 0 ? { masterTargetVms: o.mtVm } : {}),
        };
        return withApi(o, async (api) => {
          const fabric = await api.post<FabricView>('/v1/fabrics', { kind: 'vsphere', name: o.name, config, password });
          if (o.output === 'json') return printJson(fabric);
          printFabric(fabric);
          process.stdout.write(`\nThe CS is reading the inventory: boomerang fabric inventory ${fabric.name}\n`);
        });
      }),
    );
}

interface AddAzureFlags extends CsFlags {
  name: string;
  tenantId: string;
  clientId: string;
  subscriptionId: string;
  clientSecretFile: string;
  authorityHost?: string;
  armEndpoint?: string;
  armCa?: string;
}

function addAzureCommand(): Command {
  return addCsOptions(
    operatorCommand('azure')
      .description('add an Azure subscription: the CS gets a token for the app registration and reads the subscription first, and stores nothing if that fails')
      .requiredOption('--name <name>', 'the fabric’s name in Boomerang')
      .requiredOption('--tenant-id <uuid>', 'the Microsoft Entra tenant of the app registration')
      .requiredOption('--client-id <uuid>', 'the app registration (service principal) Boomerang signs in as')
      .requiredOption('--subscription-id <uuid>', 'the subscription of the VMs')
      .requiredOption('--client-secret-file <file>', 'file holding the app’s client secret (mode 0600; one trailing newline is ignored)')
      .option('--authority-host <url>', 'Entra ID endpoint (default https://login.microsoftonline.com; sovereign clouds differ)')
      .option('--arm-endpoint <url>', 'Resource Manager endpoint (default https://management.azure.com)')
      .option('--arm-ca <pem-file>', 'trust these endpoints’ certificates signed by this CA (PEM file; a private CA, e.g. a lab)'),
  )
    .addHelpText(
      'after',
      `
The client secret is sent to the CS, which keeps it and never shows it again.
The app needs Microsoft.Compute/virtualMachines read, start, deallocate and
powerOff on the subscription (e.g. the Virtual Machine Contributor role).
${CONNECTION_HELP}
${exitCodesHelp([0, 1, 2], { 1: 'Entra ID refused the secret, Resource Manager refused the subscription, an endpoint cannot be reached, or the CS refused the request', 2: 'bad usage, or an unreadable secret or CA file' })}`,
    )
    .action(
      action(async (o: AddAzureFlags) => {
        const clientSecret = await readPasswordFile(o.clientSecretFile);
        const caPem =
          o.armCa === undefined
            ? undefined
            : await readFile(o.armCa, 'utf8').catch((err: Error) => {
                throw new ConfigError('USAGE', `cannot read the CA ${o.armCa}: ${err.message}`);
              });
        const config = {
          tenantId: o.tenantId,
          clientId: o.clientId,
          subscriptionId: o.subscriptionId,
          ...(o.authorityHost ? { authorityHost: o.authorityHost } : {}),
          ...(o.armEndpoint ? { armEndpoint: o.armEndpoint } : {}),
          ...(caPem ? { caPem } : {}),
        };
        return withApi(o, async (api) => {
          const fabric = await api.post<FabricView>('/v1/fabrics', { kind: 'azure', name: o.name, config, clientSecret });
          if (o.output === 'json') return printJson(fabric);
          printFabric(fabric);
        });
      }),
    );
}

function addPhysicalCommand(): Command {
  return addCsOptions(operatorCommand('physical').description('add a physical fabric (machines powered by hooks or by hand)').requiredOption('--name <name>', 'the fabric’s name'))
    .addHelpText('after', `${CONNECTION_HELP}\n${READ_EXIT_HELP}`)
    .action(
      action(async (o: CsFlags & { name: string }) =>
        withApi(o, async (api) => {
          const fabric = await api.post<FabricView>('/v1/fabrics', { kind: 'physical', name: o.name });
          if (o.output === 'json') return printJson(fabric);
          printFabric(fabric);
        }),
      ),
    );
}

function addCommand(): Command {
  return operatorCommand('add').description('add a fabric: vsphere (a vCenter), azure (a subscription) or physical').addCommand(addVsphereCommand()).addCommand(addAzureCommand()).addCommand(addPhysicalCommand());
}

function listCommand(): Command {
  return addCsOptions(operatorCommand('list').description('list fabrics: name, kind, id, and for vCenters the URL and account'))
    .addHelpText('after', `${CONNECTION_HELP}\n${READ_EXIT_HELP}`)
    .action(
      action(async (o: CsFlags) =>
        withApi(o, async (api) => {
          const fabrics = await api.get<FabricView[]>('/v1/fabrics');
          if (o.output === 'json') return printJson(fabrics);
          const rows = fabrics.map((f) => [f.name, f.kind, f.id, typeof f.config['url'] === 'string' ? f.config['url'] : '-', typeof f.config['username'] === 'string' ? f.config['username'] : '-', time(f.createdAt)]);
          process.stdout.write(renderTable(['NAME', 'KIND', 'ID', 'URL', 'ACCOUNT', 'CREATED'], rows));
          if (rows.length === 0) process.stdout.write('(no fabrics)\n');
        }),
      ),
    );
}

function percentOf(part: number, total: number): string {
  return total > 0 ? `${Math.round((part / total) * 100)}%` : '-';
}

/** The inventory as three tables with the facts the vSphere checks use; missing privileges are in the error block. */
function printInventory(inv: InventoryView): void {
  const fields: [string, string][] = [
    ['Fabric', `${inv.fabricName} (${inv.fabricId})`],
    ['Status', inv.status],
    ['vCenter', inv.vcenter ? `${inv.vcenter.fullName} (API ${inv.vcenter.apiVersion})` : '-'],
    ['Read at', time(inv.refreshedAt)],
    ['Last try', time(inv.attemptedAt)],
    ['Datacenters', inv.datacenters.join(', ') || '-'],
  ];
  process.stdout.write(renderFields(fields));
  if (inv.error) process.stdout.write(`\n${formatError(inv.error.code, inv.error.message, inv.error.remedy)}`);
  const hosts = inv.hosts.map((h) => [
    h.name,
    h.datacenter,
    `${h.product.name} ${h.product.version}`,
    h.licence ? `${h.licence.name}${h.licence.readOnlyApi ? ' (read-only API)' : ''}` : '-',
    `${formatBytes(h.memoryUsedBytes)} / ${formatBytes(h.memoryBytes)}`,
    h.connectionState,
    h.datastores.join(','),
  ]);
  process.stdout.write(`\nHosts:\n${renderTable(['HOST', 'DATACENTER', 'PRODUCT', 'LICENCE', 'MEMORY USED', 'STATE', 'DATASTORES'], hosts)}`);
  const datastores = inv.datastores.map((d) => [
    d.name,
    d.type,
    formatBytes(d.capacityBytes),
    `${formatBytes(d.freeBytes)} (${percentOf(d.freeBytes, d.capacityBytes)})`,
    d.accessible ? 'yes' : 'no',
    d.mounts.map((m) => `${m.host}:${m.accessMode === 'readWrite' ? 'rw' : m.accessMode === 'readOnly' ? 'ro' : '?'}`).join(','),
  ]);
  process.stdout.write(`\nDatastores:\n${renderTable(['DATASTORE', 'TYPE', 'CAPACITY', 'FREE', 'ACCESSIBLE', 'MOUNTS'], datastores)}`);
  if (datastores.length === 0) process.stdout.write('(none visible)\n');
  const vms = inv.vms.map((v) => [
    v.name,
    v.host ?? '-',
    v.powerState,
    v.guestFamily,
    v.toolsRunningStatus.replace(/^guestTools/, ''),
    String(v.snapshotCount),
    v.enableUuid ? 'TRUE' : '-',
    v.disks.map((d) => `${d.fileName} ${formatBytes(d.capacityBytes)} ${d.controllerType}${d.uuid ? ` ${d.uuid}` : ''}`).join('; '),
  ]);
  process.stdout.write(`\nVMs:\n${renderTable(['VM', 'HOST', 'POWER', 'GUEST', 'TOOLS', 'SNAPSHOTS', 'ENABLEUUID', 'DISKS'], vms)}`);
}

function inventoryCommand(): Command {
  return addCsOptions(operatorCommand('inventory').description('show the vCenter inventory the CS last read: hosts, datastores, VMs').argument('<fabric>', 'fabric id or name'))
    .addHelpText(
      'after',
      `
Hosts show product, licence (a free ESXi licence has a read-only API) and memory;
datastores their type (VMFS, NFS, NFS41, vsan), space and which hosts mount them
read-write (rw) or read-only (ro); VMs their host, power, guest family, VMware
Tools, snapshots, disk.EnableUUID and disks (file, size, controller, UUID).
Status lacking-privileges means the account cannot see or do everything Boomerang
needs: the missing privileges are listed. The inventory is read again every
15 minutes by default; boomerang fabric refresh reads it now.
${CONNECTION_HELP}
${READ_EXIT_HELP}`,
    )
    .action(
      action(async (ref: string, o: CsFlags) =>
        withApi(o, async (api) => {
          const fabric = await resolveFabric(api, ref);
          const inv = await api.get<InventoryView>(`/v1/fabrics/${fabric.id}/inventory`);
          if (o.output === 'json') return printJson(inv);
          printInventory(inv);
        }),
      ),
    );
}

function refreshCommand(): Command {
  return addCsOptions(operatorCommand('refresh').description('read the vCenter inventory now and show it').argument('<fabric>', 'fabric id or name'))
    .addHelpText('after', `${CONNECTION_HELP}\n${exitCodesHelp([0, 1, 2], { 1: 'the read failed (vCenter unreachable, login refused, timeout; the code says which), or the CS refused the request' })}`)
    .action(
      action(async (ref: string, o: CsFlags) =>
        withApi(o, async (api) => {
          const fabric = await resolveFabric(api, ref);
          const inv = await api.post<InventoryView>(`/v1/fabrics/${fabric.id}/refresh`);
          if (o.output === 'json') return printJson(inv);
          printInventory(inv);
        }),
      ),
    );
}

export function fabricCommand(): Command {
  return operatorCommand('fabric')
    .description('fabrics (where machines live): add a vCenter or a physical site, list them, read and show a vCenter inventory')
    .addCommand(addCommand())
    .addCommand(listCommand())
    .addCommand(refreshCommand())
    .addCommand(inventoryCommand());
}
