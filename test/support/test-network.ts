// Test networks that do not collide when several checkouts of berth run their
// suites on one host at once: each test process takes a free slot (a lock
// directory owned by its pid, taken over once that pid is gone) and every
// bridge name, network name and subnet it uses is shifted by that slot.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestNetwork {
  /** Network name, bridge (≤ 15 chars) and subnet unique to one test file. */
  name: string;
  bridge: string;
  subnet: string;
}

const SLOT_DIR = '/tmp/berth-test-network-slots';
/** The base subnets of the suite span 10.86–10.97 in their second octet; slots are that far apart. */
const SLOT_STRIDE = 13;
const SLOTS = 12;

let slot: number | undefined;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function takeSlot(): number {
  if (slot !== undefined) return slot;
  mkdirSync(SLOT_DIR, { recursive: true });
  for (let n = 0; n < SLOTS; n++) {
    const dir = join(SLOT_DIR, String(n));
    try {
      mkdirSync(dir);
    } catch {
      let owner = 0;
      try {
        owner = Number(readFileSync(join(dir, 'pid'), 'utf8'));
      } catch {
        // being written by its taker, or left half-made: skip it this time
        continue;
      }
      if (owner === process.pid) return (slot = n);
      if (owner && processAlive(owner)) continue;
      rmSync(dir, { recursive: true, force: true });
      try {
        mkdirSync(dir);
      } catch {
        continue;
      }
    }
    writeFileSync(join(dir, 'pid'), String(process.pid));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    return (slot = n);
  }
  // Every slot busy: share slot 0 rather than fail (the suites then may collide, as before).
  return (slot = 0);
}

/** `base`, moved to this process's slot: slot 0 leaves it as written. */
export function testNetwork(base: TestNetwork): TestNetwork {
  const n = takeSlot();
  if (n === 0) return base;
  const [address, prefix] = base.subnet.split('/');
  const octets = address.split('.').map(Number);
  octets[1] += SLOT_STRIDE * n;
  const bridge = `${base.bridge}${n.toString(36)}`;
  if (bridge.length > 15) throw new Error(`test bridge name ${bridge} is over 15 characters`);
  return { name: `${base.name}-s${n}`, bridge, subnet: `${octets.join('.')}/${prefix}` };
}

/** The first host address of a network's subnet (the bridge's gateway address). */
export function gatewayOf(net: TestNetwork): string {
  const octets = net.subnet.split('/')[0].split('.').map(Number);
  octets[3] += 1;
  return octets.join('.');
}

/** Matches an address of a /24 test network (the slot moves the subnet, so tests never spell it). */
export function addressIn(net: TestNetwork): RegExp {
  const prefix = net.subnet.split('/')[0].split('.').slice(0, 3).join('\\.');
  return new RegExp(`^${prefix}\\.\\d+$`);
}
