import { spawn } from 'node:child_process';
import { BoomerangError } from '../../replication/errors.js';
import type { Fabric, FabricMachine, PowerAction, PowerState } from '../fabric.js';

/**
 * The physical fabric: machines are powered through hook commands an operator configures per
 * machine (IPMI, a script, the lab's workload starter). A hook is an argv run without a shell,
 * with BOOMERANG_MACHINE and BOOMERANG_ACTION in its environment. `status` answers by exit code,
 * as LSB init scripts do: 0 running, 3 stopped, anything else unknown.
 */

export interface PowerHooks {
  start?: string[];
  stop?: string[];
  status?: string[];
}

export const HOOK_TIMEOUT_MS = 5 * 60 * 1000;
const OUTPUT_LIMIT = 4096;

export interface HookResult {
  exitCode: number | null;
  output: string;
}

export function runHook(argv: readonly string[], env: Record<string, string>, signal: AbortSignal, timeoutMs = HOOK_TIMEOUT_MS): Promise<HookResult> {
  const [program, ...args] = argv;
  if (program === undefined) return Promise.reject(new BoomerangError('POWER_HOOK', 'the hook command is empty'));
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], signal, timeout: timeoutMs, killSignal: 'SIGKILL' });
    let output = '';
    const keep = (chunk: Buffer) => {
      if (output.length < OUTPUT_LIMIT) output += chunk.toString('utf8').slice(0, OUTPUT_LIMIT - output.length);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', (err) => reject(new BoomerangError('POWER_HOOK', `cannot run ${program}: ${err.message}`)));
    child.once('close', (code, sig) => {
      if (sig === 'SIGKILL' && !signal.aborted) reject(new BoomerangError('POWER_HOOK', `${program} did not finish within ${Math.round(timeoutMs / 1000)} s`));
      else resolve({ exitCode: code, output: output.trim() });
    });
  });
}

function hooksOf(machine: FabricMachine): PowerHooks {
  return machine.power as PowerHooks;
}

export class PhysicalFabric implements Fabric {
  readonly kind = 'physical' as const;

  constructor(private readonly timeoutMs = HOOK_TIMEOUT_MS) {}

  async power(machine: FabricMachine, action: PowerAction, signal: AbortSignal): Promise<void> {
    const argv = hooksOf(machine)[action];
    if (!argv) throw new BoomerangError('POWER_HOOK', `machine ${machine.name} has no ${action} hook`);
    const r = await runHook(argv, { BOOMERANG_MACHINE: machine.name, BOOMERANG_ACTION: action }, signal, this.timeoutMs);
    if (r.exitCode !== 0) throw new BoomerangError('POWER_HOOK', `${argv[0]} exited with ${r.exitCode}${r.output ? `: ${r.output}` : ''}`);
  }

  async powerState(machine: FabricMachine, signal: AbortSignal): Promise<PowerState> {
    const argv = hooksOf(machine).status;
    if (!argv) return 'unknown';
    const r = await runHook(argv, { BOOMERANG_MACHINE: machine.name, BOOMERANG_ACTION: 'status' }, signal, this.timeoutMs);
    return r.exitCode === 0 ? 'running' : r.exitCode === 3 ? 'stopped' : 'unknown';
  }
}
