// Who a container runs as: the CRI's run_as_user / run_as_username /
// run_as_group / supplemental_groups, or the image's USER, resolved against the
// rootfs' own /etc/passwd and /etc/group (never the host's). Those files are
// image content: read through the one hostile-content reader, off the event loop.
import { readRootfsFile } from '../common/rootfs-file-reader';
import { invalidArgument } from '../errors';

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /** Name from /etc/passwd, "" when the uid has no entry. */
  name: string;
  home: string;
}

export interface UserRequest {
  runAsUser?: number;
  runAsUsername?: string;
  runAsGroup?: number;
  supplementalGroups: number[];
  /** The image's USER ("name", "uid", "name:group", "uid:gid"), "" for root. */
  imageUser: string;
  /** Merge (the default): the image's /etc/group memberships join the groups; Strict: only the request's. */
  supplementalGroupsPolicy?: 'Merge' | 'Strict';
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** The image's users and groups, as read from its rootfs before the spec is built. */
export interface UserDatabase {
  passwd: PasswdEntry[];
  groups: GroupEntry[];
}

/**
 * Reads /etc/passwd and /etc/group of a mounted rootfs (missing: empty). A FIFO, a device, a
 * symlink or a file over 4 MiB there fails the create with INVALID_ARGUMENT naming the file.
 */
export async function readUserDatabase(rootfs: string): Promise<UserDatabase> {
  const [passwd, group] = await Promise.all(['/etc/passwd', '/etc/group'].map((path) => readRootfsFile(rootfs, path)));
  return { passwd: parsePasswd(passwd?.toString('utf8') ?? ''), groups: parseGroup(group?.toString('utf8') ?? '') };
}

/** The colon-separated entries of an /etc/passwd- or /etc/group-style file that have at least `fields` fields. */
function colonEntries(text: string, fields: number): string[][] {
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => line.split(':'))
    .filter((f) => f.length >= fields);
}

export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const f of colonEntries(text, 4)) {
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (Number.isInteger(uid) && Number.isInteger(gid)) out.push({ name: f[0], uid, gid, home: f[5] ?? '' });
  }
  return out;
}

export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const f of colonEntries(text, 3)) {
    const gid = Number(f[2]);
    if (Number.isInteger(gid)) out.push({ name: f[0], gid, members: (f[3] ?? '').split(',').filter(Boolean) });
  }
  return out;
}

const isNumeric = (s: string): boolean => /^\d+$/.test(s);

export function resolveUser(users: UserDatabase, request: UserRequest): ResolvedUser {
  return resolveUserFrom(users.passwd, users.groups, request);
}

export function resolveUserFrom(passwd: PasswdEntry[], groups: GroupEntry[], request: UserRequest): ResolvedUser {
  let uid: number;
  let gid: number | undefined;
  let entry: PasswdEntry | undefined;
  let source: string;

  if (request.runAsUsername) {
    entry = passwd.find((p) => p.name === request.runAsUsername);
    if (!entry) throw invalidArgument(`run_as_username: user "${request.runAsUsername}" is not in the image's /etc/passwd`);
    uid = entry.uid;
    source = 'run_as_username';
  } else if (request.runAsUser !== undefined) {
    uid = request.runAsUser;
    entry = passwd.find((p) => p.uid === uid);
    source = 'run_as_user';
  } else {
    const [userPart, groupPart] = splitImageUser(request.imageUser);
    source = 'image USER';
    if (!userPart) {
      uid = 0;
      entry = passwd.find((p) => p.uid === 0);
    } else if (isNumeric(userPart)) {
      uid = Number(userPart);
      entry = passwd.find((p) => p.uid === uid);
    } else {
      entry = passwd.find((p) => p.name === userPart);
      if (!entry) throw invalidArgument(`image USER "${request.imageUser}": user "${userPart}" is not in the image's /etc/passwd`);
      uid = entry.uid;
    }
    if (groupPart) {
      if (isNumeric(groupPart)) gid = Number(groupPart);
      else {
        const group = groups.find((g) => g.name === groupPart);
        if (!group) throw invalidArgument(`image USER "${request.imageUser}": group "${groupPart}" is not in the image's /etc/group`);
        gid = group.gid;
      }
    }
  }
  if (request.runAsGroup !== undefined) gid = request.runAsGroup;
  if (gid === undefined) gid = entry ? entry.gid : 0;
  void source;

  // The primary gid is a supplementary group too, as containerd and CRI-O set it (`id -G` lists it).
  const additional = new Set<number>([gid]);
  if (entry && request.supplementalGroupsPolicy !== 'Strict') {
    for (const g of groups) if (g.members.includes(entry.name)) additional.add(g.gid);
  }
  for (const g of request.supplementalGroups) additional.add(g);
  return { uid, gid, additionalGids: [...additional].sort((a, b) => a - b), name: entry?.name ?? '', home: entry?.home ?? '/' };
}

function splitImageUser(user: string): [string, string] {
  const idx = user.indexOf(':');
  return idx < 0 ? [user, ''] : [user.slice(0, idx), user.slice(idx + 1)];
}
