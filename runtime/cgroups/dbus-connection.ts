// A D-Bus connection over a unix socket: SASL EXTERNAL authentication as this
// process's uid, method calls matched to their replies by serial, and signals
// handed to listeners. It speaks either to a bus (dbus-daemon: Hello first) or
// directly to one peer, as to systemd's private socket, which root may use
// without any bus daemon (runc and go-systemd do the same). Every call has a
// deadline: a server that never answers fails the call, never hangs its caller.
import { createConnection, type Socket } from 'node:net';
import { decodeMessage, encodeMessage, messageLength, MessageType, type DbusMessage, type DbusValue } from './dbus-wire';

export class DbusError extends Error {
  /** The D-Bus error name, e.g. org.freedesktop.systemd1.NoSuchUnit. */
  readonly dbusName: string;
  constructor(dbusName: string, message: string) {
    super(message ? `${dbusName}: ${message}` : dbusName);
    this.dbusName = dbusName;
  }
}

export interface DbusCall {
  destination?: string;
  path: string;
  interface: string;
  member: string;
  signature?: string;
  body?: DbusValue[];
}

export interface DbusConnectOptions {
  /** Socket path. */
  path: string;
  /** A message bus (send Hello) rather than a direct peer. */
  bus: boolean;
  /** Give up connecting and authenticating after this long. */
  timeoutMs?: number;
  /** How long a method call may wait for its reply (default DEFAULT_CALL_TIMEOUT_MS). */
  callTimeoutMs?: number;
}

/** libdbus's and sd-bus's default reply timeout. */
export const DEFAULT_CALL_TIMEOUT_MS = 25_000;

type SignalListener = (message: DbusMessage) => void;

export class DbusConnection {
  private serial = 0;
  private readonly pending = new Map<number, { resolve: (m: DbusMessage) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly signalListeners = new Set<SignalListener>();
  private readonly closeListeners = new Set<(err: Error) => void>();
  private inbox: Buffer = Buffer.alloc(0);
  private closedError: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly path: string,
    private readonly callTimeoutMs: number,
  ) {}

  static async connect(options: DbusConnectOptions): Promise<DbusConnection> {
    const socket = createConnection(options.path);
    const timeoutMs = options.timeoutMs ?? 5000;
    const timer = setTimeout(() => socket.destroy(new Error(`D-Bus ${options.path}: no answer within ${timeoutMs} ms`)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      const leftover = await authenticate(socket);
      const connection = new DbusConnection(socket, options.path, options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS);
      connection.start(leftover);
      if (options.bus) {
        await connection.call({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'Hello' });
      }
      return connection;
    } catch (err) {
      socket.destroy();
      throw new Error(`D-Bus ${options.path}: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  private start(leftover: Buffer): void {
    this.socket.on('data', (chunk: Buffer) => this.receive(chunk));
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('close', () => this.fail(new Error('D-Bus connection closed')));
    if (leftover.length) this.receive(leftover);
  }

  private receive(chunk: Buffer): void {
    this.inbox = this.inbox.length ? Buffer.concat([this.inbox, chunk]) : chunk;
    try {
      for (;;) {
        const length = messageLength(this.inbox);
        if (length === undefined || this.inbox.length < length) return;
        const message = decodeMessage(this.inbox.subarray(0, length));
        this.inbox = this.inbox.subarray(length);
        this.dispatch(message);
      }
    } catch (err) {
      // A stream we cannot parse cannot be resynchronised: the connection is over.
      this.socket.destroy();
      this.fail(err as Error);
    }
  }

  private dispatch(message: DbusMessage): void {
    if (message.type === MessageType.Signal) {
      for (const listener of this.signalListeners) listener(message);
      return;
    }
    if (message.replySerial === undefined) return;
    const waiter = this.pending.get(message.replySerial);
    if (!waiter) return;
    this.pending.delete(message.replySerial);
    clearTimeout(waiter.timer);
    if (message.type === MessageType.Error) {
      waiter.reject(new DbusError(message.errorName ?? 'org.freedesktop.DBus.Error.Failed', typeof message.body[0] === 'string' ? message.body[0] : ''));
    } else {
      waiter.resolve(message);
    }
  }

  private fail(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const waiter of this.pending.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(err);
    }
    this.pending.clear();
    for (const listener of this.closeListeners) listener(err);
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  /** Calls a method and resolves with the reply's body; rejects when no reply came within timeoutMs. */
  call(call: DbusCall, timeoutMs = this.callTimeoutMs): Promise<DbusValue[]> {
    if (this.closedError) return Promise.reject(this.closedError);
    this.serial = (this.serial % 0xffffffff) + 1;
    const serial = this.serial;
    const bytes = encodeMessage({
      type: MessageType.MethodCall,
      flags: 0,
      serial,
      destination: call.destination,
      path: call.path,
      interface: call.interface,
      member: call.member,
      signature: call.signature ?? '',
      body: call.body ?? [],
    });
    return new Promise<DbusMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A late reply finds no waiter and is dropped.
        this.pending.delete(serial);
        reject(new DbusError('org.freedesktop.DBus.Error.NoReply', `${call.interface}.${call.member} on ${this.path}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(serial, { resolve, reject, timer });
      this.socket.write(bytes);
    }).then((reply) => reply.body);
  }

  onSignal(listener: SignalListener): () => void {
    this.signalListeners.add(listener);
    return () => this.signalListeners.delete(listener);
  }

  onClose(listener: (err: Error) => void): void {
    this.closeListeners.add(listener);
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
    this.fail(new Error('D-Bus connection closed by berth'));
  }
}

/**
 * SASL EXTERNAL: the server checks our uid through SO_PEERCRED; we only name it, hex-encoded.
 * Resolves with any bytes the server sent after OK that belong to the message stream.
 *
 * AUTH and BEGIN go out in one write, before the server's OK, as sd-bus's own clients
 * send them: the server reads BEGIN with AUTH, and our first message, sent only once
 * OK is back, always reaches a connection that is already running. systemd 252's
 * sd-bus server loses a message that arrives in the same read as BEGIN: it leaves the
 * bytes behind BEGIN in its buffer and only looks at them when the socket is readable
 * again, so a client that then waits for the reply waits forever. A loaded machine
 * makes that read likely (BEGIN written after OK, the call right behind it): berthd's
 * first call to systemd, Subscribe, then never returned.
 */
async function authenticate(socket: Socket): Promise<Buffer> {
  const uid = String(process.getuid?.() ?? 0);
  socket.write(`\0AUTH EXTERNAL ${Buffer.from(uid, 'ascii').toString('hex')}\r\nBEGIN\r\n`);
  const line = await new Promise<{ text: string; rest: Buffer }>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n');
      if (end < 0) {
        if (buf.length > 4096) done(new Error('D-Bus authentication line too long'));
        return;
      }
      done(undefined, { text: buf.toString('ascii', 0, end), rest: buf.subarray(end + 2) });
    };
    const onError = (err: Error): void => done(err);
    const onClose = (): void => done(new Error('closed during authentication'));
    const done = (err?: Error, value?: { text: string; rest: Buffer }): void => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve(value!);
    };
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
  });
  if (!line.text.startsWith('OK ')) throw new Error(`authentication as uid ${uid} refused: ${line.text}`);
  return line.rest;
}
