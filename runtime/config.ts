// The configuration every part of berth reads, written once as a schema:
// defaults, documentation (`berthd config default`), validation, which keys a
// reload applies live, and the TypeScript type (derived below, never declared
// twice). Loading files, drop-ins and flags is shim/config.ts.
import { bool, type ConfigOf, int, mapOf, oneOf, section, str, strings } from './config-schema';

const absolutePath = (v: string): string | undefined =>
  v.startsWith('/') ? undefined : 'must be an absolute path';
const optionalAbsolutePath = (v: string): string | undefined =>
  v === '' || v.startsWith('/') ? undefined : 'must be empty or an absolute path';
const host = (v: string): string | undefined =>
  /^[A-Za-z0-9.:\-[\]]+$/.test(v) ? undefined : 'must be an IP address or host name';
const cidr = (v: string): string | undefined =>
  /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(v) ? undefined : 'must be an IPv4 CIDR such as 10.85.0.0/16';
const interfaceName = (v: string): string | undefined =>
  /^[A-Za-z0-9_.-]{1,15}$/.test(v) ? undefined : 'must be a network interface name of at most 15 characters';
const httpUrl = (v: string): string | undefined =>
  /^https?:\/\/[^\s/]+(\/.*)?$/.test(v) ? undefined : 'must be an http:// or https:// URL';

const base64UserPassword = (v: string): string | undefined =>
  v === '' || (/^[A-Za-z0-9+/]+=*$/.test(v) && Buffer.from(v, 'base64').toString('utf8').includes(':')) ? undefined : 'must be base64 of "user:password"';

const annotationPattern = (v: string): string | undefined =>
  /^[A-Za-z0-9./_-]+\*?$/.test(v) ? undefined : 'must be an annotation key, or a prefix ending in *';

const live = { live: true };

