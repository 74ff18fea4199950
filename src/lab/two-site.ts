import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigurationServer } from '../cs/server.js';
import { BoomerangError, errorMessage } from '../replication/errors.js';
import type { Endpoint } from '../replication/transport.js';
import { HttpsJsonClient, httpsUrl } from '../runtime/https-client.js';
import { generateToken, readTokenFile, writeTokenFile } from '../security/token.js';
import { AZBLOB_SCHEME } from '../replication/disk-location.js';
import { DiskStore } from '../replication/disk-store.js';
import { AzureLabSite, type LabAzureSite } from './azure-site.js';
import type { FakeArm } from './fake-arm.js';
import { hashDevice, hashFile } from './hash.js';
import { PhysicalLabSite, type LabSite } from './site.js';
import { VsphereLabSite, type LabVsphereSite } from './vsphere-site.js';
import { CLI, startComponent, type ComponentProcess } from './process.js';
import { MACHINE_FILES, useDisks, killMachine, machineRunning, readMachineRun, startMachine, stopMachine, writeMachineRun, type MachineRun } from './machine.js';


/**
 * The one-machine lab of two sites: a configuration server, and at each site (a folder) a process
 * server and a master target, plus demo machines whose guests write through their agent's NBD
 * export. Site A is primary, B the recovery site: PS-A forwards to MT-B (forward), PS-B to MT-A
 * (failback). Every component is a separate process registered with the CS; machines are powered
 * through `boomerang lab power`, the physical fabric's hook. Site A can be a vCenter and site B an
 * Azure subscription instead (`site.ts`, `vsphere-site.ts`, `azure-site.ts`).
 */

const execFileP = promisify(execFile);

export type Site = 'a' | 'b';
export const SITES: readonly Site[] = ['a', 'b'];
type Role = 'ps' | 'mt';

export interface LabOptions {
  dir: string;
  machines?: readonly string[];
  diskBytes?: number;
  /** What a guest writes at boot (and per extra burst). */
  burstBytes?: number;
  heartbeatIntervalSeconds?: number;
  agentRegistrationTimeoutSeconds?: number;
  logLevel?: string;
  /** Print progress lines. */
  print?: (line: string) => void;
  /** Site A is a vCenter (vcsim in tests) instead of the physical fabric. */
  vsphere?: LabVsphereSite;
  /** Site B is an Azure site: its machines are ARM VMs (the lab's fake ARM) with page-blob disks (Azurite). */
  azure?: boolean;
}

export const LAB_DEFAULTS = Object.freeze({ machines: ['web01', 'db01'], diskBytes: 64 * 1024 * 1024, burstBytes: 8 * 1024 * 1024, heartbeatIntervalSeconds: 2, agentRegistrationTimeoutSeconds: 120 });

export interface LabMachine {
  name: string;
  diskId: string;
  itemId?: string;
  /** Machine ids in the CS, per site. */
  ids: Record<Site, string>;
  /** Where a site keeps the machine's disk when its fabric chose (vSphere: the VMDK's flat extent). */
  diskPaths?: Partial<Record<Site, string>>;
}

/** What the lab writes to lab.json: enough for `lab drill` or the CLI to find everything. */
export interface LabState {
  csUrl: string;
  csPort: number;
  supervisorPid: number;
  ports: Record<`${Role}-${Site}`, number>;
  /** Each MT's resync port, kept like its data port so agents find it again after a restart. */
  resyncPorts?: Partial<Record<Site, number>>;
  components: Record<`${Role}-${Site}`, string>;
  controls: Partial<Record<`${Role}-${Site}`, Endpoint>>;
  policyId: string;
  machines: LabMachine[];
  /** Present when site B is an Azure site. */
  azure?: LabAzureSite;
}

interface ComponentReady {
  event?: string;
  url?: string;
  listen?: Endpoint;
  resync?: Endpoint;
  control?: Endpoint;
}

