// A Duplex over a raw fd libuv cannot wrap: a pty master or a SOCK_SEQPACKET
// socket. Reads come from a native reader thread (one chunk per packet on a
// seqpacket socket); writes are non-blocking and retried while the fd is full.
import { Duplex } from 'node:stream';
import { loadNative, type BerthNative } from '../../native';

const RETRY_MS = 5;
/** conmon reads at most this much per packet from an attach socket. */
const MAX_PACKET = 32 * 1024;

export class FdStream extends Duplex {
  private readonly native: BerthNative;
  private readonly readerId: number;
  private readerEnded = false;
  private fdClosed = false;

  constructor(
    readonly fd: number,
    private readonly kind: 'pty' | 'seqpacket',
  ) {
    super({ allowHalfOpen: true });
    this.native = loadNative();
    this.readerId = this.native.startFdReader(fd, kind === 'seqpacket', (chunk, error) => {
      if (chunk) {
        this.push(chunk);
        return;
      }
      this.readerEnded = true;
      if (error) this.destroy(new Error(error));
      else this.push(null);
      if (this.destroyed) this.closeFd();
    });
  }

  override _read(): void {
    // The reader thread pushes as data comes; nothing to ask for.
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    let off = 0;
    const step = (): void => {
      if (this.fdClosed) return callback(new Error('fd closed'));
      try {
        while (off < chunk.length) {
          const piece = chunk.subarray(off, off + (this.kind === 'seqpacket' ? MAX_PACKET : chunk.length));
          const n = this.native.writeNonBlocking(this.fd, piece);
          if (n === 0) {
            setTimeout(step, RETRY_MS);
            return;
          }
          off += n;
        }
        callback();
      } catch (err) {
        callback(err as Error);
      }
    };
    step();
  }

  override _final(callback: (error?: Error | null) => void): void {
    // A socket can say "no more input" on its own; a pty master cannot without closing both ways.
    if (this.kind === 'seqpacket' && !this.fdClosed) {
      try {
        this.native.shutdownFd(this.fd, 1);
      } catch {
        // the peer is gone already
      }
    }
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.readerEnded) this.closeFd();
    else this.native.stopFdReader(this.readerId);
    callback(error);
  }

  private closeFd(): void {
    if (this.fdClosed) return;
    this.fdClosed = true;
    try {
      this.native.closeFd(this.fd);
    } catch {
      // already closed
    }
  }
}
