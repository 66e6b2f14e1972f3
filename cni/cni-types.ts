// The CNI spec's data (1.0/1.1, and the 0.3/0.4 results older plugins print),
// as berth reads and writes it.

export interface PluginConfig {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface NetworkConfigList {
  cniVersion: string;
  name: string;
  plugins: PluginConfig[];
  disableCheck?: boolean;
  disableGC?: boolean;
  [key: string]: unknown;
}

export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
}

export interface CniIpConfig {
  address: string;
  gateway?: string;
  interface?: number;
  /** Only in 0.3/0.4 results. */
  version?: string;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: { dst: string; gw?: string }[];
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
  [key: string]: unknown;
}

/** What the runtime passes through the capabilities convention. */
export interface RuntimeConfig {
  portMappings?: { hostPort: number; containerPort: number; protocol: 'tcp' | 'udp' | 'sctp'; hostIP?: string }[];
  bandwidth?: { ingressRate?: number; ingressBurst?: number; egressRate?: number; egressBurst?: number };
  ipRanges?: { subnet: string }[][];
  dns?: { servers?: string[]; searches?: string[]; options?: string[] };
}

/** One pod's attachment to the network: everything ADD needs, and DEL/CHECK reuse. */
export interface Attachment {
  containerId: string;
  netnsPath: string;
  ifName: string;
  /** CNI_ARGS pairs, in order (IgnoreUnknown first). */
  args: [string, string][];
  runtimeConfig: RuntimeConfig;
}

/** The error a plugin prints on failure (spec: code, msg, details). */
export interface CniErrorBody {
  cniVersion?: string;
  code: number;
  msg: string;
  details?: string;
}
