import { Agent } from 'node:https';
import {
  BlobServiceClient,
  newPipeline,
  StorageSharedKeyCredential,
  type ContainerClient,
  type PageBlobClient,
  type RequestPolicy,
  type RequestPolicyFactory,
  type WebResource,
} from '@azure/storage-blob';
import { ConfigError } from '../../replication/errors.js';

/**
 * Clients for an Azure Storage account (or Azurite) built from one plain config: the account's
 * blob endpoint, its shared key and, for endpoints whose certificate our PKI issued (the lab's
 * Azurite), the CA to trust instead of the system roots.
 */

/** Where a storage account is and how to authenticate to it. */
export interface StorageAccountConfig {
  /** Blob endpoint: https://<account>.blob.core.windows.net, or https://127.0.0.1:<port>/devstoreaccount1. */
  url: string;
  accountName: string;
  /** Base64 shared key. Kept out of logs and error messages. */
  accountKey: string;
  /** PEM CA certificate(s) to trust for this endpoint instead of the system roots. */
  caPem?: string;
  /** Sockets per endpoint; the disk's own limit on requests in flight is the real bound. Default 64. */
  maxSockets?: number;
  /** Time one HTTP try may take before it is abandoned (and retried by us). Default 60 s. */
  tryTimeoutMs?: number;
}

/**
 * Azurite's well-known development account. Microsoft publishes this key in the Azurite and
 * Azure Storage emulator documentation; it protects nothing and is not a secret.
 */
export const AZURITE_ACCOUNT = Object.freeze({
  accountName: 'devstoreaccount1',
  accountKey: 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
});

/** Puts our HTTPS agent (CA, socket pool) on every request: the SDK has no option for a CA. */
function agentPolicyFactory(agent: Agent): RequestPolicyFactory {
  return {
    create(next: RequestPolicy): RequestPolicy {
      return {
        sendRequest(request: WebResource) {
          request.agent = agent;
          return next.sendRequest(request);
        },
      };
    },
  };
}

/**
 * A BlobServiceClient for the account. The SDK's own retries are off (one try): retry.ts is the
 * single retry layer, so attempt counts and time bounds are ours.
 */
export function blobServiceClient(config: StorageAccountConfig): BlobServiceClient {
  let url: URL;
  try {
    url = new URL(config.url);
  } catch (err) {
    throw new ConfigError('AZURE_CONFIG', `the storage endpoint ${JSON.stringify(config.url)} is not a URL`, { cause: err });
  }
  if (url.protocol !== 'https:') throw new ConfigError('AZURE_CONFIG', `the storage endpoint ${url.origin} must use https`);
  if (url.username !== '' || url.password !== '' || url.search !== '')
    throw new ConfigError('AZURE_CONFIG', 'the storage endpoint must not carry credentials or a query string (SAS); give the account key instead');
  if (config.accountName.length === 0 || config.accountKey.length === 0) throw new ConfigError('AZURE_CONFIG', 'the storage account name and key are required');
  const credential = new StorageSharedKeyCredential(config.accountName, config.accountKey);
  const pipeline = newPipeline(credential, { retryOptions: { maxTries: 1, tryTimeoutInMs: config.tryTimeoutMs ?? 60_000 } });
  const agent = new Agent({ keepAlive: true, maxSockets: config.maxSockets ?? 64, ...(config.caPem === undefined ? {} : { ca: config.caPem }) });
  pipeline.factories.push(agentPolicyFactory(agent));
  return new BlobServiceClient(url.toString().replace(/\/$/, ''), pipeline);
}

/** The container, created if missing. */
export async function ensureContainer(service: BlobServiceClient, name: string): Promise<ContainerClient> {
  const container = service.getContainerClient(name);
  await container.createIfNotExists();
  return container;
}

/** The page blob `blob` in `container` (nothing is sent). */
export function pageBlobClient(service: BlobServiceClient, container: string, blob: string): PageBlobClient {
  return service.getContainerClient(container).getPageBlobClient(blob);
}
