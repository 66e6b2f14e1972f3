/* berth-exec: runs one process in a running container, as `runc exec` does
 * for the containers berth can describe fully (no seccomp filter, no LSM
 * label, no user namespace, no terminal), in a few milliseconds instead of
 * runc's tens (Go start-up, and runc 1.1 copying its whole binary into a
 * memfd on every exec). berthd starts it from a sealed memfd copy (see
 * native/src/exec_helper.cc), so a container that re-executes
 * /proc/self/exe cannot reach this file on the host.
 *
 * The request comes on fd 3 (never in argv, which any host user can read):
 * NUL-terminated key/value pairs, keys repeated where a list is meant:
 *   pidfile P       where the process's host pid is written (tmp + rename), or
 *   pidout N        the fd (a pipe from berthd) it is written to, then closed;
 *                   berthd then needs no file, watch or removal per exec
 *   initpid N       the container's init; initstart S its start time
 *                   (/proc/N/stat field 22): checked after its namespaces
 *                   are opened, so a reused pid is refused
 *   pidns P         its PID namespace (joined here, so the process is born in it)
 *   ns P            another namespace to join, in order (mnt last)
 *   cgroup P        a cgroup.procs file to join, in order
 *   oom N  umask N  rlimit "TYPE SOFT HARD" (decimal; -1 = unlimited)
 *   uid N  gid N  group N
 *   capbnd/capeff/capprm/capinh/capamb M   capability masks (decimal)
 *   nnp 0|1         no_new_privs
 *   cwd P  env K=V  arg A
 * stdin/stdout/stderr are the process's. It prints a failure before the
 * process started on stderr and exits 255 (as runc exec does); otherwise it
 * waits for the process and exits with its status (128+N for signal N). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_REQUEST (4u << 20)
#define MAX_LIST 4096
#define MAX_PASSWD (1u << 20)

struct rlimit_req {
  int resource;
  struct rlimit limit;
};

struct request {
  const char *pidfile, *pidns, *cwd;
  int pidout;
  long initpid;
  unsigned long long initstart;
  const char *ns[16];
  int nns;
  const char *cgroups[64];
  int ncgroups;
  int oom, has_oom;
  long umask_value;
  struct rlimit_req rlimits[32];
  int nrlimits;
  uid_t uid;
  gid_t gid;
  gid_t groups[256];
  int ngroups;
  uint64_t capbnd, capeff, capprm, capinh, capamb;
  int nnp;
  char *env[MAX_LIST + 2];
  int nenv;
  char *args[MAX_LIST + 1];
  int nargs;
};

static void die(const char *what, int err) {
  dprintf(2, "berth-exec: %s: %s\n", what, strerror(err));
  _exit(255);
}

static void fail(const char *what) {
  dprintf(2, "berth-exec: %s\n", what);
  _exit(255);
}

static char *read_all(int fd, size_t *len) {
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap);
  if (!buf) die("malloc", ENOMEM);
  for (;;) {
    if (n == cap) {
      if (cap >= MAX_REQUEST) fail("request too large");
      cap *= 2;
      buf = realloc(buf, cap);
      if (!buf) die("realloc", ENOMEM);
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("read request", errno);
    if (r == 0) break;
    n += (size_t)r;
  }
  *len = n;
  return buf;
}

static long long number(const char *key, const char *text) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || *end || end == text) {
    dprintf(2, "berth-exec: %s: not a number: %s\n", key, text);
    _exit(255);
  }
  return v;
}

static uint64_t mask(const char *key, const char *text) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno || *end || end == text) {
    dprintf(2, "berth-exec: %s: not a mask: %s\n", key, text);
    _exit(255);
  }
  return v;
}

static void parse(char *buf, size_t len, struct request *q) {
  memset(q, 0, sizeof *q);
  q->umask_value = -1;
  q->pidout = -1;
  size_t i = 0;
  while (i < len) {
    char *key = buf + i;
    char *kend = memchr(key, 0, len - i);
    if (!kend || (size_t)(kend + 1 - buf) >= len) fail("malformed request");
    char *value = kend + 1;
    char *vend = memchr(value, 0, len - (size_t)(value - buf));
    if (!vend) fail("malformed request");
    i = (size_t)(vend + 1 - buf);
    if (!strcmp(key, "pidfile")) q->pidfile = value;
    else if (!strcmp(key, "pidout")) {
      long long fd = number(key, value);
      if (fd < 5 || fd > 1023) fail("pidout is an fd from 5 to 1023");
      q->pidout = (int)fd;
    }
    else if (!strcmp(key, "initpid")) q->initpid = (long)number(key, value);
    else if (!strcmp(key, "initstart")) q->initstart = (unsigned long long)number(key, value);
    else if (!strcmp(key, "pidns")) q->pidns = value;
    else if (!strcmp(key, "ns")) {
      if (q->nns >= 16) fail("too many namespaces");
      q->ns[q->nns++] = value;
    } else if (!strcmp(key, "cgroup")) {
      if (q->ncgroups >= 64) fail("too many cgroups");
      q->cgroups[q->ncgroups++] = value;
    } else if (!strcmp(key, "oom")) {
      q->oom = (int)number(key, value);
      q->has_oom = 1;
    } else if (!strcmp(key, "umask")) q->umask_value = (long)number(key, value);
    else if (!strcmp(key, "rlimit")) {
      if (q->nrlimits >= 32) fail("too many rlimits");
      long long type, soft, hard;
      if (sscanf(value, "%lld %lld %lld", &type, &soft, &hard) != 3) fail("malformed rlimit");
      struct rlimit_req *r = &q->rlimits[q->nrlimits++];
      r->resource = (int)type;
      r->limit.rlim_cur = soft < 0 ? RLIM_INFINITY : (rlim_t)soft;
      r->limit.rlim_max = hard < 0 ? RLIM_INFINITY : (rlim_t)hard;
    } else if (!strcmp(key, "uid")) q->uid = (uid_t)number(key, value);
    else if (!strcmp(key, "gid")) q->gid = (gid_t)number(key, value);
    else if (!strcmp(key, "group")) {
      if (q->ngroups >= 256) fail("too many groups");
      q->groups[q->ngroups++] = (gid_t)number(key, value);
    } else if (!strcmp(key, "capbnd")) q->capbnd = mask(key, value);
    else if (!strcmp(key, "capeff")) q->capeff = mask(key, value);
    else if (!strcmp(key, "capprm")) q->capprm = mask(key, value);
    else if (!strcmp(key, "capinh")) q->capinh = mask(key, value);
    else if (!strcmp(key, "capamb")) q->capamb = mask(key, value);
    else if (!strcmp(key, "nnp")) q->nnp = number(key, value) != 0;
    else if (!strcmp(key, "cwd")) q->cwd = value;
    else if (!strcmp(key, "env")) {
      if (q->nenv >= MAX_LIST) fail("too many env entries");
      q->env[q->nenv++] = value;
    } else if (!strcmp(key, "arg")) {
      if (q->nargs >= MAX_LIST) fail("too many args");
      q->args[q->nargs++] = value;
    } else {
      dprintf(2, "berth-exec: unknown key %s\n", key);
      _exit(255);
    }
  }
  if ((!q->pidfile && q->pidout < 0) || !q->pidns || !q->cwd || q->nargs == 0 || q->initpid <= 0) fail("incomplete request");
}

/* Field 22 of /proc/PID/stat: when the process started (clock ticks since boot). */
static unsigned long long start_time(long pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return 0;
  /* after ") " come fields 3..: state is field 3, start time field 22 */
  p += 2;
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (!p) return 0;
    p++;
  }
  return strtoull(p, NULL, 10);
}

