// The registry client, loaded on the first pull: undici (HTTP client, its
// WebAssembly parser) is ~13 MiB of a Node process's memory, and a node that
// was handed its images (or pulls rarely) never needs it.
import type { RegistryClient, RegistryClientOptions } from './registry-client';

/** What pulls use of the registry client. */
export type RegistryAccess = Pick<RegistryClient, 'fetchManifest' | 'fetchSmallBlob' | 'openBlob' | 'close'>;

export class RegistryClientOnDemand implements RegistryAccess {
  private client: RegistryClient | undefined;

  constructor(private readonly options: RegistryClientOptions) {}

  private get loaded(): RegistryClient {
    if (!this.client) {
      const { RegistryClient: Client } = require('./registry-client') as typeof import('./registry-client');
      this.client = new Client(this.options);
    }
    return this.client;
  }

  /** Whether the client was ever loaded (tests; memory figures). */
  get isLoaded(): boolean {
    return this.client !== undefined;
  }

  fetchManifest(...args: Parameters<RegistryClient['fetchManifest']>): ReturnType<RegistryClient['fetchManifest']> {
    return this.loaded.fetchManifest(...args);
  }

  fetchSmallBlob(...args: Parameters<RegistryClient['fetchSmallBlob']>): ReturnType<RegistryClient['fetchSmallBlob']> {
    return this.loaded.fetchSmallBlob(...args);
  }

  openBlob(...args: Parameters<RegistryClient['openBlob']>): ReturnType<RegistryClient['openBlob']> {
    return this.loaded.openBlob(...args);
  }

  async close(): Promise<void> {
    await this.client?.close();
  }
}
