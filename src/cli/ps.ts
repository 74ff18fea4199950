import { Command } from 'commander';
import { Type, type Static } from '@sinclair/typebox';
import { processServerCommands } from '../ps/commands.js';
import { ProcessServer } from '../ps/process-server.js';
import { loadConfigFile } from '../runtime/config.js';
import { createLogger } from '../runtime/log.js';
import { CsSchema, EndpointString, SizeValue, TlsSchema, bytes, endpoint, loadSecurity, runUntilSignal, startCsLink } from './common.js';

export const PsConfigSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 128 }),
    listen: EndpointString,
    control: Type.Optional(EndpointString),
    spool: Type.Object({ dir: Type.String({ minLength: 1 }), maxBytes: Type.Optional(SizeValue) }, { additionalProperties: false }),
    masterTarget: EndpointString,
    compression: Type.Optional(Type.Union([Type.Literal('none'), Type.Literal('deflate')])),
    windowPerDisk: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    tls: Type.Optional(TlsSchema),
    cs: Type.Optional(CsSchema),
    tokenFile: Type.String({ minLength: 1 }),
  },
  { additionalProperties: false },
);
export type PsConfig = Static<typeof PsConfigSchema>;

export function psCommand(): Command {
  return new Command('ps')
    .description('run a process server: receive batches from agents, spool them durably, forward them to a master target')
    .requiredOption('-c, --config <file>', 'process server config file (YAML or JSON)')
    .option('--listen <host:port>', 'data endpoint for agents (overrides listen)')
    .option('--mt <host:port>', 'master target data endpoint (overrides masterTarget)')
    .option('--log-level <level>', 'trace|debug|info|warn|error', 'info')
    .addHelpText(
      'after',
      `
Config file (YAML):
  name: ps1
  listen: 0.0.0.0:9443
  control: 127.0.0.1:9081
  spool: { dir: /var/lib/boomerang/spool, maxBytes: 64GiB }   # health turns 'warning' at 80%
  masterTarget: mt1.example:9444
  compression: deflate                                          # none | deflate (PS → MT hop)
  tls: { ca: ca.pem, cert: ps.pem, key: ps.key }
  tokenFile: token`,
    )
    .action(async (opts: { config: string; listen?: string; mt?: string; logLevel: string }) => {
      const cfg = await loadConfigFile(opts.config, PsConfigSchema);
      const log = createLogger('ps', opts.logLevel);
      const { material, token, cs } = await loadSecurity(cfg, { kind: 'ps', name: cfg.name });
      const ps = await ProcessServer.start({
        name: cfg.name,
        listen: endpoint(opts.listen ?? cfg.listen),
        masterTarget: endpoint(opts.mt ?? cfg.masterTarget),
        spoolDir: cfg.spool.dir,
        material,
        token,
        log,
        ...(cfg.spool.maxBytes !== undefined ? { spoolMaxBytes: bytes(cfg.spool.maxBytes)! } : {}),
        ...(cfg.compression ? { compression: cfg.compression } : {}),
        ...(cfg.windowPerDisk ? { windowPerDisk: cfg.windowPerDisk } : {}),
        ...(cfg.control ? { control: endpoint(cfg.control) } : {}),
      });
      process.stdout.write(`${JSON.stringify({ event: 'ready', component: 'ps', listen: ps.endpoint, control: ps.controlEndpoint })}\n`);
      const link = startCsLink(cs, { report: () => ps.healthReport(), commands: processServerCommands(ps), log });
      await runUntilSignal(async () => {
        await link.stop();
        await ps.stop();
      });
    });
}
