import { mkdir, readFile, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { BoomerangError, errorMessage } from '../replication/errors.js';
import { HttpsJsonClient } from './https-client.js';
import type { TlsMaterial } from '../replication/transport.js';
import type { Logger } from './log.js';
import type { Registration } from '../cs/components/registration.js';

/**
 * A component's link to the configuration server: registration with the vault passphrase (once;
 * the certificate, key and token are kept in the component's state directory, 0600) and
 * periodic heartbeats carrying its health. With a CS, the data hops use the certificate the CS
 * issued, so every component chains to the vault's CA.
 */
export interface CsLinkOptions {
  url: string;
  /** The CS's CA (ca.pem in its data directory), trusted for the API. */
  caPem: string;
  kind: 'agent' | 'ps' | 'mt';
  name: string;
  /** Where the registration is kept. */
  stateDir: string;
  /** Read only when the component is not registered yet. */
  passphrase: () => Promise<string>;
  hostnames?: string[];
}

export interface Enrolment {
  componentId: string;
  material: TlsMaterial;
  token: string;
  tokenExpiresAt: string;
  heartbeatIntervalSeconds: number;
}


/** Registers with the CS unless a registration is already kept in the state directory. */
export async function enrol(o: CsLinkOptions): Promise<Enrolment> {
  const dir = join(o.stateDir, 'cs');
  const file = join(dir, 'registration.json');
  let reg: Registration | undefined;
  try {
    reg = JSON.parse(await readFile(file, 'utf8')) as Registration;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new BoomerangError('CS_REGISTRATION', `cannot read ${file}: ${errorMessage(err)}`);
  }
  if (!reg?.privateKeyPem) {
    const client = new HttpsJsonClient(o.url, o.caPem);
    try {
      reg = await client.call<Registration>('POST', '/v1/register', {
        passphrase: await o.passphrase(),
        kind: o.kind,
        name: o.name,
        ...(o.hostnames ? { hostnames: o.hostnames } : {}),
      });
    } finally {
      await client.close();
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(`${file}.tmp`, JSON.stringify(reg), { mode: 0o600 });
    await rename(`${file}.tmp`, file);
  }
  return {
    componentId: reg.componentId,
    material: { ca: reg.caPem, cert: reg.certificatePem, key: reg.privateKeyPem! },
    token: reg.token,
    tokenExpiresAt: reg.tokenExpiresAt,
    heartbeatIntervalSeconds: reg.heartbeatIntervalSeconds,
  };
}

/** Posts the component's health every interval; a failed heartbeat is logged and retried next time. */
export class HeartbeatSender {
  private timer: NodeJS.Timeout | undefined;
  private readonly client: HttpsJsonClient;
  private inFlight: Promise<void> | undefined;
  sent = 0;
  lastError: string | undefined;

  constructor(
    private readonly o: {
      url: string;
      caPem: string;
      token: string;
      intervalMs: number;
      report: () => Promise<object>;
      /** Reports that go with every heartbeat (a master target's recovery points). */
      afterBeat?: (client: HttpsJsonClient) => Promise<void>;
      log: Logger;
    },
  ) {
    this.client = new HttpsJsonClient(o.url, o.caPem, o.token);
  }

  start(): void {
    const beat = () => {
      this.inFlight ??= this.beat().finally(() => (this.inFlight = undefined));
    };
    beat();
    this.timer = setInterval(beat, this.o.intervalMs);
  }

  private async beat(): Promise<void> {
    try {
      await this.client.call('POST', '/v1/heartbeat', await this.o.report());
      await this.o.afterBeat?.(this.client);
      this.sent++;
      this.lastError = undefined;
    } catch (err) {
      const message = errorMessage(err);
      if (message !== this.lastError) this.o.log.warn({ error: message }, 'heartbeat to the configuration server failed');
      this.lastError = message;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.inFlight;
    await this.client.close();
  }
}
