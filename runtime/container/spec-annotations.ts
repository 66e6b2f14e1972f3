// The annotations of config.json. A container's annotations come from whoever
// may create pods, yet runc and crun act on some of them: runc's and crun's
// systemd driver turn org.systemd.property.* into properties of the
// container's unit (resource limits, delegation...), crun reads run.oci.*
// (a seccomp failure mode, keeping groups, even run.oci.handler), criu
// configuration, a wasm handler. These pass only when the runtime handler's
// configuration allows them (oci.runtimes.<handler>.allowed_annotations, as
// CRI-O's allowed_annotations); every other annotation passes as given, and
// berth's own io.kubernetes.cri.* keys are always berth's.

/** Prefixes of annotations an OCI runtime (or its monitor) acts on. */
export const RUNTIME_ACTING_PREFIXES = [
  'org.systemd.property.',
  'run.oci.',
  'io.kubernetes.cri-o.',
  'io.katacontainers.',
  'module.wasm.image/',
  'org.criu.',
] as const;

/** berth's own keys: never taken from a request. */
const BERTH_PREFIX = 'io.kubernetes.cri.';

/** Whether `key` is allowed by a list of exact keys and "prefix*" patterns. */
export function annotationAllowed(key: string, allowed: readonly string[]): boolean {
  return allowed.some((pattern) => (pattern.endsWith('*') ? key.startsWith(pattern.slice(0, -1)) : key === pattern));
}

/** The request's annotations that may reach config.json, and the keys dropped. */
export function filterAnnotations(requested: Record<string, string>, allowed: readonly string[]): { kept: Record<string, string>; dropped: string[] } {
  const kept: Record<string, string> = {};
  const dropped: string[] = [];
  for (const [key, value] of Object.entries(requested)) {
    const acted = key.startsWith(BERTH_PREFIX) || RUNTIME_ACTING_PREFIXES.some((p) => key.startsWith(p));
    if (acted && !annotationAllowed(key, allowed)) dropped.push(key);
    else kept[key] = value;
  }
  return { kept, dropped };
}