export const CONFIG_SCHEMA = section('berthd configuration', {
  root: str('/var/lib/berth', 'Persistent state: the SQLite database, image content, layers, container bundles.', absolutePath),
  state: str('/run/berth', 'Volatile state that does not survive a reboot.', absolutePath),
  socket: str('/run/berth/berth.sock', 'The CRI gRPC unix socket (kubelet: --container-runtime-endpoint unix://<socket>).', absolutePath),
  log_level: oneOf('info', ['trace', 'debug', 'info', 'warn', 'error', 'fatal'], 'Log level; every RPC is logged at debug.', live),
  log_format: oneOf('auto', ['auto', 'text', 'json'],
    'Log lines as JSON (one object a line) or text (time level message key=value); auto: text on a terminal, else JSON.', live),
  grpc: section('The CRI gRPC server.', {
    max_recv_message_bytes: int(16 * 1024 * 1024, 'Largest request accepted; larger ones are refused with RESOURCE_EXHAUSTED.', 1024),
    max_send_message_bytes: int(16 * 1024 * 1024, 'Largest response sent.', 1024),
  }),
  metrics: section('Prometheus metrics at http://<address>:<port>/metrics.', {
    enabled: bool(true, 'Serve metrics.'),
    address: str('127.0.0.1', 'Address to listen on.', host),
    port: int(9477, 'Port to listen on (0: any free port).', 0, 65535),
  }),
  cgroup: section('Control groups.', {
    driver: oneOf('cgroupfs', ['cgroupfs', 'systemd'], 'Cgroup driver; must match the kubelet\'s --cgroup-driver (berthd doctor compares them).'),
    systemd_socket: str('', 'systemd\'s D-Bus socket for the systemd driver; empty: its private socket /run/systemd/private, else the system bus (a path ending in bus_socket is a bus).', optionalAbsolutePath),
  }),
  oci: section('OCI runtimes, run under conmon.', {
    default_runtime: str('runc', 'Runtime handler used when a pod names none.'),
    conmon: str('conmon', 'The conmon binary (a name is looked up in PATH).'),
    criu: str('criu', 'The criu binary runc checkpoints and restores containers with (runc --criu; a name is looked up in PATH). criu 4.1 or later for Linux 6.13+.'),
    distribution_builds: oneOf('warn', ['warn', 'refuse'],
      'A distribution build (Debian +deb, Ubuntu, RHEL .el...) of a runtime older than its minimum: warn (run it with a loud warning at start and in Status: distributions backport fixes without changing the version) or refuse (as an upstream build).'),
    oom_score_adj_restriction: oneOf('auto', ['auto', 'always', 'never'],
      'Clamp oom_score_adj to what berthd may set itself: auto = when it lacks CAP_SYS_RESOURCE.'),
    runtimes: mapOf('Runtime handlers by name (the CRI runtime_handler).', section('One runtime handler.', {
      path: str('', 'The runtime binary (a name is looked up in PATH).'),
      root: str('', 'The runtime\'s --root state directory.', absolutePath),
      min_version: str('',
        'Oldest version of this runtime berthd runs. Empty: berth\'s table of container-escape advisories decides (runc: 1.2.8, 1.3.3 or 1.4.0-rc.3 and later; see SECURITY.md).',
        (v) => (v === '' || /^\d+\.\d+(\.\d+)?([-+~][0-9A-Za-z.+~-]*)?$/.test(v) ? undefined : 'must be empty or a version such as 1.2.8')),
      allowed_annotations: strings([],
        'Container annotations the runtime acts on (org.systemd.property.*, run.oci.*, io.kubernetes.cri-o.*, io.katacontainers.*, module.wasm.image/*, org.criu.*) that may still reach its config.json: exact keys or prefixes ending in *. Others of those are dropped.',
        annotationPattern),
    }), {
      runc: { path: 'runc', root: '/run/berth/runc' },
      crun: { path: 'crun', root: '/run/berth/crun' },
    }),
  }),
  sandbox: section('Pod sandboxes.', {
    namespace_dir: str('/var/run/berth/ns', 'Where pod namespaces are pinned (<dir>/<net|ipc|uts>/<pod>).', absolutePath),
    pause_image: str('registry.k8s.io/pause:3.10', 'Reported to the kubelet as the sandbox image; berth runs no pause container.'),
  }),
  image: section('Image pulls and the image store.', {
    max_concurrent_downloads: int(4, 'Layers downloaded at once per pull.', 1, 64),
    pull_progress_timeout_seconds: int(600, 'A pull that makes no progress (no byte received) for this long fails.', 1),
    max_layer_unpacked_bytes: int(64 * 1024 * 1024 * 1024, 'A layer that unpacks to more than this fails the pull.', 1),
    max_compression_ratio: int(1000, 'A layer whose unpacked size exceeds its compressed size times this fails the pull.', 1),
    // The per-layer limits stop one bomb; these stop an image of many ordinary layers that together fill
    // the disk or its inodes (the largest public images hold a few hundred thousand files, some tens of GiB).
    max_image_unpacked_bytes: int(128 * 1024 * 1024 * 1024,
      'An image whose layers together hold more bytes of files than this fails the pull (RESOURCE_EXHAUSTED); nothing of it is kept.', 1),
    max_image_entries: int(2_000_000,
      'An image whose layers together hold more entries (files, directories, links, devices, whiteouts) than this fails the pull.', 1),
    registries: mapOf('Per-registry settings, keyed by registry host as it appears in image names (docker.io, localhost:5000, ...).',
      section('One registry.', {
        mirrors: strings([], 'Endpoints tried first, in order, e.g. "http://127.0.0.1:5000".', httpUrl),
        plain_http: bool(false, 'Talk plain HTTP to the registry itself.'),
        insecure_skip_verify: bool(false, 'Accept any TLS certificate from the registry.'),
        ca_file: str('', 'PEM file of extra CAs for this registry.', optionalAbsolutePath),
        fallback_to_upstream: bool(true, 'When every mirror fails, try the registry itself.'),
        username: str('', 'User for the registry and its mirrors, used when a pull brings no credentials of its own.'),
        password: str('', 'That user\'s password.', undefined, { secret: true }),
        auth: str('', 'Or both as base64("user:password"), as a Docker config.json has them.', base64UserPassword, { secret: true }),
        identity_token: str('', 'Or an OAuth2 refresh token for the registry\'s token service.', undefined, { secret: true }),
      }), {}, { ...live, example: { key: 'localhost:5000', values: { plain_http: true } } }),
  }, { renamed: { pull_timeout_seconds: 'pull_progress_timeout_seconds' } }),
  cni: section('Pod networking through CNI plugins.', {
    conf_dir: str('/etc/cni/net.d',
      'Watched: the first .conflist/.conf/.json here (lexical order) that parses is the network of new pods; berth\'s fallback only while no other parses.',
      absolutePath, live),
    bin_dirs: strings(['/opt/cni/bin', '/usr/lib/cni'], 'Directories searched for plugin binaries, in order.', absolutePath, live),
    cache_dir: str('/var/lib/berth/cni', 'Results of ADD kept for DEL and CHECK.', absolutePath),
    write_default_conflist: bool(true,
      'Write berth\'s fallback network (99-berth-default.conflist, bridge + host-local) into conf_dir when it has no config at all; the kubelet\'s pod CIDR replaces its subnet.'),
    default_network_name: str('berth', 'Name of berth\'s fallback network.'),
    default_bridge: str('berth0', 'Bridge of berth\'s fallback network.', interfaceName),
    default_subnet: str('10.85.0.0/16', 'Pod subnet of berth\'s fallback network until the kubelet sends a pod CIDR.', cidr),
  }),
  streaming: section('The exec/attach/port-forward streaming server.', {
    address: str('127.0.0.1', 'Address to listen on.', host),
    port: int(0, 'Port to listen on (0: any free port).', 0, 65535),
    token_ttl_seconds: int(60, 'How long a streaming URL stays valid.', 1, 3600, live),
  }),
  container: section('Containers.', {
    exec_sync_max_output_bytes: int(16 * 1024 * 1024, 'ExecSync captures at most this much of each of stdout and stderr.', 1024),
    drain_exec_sync_io_timeout_ms: int(1000,
      'Once an ExecSync process has exited, how long its output may still take to close (a background child keeps it open): then the call answers with the exit code and the output so far, and the container\'s processes still holding that output are killed. The call\'s own timeout always bounds it. 0: no limit of its own (containerd\'s drain_exec_sync_io_timeout = "0s").',
      0, 3_600_000),
    seccomp_default_profile: str('', 'JSON seccomp profile for RuntimeDefault; empty: the profile built into berth.', optionalAbsolutePath),
  }),
});

export type BerthConfig = ConfigOf<typeof CONFIG_SCHEMA>;

export type LogLevel = BerthConfig['log_level'];
export type LogFormat = BerthConfig['log_format'];
export type CgroupDriver = BerthConfig['cgroup']['driver'];
export type OomScoreAdjPolicy = BerthConfig['oci']['oom_score_adj_restriction'];
export type OciRuntimeHandlerConfig = BerthConfig['oci']['runtimes'][string];
export type RegistryHostConfig = BerthConfig['image']['registries'][string];
