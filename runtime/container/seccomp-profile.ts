// berth's RuntimeDefault seccomp profile: deny by default (EPERM), allow the
// system calls ordinary programs make, and allow the privileged ones only when
// the container holds the capability that makes them meaningful. Namespace
// creation, mounts, the kernel keyring, ptrace, module loading, bpf and
// perf are refused to an unprivileged container.
import { readFileSync } from 'node:fs';
import { describeError, invalidArgument } from '../errors';
import type { ContainerSecurityContext } from './oci-spec-types';

export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: 'SCMP_CMP_EQ' | 'SCMP_CMP_MASKED_EQ' | 'SCMP_CMP_NE';
}

export interface SeccompSyscall {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: SeccompArg[];
}

export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  syscalls: SeccompSyscall[];
}

const EPERM = 1;
const ENOSYS = 38;

// Ordinary system calls: files, memory, processes without new namespaces,
// signals, sockets, time reading, scheduling of oneself, SysV/POSIX IPC.
const ALWAYS_ALLOWED = `
accept accept4 access alarm arch_prctl bind brk cacheflush capget capset chdir chmod chown chown32 chroot
clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range
connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2
epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64
fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64
futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid
getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid
getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid
getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init
inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get
ioprio_set io_setup io_submit io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listxattr llistxattr
_llseek lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret
mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd
msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_getfd
pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64
preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink
readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2
restart_syscall riscv_flush_icache rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield seccomp
select semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid
setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid setregid32
setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt
set_thread_area set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd
signalfd4 sigprocmask sigreturn socket socketcall socketpair splice stat stat64 statfs statfs64 statx symlink
symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64
timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime
utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
`;

// Allowed only while the container holds the capability (the kernel would
// refuse most of them anyway; the profile also closes bugs in the paths).
const BY_CAPABILITY: Record<string, string> = {
  CAP_SYS_ADMIN: `bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr
    move_mount open_tree perf_event_open pivot_root quotactl quotactl_fd setdomainname sethostname setns syslog umount
    umount2 unshare`,
  CAP_SYS_BOOT: 'reboot',
  CAP_SYS_CHROOT: '',
  CAP_SYS_MODULE: 'delete_module init_module finit_module',
  CAP_SYS_PACCT: 'acct',
  CAP_SYS_PTRACE: 'kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace',
  CAP_SYS_RAWIO: 'iopl ioperm',
  CAP_SYS_TIME: 'settimeofday stime clock_settime clock_settime64 adjtimex clock_adjtime clock_adjtime64',
  CAP_SYS_TTY_CONFIG: 'vhangup',
  CAP_SYS_NICE: 'get_mempolicy mbind set_mempolicy set_mempolicy_home_node',
  CAP_SYSLOG: 'syslog',
  CAP_BPF: 'bpf',
  CAP_PERFMON: 'perf_event_open',
};

const words = (s: string): string[] => s.split(/\s+/).filter(Boolean);

function architectures(): string[] {
  switch (process.arch) {
    case 'x64':
      return ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
    case 'arm64':
      return ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];
    default:
      return [];
  }
}

// clone(2) flag bits that create namespaces: CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET.
const CLONE_NAMESPACE_FLAGS = 0x7e020000;

/** The RuntimeDefault profile for a container holding `capabilities`. */
export function defaultSeccompProfile(capabilities: readonly string[]): OciSeccomp {
  const allowed = new Set(words(ALWAYS_ALLOWED));
  for (const [cap, calls] of Object.entries(BY_CAPABILITY)) if (capabilities.includes(cap)) for (const c of words(calls)) allowed.add(c);
  // personality(2): only the harmless personas (Linux, 32-bit address space, query).
  const syscalls: SeccompSyscall[] = [{ names: [...allowed].sort(), action: 'SCMP_ACT_ALLOW' }];
  for (const persona of [0x0, 0x8, 0x20000, 0x20008, 0xffffffff]) {
    syscalls.push({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: persona, op: 'SCMP_CMP_EQ' }] });
  }
  if (!capabilities.includes('CAP_SYS_ADMIN')) {
    // Threads and fork via clone are fine; namespace flags are not. The first
    // argument holds the flags on every architecture berth builds for.
    syscalls.push({
      names: ['clone'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
    });
    // clone3 passes flags in memory seccomp cannot read: answer ENOSYS so libc falls back to clone.
    syscalls.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS });
  }
  return { defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: EPERM, architectures: architectures(), syscalls };
}

/** A Localhost profile or a configured default: an OCI seccomp JSON file. */
export function loadSeccompProfile(path: string, field: string): OciSeccomp {
  if (!path.startsWith('/')) throw invalidArgument(`${field}: localhost profile "${path}" must be an absolute path`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw invalidArgument(`${field}: cannot read seccomp profile ${path}: ${describeError(err)}`);
  }
  const profile = parsed as Partial<OciSeccomp>;
  if (typeof profile.defaultAction !== 'string') throw invalidArgument(`${field}: ${path} has no defaultAction`);
  return { ...profile, syscalls: profile.syscalls ?? [] } as OciSeccomp;
}

/**
 * The seccomp profile a container asked for (seccomp, else the legacy
 * seccomp_profile_path): RuntimeDefault is berth's (or the configured file),
 * Localhost a file, Unconfined none.
 */
export function requestedSeccompProfile(
  sc: ContainerSecurityContext,
  capabilities: readonly string[],
  defaultProfilePath: string,
): OciSeccomp | undefined {
  const profile = sc?.seccomp;
  const runtimeDefault = (): OciSeccomp => (defaultProfilePath ? loadSeccompProfile(defaultProfilePath, 'container.seccomp_default_profile') : defaultSeccompProfile(capabilities));
  if (profile) {
    switch (profile.profile_type) {
      case 'RuntimeDefault':
        return runtimeDefault();
      case 'Localhost':
        if (!profile.localhost_ref) throw invalidArgument('config.linux.security_context.seccomp.localhost_ref: is empty for a Localhost profile');
        return loadSeccompProfile(profile.localhost_ref, 'config.linux.security_context.seccomp.localhost_ref');
      default:
        return undefined;
    }
  }
  const legacy = sc?.seccomp_profile_path ?? '';
  if (legacy === 'runtime/default' || legacy === 'docker/default') return runtimeDefault();
  if (legacy.startsWith('localhost/')) return loadSeccompProfile(legacy.slice('localhost/'.length), 'config.linux.security_context.seccomp_profile_path');
  if (legacy === '' || legacy === 'unconfined') return undefined;
  throw invalidArgument(`config.linux.security_context.seccomp_profile_path: unknown profile "${legacy}"`);
}
