// Unary calls whose answer is kept as the bytes that arrived: the time to an
// answer's last byte (the trailers follow it), without the Node client's
// decoding of it. For a large answer (ListContainers of 1000 containers,
// ~700 KB) the decoding is the client's own cost, the same for any runtime.
import * as grpc from '@grpc/grpc-js';
import { loadCriPackage } from '../../cri-proto';
import type { ClientMethod, ClientRequest } from '../../test/support/cri-client';

type AnyMethod = { path: string; requestSerialize: (value: unknown) => Buffer };

export class RawCaller {
  private readonly clients = new Map<string, grpc.Client>();

  /** Resolves with the answer's size in bytes once its last byte (and the status) arrived. */
  call<M extends ClientMethod>(socketPath: string, method: M, request: ClientRequest<M>, timeoutMs = 60_000): Promise<number> {
    const cri = loadCriPackage().runtime.v1;
    const spec = ((cri.RuntimeService.service as unknown as Record<string, AnyMethod>)[method] ?? (cri.ImageService.service as unknown as Record<string, AnyMethod>)[method]);
    if (!spec) throw new Error(`no CRI method ${method}`);
    let client = this.clients.get(socketPath);
    if (!client) {
      client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
      this.clients.set(socketPath, client);
    }
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(spec.path, spec.requestSerialize, (bytes: Buffer) => bytes, request, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, value) =>
        err ? reject(err) : resolve((value as Buffer).length),
      );
    });
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
