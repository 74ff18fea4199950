import { readFile } from 'node:fs/promises';
import { Type, type Static } from '@sinclair/typebox';
import { ConfigError } from '../replication/errors.js';
import { HttpsJsonClient, httpsUrl } from '../runtime/https-client.js';
import { parseEndpoint, type Endpoint, type TlsMaterial } from '../replication/transport.js';
import { parseBytes } from '../runtime/config.js';
import { loadTlsMaterial } from '../security/pki.js';
import { readTokenFile } from '../security/token.js';
import { CommandLoop, type CommandHandler } from '../runtime/cs-commands.js';
import { enrol, HeartbeatSender, type Enrolment } from '../runtime/cs-link.js';
import type { Logger } from '../runtime/log.js';

/** Schema pieces shared by the component config files. */
export const TlsSchema = Type.Object(
  { ca: Type.String({ minLength: 1 }), cert: Type.String({ minLength: 1 }), key: Type.String({ minLength: 1 }) },
  { additionalProperties: false, description: 'paths of PEM files: the CA that signs every component, this component’s certificate and key' },
);
export const EndpointString = Type.String({ pattern: '^(tls://)?(\\[[^\\]]+\\]|[^:/]+):\\d{1,5}$', description: 'host:port' });
export const SizeValue = Type.Union([Type.Integer({ minimum: 0 }), Type.String({ pattern: '^\\s*\\d+(\\.\\d+)?\\s*[a-zA-Z]*\\s*$' })], { description: 'bytes, or a size such as 512MiB' });

export type TlsConfig = Static<typeof TlsSchema>;

export const CsSchema = Type.Object(
  {
    url: Type.String({ pattern: '^https://', description: 'the configuration server, e.g. https://cs.example:9443' }),
    ca: Type.String({ minLength: 1, description: 'the CS’s ca.pem' }),
    passphraseFile: Type.String({ minLength: 1, description: 'file holding the vault passphrase (read only to register)' }),
    stateDir: Type.String({ minLength: 1, description: 'where the registration (certificate, key, token) is kept' }),
    hostnames: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { minItems: 1, maxItems: 16, description: 'names and addresses peers use to reach this component (PS, MT); default localhost, 127.0.0.1, ::1' })),
  },
  { additionalProperties: false },
);
export type CsConfig = Static<typeof CsSchema>;

/**
 * TLS material for the data hops and the data-hop token. With a configuration server the
 * component registers (once) and uses the certificate the CS issued; `tls` is then not needed.
 */
export async function loadSecurity(
  cfg: { tls?: TlsConfig | undefined; tokenFile: string; cs?: CsConfig | undefined },
  who: { kind: 'agent' | 'ps' | 'mt'; name: string },
): Promise<{ material: TlsMaterial; token: string; cs?: { config: CsConfig; caPem: string; enrolment: Enrolment } }> {
  const token = await readTokenFile(cfg.tokenFile);
  if (cfg.cs) {
    const cs = cfg.cs;
    const caPem = await readFile(cs.ca, 'utf8').catch((err: Error) => {
      throw new ConfigError('TLS_MATERIAL', `cannot read the CS CA ${cs.ca}: ${err.message}`);
    });
    const enrolment = await enrol({
      url: cs.url,
      caPem,
      kind: who.kind,
      name: who.name,
      stateDir: cs.stateDir,
      passphrase: () => readTokenFile(cs.passphraseFile),
      // Every component serves its control API, and PS and MT accept data connections.
      hostnames: cs.hostnames ?? ['localhost', '127.0.0.1', '::1'],
    });
    return { material: enrolment.material, token, cs: { config: cs, caPem, enrolment } };
  }
  if (!cfg.tls) throw new ConfigError('CONFIG_INVALID', 'give tls (ca, cert, key) or cs (a configuration server to register with)');
  return { material: await loadTlsMaterial({ caPath: cfg.tls.ca, certPath: cfg.tls.cert, keyPath: cfg.tls.key }), token };
}

/**
 * The component's link to the CS when it registered with one (a no-op otherwise): heartbeats
 * with its health (and whatever else it reports alongside), and the commands jobs send it.
 */
export function startCsLink(
  cs: Awaited<ReturnType<typeof loadSecurity>>['cs'],
  o: { report: () => Promise<object> | object; afterBeat?: (client: HttpsJsonClient) => Promise<void>; commands: Readonly<Record<string, CommandHandler>>; log: Logger },
): { stop(): Promise<void> } {
  if (!cs) return { stop: async () => undefined };
  const sender = new HeartbeatSender({
    url: cs.config.url,
    caPem: cs.caPem,
    token: cs.enrolment.token,
    intervalMs: cs.enrolment.heartbeatIntervalSeconds * 1000,
    report: async () => o.report(),
    ...(o.afterBeat ? { afterBeat: o.afterBeat } : {}),
    log: o.log,
  });
  const commands = new CommandLoop({ url: cs.config.url, caPem: cs.caPem, token: () => cs.enrolment.token.value, handlers: o.commands, log: o.log });
  sender.start();
  commands.start();
  return {
    stop: async () => {
      await commands.stop();
      await sender.stop();
    },
  };
}

export function endpoint(value: string | undefined, fallback?: Endpoint): Endpoint {
  if (value === undefined) {
    if (fallback) return fallback;
    throw new ConfigError('CONFIG_INVALID', 'an endpoint (host:port) is required');
  }
  return parseEndpoint(value);
}

export function bytes(value: string | number | undefined): number | undefined {
  return value === undefined ? undefined : parseBytes(value);
}

/**
 * Runs a component until SIGINT/SIGTERM, then stops it once. Further signals during the stop are
 * ignored: a clean stop (an agent draining its last writes) must not be cut short by a second one.
 */
export async function runUntilSignal(stop: () => Promise<unknown>): Promise<void> {
  await new Promise<void>((resolve) => {
    const onSignal = () => resolve();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  const ignore = () => undefined;
  process.on('SIGINT', ignore);
  process.on('SIGTERM', ignore);
  await stop();
}

/** A client for a running component's control API (HTTPS, our CA, bearer token). */
export async function controlClientFromFiles(target: string, caPath: string, tokenFile: string): Promise<HttpsJsonClient> {
  const ca = await readFile(caPath, 'utf8').catch((err: Error) => {
    throw new ConfigError('TLS_MATERIAL', `cannot read CA ${caPath}: ${err.message}`);
  });
  return new HttpsJsonClient(httpsUrl(parseEndpoint(target)), ca, await readTokenFile(tokenFile));
}
