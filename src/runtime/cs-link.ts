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
  token: CsToken;
  heartbeatIntervalSeconds: number;
}

/** What the registration file holds: the CS's answer, and when the current token was issued. */
type KeptRegistration = Registration & { tokenIssuedAt?: number };

/**
 * The component's token for the CS API. It is exchanged for a new one once two thirds of its
 * lifetime have passed (the old one stops working at once), and the registration file is
 * rewritten so a restart uses the new one. A component that stays down past expiry registers again.
 */
export class CsToken {
  constructor(
    private readonly file: string,
    private reg: KeptRegistration,
  ) {}

  get value(): string {
    return this.reg.token;
  }

  get expiresAt(): string {
    return this.reg.tokenExpiresAt;
  }

  dueForRenewal(now = Date.now()): boolean {
    const expires = Date.parse(this.reg.tokenExpiresAt);
    const issued = this.reg.tokenIssuedAt ?? 0;
    return now >= issued + ((expires - issued) * 2) / 3;
  }

  async renew(client: HttpsJsonClient): Promise<void> {
    const issuedAt = Date.now();
    const fresh = await client.call<{ token: string; tokenExpiresAt: string }>('POST', '/v1/token');
    this.reg = { ...this.reg, token: fresh.token, tokenExpiresAt: fresh.tokenExpiresAt, tokenIssuedAt: issuedAt };
    await keep(this.file, this.reg);
  }
}

async function keep(file: string, reg: KeptRegistration): Promise<void> {
  await writeFile(`${file}.tmp`, JSON.stringify(reg), { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}


/** Registers with the CS unless a registration is already kept in the state directory. */
export async function enrol(o: CsLinkOptions): Promise<Enrolment> {
  const dir = join(o.stateDir, 'cs');
  const file = join(dir, 'registration.json');
  let reg: KeptRegistration | undefined;
  try {
    reg = JSON.parse(await readFile(file, 'utf8')) as KeptRegistration;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new BoomerangError('CS_REGISTRATION', `cannot read ${file}: ${errorMessage(err)}`);
  }
  if (!reg?.privateKeyPem) {
    const client = new HttpsJsonClient(o.url, o.caPem);
    const issuedAt = Date.now();
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
    reg = { ...reg, tokenIssuedAt: issuedAt };
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await keep(file, reg);
  }
  return {
    componentId: reg.componentId,
    material: { ca: reg.caPem, cert: reg.certificatePem, key: reg.privateKeyPem! },
    token: new CsToken(file, reg),
    heartbeatIntervalSeconds: reg.heartbeatIntervalSeconds,
  };
}

/**
 * Posts the component's health every interval (a failed heartbeat is logged and retried next
 * time) and renews the component's token when it is due.
 */
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
      token: CsToken;
      intervalMs: number;
      report: () => Promise<object>;
      /** Reports that go with every heartbeat (a master target's recovery points). */
      afterBeat?: (client: HttpsJsonClient) => Promise<void>;
      log: Logger;
    },
  ) {
    this.client = new HttpsJsonClient(o.url, o.caPem, () => o.token.value);
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
      if (this.o.token.dueForRenewal()) {
        await this.o.token.renew(this.client);
        this.o.log.info({ expiresAt: this.o.token.expiresAt }, 'component token renewed');
      }
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
