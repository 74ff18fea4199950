import { Command } from 'commander';
import { resolve } from 'node:path';
import { lifecycleJobKinds } from '../cs/lifecycle/index.js';
import { ConfigurationServer } from '../cs/server.js';
import { ConfigError } from '../replication/errors.js';
import { createLogger } from '../runtime/log.js';
import { endpoint, runUntilSignal } from './common.js';

const DEFAULT_DATA_DIR = '/var/lib/boomerang/cs';

function seconds(value: string, option: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new ConfigError('USAGE', `${option} must be a positive number of seconds, not ${value}`);
  return n;
}

export function csCommand(): Command {
  const cs = new Command('cs').description('the configuration server: API, database, jobs and the CA for the other components');
  cs.command('start', { isDefault: true })
    .description('run the configuration server (HTTPS API; OpenAPI at /openapi.json)')
    .option('--data-dir <dir>', 'database, CA and admin token (created 0700)', DEFAULT_DATA_DIR)
    .option('--listen <host:port>', 'API endpoint', '127.0.0.1:9443')
    .option('--vault <name>', 'vault name, used when the vault is created', 'boomerang')
    .option('--heartbeat-interval <seconds>', 'how often components report (missing ones raise 806/78022/78174 after 3 intervals)', '30')
    .option('--agent-registration-timeout <seconds>', 'how long reprotect waits for the agent on the machine now running to register (95226)', '900')
    .option('--command-timeout <seconds>', 'how long a job waits for a component to carry out a command', '600')
    .option('--log-level <level>', 'trace|debug|info|warn|error', 'info')
    .addHelpText(
      'after',
      `
At first start the CS creates its vault, a CA (ca.pem in the data dir), an operator token
(admin.token, 0600) and a registration passphrase: \`boomerang cs passphrase\` shows it.
Components register with that passphrase and receive their own certificate and token.`,
    )
    .action(async (opts: { dataDir: string; listen: string; vault: string; heartbeatInterval: string; agentRegistrationTimeout: string; commandTimeout: string; logLevel: string }) => {
      const at = endpoint(opts.listen);
      const server = await ConfigurationServer.start({
        dataDir: resolve(opts.dataDir),
        host: at.host,
        port: at.port,
        vaultName: opts.vault,
        heartbeatIntervalSeconds: seconds(opts.heartbeatInterval, '--heartbeat-interval'),
        agentRegistrationTimeoutSeconds: seconds(opts.agentRegistrationTimeout, '--agent-registration-timeout'),
        commandTimeoutSeconds: seconds(opts.commandTimeout, '--command-timeout'),
        jobKinds: (services) => lifecycleJobKinds(services),
        logger: createLogger('cs', opts.logLevel),
      });
      process.stdout.write(`${JSON.stringify({ event: 'ready', component: 'cs', url: server.url })}\n`);
      await runUntilSignal(() => server.stop());
    });
  cs.command('passphrase')
    .description('show the registration passphrase of the vault (components need it to register)')
    .option('--data-dir <dir>', 'the configuration server’s data dir', DEFAULT_DATA_DIR)
    .action(async (opts: { dataDir: string }) => {
      process.stdout.write(`${await ConfigurationServer.readPassphrase(resolve(opts.dataDir))}\n`);
    });
  return cs;
}
