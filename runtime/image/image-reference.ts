// Image references as the kubelet and Docker spell them: "busybox" means
// docker.io/library/busybox:latest; a first component with a dot or a colon, or
// "localhost", is a registry host; tags and digests may both be given.
import { invalidArgument } from '../errors';

export const DEFAULT_REGISTRY = 'docker.io';
const LEGACY_DEFAULT_REGISTRIES = new Set(['index.docker.io', 'registry-1.docker.io']);
const MAX_NAME_LENGTH = 255;

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;
// A registry host: DNS labels or an IPv4 address or [IPv6], optional port.
const HOST = /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;

export interface ImageReference {
  /** Registry host as written (docker.io for Docker Hub), with port when given. */
  registry: string;
  /** Path inside the registry, e.g. "library/busybox". */
  repository: string;
  tag?: string;
  /** "sha256:<hex>". */
  digest?: string;
}

/** True for a full or short hexadecimal image id (with or without "sha256:"). */
export function looksLikeImageId(text: string): boolean {
  return /^(sha256:)?[a-f0-9]{64}$/.test(text);
}

/** Parses a reference; a reference with neither tag nor digest gets tag "latest". Throws InvalidArgument. */
export function parseImageReference(text: string): ImageReference {
  if (text.length === 0) throw invalidArgument('image reference is empty');
  if (text !== text.trim() || /\s/.test(text)) throw invalidArgument(`image reference "${text}" contains whitespace`);
  if (/^[a-f0-9]{64}$/.test(text)) {
    throw invalidArgument(`image reference "${text}" is a 64-character hex string: an image id, not a repository name`);
  }
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw invalidArgument(`image reference "${text}": "${digest}" is not a valid digest`);
    if (digest.startsWith('sha256:') && !SHA256_DIGEST.test(digest)) {
      throw invalidArgument(`image reference "${text}": a sha256 digest has 64 lowercase hex characters`);
    }
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalidArgument(`image reference "${text}": "${tag}" is not a valid tag`);
  }
  if (rest.length === 0) throw invalidArgument(`image reference "${text}" has no repository name`);

  let registry = DEFAULT_REGISTRY;
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      if (!HOST.test(first)) throw invalidArgument(`image reference "${text}": "${first}" is not a valid registry host`);
      registry = first;
      path = rest.slice(slash + 1);
    }
  }
  if (LEGACY_DEFAULT_REGISTRIES.has(registry)) registry = DEFAULT_REGISTRY;
  if (path !== path.toLowerCase()) throw invalidArgument(`image reference "${text}": repository names must be lowercase`);
  for (const component of path.split('/')) {
    if (!PATH_COMPONENT.test(component)) {
      throw invalidArgument(`image reference "${text}": "${component}" is not a valid repository path component`);
    }
  }
  if (registry === DEFAULT_REGISTRY && !path.includes('/')) path = `library/${path}`;
  if (`${registry}/${path}`.length > MAX_NAME_LENGTH) {
    throw invalidArgument(`image reference "${text}": the name is longer than ${MAX_NAME_LENGTH} characters`);
  }
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { registry, repository: path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** "docker.io/library/busybox". */
export function repositoryName(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** "docker.io/library/busybox:latest", or undefined when the reference has no tag. */
export function taggedName(ref: ImageReference): string | undefined {
  return ref.tag === undefined ? undefined : `${repositoryName(ref)}:${ref.tag}`;
}

/** "docker.io/library/busybox@sha256:..." for a given digest. */
export function digestedName(ref: ImageReference, digest: string): string {
  return `${repositoryName(ref)}@${digest}`;
}

/** The canonical spelling: name[:tag][@digest]. */
export function formatImageReference(ref: ImageReference): string {
  return `${repositoryName(ref)}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}