static const char *env_value(const struct request *q, const char *name) {
  size_t len = strlen(name);
  for (int i = 0; i < q->nenv; i++)
    if (!strncmp(q->env[i], name, len) && q->env[i][len] == '=') return q->env[i] + len + 1;
  return NULL;
}

/* HOME from the container's /etc/passwd when the process has none (as runc sets it). */
static void add_home(struct request *q) {
  if (env_value(q, "HOME")) return;
  static char home[4096 + 6];
  strcpy(home, "HOME=/");
  int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  struct stat st;
  if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    static char text[MAX_PASSWD + 1];
    size_t n = 0;
    for (;;) {
      ssize_t r = read(fd, text + n, MAX_PASSWD - n);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      n += (size_t)r;
      if (n == MAX_PASSWD) break;
    }
    text[n] = 0;
    for (char *line = text; line && *line;) {
      char *next = strchr(line, '\n');
      if (next) *next++ = 0;
      /* name:passwd:uid:gid:gecos:home:shell */
      char *fields[7] = {0};
      int count = 0;
      for (char *f = line; count < 7; count++) {
        fields[count] = f;
        char *colon = strchr(f, ':');
        if (!colon) {
          count++;
          break;
        }
        *colon = 0;
        f = colon + 1;
      }
      if (count >= 6 && fields[2][0] && strtoull(fields[2], NULL, 10) == q->uid && fields[5][0] && strlen(fields[5]) <= 4096) {
        snprintf(home, sizeof home, "HOME=%s", fields[5]);
        break;
      }
      line = next;
    }
  }
  if (fd >= 0) close(fd);
  q->env[q->nenv++] = home;
}

