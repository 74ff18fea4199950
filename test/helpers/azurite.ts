import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AZURITE_ACCOUNT, type StorageAccountConfig } from '../../src/fabrics/azure/azure-storage.js';
import { startAzurite, type AzuriteProcess } from '../../src/lab/azurite.js';
import { createCa, issueCertificate, type PemPair } from '../../src/security/pki.js';

/**
 * An Azurite blob service for one test file: its own directory, a CA and server certificate made
 * by our PKI (the SDK trusts that CA only), HTTPS on 127.0.0.1; stop() kills it by PID and
 * removes the directory.
 */
export interface TestAzurite {
  /** The dev account's blob endpoint and key, trusting the test CA. */
  account: StorageAccountConfig;
  caPem: string;
  /** The test CA with its key, to issue more certificates (a fault-injecting proxy's). */
  ca: PemPair;
  process: AzuriteProcess;
  stop(): Promise<void>;
}

export async function startTestAzurite(options: { inMemory?: boolean } = {}): Promise<TestAzurite> {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-azurite-'));
  try {
    const ca = await createCa({ commonName: 'Boomerang test CA' });
    const leaf = await issueCertificate(ca, { commonName: '127.0.0.1', ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'], usage: 'server' });
    const certPath = join(dir, 'cert.pem');
    const keyPath = join(dir, 'key.pem');
    await writeFile(certPath, leaf.certPem, { mode: 0o600 });
    await writeFile(keyPath, leaf.keyPem, { mode: 0o600 });
    const proc = await startAzurite({ location: join(dir, 'data'), certPath, keyPath, ...(options.inMemory ? { inMemory: true } : {}) });
    return {
      account: { url: `${proc.origin}/${AZURITE_ACCOUNT.accountName}`, ...AZURITE_ACCOUNT, caPem: ca.certPem },
      caPem: ca.certPem,
      ca,
      process: proc,
      async stop() {
        await proc.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
