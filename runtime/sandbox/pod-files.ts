// The per-pod files bind-mounted into every container: /etc/resolv.conf from
// the pod's DNSConfig, /etc/hosts, /etc/hostname.
import { readFileSync } from 'node:fs';
import type { DNSConfig__Output } from '../../cri-proto/generated/runtime/v1/DNSConfig';

/** resolv.conf for a DNSConfig; with no servers, searches or options the host's own file is used (as containerd does). */
export function renderResolvConf(dns: DNSConfig__Output | null, hostResolvConf = '/etc/resolv.conf'): string {
  if (!dns || (dns.servers.length === 0 && dns.searches.length === 0 && dns.options.length === 0)) {
    try {
      return readFileSync(hostResolvConf, 'utf8');
    } catch {
      return '';
    }
  }
  const lines: string[] = [];
  if (dns.searches.length > 0) lines.push(`search ${dns.searches.join(' ')}`);
  for (const server of dns.servers) lines.push(`nameserver ${server}`);
  if (dns.options.length > 0) lines.push(`options ${dns.options.join(' ')}`);
  return `${lines.join('\n')}\n`;
}

/** /etc/hosts of a pod with its own network: localhost entries and the pod's own name on its IPs. */
export function renderPodHosts(hostname: string, ips: readonly string[]): string {
  const lines = [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
  ];
  for (const ip of ips) lines.push(`${ip}\t${hostname}`);
  return `${lines.join('\n')}\n`;
}

export function hostFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

const HOSTNAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/i;

export function isValidHostname(name: string): boolean {
  return name.length <= 253 && HOSTNAME.test(name) && name.split('.').every((label) => label.length > 0 && label.length <= 63);
}
