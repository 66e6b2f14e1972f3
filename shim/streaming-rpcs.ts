// Exec, Attach, PortForward: validate, look the container or pod up (by id or
// unique prefix, through the models' lookups and their errors), and hand
// out a single-use URL on berth's streaming server (shim/streaming/), where the
// session itself runs over SPDY/3.1 or WebSocket.
import { failedPrecondition, invalidArgument } from '../runtime/errors';
import type { ShimServices } from './services';
import type { CriHandlers } from './handler';

function validateStdio(r: { stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean }): void {
  // With a tty, stdout and stderr are one terminal stream: there is nothing to multiplex.
  if (r.tty && r.stderr) throw invalidArgument('tty and stderr cannot both be true');
  if (!r.stdin && !r.stdout && !r.stderr) throw invalidArgument('one of stdin, stdout, or stderr must be set');
}

export function streamingHandlers(ctx: Pick<ShimServices, 'containers' | 'log' | 'sandboxes' | 'streaming'>): CriHandlers {
  return {
    async Exec(request) {
      if (request.cmd.length === 0 || request.cmd[0] === '') throw invalidArgument('cmd: must name a command');
      validateStdio(request);
      const container = ctx.containers.requireRunning(request.container_id);
      const url = ctx.streaming.urlFor({
        kind: 'exec',
        containerId: container.id,
        cmd: [...request.cmd],
        stdin: request.stdin,
        stdout: request.stdout,
        stderr: request.stderr,
        tty: request.tty,
      });
      ctx.log.debug({ container: container.id, cmd: request.cmd, tty: request.tty }, 'exec URL handed out');
      return { url };
    },

    async Attach(request) {
      validateStdio(request);
      const container = ctx.containers.requireRunning(request.container_id);
      const url = ctx.streaming.urlFor({
        kind: 'attach',
        containerId: container.id,
        stdin: request.stdin,
        stdout: request.stdout,
        stderr: request.stderr,
        tty: request.tty,
      });
      ctx.log.debug({ container: container.id, tty: request.tty }, 'attach URL handed out');
      return { url };
    },

    async PortForward(request) {
      const sandbox = ctx.sandboxes.resolve(request.pod_sandbox_id);
      for (const port of request.port) {
        if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalidArgument(`port: ${port} is not a TCP port`);
      }
      if (sandbox.state !== 'SANDBOX_READY') throw failedPrecondition(`pod sandbox ${sandbox.id} is not ready`);
      const url = ctx.streaming.urlFor({ kind: 'portforward', podSandboxId: sandbox.id, ports: [...request.port] });
      ctx.log.debug({ pod: sandbox.id, ports: request.port }, 'port-forward URL handed out');
      return { url };
    },
  };
}
