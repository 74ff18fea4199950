#!/usr/bin/env node
import 'reflect-metadata';
import { Command, CommanderError } from 'commander';
import { BoomerangError, ConfigError } from '../replication/errors.js';
import { agentCommand } from './agent.js';
import { agentlessCommand } from './agentless.js';
import { labCommand } from './lab.js';
import { mtCommand } from './mt.js';
import { psCommand } from './ps.js';
import { rpCommand } from './rp.js';
import { pkiCommand } from './pki.js';
import { csCommand } from './cs.js';
import { checkCommand } from './check.js';
import { itemCommand } from './item.js';
import { jobCommand } from './job.js';
import { fabricCommand } from './fabric.js';
import { cancelCommand, changePointCommand, commitCommand, failbackCommand, failoverCommand, reprotectCommand } from './operations.js';

/** Exit codes scripts can rely on: 0 ok, 1 operation failed, 2 bad usage or configuration, 3 pre-flight checks failed. */
const program = new Command('boomerang')
  .description('Boomerang: continuous replication, recovery points, failover, reprotect and failback')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride()
  .addCommand(labCommand())
  .addCommand(csCommand())
  .addCommand(checkCommand())
  .addCommand(itemCommand())
  .addCommand(fabricCommand())
  .addCommand(failoverCommand())
  .addCommand(changePointCommand())
  .addCommand(commitCommand())
  .addCommand(reprotectCommand())
  .addCommand(failbackCommand())
  .addCommand(cancelCommand())
  .addCommand(jobCommand())
  .addCommand(agentCommand())
  .addCommand(agentlessCommand())
  .addCommand(psCommand())
  .addCommand(mtCommand())
  .addCommand(rpCommand())
  .addCommand(pkiCommand());

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander has printed help, the version or the usage error already.
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else if (err instanceof BoomerangError) {
    process.stderr.write(`error [${err.code}]: ${err.message}\n`);
    process.exitCode = err instanceof ConfigError ? 2 : 1;
  } else {
    process.stderr.write(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
}
