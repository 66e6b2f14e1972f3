// The streaming server's view of berth's containers and pods: exec through the
// container's OCI runtime, attach through its conmon, port-forward into its
// pod's network namespace. Looks ids up again at connect time, because the
// container may have stopped since the URL was handed out.
import type { Duplex } from 'node:stream';
import type { ContainerSessions } from '../container/container-types';
import { failedPrecondition, notFound } from '../errors';
import type { SandboxLookup } from '../sandbox/sandbox-types';
import { conmonAttach } from './conmon-attach';
import { connectPodPort } from './pod-port';
import { runtimeExec } from './runtime-exec';
import type { SessionIo, StreamingRuntime } from './session-types';

export interface ContainerStreamingDeps {
  containers: ContainerSessions;
  sandboxes: SandboxLookup;
  /** Where exec process specs and pid files are written while an exec runs. */
  workDir: string;
}

export class ContainerStreamingRuntime implements StreamingRuntime {
  constructor(private readonly deps: ContainerStreamingDeps) {}

  async exec(containerId: string, cmd: string[], io: SessionIo, signal: AbortSignal): Promise<number> {
    return runtimeExec(this.deps.containers.execTarget(containerId, cmd, io.tty), io, signal, this.deps.workDir);
  }

  async attach(containerId: string, io: SessionIo, signal: AbortSignal): Promise<void> {
    const c = this.deps.containers.requireRunning(containerId);
    await conmonAttach({ id: c.id, bundleDir: c.bundleDir, stdin: c.config.stdin }, io, signal);
  }

  async portForward(podSandboxId: string, port: number): Promise<Duplex> {
    const sandbox = this.deps.sandboxes.get(podSandboxId);
    if (!sandbox) throw notFound(`pod sandbox "${podSandboxId}" not found`);
    if (sandbox.state !== 'SANDBOX_READY') throw failedPrecondition(`pod sandbox ${podSandboxId} is not ready`);
    return connectPodPort(sandbox.netnsPath, port);
  }
}
