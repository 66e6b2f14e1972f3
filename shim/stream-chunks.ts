// The Stream* RPCs (StreamPodSandboxes, StreamContainers, StreamImages and the
// stats streams) answer what their List* twins answer, cut into messages that
// stay far below the gRPC message limit. One loop for all of them, so every
// stream behaves alike: an empty list is one empty message (the client sees the
// same answer as the unary call), a cancelled call stops between messages.
import type { ResponseSink } from './handler';

export interface StreamChunking<T, R, M> {
  /** Items per message. */
  size: number;
  /** Wraps one chunk into the message type, e.g. (chunk) => ({ containers: chunk }). */
  wrap: (chunk: R[]) => M;
  /** Maps each item of a chunk (may be async: stats are read chunk by chunk, not all at once); absent, items go as they are. */
  map?: (item: T) => R | Promise<R>;
}

export async function streamInChunks<T, M, R = T>(items: T[], sink: ResponseSink<M>, chunking: StreamChunking<T, R, M>): Promise<void> {
  let start = 0;
  do {
    if (sink.cancelled()) return;
    const slice = items.slice(start, start + chunking.size);
    const { map } = chunking;
    const chunk = map ? await Promise.all(slice.map(map)) : (slice as unknown as R[]);
    await sink.write(chunking.wrap(chunk));
    start += chunking.size;
  } while (start < items.length);
}
