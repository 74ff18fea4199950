import { Command } from 'commander';
import { access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ensureDevPki } from '../security/pki.js';
import { generateToken, writeTokenFile } from '../security/token.js';

export function pkiCommand(): Command {
  const pki = new Command('pki').description('TLS material and tokens for the data hops (until the configuration server issues them at registration)');
  pki
    .command('init')
    .description('create (or reuse) a CA, a certificate for localhost usable by every component, and a shared token file')
    .option('--dir <dir>', 'directory to write ca.pem, localhost.pem, localhost-key.pem and token into', 'pki')
    .action(async (opts: { dir: string }) => {
      const dir = resolve(opts.dir);
      const paths = await ensureDevPki(dir);
      const tokenPath = join(dir, 'token');
      const exists = await access(tokenPath).then(
        () => true,
        () => false,
      );
      if (!exists) await writeTokenFile(tokenPath, generateToken());
      process.stdout.write(
        `${JSON.stringify({ ca: paths.caPath, cert: paths.certPath, key: paths.keyPath, tokenFile: tokenPath }, null, 2)}\n` +
          'Use these paths as tls.ca, tls.cert, tls.key and tokenFile in the agent, ps and mt config files.\n',
      );
    });
  return pki;
}
