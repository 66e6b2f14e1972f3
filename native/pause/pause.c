/* berth-pause: holds a pod's PID namespace when the pod shares one
 * (NamespaceMode.POD) and reaps the zombies re-parented to it.
 *
 * "berth-pause --new-pid-ns POD-ID [--userns PATH]" unshares a PID namespace,
 * forks the holder (PID 1 inside it), prints the holder's host PID on stdout and
 * exits, so the holder is no child of berthd and survives berthd restarts. With
 * --userns it first joins the pod's pinned user namespace, so the PID namespace
 * belongs to it (a container in that user namespace may then mount its /proc).
 * POD-ID is not used; it marks the holder's command line as the pod's. Without the flag it just
 * holds and reaps (e.g. when started inside a namespace by something else).
 * SIGTERM and SIGINT end it; as PID 1 it would otherwise ignore them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_stop(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void on_child(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

static int hold(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_child;
  sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  sigaction(SIGCHLD, &sa, NULL);
  prctl(PR_SET_NAME, "berth-pause", 0, 0, 0);
  while (!stop_requested) pause();
  return 0;
}

static void detach_stdio(void) {
  int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd < 0) return;
  dup2(fd, 0);
  dup2(fd, 1);
  dup2(fd, 2);
  if (fd > 2) close(fd);
}

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "--new-pid-ns") == 0) {
    if (argc > 4 && strcmp(argv[3], "--userns") == 0) {
      int fd = open(argv[4], O_RDONLY | O_CLOEXEC);
      if (fd < 0 || setns(fd, CLONE_NEWUSER) != 0) {
        fprintf(stderr, "berth-pause: joining the user namespace %s: %s\n", argv[4], strerror(errno));
        return 1;
      }
      close(fd);
    }
    if (unshare(CLONE_NEWPID) != 0) {
      fprintf(stderr, "berth-pause: unshare(CLONE_NEWPID): %s\n", strerror(errno));
      return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
      fprintf(stderr, "berth-pause: fork: %s\n", strerror(errno));
      return 1;
    }
    if (pid == 0) {
      setsid();
      detach_stdio();
      return hold();
    }
    printf("%d\n", (int)pid);
    fflush(stdout);
    return 0;
  }
  if (argc > 1) {
    fprintf(stderr, "usage: berth-pause [--new-pid-ns POD-ID [--userns PATH]]\n");
    return 2;
  }
  return hold();
}
