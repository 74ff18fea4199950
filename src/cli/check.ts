import { Command, Option } from 'commander';
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../replication/errors.js';
import { HttpsJsonClient } from '../runtime/https-client.js';
import { readTokenFile } from '../security/token.js';
import { OPERATIONS } from '../cs/preflight/types.js';

interface Report {
  operation: string;
  ok: boolean;
  results: { id: string; code?: number; severity: string; passed: boolean; message: string; remedy: string }[];
}

/** Exit code when the checks ran and at least one blocking check failed. */
export const EXIT_CHECKS_FAILED = 3;

export function checkCommand(): Command {
  return new Command('check')
    .description("run an operation's pre-flight checks for a protected item and report every result")
    .argument('<operation>', OPERATIONS.join(' | '))
    .argument('<item>', 'protected item id')
    .requiredOption('--cs <url>', 'configuration server, e.g. https://127.0.0.1:9443')
    .requiredOption('--ca <file>', 'the CS’s ca.pem')
    .requiredOption('--token-file <file>', 'operator token (admin.token in the CS data dir)')
    .addOption(new Option('--lang <lang>', 'language of messages and remedies').choices(['en', 'ja']).default('en'))
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .addHelpText('after', `\nExit codes: 0 every blocking check passed, ${EXIT_CHECKS_FAILED} a blocking check failed, 1 the checks could not run, 2 bad usage.`)
    .action(async (operation: string, item: string, o: { cs: string; ca: string; tokenFile: string; lang: 'en' | 'ja'; output: 'table' | 'json' }) => {
      if (!(OPERATIONS as readonly string[]).includes(operation)) throw new ConfigError('USAGE', `operation must be one of ${OPERATIONS.join(', ')}`);
      const client = new HttpsJsonClient(o.cs, await readFile(o.ca, 'utf8'), await readTokenFile(o.tokenFile));
      try {
        const report = await client.call<Report>('GET', `/v1/items/${encodeURIComponent(item)}/preflight/${operation}?lang=${o.lang}`);
        if (o.output === 'json') process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else {
          for (const r of report.results) {
            const mark = r.passed ? 'ok  ' : r.severity === 'error' ? 'FAIL' : 'warn';
            process.stdout.write(`${mark} ${r.id}${r.code === undefined ? '' : ` (${r.code})`}: ${r.message}\n`);
            if (!r.passed && r.remedy) process.stdout.write(`     → ${r.remedy}\n`);
          }
        }
        if (!report.ok) process.exitCode = EXIT_CHECKS_FAILED;
      } finally {
        await client.close();
      }
    });
}