export class Lab {
  readonly dir: string;
  readonly o: Required<Omit<LabOptions, 'print' | 'vsphere' | 'azure'>> & { print: (line: string) => void };
  private readonly azure: boolean;
  /** How each site keeps its machines: physical unless the options make A a vCenter or B Azure. */
  private readonly sites: Record<Site, LabSite>;
  private store: Promise<DiskStore> | undefined;
  private readonly procs = new Map<string, ComponentProcess<ComponentReady>>();
  state!: LabState;
  client!: HttpsJsonClient;
  caPem = '';
  private dataToken = '';

  constructor(o: LabOptions) {
    this.dir = resolve(o.dir);
    this.o = {
      dir: this.dir,
      machines: o.machines ?? LAB_DEFAULTS.machines,
      diskBytes: o.diskBytes ?? LAB_DEFAULTS.diskBytes,
      burstBytes: o.burstBytes ?? LAB_DEFAULTS.burstBytes,
      heartbeatIntervalSeconds: o.heartbeatIntervalSeconds ?? LAB_DEFAULTS.heartbeatIntervalSeconds,
      agentRegistrationTimeoutSeconds: o.agentRegistrationTimeoutSeconds ?? LAB_DEFAULTS.agentRegistrationTimeoutSeconds,
      logLevel: o.logLevel ?? 'info',
      print: o.print ?? (() => undefined),
    };
    this.azure = o.azure ?? false;
    this.sites = { a: o.vsphere ? new VsphereLabSite(o.vsphere, 'mt-a') : new PhysicalLabSite(), b: new PhysicalLabSite() };
  }

  /** The Azure site's fake Resource Manager (run in the lab's own process, like a test's peer). */
  get arm(): FakeArm | undefined {
    return this.sites.b instanceof AzureLabSite ? this.sites.b.arm : undefined;
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  /** The data-hop token, also the bearer token of the components' control APIs. */
  get token(): string {
    return this.dataToken;
  }

  get csDir(): string {
    return this.path('cs');
  }

  get caPath(): string {
    return this.path('cs', 'ca.pem');
  }

  get adminTokenPath(): string {
    return this.path('cs', 'admin.token');
  }

  /**
   * sha256 of the whole disk at `location`: a file, or a page blob read through the storage API
   * (the Azure site's account), without taking its lease.
   */
  async hashDisk(location: string): Promise<string> {
    if (!location.startsWith(AZBLOB_SCHEME)) return hashFile(location);
    this.store ??= DiskStore.fromConfig(this.state.azure?.config);
    const store = await this.store;
    const disk = await store.open(store.locate(location), { readOnly: true });
    try {
      return await hashDevice(disk);
    } finally {
      await disk.close();
    }
  }

  /** The machine's disk at a site: primary disk at A, the recovery machine's disk at B. */
  diskPath(machine: string, site: Site): string {
    const chosen = this.state?.machines.find((m) => m.name === machine)?.diskPaths?.[site];
    return chosen ?? this.path(`site-${site}`, 'machines', machine, 'disk0.img');
  }

  /** Where that site's MT keeps the replica while it replicates into it. */
  replicaPath(machine: string, site: Site): string {
    return `${this.diskPath(machine, site)}.replica`;
  }

  machineRun(machine: string, site: Site): MachineRun {
    return { dir: this.path(`site-${site}`, 'run', machine), diskId: `${machine}-disk0`, burstBytes: this.o.burstBytes };
  }

  agentName(machine: string, site: Site): string {
    return `${machine}.site-${site}`;
  }

  /** A lab some other process runs (`boomerang lab`), for the drill and tools: no process handles. */
  static async open(o: LabOptions): Promise<Lab> {
    const lab = new Lab(o);
    lab.state = JSON.parse(await readFile(lab.path('lab.json'), 'utf8')) as LabState;
    lab.caPem = await readFile(lab.caPath, 'utf8');
    lab.dataToken = await readTokenFile(lab.path('token'));
    lab.client = new HttpsJsonClient(lab.state.csUrl, lab.caPem, await readTokenFile(lab.adminTokenPath));
    return lab;
  }

  /** Brings the whole lab up from an empty directory and enables replication of every machine. */
  static async up(o: LabOptions): Promise<Lab> {
    const lab = new Lab(o);
    try {
      await lab.prepare();
      if (lab.azure) {
        const azure = await AzureLabSite.start(lab.path('azure'), lab.o.print);
        lab.sites.b = azure;
        lab.state.azure = azure.state;
      }
      await lab.startCs();
      for (const site of SITES) await lab.startComponent('mt', site);
      for (const site of SITES) await lab.startComponent('ps', site);
      await lab.createInventory();
      await lab.saveState();
    } catch (err) {
      await lab.down();
      throw err;
    }
    return lab;
  }

  private async prepare(): Promise<void> {
    await unmountUnder(this.dir);
    await rm(this.dir, { recursive: true, force: true });
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const d of ['cs', 'logs']) await mkdir(this.path(d), { recursive: true, mode: 0o700 });
    for (const site of SITES) {
      for (const d of ['ps', 'mt', 'spool', 'retention', 'machines', 'run']) await mkdir(this.path(`site-${site}`, d), { recursive: true, mode: 0o700 });
    }
    for (const site of SITES) await this.mountRetention(site);
    await writeTokenFile(this.path('token'), generateToken());
    this.dataToken = await readTokenFile(this.path('token'));
    this.state = { csUrl: '', csPort: 0, supervisorPid: process.pid, ports: {} as LabState['ports'], components: {} as LabState['components'], controls: {}, policyId: '', machines: [] };
  }

