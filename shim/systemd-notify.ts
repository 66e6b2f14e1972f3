// systemd's notify protocol for Type=notify units: READY=1 once the CRI socket
// serves, RELOADING=1 around a SIGHUP reload, STOPPING=1 at stop. The socket
// comes from $NOTIFY_SOCKET (a path or an "@abstract" name) and is taken out of
// the environment, so conmon and runc (which would act on it) never see it.
import { loadNative } from '../native';
import type { RuntimeLog } from '../runtime/common/log';

export class SystemdNotifier {
  private warned = false;

  constructor(
    private readonly socket: string | undefined,
    private readonly log: RuntimeLog,
    private readonly send: (socket: string, message: string) => void = (s, m) => loadNative().notifySend(s, m),
  ) {}

  /** Reads and removes NOTIFY_SOCKET from this process's environment. */
  static fromEnvironment(log: RuntimeLog): SystemdNotifier {
    const socket = process.env.NOTIFY_SOCKET;
    delete process.env.NOTIFY_SOCKET;
    return new SystemdNotifier(socket || undefined, log);
  }

  get enabled(): boolean {
    return this.socket !== undefined;
  }

  notify(fields: Record<string, string | number>): void {
    if (!this.socket) return;
    const message = Object.entries(fields).map(([k, v]) => `${k}=${v}`).join('\n');
    try {
      this.send(this.socket, message);
    } catch (err) {
      // systemd gone or the socket wrong: say it once, serving goes on.
      if (!this.warned) this.log.warn({ socket: this.socket, err: (err as Error).message }, 'cannot notify systemd');
      this.warned = true;
    }
  }

  ready(status: string): void {
    this.notify({ READY: 1, STATUS: status, MAINPID: process.pid });
  }

  reloading(): void {
    // MONOTONIC_USEC lets systemd 253+ (Type=notify-reload) match this to its reload request.
    this.notify({ RELOADING: 1, MONOTONIC_USEC: (process.hrtime.bigint() / 1000n).toString(), STATUS: 'reloading the configuration' });
  }

  stopping(): void {
    this.notify({ STOPPING: 1, STATUS: 'stopping: finishing calls in flight' });
  }
}
