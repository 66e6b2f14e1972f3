// The OCI runtime handlers berthd is configured with (runc, crun...), each at
// the path host detection found, under its own --root.
import type { BerthConfig } from '../config';
import { failedPrecondition } from '../errors';
import type { HostFacts } from '../host/host-facts';
import { OciRuntime, type OciCallObserver } from './oci-runtime';

export class OciRuntimes {
  private readonly byHandler = new Map<string, OciRuntime>();
  /** Handlers whose runtime version was refused at start (runtime-versions.ts), with why. */
  private readonly refused = new Map<string, string>();

  constructor(config: BerthConfig, host: HostFacts, observe?: OciCallObserver) {
    for (const [handler, rt] of Object.entries(config.oci.runtimes)) {
      const facts = host.ociRuntimes[handler];
      const path = facts && 'path' in facts ? facts.path : rt.path;
      const verdict = host.ociRuntimeVersions?.[handler];
      this.byHandler.set(handler, new OciRuntime({ handler, path, root: rt.root, systemdCgroup: config.cgroup.driver === 'systemd', fastPaths: verdict?.fastPaths, observe }));
      if (verdict?.verdict === 'refused') this.refused.set(handler, verdict.message);
    }
  }

  /** The runtime of a handler name; FAILED_PRECONDITION when it is not configured, or its version was refused at start. */
  require(handler: string): OciRuntime {
    const rt = this.byHandler.get(handler);
    if (!rt) throw failedPrecondition(`runtime handler "${handler}" is not configured`);
    const refused = this.refused.get(handler);
    if (refused) throw failedPrecondition(`runtime handler "${handler}" is refused: ${refused}`);
    return rt;
  }

  /** Every configured handler's runtime (refused ones too: recovery still deletes what they ran). */
  all(): OciRuntime[] {
    return [...this.byHandler.values()];
  }

  /** The runtime of a handler name, if configured (a record may name one since removed from the config). */
  find(handler: string): OciRuntime | undefined {
    return this.byHandler.get(handler);
  }
}
