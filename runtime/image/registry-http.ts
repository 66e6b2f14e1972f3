// Response bodies from a registry: read whole up to a cap (a registry's answer
// is hostile content), or drained so the connection can be reused.
import type { Dispatcher } from 'undici';
import { invalidArgument } from '../errors';

export type ResponseBody = Dispatcher.ResponseData['body'];

/** Discards a body we do not want (a little of it, then the connection goes). */
export async function drain(body: ResponseBody): Promise<void> {
  try {
    await body.dump({ limit: 64 * 1024 });
  } catch {
    // the connection goes away with it
  }
}

/** The whole body; more than `limit` bytes fails with INVALID_ARGUMENT naming `what`. */
export async function readLimited(body: ResponseBody, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      body.destroy();
      throw invalidArgument(`${what} is larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