static int capset_all(uint64_t eff, uint64_t prm, uint64_t inh) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  data[0].effective = (uint32_t)eff;
  data[1].effective = (uint32_t)(eff >> 32);
  data[0].permitted = (uint32_t)prm;
  data[1].permitted = (uint32_t)(prm >> 32);
  data[0].inheritable = (uint32_t)inh;
  data[1].inheritable = (uint32_t)(inh >> 32);
  return (int)syscall(SYS_capset, &header, data);
}

static int last_cap(void) {
  char buf[16] = {0};
  int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 40;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 0 ? atoi(buf) : 40;
}

/* In the process to be: everything runc's exec init does, then exec. Reports failures on `report`. */
static void become(struct request *q, const int *nsfds, const int *cgfds, int cap_last, int report) {
#define CHILD_FAIL(what)                                                             \
  do {                                                                               \
    int e_ = errno;                                                                  \
    dprintf(report, "%s: %s", what, strerror(e_));                                   \
    _exit(255);                                                                      \
  } while (0)
  for (int i = 0; i < q->ncgroups; i++)
    if (write(cgfds[i], "0", 1) != 1) CHILD_FAIL("joining the container's cgroup");
  if (q->has_oom) {
    char text[32];
    int len = snprintf(text, sizeof text, "%d", q->oom);
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, (size_t)len) != len) CHILD_FAIL("setting oom_score_adj");
    close(fd);
  }
  for (int i = 0; i < q->nns; i++)
    if (setns(nsfds[i], 0) != 0) CHILD_FAIL("joining the container's namespaces");
  for (int i = 0; i < q->nrlimits; i++)
    if (setrlimit(q->rlimits[i].resource, &q->rlimits[i].limit) != 0) CHILD_FAIL("setting an rlimit");
  if (q->umask_value >= 0) umask((mode_t)q->umask_value);
  add_home(q);
  for (int cap = 0; cap <= cap_last; cap++)
    if (!(q->capbnd & (1ull << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) CHILD_FAIL("dropping bounding capabilities");
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) CHILD_FAIL("keeping capabilities");
  if (setgroups((size_t)q->ngroups, q->groups) != 0) CHILD_FAIL("setting supplementary groups");
  if (setresgid(q->gid, q->gid, q->gid) != 0) CHILD_FAIL("setting the group");
  if (setresuid(q->uid, q->uid, q->uid) != 0) CHILD_FAIL("setting the user");
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) CHILD_FAIL("keeping capabilities");
  if (capset_all(q->capeff, q->capprm, q->capinh) != 0) CHILD_FAIL("setting capabilities");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) CHILD_FAIL("clearing ambient capabilities");
  for (int cap = 0; cap <= cap_last; cap++)
    if ((q->capamb & (1ull << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) CHILD_FAIL("raising ambient capabilities");
  if (chdir(q->cwd) != 0) CHILD_FAIL("changing to the working directory");
  if (q->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) CHILD_FAIL("setting no_new_privs");
  sigset_t none;
  sigemptyset(&none);
  for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  q->env[q->nenv] = NULL;
  q->args[q->nargs] = NULL;
  const char *file = q->args[0];
  if (strchr(file, '/')) {
    execve(file, q->args, q->env);
    CHILD_FAIL(file);
  }
  /* PATH as the process's own env says (execvpe would take the helper's). */
  const char *path = env_value(q, "PATH");
  if (!path) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  int first_error = ENOENT;
  static char candidate[8192];
  for (const char *dir = path;;) {
    const char *colon = strchr(dir, ':');
    size_t dlen = colon ? (size_t)(colon - dir) : strlen(dir);
    if (dlen + strlen(file) + 2 < sizeof candidate) {
      memcpy(candidate, dir, dlen);
      size_t at = dlen;
      if (at == 0) candidate[at++] = '.';
      candidate[at++] = '/';
      strcpy(candidate + at, file);
      execve(candidate, q->args, q->env);
      if (errno != ENOENT && errno != ENOTDIR && first_error == ENOENT) first_error = errno;
    }
    if (!colon) break;
    dir = colon + 1;
  }
  errno = first_error;
  dprintf(report, "exec: \"%s\": %s", file, first_error == ENOENT ? "executable file not found in $PATH" : strerror(first_error));
  _exit(255);
#undef CHILD_FAIL
}

static void report_pid(const struct request *q, pid_t pid) {
  if (q->pidout < 0) return;
  char text[32];
  int len = snprintf(text, sizeof text, "%d", (int)pid);
  /* berthd may have gone: a failed report costs the process nothing. */
  while (write(q->pidout, text, (size_t)len) < 0 && errno == EINTR) {
  }
  close(q->pidout);
}

/* Closes every fd from 3 up but `keep` (or all of them when keep < 3). */
static void close_from_3(int keep) {
#ifdef SYS_close_range
  int ok = keep >= 3 ? syscall(SYS_close_range, 3, (unsigned)keep - 1, 0) == 0 && syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0) == 0
                     : syscall(SYS_close_range, 3, ~0U, 0) == 0;
  if (ok) return;
#endif
  for (int fd = 3; fd < 1024; fd++)
    if (fd != keep) close(fd);
}

