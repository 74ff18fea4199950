import { Command, Option } from 'commander';
import { OPERATIONS } from '../cs/preflight/types.js';
import { ConfigError } from '../replication/errors.js';
import { action, addCsOptions, CONNECTION_HELP, EXIT, exitCodesHelp, operatorCommand, printJson, resolveItem, withApi, type CsFlags } from './cs-api.js';

interface Report {
  operation: string;
  ok: boolean;
  results: { id: string; code?: number; severity: string; passed: boolean; message: string; remedy: string }[];
}

/** Exit code when the checks ran and at least one blocking check failed. */
export const EXIT_CHECKS_FAILED = EXIT.PREFLIGHT;

export function checkCommand(): Command {
  return addCsOptions(
    operatorCommand('check')
      .description("run an operation's pre-flight checks for a protected item and report every result")
      .argument('<operation>', OPERATIONS.join(' | '))
      .argument('<item>', 'item id or machine name')
      .addOption(new Option('--location <where>', 'reprotect: judge this location (alternate: a new machine)').choices(['original', 'alternate']))
      .option('--machine-name <name>', 'reprotect to an alternate location on vSphere: the new VM’s name')
      .option('--datastore <name>', 'reprotect to an alternate location on vSphere: the datastore of its disks'),
  )
    .addHelpText(
      'after',
      `${CONNECTION_HELP}\n${exitCodesHelp([0, 1, 2, 3], { 0: 'every blocking check passed', 1: 'the checks could not run (unknown item, API error, CS unreachable)', 3: 'a blocking check failed' })}`,
    )
    .action(
      action(async (operation: string, ref: string, o: CsFlags & { location?: string; machineName?: string; datastore?: string }) => {
        if (!(OPERATIONS as readonly string[]).includes(operation)) throw new ConfigError('USAGE', `operation must be one of ${OPERATIONS.join(', ')}`);
        return withApi(o, async (api) => {
          const item = await resolveItem(api, ref);
          const query = new URLSearchParams({ lang: o.lang });
          for (const key of ['location', 'machineName', 'datastore'] as const) if (o[key] !== undefined) query.set(key, o[key]);
          const report = await api.get<Report>(`/v1/items/${encodeURIComponent(item.id)}/preflight/${operation}?${query}`);
          if (o.output === 'json') printJson(report);
          else {
            for (const r of report.results) {
              const mark = r.passed ? 'ok  ' : r.severity === 'error' ? 'FAIL' : 'warn';
              process.stdout.write(`${mark} ${r.id}${r.code === undefined ? '' : ` (${r.code})`}: ${r.message}\n`);
              if (!r.passed && r.remedy) process.stdout.write(`     → ${r.remedy}\n`);
            }
          }
          return report.ok ? EXIT.OK : EXIT_CHECKS_FAILED;
        });
      }),
    );
}
