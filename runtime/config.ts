// The configuration every part of berth reads. The schema (defaults, documentation,
// validation) lives in shim/config.ts; this file only names the shape so the model
// can be handed its options without importing the shim.

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
export type CgroupDriver = 'cgroupfs' | 'systemd';
export type OomScoreAdjPolicy = 'auto' | 'always' | 'never';

export interface OciRuntimeHandlerConfig {
  /** Binary of the OCI runtime (runc, crun, or a path). */
  path: string;
  /** The runtime's --root state directory. */
  root: string;
}

export interface RegistryHostConfig {
  /** Endpoints tried in order before the registry itself, e.g. "http://127.0.0.1:5000". */
  mirrors: string[];
  /** Talk plain HTTP to the registry itself (mirrors carry their own scheme). */
  plain_http: boolean;
  /** Accept any TLS certificate. */
  insecure_skip_verify: boolean;
  /** PEM file of extra CAs for this registry. */
  ca_file: string;
  /** When false, a failing mirror is not followed by the upstream registry. */
  fallback_to_upstream: boolean;
}

export interface BerthConfig {
  root: string;
  state: string;
  socket: string;
  log_level: LogLevel;
  grpc: {
    max_recv_message_bytes: number;
    max_send_message_bytes: number;
  };
  metrics: {
    enabled: boolean;
    address: string;
    port: number;
  };
  cgroup: {
    driver: CgroupDriver;
  };
  oci: {
    default_runtime: string;
    conmon: string;
    oom_score_adj_restriction: OomScoreAdjPolicy;
    runtimes: Record<string, OciRuntimeHandlerConfig>;
  };
  sandbox: {
    namespace_dir: string;
    pause_image: string;
  };
  image: {
    max_concurrent_downloads: number;
    pull_timeout_seconds: number;
    max_layer_unpacked_bytes: number;
    max_compression_ratio: number;
    registries: Record<string, RegistryHostConfig>;
  };
  cni: {
    conf_dir: string;
    bin_dirs: string[];
    cache_dir: string;
    write_default_conflist: boolean;
    default_network_name: string;
    default_bridge: string;
    default_subnet: string;
  };
  streaming: {
    address: string;
    port: number;
    token_ttl_seconds: number;
  };
  container: {
    exec_sync_max_output_bytes: number;
    seccomp_default_profile: string;
  };
}
