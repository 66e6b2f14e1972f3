// systemd's manager over D-Bus, for the calls a cgroup driver makes: transient
// slices and scopes (StartTransientUnit), their removal (StopUnit), live
// resource changes (SetUnitProperties) and where a unit's cgroup is
// (ControlGroup). A start or stop returns once its job has finished, as systemd
// reports through the JobRemoved signal.
import { existsSync } from 'node:fs';
import { DbusConnection, DbusError } from './dbus-connection';
import { variant, type DbusValue, type DbusVariant } from './dbus-wire';

const DEST = 'org.freedesktop.systemd1';
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER = 'org.freedesktop.systemd1.Manager';
/** systemd's own socket: root reaches the manager without a bus daemon (a kind node has none). */
export const SYSTEMD_PRIVATE_SOCKET = '/run/systemd/private';
export const SYSTEM_BUS_SOCKET = '/run/dbus/system_bus_socket';

/** One unit property for StartTransientUnit/SetUnitProperties: a name and a typed value. */
export type UnitProperty = [name: string, value: DbusVariant];

export function property(name: string, signature: string, value: DbusValue): UnitProperty {
  return [name, variant(signature, value)];
}

export interface SystemdManagerOptions {
  /** Socket path; default: systemd's private socket when present, else the system bus. */
  socket?: string;
  /** How long a job may take before the call fails. */
  jobTimeoutMs?: number;
}

export class SystemdError extends Error {}

/** Jobs that finished before their caller learnt the job's path (the signal can overtake the reply). */
const FINISHED_JOBS_KEPT = 256;

export class SystemdManager {
  private readonly waiters = new Map<string, (result: string) => void>();
  private readonly finished = new Map<string, string>();

  private constructor(
    private readonly connection: DbusConnection,
    readonly socket: string,
    private readonly jobTimeoutMs: number,
  ) {
    connection.onSignal((message) => {
      if (message.interface !== MANAGER || message.member !== 'JobRemoved') return;
      const [, job, , result] = message.body as [number, string, string, string];
      const waiter = this.waiters.get(job);
      if (waiter) {
        this.waiters.delete(job);
        waiter(result);
        return;
      }
      this.finished.set(job, result);
      if (this.finished.size > FINISHED_JOBS_KEPT) this.finished.delete(this.finished.keys().next().value as string);
    });
  }

  static async connect(options: SystemdManagerOptions = {}): Promise<SystemdManager> {
    const socket = options.socket ?? (existsSync(SYSTEMD_PRIVATE_SOCKET) ? SYSTEMD_PRIVATE_SOCKET : SYSTEM_BUS_SOCKET);
    const bus = socket.endsWith('bus_socket');
    const connection = await DbusConnection.connect({ path: socket, bus });
    const manager = new SystemdManager(connection, socket, options.jobTimeoutMs ?? 30_000);
    if (bus) {
      await connection.call({
        destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'AddMatch',
        signature: 's', body: [`type='signal',sender='${DEST}',interface='${MANAGER}',member='JobRemoved'`],
      });
    }
    // systemd sends job signals only to clients that subscribed.
    await manager.managerCall('Subscribe');
    return manager;
  }

  get closed(): boolean {
    return this.connection.closed;
  }

  close(): void {
    this.connection.close();
  }

  private managerCall(member: string, signature = '', body: DbusValue[] = []): Promise<DbusValue[]> {
    return this.connection.call({ destination: DEST, path: MANAGER_PATH, interface: MANAGER, member, signature, body });
  }

  private waitForJob(job: string, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const settle = (result: string): void => {
        clearTimeout(timer);
        if (result === 'done') resolve();
        else reject(new SystemdError(`${what}: systemd job ${result}`));
      };
      const timer = setTimeout(() => {
        this.waiters.delete(job);
        reject(new SystemdError(`${what}: systemd job did not finish within ${this.jobTimeoutMs} ms`));
      }, this.jobTimeoutMs);
      const early = this.finished.get(job);
      if (early !== undefined) {
        this.finished.delete(job);
        settle(early);
      } else {
        this.waiters.set(job, settle);
      }
    });
  }

  /** Manager property, e.g. "Version", "SystemState", "ControlGroup". */
  async managerProperty(name: string): Promise<DbusValue> {
    const [value] = await this.connection.call({
      destination: DEST, path: MANAGER_PATH, interface: 'org.freedesktop.DBus.Properties', member: 'Get',
      signature: 'ss', body: [MANAGER, name],
    });
    return (value as DbusVariant).value;
  }

  /**
   * Creates a transient unit and waits until it is started. A unit of that name that
   * already exists is an error (DbusError org.freedesktop.systemd1.UnitExists).
   */
  async startTransientUnit(name: string, properties: UnitProperty[]): Promise<void> {
    const [job] = await this.managerCall('StartTransientUnit', 'ssa(sv)a(sa(sv))', [name, 'replace', properties, []]);
    await this.waitForJob(job as string, `starting ${name}`);
  }

  /** Stops a unit and waits for it; a unit systemd does not know is already stopped. */
  async stopUnit(name: string): Promise<void> {
    let job: DbusValue;
    try {
      [job] = await this.managerCall('StopUnit', 'ss', [name, 'replace']);
    } catch (err) {
      if (err instanceof DbusError && err.dbusName === 'org.freedesktop.systemd1.NoSuchUnit') return;
      throw err;
    }
    await this.waitForJob(job as string, `stopping ${name}`);
  }

  /** Changes properties of a running unit, for this boot only. */
  async setUnitProperties(name: string, properties: UnitProperty[]): Promise<void> {
    await this.managerCall('SetUnitProperties', 'sba(sv)', [name, true, properties]);
  }

  /** A unit's object path, or undefined when systemd has no such unit loaded. */
  async unitPath(name: string): Promise<string | undefined> {
    try {
      const [path] = await this.managerCall('GetUnit', 's', [name]);
      return path as string;
    } catch (err) {
      if (err instanceof DbusError && err.dbusName === 'org.freedesktop.systemd1.NoSuchUnit') return undefined;
      throw err;
    }
  }

  /** A property of a unit through its type's interface (Slice, Scope, Service …). */
  async unitProperty(name: string, propertyName: string): Promise<DbusValue | undefined> {
    const path = await this.unitPath(name);
    if (!path) return undefined;
    const type = name.slice(name.lastIndexOf('.') + 1);
    const iface = `org.freedesktop.systemd1.${type === 'unit' ? 'Unit' : type[0].toUpperCase() + type.slice(1)}`;
    const [value] = await this.connection.call({
      destination: DEST, path, interface: 'org.freedesktop.DBus.Properties', member: 'Get',
      signature: 'ss', body: [propertyName.startsWith('Active') || propertyName === 'LoadState' ? 'org.freedesktop.systemd1.Unit' : iface, propertyName],
    });
    return (value as DbusVariant).value;
  }

  /** The unit's cgroup as systemd names it (relative to systemd's root cgroup), "" when it has none. */
  async controlGroup(name: string): Promise<string | undefined> {
    const value = await this.unitProperty(name, 'ControlGroup');
    return typeof value === 'string' ? value : undefined;
  }
}