static void write_pidfile(const char *path, pid_t pid) {
  char tmp[4200], text[32];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) fail("pid file path too long");
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) die("pid file", errno);
  int len = snprintf(text, sizeof text, "%d", (int)pid);
  if (write(fd, text, (size_t)len) != len) die("pid file", errno);
  close(fd);
  if (rename(tmp, path) != 0) die("pid file", errno);
}

int main(void) {
  /* Nothing of this process may be opened or traced from inside the container before the exec. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  size_t len;
  char *buf = read_all(3, &len);
  struct request q;
  parse(buf, len, &q);
  /* fd 3 was the request; fd 4 this program's sealed copy: neither reaches the container. The pid's
   * pipe stays until the pid is written, close-on-exec so the process never holds it. */
  close_from_3(q.pidout);
  if (q.pidout >= 0 && fcntl(q.pidout, F_SETFD, FD_CLOEXEC) != 0) die("pidout", errno);

  int pidns = open(q.pidns, O_RDONLY | O_CLOEXEC);
  if (pidns < 0) die("the container's PID namespace", errno);
  int nsfds[16], cgfds[64];
  for (int i = 0; i < q.nns; i++) {
    nsfds[i] = open(q.ns[i], O_RDONLY | O_CLOEXEC);
    if (nsfds[i] < 0) die("the container's namespaces", errno);
  }
  /* The namespaces opened are the init's only if the pid still names the same process. */
  if (start_time(q.initpid) != q.initstart) fail("the container's init process is gone");
  for (int i = 0; i < q.ncgroups; i++) {
    cgfds[i] = open(q.cgroups[i], O_WRONLY | O_CLOEXEC);
    if (cgfds[i] < 0) die("the container's cgroup", errno);
  }
  int cap_last = last_cap();
  if (setns(pidns, CLONE_NEWPID) != 0) die("joining the container's PID namespace", errno);
  close(pidns);

  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) die("pipe", errno);
  pid_t child = fork();
  if (child < 0) die("fork", errno);
  if (child == 0) {
    close(report[0]);
    become(&q, nsfds, cgfds, cap_last, report[1]);
  }
  close(report[1]);
  for (int i = 0; i < q.nns; i++) close(nsfds[i]);
  for (int i = 0; i < q.ncgroups; i++) close(cgfds[i]);
  /* The report pipe closes at the exec (close-on-exec) or carries why there was none. */
  char why[1024];
  size_t got = 0;
  for (;;) {
    ssize_t r = read(report[0], why + got, sizeof why - 1 - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
    if (got == sizeof why - 1) break;
  }
  close(report[0]);
  int status;
  if (got > 0) {
    why[got] = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    dprintf(2, "berth-exec: exec failed: %s\n", why);
    return 255;
  }
  if (q.pidout >= 0) report_pid(&q, child);
  else write_pidfile(q.pidfile, child);
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) die("waitpid", errno);
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}
