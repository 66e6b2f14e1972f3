// Every handler group, merged into the one table the server registers. A group
// is a module named after its RPCs; a method no group provides answers
// UNIMPLEMENTED.
import type { ShimServices } from './services';
import { AFTER_SERVING, type CriHandlers } from './handler';
import { podSandboxHandlers } from './pod-sandbox-rpcs';
import { containerHandlers } from './container-rpcs';
import { runtimeInfoHandlers } from './runtime-info-rpcs';
import { statsHandlers } from './stats-rpcs';
import { containerEventsHandlers } from './container-event-rpcs';
import { imageServiceHandlers } from './image-rpcs';
import { streamingHandlers } from './streaming-rpcs';

export function allHandlers(ctx: ShimServices): CriHandlers {
  const groups: CriHandlers[] = [
    runtimeInfoHandlers(ctx),
    statsHandlers(ctx),
    containerEventsHandlers(ctx),
    imageServiceHandlers(ctx),
    podSandboxHandlers(ctx),
    containerHandlers(ctx),
    streamingHandlers(ctx),
  ];
  const merged: Record<string, unknown> = {};
  for (const group of groups) {
    for (const [method, handler] of Object.entries(group)) {
      if (merged[method]) throw new Error(`two handler groups implement ${method}`);
      merged[method] = handler;
    }
  }
  const afterServing = groups.flatMap((group) => group[AFTER_SERVING] ?? []);
  return Object.assign(merged, { [AFTER_SERVING]: async () => void (await Promise.all(afterServing.map((work) => work()))) }) as CriHandlers;
}
