// Container-escape advisories of the OCI runtimes berth drives, by the release
// of each series that fixed them (from the runtimes' own release notes).
// Updated by hand when a new one is published.
import { compareVersions } from '../binaries';

export interface Advisory {
  ids: string[];
  severity: 'high' | 'low';
  summary: string;
  /** First fixed release of each series; a series newer than all of them is fixed, an older unlisted one is not. */
  fixedIn: string[];
  /** Only when the binary is run under this name (crun's krun mode). */
  onlyAs?: string;
}

export const RUNC_ADVISORIES: Advisory[] = [
  { ids: ['CVE-2024-21626'], severity: 'high', summary: 'leaked fd lets a container escape (process.cwd)', fixedIn: ['1.1.12'] },
  {
    ids: ['CVE-2025-31133', 'CVE-2025-52565', 'CVE-2025-52881'], severity: 'high',
    summary: 'masked-path, /dev/console and procfs-write races let a container escape', fixedIn: ['1.2.8', '1.3.3', '1.4.0-rc.3'],
  },
  { ids: ['CVE-2026-41579'], severity: 'low', summary: 'a /dev symlink in an image gives limited writes on the host', fixedIn: ['1.3.6', '1.4.3'] },
];

export const CRUN_ADVISORIES: Advisory[] = [
  { ids: ['CVE-2022-27650'], severity: 'low', summary: 'processes started with inheritable capabilities', fixedIn: ['1.4.4'] },
  { ids: ['CVE-2025-24965'], severity: 'high', summary: 'the krun handler lets an image escape its root filesystem', fixedIn: ['1.20'], onlyAs: 'krun' },
  // CVE-2026-88264/88265 (crun <= 1.29.1, no fix released when this was written) need a container
  // without its own /dev mount; berth always gives containers a fresh /dev tmpfs.
];

/** The newest release line berth suggests for each runtime. */
export const SUGGESTED_RELEASES: Record<string, string> = { runc: '1.3.6 or 1.4.3', crun: '1.20', krun: '1.20' };

function series(version: string): string {
  return version.split(/[-+~]/)[0].split('.').slice(0, 2).join('.');
}

export function isFixed(version: string, advisory: Advisory): boolean {
  const own = advisory.fixedIn.find((f) => series(f) === series(version));
  if (own) return compareVersions(version, own) >= 0;
  // A series after every listed one came out with the fix; an unlisted older one never got it.
  return advisory.fixedIn.every((f) => compareVersions(series(version), series(f)) > 0);
}

/** Advisories open for `binaryName` (runc, crun, or krun: crun under that name) at `version`. */
export function openAdvisories(binaryName: string, version: string): Advisory[] {
  const list = binaryName === 'runc' ? RUNC_ADVISORIES : binaryName === 'crun' || binaryName === 'krun' ? CRUN_ADVISORIES : [];
  return version ? list.filter((a) => (!a.onlyAs || a.onlyAs === binaryName) && !isFixed(version, a)) : [];
}

/** A version string a distribution built (Debian "+ds1", "-0ubuntu", "+deb12u1", ".el9"): fixes may be backported without a version bump. */
export function looksLikeDistributionBuild(versionText: string): boolean {
  return /\+ds|\+deb|ubuntu|\.el\d|\.fc\d|\+dfsg|-\d+\+/.test(versionText);
}
