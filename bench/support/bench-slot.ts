// BENCH_SLOT (0 unless set, up to 40): which host names a bench run uses, so
// a second run on the same machine (another tree's) takes its own bridges,
// subnets and cgroup root and neither tears down the other's.
const raw = process.env.BENCH_SLOT ?? '0';
const slot = Number(raw);
if (!Number.isInteger(slot) || slot < 0 || slot > 40) throw new Error(`BENCH_SLOT: expected an integer 0-40, got "${raw}"`);

export const BENCH_SLOT = slot;
export const CGROUP_ROOT = slot === 0 ? 'berth-bench' : `berth-bench${slot}`;
export const BERTH_BRIDGE = `bb-berth${slot}`;
export const BERTH_SUBNET = `10.${92 + 2 * slot}.0.0/16`;
export const CONTAINERD_BRIDGE = `bb-ctrd${slot}`;
export const CONTAINERD_SUBNET = `10.${91 + 2 * slot}.0.0/16`;
