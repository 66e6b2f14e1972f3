// Where a pod's network is set up and taken down: the CNI attachment of its
// pinned network namespace (ADD at RunPodSandbox, DEL at stop, remove and
// recovery, GC of attachments no pod claims at start). Each call to the CNI
// plugins is timed here, at the one caller, for the berth_cni_* metric.
import type { PodSandboxConfig__Output } from '../../cri-proto/generated/runtime/v1/PodSandboxConfig';
import { CniPluginError } from '../../cni/cni-error';
import { podIpsOf, type CniNetwork } from '../../cni/cni-network';
import type { Attachment, CniResult, RuntimeConfig } from '../../cni/cni-types';
import { NetworkConfigError } from '../../cni/network-config';
import { timeCall, type CallOutcome } from '../common/call-timing';
import { failedPrecondition, internal, invalidArgument } from '../errors';

/** The interface CNI creates inside the pod (the kubelet's convention). */
const POD_IFNAME = 'eth0';
const DEL_ATTEMPTS = 3;

/** Told the duration and outcome of each CNI operation ("ADD", "DEL", "GC"). */
export type CniCallObserver = (operation: string, seconds: number, outcome: CallOutcome) => void;

export interface PodNetworkOptions {
  network: CniNetwork;
  /** Pod CIDR from UpdateRuntimeConfig, passed to CNI as ipRanges ("" = none). */
  podCidr?: () => string;
  observe?: CniCallObserver;
}

/** What the pod's network needs to know of the pod. */
export interface PodNetworkRequest {
  podId: string;
  netnsPath: string;
  config: PodSandboxConfig__Output;
  /** From the bandwidth annotations, already validated (see bandwidthOf). */
  bandwidth: RuntimeConfig['bandwidth'] | undefined;
}

export interface PodAttachment {
  /** The pod's IPs, the primary first. */
  ips: string[];
  /** What the plugins returned (for verbose status). */
  result: CniResult;
}

export class PodNetwork {
  constructor(private readonly o: PodNetworkOptions) {}

  /** ADD: attaches the pod's network namespace to the pod network. A failed ADD leaves nothing attached. */
  async attach(request: PodNetworkRequest): Promise<PodAttachment> {
    let result: CniResult;
    try {
      // lo is already up: the namespaces were created with it.
      result = await this.timed('ADD', () => this.o.network.add(this.attachmentFor(request), { loopbackReady: true }));
    } catch (err) {
      if (err instanceof CniPluginError) throw internal(`RunPodSandbox: setting up the pod network: ${err.message}`, err);
      // No usable conflist: the node is not ready for pods, not a fault of the request.
      if (err instanceof NetworkConfigError) throw failedPrecondition(`RunPodSandbox: ${err.message}`);
      throw err;
    }
    return { ips: podIpsOf(result), result };
  }

  /** DEL: detaches the pod with what ADD used (a few tries: a plugin may be briefly busy). Nothing attached is fine. */
  async detach(podId: string): Promise<void> {
    let last: unknown;
    for (let attempt = 0; attempt < DEL_ATTEMPTS; attempt++) {
      try {
        await this.timed('DEL', () => this.o.network.del(podId, POD_IFNAME));
        return;
      } catch (err) {
        last = err;
        await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
      }
    }
    throw last;
  }

  /** Detaches every cached attachment whose pod is not in `attachedPodIds`, and lets CNI 1.1 plugins collect their own garbage. */
  collectGarbage(attachedPodIds: ReadonlySet<string>): ReturnType<CniNetwork['gc']> {
    return this.timed('GC', () => this.o.network.gc(attachedPodIds));
  }

  private timed<T>(operation: string, work: () => Promise<T>): Promise<T> {
    const observe = this.o.observe;
    return timeCall(work, observe && ((seconds, outcome) => observe(operation, seconds, outcome)));
  }

  private attachmentFor(request: PodNetworkRequest): Attachment {
    const { config, podId } = request;
    const meta = config.metadata!;
    const runtimeConfig: RuntimeConfig = {};
    const ports = config.port_mappings.filter((p) => p.host_port > 0);
    if (ports.length > 0) {
      runtimeConfig.portMappings = ports.map((p) => ({
        hostPort: p.host_port,
        containerPort: p.container_port,
        protocol: p.protocol.toLowerCase() as 'tcp' | 'udp' | 'sctp',
        ...(p.host_ip ? { hostIP: p.host_ip } : {}),
      }));
    }
    if (request.bandwidth) runtimeConfig.bandwidth = request.bandwidth;
    const cidrs = (this.o.podCidr?.() ?? '').split(',').filter(Boolean);
    if (cidrs.length > 0) runtimeConfig.ipRanges = cidrs.map((subnet) => [{ subnet }]);
    if (config.dns_config) {
      runtimeConfig.dns = { servers: config.dns_config.servers, searches: config.dns_config.searches, options: config.dns_config.options };
    }
    return {
      containerId: podId,
      netnsPath: request.netnsPath,
      ifName: POD_IFNAME,
      args: [
        ['IgnoreUnknown', '1'],
        ['K8S_POD_NAMESPACE', meta.namespace],
        ['K8S_POD_NAME', meta.name],
        ['K8S_POD_INFRA_CONTAINER_ID', podId],
        ['K8S_POD_UID', meta.uid],
      ],
      runtimeConfig,
    };
  }
}

/** kubernetes.io/{ingress,egress}-bandwidth annotations ("10M", "1G") as the bandwidth capability (bits/s). */
export function bandwidthOf(annotations: Record<string, string>): RuntimeConfig['bandwidth'] | undefined {
  const parse = (v: string | undefined): number | undefined => {
    if (!v) return undefined;
    const m = /^(\d+(?:\.\d+)?)([kMGT]?)$/.exec(v.trim());
    if (!m) throw invalidArgument(`config.annotations: bandwidth ${JSON.stringify(v)} is not a quantity such as 10M`);
    const scale = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] as '' | 'k' | 'M' | 'G' | 'T'];
    return Math.round(Number(m[1]) * scale);
  };
  const ingress = parse(annotations['kubernetes.io/ingress-bandwidth']);
  const egress = parse(annotations['kubernetes.io/egress-bandwidth']);
  if (ingress === undefined && egress === undefined) return undefined;
  // Burst as the kubelet's dockershim did: effectively unlimited within the rate.
  const burst = 2 ** 31 - 1;
  return {
    ...(ingress !== undefined ? { ingressRate: ingress, ingressBurst: burst } : {}),
    ...(egress !== undefined ? { egressRate: egress, egressBurst: burst } : {}),
  };
}
