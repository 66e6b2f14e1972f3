// The one way berthd reads a file from inside an image or a container root
// filesystem. Their content is hostile: /etc/passwd may be a FIFO (a read that
// never returns), a device (/dev/zero: endless), a symlink aimed at the host,
// or gigabytes. The addon (native/src/rootfs_open.cc) resolves the path below
// the root with no symlink followed on the way, opens nothing but a regular
// file (O_NONBLOCK), reads at most a cap, and does it on a libuv pool thread:
// berthd's event loop never waits on image content.
import { loadNative, type BerthNative, type BeneathFile, type NativeError } from '../../native';
import { describeError, internal, invalidArgument } from '../errors';

/** What berthd reads of one file from an image at most, unless a caller says otherwise. */
export const ROOTFS_FILE_MAX_BYTES = 4 * 1024 * 1024;

export interface RootfsFileOptions {
  /** Refused beyond this many bytes (default ROOTFS_FILE_MAX_BYTES). */
  maxBytes?: number;
  /** How messages name the tree, e.g. "the image's root filesystem" (the default). */
  where?: string;
  native?: BerthNative;
}

const ENOENT = 2;
const ENOTDIR = 20;
const EXDEV = 18;
const ELOOP = 40;

const KIND_NAMES: Record<Exclude<BeneathFile['type'], 'file'>, string> = {
  directory: 'a directory',
  symlink: 'a symbolic link',
  fifo: 'a FIFO',
  'char-device': 'a character device',
  'block-device': 'a block device',
  socket: 'a socket',
  unknown: 'not a regular file',
};

/**
 * The bytes of the regular file at `path` (absolute, as seen inside the tree at `root`),
 * or undefined when nothing is there. Anything else there, a symlink on the way, or a
 * file over the cap is an INVALID_ARGUMENT naming the file; the tree is the request's image.
 */
export async function readRootfsFile(root: string, path: string, options: RootfsFileOptions = {}): Promise<Buffer | undefined> {
  const native = options.native ?? loadNative();
  const maxBytes = options.maxBytes ?? ROOTFS_FILE_MAX_BYTES;
  const where = options.where ?? "the image's root filesystem";
  let found: BeneathFile;
  try {
    found = await native.readFileBeneath(root, path, maxBytes);
  } catch (err) {
    const errno = (err as NativeError).errno;
    if (errno === ENOENT || errno === ENOTDIR) return undefined;
    if (errno === ELOOP) throw invalidArgument(`${path} in ${where} lies under a symbolic link; berth follows no links when it reads image files`);
    if (errno === EXDEV) throw invalidArgument(`${path} in ${where} leads outside it`);
    throw internal(`reading ${path} in ${where} failed: ${describeError(err)}`, err);
  }
  if (found.type !== 'file') {
    const link = found.type === 'symlink' ? '; berth follows no links when it reads image files' : ', not a regular file';
    throw invalidArgument(`${path} in ${where} is ${KIND_NAMES[found.type]}${link}`);
  }
  if (found.truncated) throw invalidArgument(`${path} in ${where} is larger than ${maxBytes} bytes (${found.size}); refused`);
  return found.data;
}