  /**
   * A retention volume of its own per site, as the pre-flight checks demand (not a replication
   * target's volume, not the install volume). Needs root; without it the lab still runs, but
   * reprotect's pre-flight refuses the shared volume — which is the truth.
   */
  private async mountRetention(site: Site): Promise<void> {
    const at = this.path(`site-${site}`, 'retention');
    try {
      await execFileP('mount', ['-t', 'tmpfs', '-o', 'size=2g,mode=0700', 'tmpfs', at]);
    } catch (err) {
      this.o.print(`warning: cannot mount a tmpfs retention volume at ${at} (${errorMessage(err).split('\n')[0]}); reprotect pre-flight will refuse the shared volume`);
    }
  }

  /** Starts (or restarts) the CS on the port it had. */
  async startCs(): Promise<void> {
    const { ready } = await this.spawn('cs', [
      'cs',
      'start',
      '--data-dir',
      this.csDir,
      '--listen',
      `127.0.0.1:${this.state.csPort}`,
      '--heartbeat-interval',
      String(this.o.heartbeatIntervalSeconds),
      '--agent-registration-timeout',
      String(this.o.agentRegistrationTimeoutSeconds),
      '--command-timeout',
      '300',
      '--log-level',
      this.o.logLevel,
    ]);
    if (!ready.url) throw new BoomerangError('LAB_START', 'the configuration server did not say where it listens');
    this.state.csUrl = ready.url;
    this.state.csPort = Number(new URL(ready.url).port);
    this.caPem = await readFile(this.caPath, 'utf8');
    await this.client?.close();
    this.client = new HttpsJsonClient(ready.url, this.caPem, await readTokenFile(this.adminTokenPath));
    await writeFile(this.path('passphrase'), `${await ConfigurationServer.readPassphrase(this.csDir)}\n`, { mode: 0o600 });
  }

  /** SIGKILL of the CS: what the fault tests do mid-job. */
  async killCs(): Promise<void> {
    await this.kill('cs');
  }

  private csLink(site: Site, role: string) {
    return { url: this.state.csUrl, ca: this.caPath, passphraseFile: this.path('passphrase'), stateDir: this.path(`site-${site}`, role, 'state') };
  }

  async startComponent(role: Role, site: Site): Promise<void> {
    const key = `${role}-${site}` as const;
    const configPath = this.path(`site-${site}`, role, `${role}.json`);
    const common = { name: key, listen: `127.0.0.1:${this.state.ports[key] ?? 0}`, control: '127.0.0.1:0', cs: this.csLink(site, role), tokenFile: this.path('token') };
    const config =
      role === 'mt'
        ? { ...common, resyncListen: `127.0.0.1:${this.state.resyncPorts?.[site] ?? 0}`, retention: { dir: this.path(`site-${site}`, 'retention') }, disks: [], ...this.sites[site].componentConfig() }
        : { ...common, spool: { dir: this.path(`site-${site}`, 'spool') }, masterTarget: `127.0.0.1:${this.state.ports[`mt-${site === 'a' ? 'b' : 'a'}`]}` };
    await writeFile(configPath, JSON.stringify(config, null, 2));
    const { ready } = await this.spawn(key, [role, '--config', configPath, '--log-level', this.o.logLevel]);
    if (!ready.listen) throw new BoomerangError('LAB_START', `${key} did not say where it listens`);
    this.state.ports[key] = ready.listen.port;
    if (ready.resync) this.state.resyncPorts = { ...this.state.resyncPorts, [site]: ready.resync.port };
    if (ready.control) this.state.controls[key] = ready.control;
  }

