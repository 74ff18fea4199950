import { randomBytes, randomUUID } from 'node:crypto';
import { FakeArm, type FakeArmOptions } from '../../src/lab/fake-arm.js';
import type { ArmClientOptions, AzureCredentials } from '../../src/fabrics/azure/arm.js';
import { createCa } from '../../src/security/pki.js';

/** A fake ARM with one tenant, one service principal and one subscription, and the credentials that reach it. */
export interface ArmSite {
  fake: FakeArm;
  tenantId: string;
  subscriptionId: string;
  credentials: AzureCredentials;
  /** Fast polls and retries, bounded, for tests. */
  clientOptions: ArmClientOptions;
  stop(): Promise<void>;
}

export async function startArmSite(options: Partial<Omit<FakeArmOptions, 'ca'>> = {}): Promise<ArmSite> {
  const ca = await createCa({ commonName: 'boomerang test CA' });
  const fake = await FakeArm.start({ ca, ...options });
  const tenantId = randomUUID();
  const clientId = randomUUID();
  const clientSecret = randomBytes(24).toString('base64url');
  const subscriptionId = randomUUID();
  fake.addClient(tenantId, clientId, clientSecret);
  fake.addSubscription(subscriptionId, tenantId);
  return {
    fake,
    tenantId,
    subscriptionId,
    credentials: { tenantId, clientId, clientSecret, authorityHost: fake.url, armEndpoint: fake.url, ca: fake.caPem },
    clientOptions: { pollIntervalMs: 10, operationTimeoutMs: 30_000, requestTimeoutMs: 30_000, retry: { retryDelayInMs: 10, maxRetryDelayInMs: 50 } },
    stop: () => fake.stop(),
  };
}
