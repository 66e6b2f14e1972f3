// The Node.js and V8 flags berthd runs with: scripts/install.sh writes them
// into the launcher the systemd unit starts, and bench/ starts berthd with
// them. Chosen with the density benchmark's memory figures (bench/README.md,
// "Memory and V8 flags", where each flag tried is recorded): V8's
// optimize-for-size mode (smaller heap growth steps, less code kept) and a
// young generation of at most 2 MiB per semi-space (V8's default grows it to
// 16 MiB under load) took berthd from 79 to 58 MiB PSS after a kubelet's load
// at 20 pods, with no measurable change in call latency or CPU.
export const BERTHD_NODE_FLAGS: readonly string[] = ['--optimize-for-size', '--max-semi-space-size=2'];

/**
 * glibc's malloc arenas for berthd (MALLOC_ARENA_MAX, set by the launcher unless the environment already sets it).
 * glibc gives each thread that allocates its own arena, up to 8 per core: Node's V8 platform workers, the libuv
 * pool, the layer workers. Each keeps what its thread freed, so an idle berthd held ~4 MiB in arenas of threads
 * that had done their work (bench/README.md, "Idle memory (session 7)", where pulls and density were measured with
 * and without). Threads still keep their own small-block caches (tcache), so sharing the arena costs no
 * measurable lock contention.
 */
export const BERTHD_MALLOC_ARENA_MAX = 1;
