// Version, Status, RuntimeConfig, UpdateRuntimeConfig: what the kubelet asks
// before anything else, and on every sync loop (Status).
import { invalidArgument } from '../runtime/errors';
import type { ShimServices } from './services';
import type { CriHandlers } from './handler';
import { CONFIG_SCHEMA } from '../runtime/config';
import { redactedCopy } from '../runtime/config-schema';
import { buildInfo } from './build-info';
import { KeptAnswer, preEncoded, responseSerializer, type PreEncodedResponse } from './list-encoding';
import { criServiceDefinitions } from '../cri-proto';

export const RUNTIME_NAME = 'berth';
export const CRI_API_VERSION = 'v1';
/** The kubelet's own API version field; every CRI runtime answers 0.1.0. */
const KUBELET_API_VERSION = '0.1.0';

export const BERTH_VERSION = buildInfo().version;

export function runtimeInfoHandlers(ctx: Pick<ShimServices, 'config' | 'host' | 'log' | 'network' | 'podCidr' | 'runtimeReadiness'>): CriHandlers {
  type Condition = { ready: boolean; reason: string; message: string };
  const statusAnswer = (network: Condition, runtime: Condition, info: Record<string, string>) => ({
    status: {
      conditions: [
        { type: 'RuntimeReady', status: runtime.ready, reason: runtime.reason, message: runtime.message },
        { type: 'NetworkReady', status: network.ready, reason: network.reason, message: network.message },
      ],
    },
    info,
    // "" is the handler a pod that names none gets (the default), as containerd lists it: critest looks its features up by that name.
    runtime_handlers: ['', ...Object.keys(ctx.config.oci.runtimes)
      .sort((a, b) => (a === ctx.config.oci.default_runtime ? -1 : b === ctx.config.oci.default_runtime ? 1 : a.localeCompare(b)))]
      .map((name) => ({
        name,
        features: {
          recursive_read_only_mounts: ctx.host.mountFeatures.recursiveReadOnly.supported,
          user_namespaces: ctx.host.mountFeatures.userNamespaces.supported,
        },
      })),
    features: { supplemental_groups_policy: true, user_namespaces_host_network: false, mount_options: false },
  });
  const plainStatus = new KeptAnswer(responseSerializer(criServiceDefinitions().RuntimeService, 'Status'));
  // The same bytes for every Version call: encoded at the first.
  let versionAnswer: PreEncodedResponse | undefined;

  return {
    async Version(request) {
      // The only versions berth speaks; an empty version means "whatever you have".
      if (request.version && request.version !== KUBELET_API_VERSION && request.version !== CRI_API_VERSION) {
        ctx.log.debug({ asked: request.version }, 'kubelet asked for another API version; answering with ours');
      }
      return (versionAnswer ??= preEncoded(
        responseSerializer(criServiceDefinitions().RuntimeService, 'Version')({
          version: KUBELET_API_VERSION,
          runtime_name: RUNTIME_NAME,
          runtime_version: BERTH_VERSION,
          runtime_api_version: CRI_API_VERSION,
        }),
      ));
    },

    async Status(request) {
      // Indexed, not destructured: unoptimized, destructuring runs the iterator protocol.
      const both = await Promise.all([ctx.network.networkStatus(), ctx.runtimeReadiness.current()]);
      const network = both[0];
      const runtime = both[1];
      if (!request.verbose) {
        // The kubelet asks every few seconds and the answer rarely moves: encoded again only when a condition or the handlers do.
        const { oci } = ctx.config;
        const key = [network.ready, network.reason, network.message, runtime.ready, runtime.reason, runtime.message, oci.runtimes, oci.default_runtime];
        return plainStatus.answer(key, () => statusAnswer(network, runtime, {}));
      }
      const info: Record<string, string> = {};
      // What each condition was decided from, so `crictl info` explains a NotReady node.
      info.runtimeReadiness = JSON.stringify({
        checked: runtime.checked, checkedAt: runtime.checkedAt, handler: ctx.config.oci.default_runtime,
      });
      info.networkReadiness = JSON.stringify({
        confDir: ctx.config.cni.conf_dir, binDirs: ctx.config.cni.bin_dirs,
        checked: 'the first .conflist/.conf of confDir, each of its plugins in binDirs, and CNI STATUS for networks of CNI 1.1+',
        ...network,
      });
      info.config = JSON.stringify(redactedCopy(CONFIG_SCHEMA, ctx.config));
      info.host = JSON.stringify(ctx.host);
      info.cgroupMode = JSON.stringify(ctx.host.cgroup.mode);
      info.ociRuntimes = JSON.stringify(ctx.host.ociRuntimes);
      // Each handler's version against its minimum, and whether berth's runc fast paths are used for it.
      info.ociRuntimeVersions = JSON.stringify(ctx.host.ociRuntimeVersions ?? {});
      // Whether CheckpointContainer and restores work here (criu check at start), and why not in criu's words.
      info.checkpoint = JSON.stringify(ctx.host.checkpoint.criu);
      info.podCidr = JSON.stringify(ctx.podCidr.value);
      info.cniNetwork = JSON.stringify(network.network ?? null);
      info.version = JSON.stringify({ runtime: RUNTIME_NAME, version: BERTH_VERSION, commit: buildInfo().commit, node: process.version });
      return statusAnswer(network, runtime, info);
    },

    async RuntimeConfig() {
      return { linux: { cgroup_driver: ctx.config.cgroup.driver === 'systemd' ? 'SYSTEMD' : 'CGROUPFS' } };
    },

    async UpdateRuntimeConfig(request) {
      const cidr = request.runtime_config?.network_config?.pod_cidr ?? '';
      if (cidr && !/^[0-9a-fA-F.:]+\/\d{1,3}(,[0-9a-fA-F.:]+\/\d{1,3})*$/.test(cidr)) {
        throw invalidArgument(`runtime_config.network_config.pod_cidr: "${cidr}" is not a CIDR list`);
      }
      if (cidr !== ctx.podCidr.value) {
        ctx.log.info({ podCidr: cidr }, 'kubelet set the pod CIDR');
        ctx.podCidr.value = cidr;
        await ctx.network.applyPodCidr(cidr);
      }
      return {};
    },
  };
}