  private async spawn(key: string, args: string[]): Promise<ComponentProcess<ComponentReady>> {
    const p = await startComponent<ComponentReady>(args, this.path('logs', `${key}.log`), key);
    this.procs.set(key, p);
    return p;
  }

  private async kill(key: string): Promise<void> {
    const p = this.procs.get(key);
    if (!p) return;
    p.proc.kill('SIGKILL');
    await p.exited;
    this.procs.delete(key);
  }

  private async stop(key: string): Promise<void> {
    const p = this.procs.get(key);
    if (!p) return;
    p.proc.kill('SIGTERM');
    await p.exited;
    this.procs.delete(key);
  }

  private async componentId(kind: 'agent' | 'ps' | 'mt', name: string, timeoutMs = 60_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const list = await this.client.call<{ id: string; kind: string; name: string; revokedAt: string | null; lastHeartbeatAt: string | null }[]>('GET', '/v1/components');
      // Registered and heard from: pre-flight checks both.
      const found = list.find((c) => c.kind === kind && c.name === name && c.revokedAt === null && c.lastHeartbeatAt !== null);
      if (found) return found.id;
      if (Date.now() > deadline) throw new BoomerangError('LAB_START', `${kind} ${name} did not register with the configuration server (and report) within ${timeoutMs / 1000} s`);
      await sleep(100);
    }
  }

  private powerHooks(run: MachineRun) {
    const hook = (action: string) => [process.execPath, CLI, 'lab', 'power', run.dir, action];
    return { start: hook('start'), stop: hook('stop'), status: hook('status') };
  }

  private async createInventory(): Promise<void> {
    const s = this.state;
    for (const site of SITES) for (const role of ['ps', 'mt'] as const) s.components[`${role}-${site}`] = await this.componentId(role, `${role}-${site}`);
    const fabrics: Record<Site, string> = { a: '', b: '' };
    for (const site of SITES) fabrics[site] = (await this.client.call<{ id: string }>('POST', '/v1/fabrics', this.sites[site].fabric(`site-${site}`))).id;
    const policy = await this.client.call<{ forward: { id: string } }>('POST', '/v1/policies', { name: 'lab', rpoThresholdSeconds: 60, retentionHours: 24, appConsistentMinutes: 60, crashConsistentMinutes: 5 });
    s.policyId = policy.forward.id;
    for (const name of this.o.machines) {
      const ids = { a: '', b: '' } as Record<Site, string>;
      const machine: LabMachine = { name, diskId: `${name}-disk0`, ids };
      s.machines.push(machine);
      for (const site of SITES) {
        const disk = await this.sites[site].createMachine(name, this.o.diskBytes);
        if (disk !== undefined) machine.diskPaths = { ...machine.diskPaths, [site]: disk };
      }
      for (const site of SITES) {
        const run = this.machineRun(name, site);
        await mkdir(run.dir, { recursive: true, mode: 0o700 });
        await mkdir(this.path(`site-${site}`, 'machines', name), { recursive: true });
        await writeMachineRun(run);
        await writeFile(
          join(run.dir, MACHINE_FILES.agentConfig),
          JSON.stringify(
            {
              name: this.agentName(name, site),
              stateDir: join(run.dir, 'state'),
              nbdSocket: join(run.dir, MACHINE_FILES.nbdSocket),
              processServer: `127.0.0.1:${s.ports[`ps-${site}`]}`,
              control: '127.0.0.1:0',
              cs: { url: s.csUrl, ca: this.caPath, passphraseFile: this.path('passphrase'), stateDir: join(run.dir, 'state') },
              tokenFile: this.path('token'),
              bookmarkIntervalSec: 10,
              // Served from boot; the CS decides when it is replicated.
              disks: [{ id: run.diskId, path: this.diskPath(name, site), size: this.o.diskBytes, protect: false }],
              ...this.sites[site].componentConfig(),
            },
            null,
            2,
          ),
        );
        const power = this.sites[site].power(name, this.powerHooks(run));
        ids[site] = (await this.client.call<{ id: string }>('POST', '/v1/machines', { fabricId: fabrics[site], name, power })).id;
      }
    }
    // The primary machines run from the start, their agents register.
    for (const m of s.machines) {
      const run = this.machineRun(m.name, 'a');
      await this.sites.a.start({ id: m.ids.a, name: m.name, power: this.sites.a.power(m.name, this.powerHooks(run)) }, run);
    }
    for (const m of s.machines) {
      const agentId = await this.componentId('agent', this.agentName(m.name, 'a'));
      const { item } = await this.client.call<{ item: { id: string } }>('POST', '/v1/items', {
        machineId: m.ids.a,
        policyId: s.policyId,
        agentId,
        psId: s.components['ps-a'],
        mtId: s.components['mt-b'],
        disks: [{ diskId: m.diskId, sizeBytes: this.o.diskBytes, sourcePath: this.diskPath(m.name, 'a'), targetPath: this.diskPath(m.name, 'b') }],
        recoveryMachineId: m.ids.b,
        failbackAgentName: this.agentName(m.name, 'b'),
        failbackPsId: s.components['ps-b'],
        failbackMtId: s.components['mt-a'],
      });
      m.itemId = item.id;
      this.o.print(`replication of ${m.name} enabled (item ${item.id})`);
    }
  }

  async saveState(): Promise<void> {
    await writeFile(this.path('lab.json'), JSON.stringify(this.state, null, 2));
    await writeFile(
      this.path('cli.env'),
      `export BOOMERANG_CS=${this.state.csUrl}\nexport BOOMERANG_CA=${this.caPath}\nexport BOOMERANG_TOKEN_FILE=${this.adminTokenPath}\n`,
    );
  }

  /** A client for a component's control API (the lab's data-hop token is its bearer token). */
  controlClient(key: `${Role}-${Site}`): HttpsJsonClient {
    const at = this.state.controls[key];
    if (!at) throw new BoomerangError('LAB_STATE', `${key} has no control endpoint`);
    return new HttpsJsonClient(httpsUrl(at), this.caPem, this.dataToken);
  }

  /** Stops every machine, component and the CS; leaves the directory for a post-mortem. */
  async down(): Promise<void> {
    for (const m of this.state?.machines ?? []) {
      for (const site of SITES) {
        const run = this.machineRun(m.name, site);
        await stopMachine(run).catch(() => killMachine(run));
      }
    }
    for (const key of ['ps-a', 'ps-b', 'mt-a', 'mt-b', 'cs']) await this.stop(key);
    await this.client?.close();
    for (const site of SITES) await this.sites[site].stop();
    if (this.procs.size === 0 && this.state?.supervisorPid === process.pid) await unmountUnder(this.dir);
  }
}

/** Unmounts what an earlier lab mounted below `dir` (its retention volumes). */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = await readFile('/proc/mounts', 'utf8').catch(() => '');
  const points = mounts
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((p) => p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const p of points) await execFileP('umount', [p]).catch(() => undefined);
}

/** `boomerang lab power <run-dir> start|stop|status`: the physical fabric's hook for lab machines. */
export async function powerHook(runDir: string, action: string): Promise<number> {
  const run = await readMachineRun(resolve(runDir));
  if (action === 'start') {
    const disks = process.env.BOOMERANG_DISKS;
    if (disks !== undefined) await useDisks(run, JSON.parse(disks) as string[]);
    await startMachine(run);
  }
  else if (action === 'stop') await stopMachine(run);
  else if (action === 'status') return (await machineRunning(run)) ? 0 : 3;
  else throw new BoomerangError('USAGE', `unknown power action ${action} (start, stop or status)`);
  return 0;
}
