// Pod namespaces without a holder process: a short-lived clone()d child
// unshares network, IPC and UTS namespaces, sets the pod's hostname and
// sysctls inside them, brings lo up, and bind-mounts its /proc/thread-self/ns/*
// onto files under the pin dir. berthd's own namespaces never change, and the
// bind mounts keep the namespaces alive after the child exits.
#include "addon.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

namespace berth {

namespace {

struct NamespaceTarget {
  int flag;
  const char* procPath;  // in the child: its own namespace
  std::string pinPath;   // "" = not requested
};

struct Sysctl {
  std::string procPath;
  std::string value;
};

// Everything the child needs, prepared before clone(): the child runs on a
// borrowed stack in berthd's memory and must not allocate.
struct ChildPlan {
  std::vector<NamespaceTarget> targets;
  std::vector<Sysctl> sysctls;
  std::string hostname;
  bool loopbackUp = false;
  // Written by the child, read by the parent after it exited.
  int failedErrno = 0;
  const char* failedSyscall = nullptr;
  const char* failedPath = nullptr;
};

int Fail(ChildPlan* plan, int err, const char* syscall, const char* path) {
  plan->failedErrno = err;
  plan->failedSyscall = syscall;
  plan->failedPath = path;
  return 1;
}

int RunChild(void* arg) {
  ChildPlan* plan = static_cast<ChildPlan*>(arg);
  int flags = 0;
  for (const NamespaceTarget& t : plan->targets) flags |= t.flag;
  if (unshare(flags) != 0) return Fail(plan, errno, "unshare", nullptr);

  if (!plan->hostname.empty() && (flags & CLONE_NEWUTS)) {
    if (sethostname(plan->hostname.data(), plan->hostname.size()) != 0) return Fail(plan, errno, "sethostname", plan->hostname.c_str());
  }
  if (plan->loopbackUp && (flags & CLONE_NEWNET)) {
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return Fail(plan, errno, "socket", "lo");
    struct ifreq req;
    memset(&req, 0, sizeof(req));
    memcpy(req.ifr_name, "lo", 3);
    if (ioctl(sock, SIOCGIFFLAGS, &req) != 0) {
      int err = errno;
      close(sock);
      return Fail(plan, err, "ioctl(SIOCGIFFLAGS)", "lo");
    }
    req.ifr_flags |= IFF_UP;
    if (ioctl(sock, SIOCSIFFLAGS, &req) != 0) {
      int err = errno;
      close(sock);
      return Fail(plan, err, "ioctl(SIOCSIFFLAGS)", "lo");
    }
    close(sock);
  }
  // /proc/sys/{net,kernel} resolve against the opener's namespaces, so these
  // writes land in the pod's namespaces, not the host's.
  for (const Sysctl& s : plan->sysctls) {
    int fd = open(s.procPath.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return Fail(plan, errno, "open", s.procPath.c_str());
    ssize_t n = write(fd, s.value.data(), s.value.size());
    int err = errno;
    close(fd);
    if (n < 0) return Fail(plan, err, "write", s.procPath.c_str());
  }
  for (const NamespaceTarget& t : plan->targets) {
    if (mount(t.procPath, t.pinPath.c_str(), nullptr, MS_BIND, nullptr) != 0) return Fail(plan, errno, "mount", t.pinPath.c_str());
  }
  return 0;
}

void UnpinPath(const std::string& path) {
  umount2(path.c_str(), MNT_DETACH);
  unlink(path.c_str());
}

std::string StringField(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

}  // namespace

// makePrivateMount(dir): makes dir a mount point of its own with private
// propagation, so nsfs bind mounts under it work and never leak to peers.
static Napi::Value MakePrivateMount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "makePrivateMount(dir)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string dir = info[0].As<Napi::String>().Utf8Value();
  // EINVAL: dir is not a mount point yet; make it one by binding it onto itself.
  if (mount(nullptr, dir.c_str(), nullptr, MS_PRIVATE, nullptr) == 0) return env.Undefined();
  if (errno != EINVAL) return ThrowErrno(env, errno, "mount(MS_PRIVATE)", dir);
  if (mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) != 0) return ThrowErrno(env, errno, "mount(MS_BIND)", dir);
  if (mount(nullptr, dir.c_str(), nullptr, MS_PRIVATE, nullptr) != 0) return ThrowErrno(env, errno, "mount(MS_PRIVATE)", dir);
  return env.Undefined();
}

// createPodNamespaces({ net, ipc, uts, hostname, sysctls: [[procPath, value]], loopbackUp })
// Each of net/ipc/uts is the pin path, or "" to keep the host's namespace.
static Napi::Value CreatePodNamespaces(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "createPodNamespaces({ net, ipc, uts, hostname, sysctls, loopbackUp })").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object options = info[0].As<Napi::Object>();
  ChildPlan plan;
  const struct {
    const char* key;
    int flag;
    const char* procPath;
  } kinds[] = {{"net", CLONE_NEWNET, "/proc/thread-self/ns/net"},
               {"ipc", CLONE_NEWIPC, "/proc/thread-self/ns/ipc"},
               {"uts", CLONE_NEWUTS, "/proc/thread-self/ns/uts"}};
  for (const auto& kind : kinds) {
    std::string pin = StringField(options, kind.key);
    if (!pin.empty()) plan.targets.push_back({kind.flag, kind.procPath, pin});
  }
  if (plan.targets.empty()) return env.Undefined();
  plan.hostname = StringField(options, "hostname");
  plan.loopbackUp = options.Get("loopbackUp").ToBoolean().Value();
  Napi::Value sysctls = options.Get("sysctls");
  if (sysctls.IsArray()) {
    Napi::Array list = sysctls.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Value entry = list.Get(i);
      if (!entry.IsArray() || entry.As<Napi::Array>().Length() != 2) {
        Napi::TypeError::New(env, "sysctls: expected [procPath, value] pairs").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      Napi::Array pair = entry.As<Napi::Array>();
      plan.sysctls.push_back({pair.Get(0u).ToString().Utf8Value(), pair.Get(1u).ToString().Utf8Value()});
    }
  }

  // The bind-mount targets must exist as files; made here so the child only mounts.
  for (const NamespaceTarget& t : plan.targets) {
    int fd = open(t.pinPath.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0444);
    if (fd < 0) {
      int err = errno;
      for (const NamespaceTarget& u : plan.targets) {
        if (&u == &t) break;
        unlink(u.pinPath.c_str());
      }
      return ThrowErrno(env, err, "open", t.pinPath);
    }
    close(fd);
  }

  const size_t stackSize = 256 * 1024;
  void* stack = malloc(stackSize);
  if (!stack) return ThrowErrno(env, ENOMEM, "malloc");
  // CLONE_VM|CLONE_VFORK: no copy of berthd's address space, and this thread
  // waits until the child exits; the child shares nothing else that unshare cares about.
  pid_t pid = clone(RunChild, static_cast<char*>(stack) + stackSize, CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
  int cloneErr = errno;
  int status = 0;
  if (pid > 0) {
    while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR) {
    }
  }
  free(stack);
  if (pid < 0) {
    for (const NamespaceTarget& t : plan.targets) UnpinPath(t.pinPath);
    return ThrowErrno(env, cloneErr, "clone");
  }
  bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!ok) {
    for (const NamespaceTarget& t : plan.targets) UnpinPath(t.pinPath);
    if (plan.failedSyscall) return ThrowErrno(env, plan.failedErrno, plan.failedSyscall, plan.failedPath ? plan.failedPath : "");
    return ThrowErrno(env, ECHILD, "clone child", "namespace child died");
  }
  return env.Undefined();
}

// unpinNamespace(path): detaches the bind mount and removes the file; absent is fine.
static Napi::Value UnpinNamespace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "unpinNamespace(path)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) return ThrowErrno(env, errno, "umount2", path);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return ThrowErrno(env, errno, "unlink", path);
  return env.Undefined();
}

// namespaceFileState(path): "missing", "file" (exists, nothing mounted) or "pinned" (an nsfs bind mount).
static Napi::Value NamespaceFileState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "namespaceFileState(path)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  struct statfs fs;
  if (statfs(path.c_str(), &fs) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return Napi::String::New(env, "missing");
    return ThrowErrno(env, errno, "statfs", path);
  }
  return Napi::String::New(env, static_cast<unsigned long>(fs.f_type) == NSFS_MAGIC ? "pinned" : "file");
}

void RegisterNamespaces(Napi::Env env, Napi::Object exports) {
  exports.Set("makePrivateMount", Napi::Function::New(env, MakePrivateMount, "makePrivateMount"));
  exports.Set("createPodNamespaces", Napi::Function::New(env, CreatePodNamespaces, "createPodNamespaces"));
  exports.Set("unpinNamespace", Napi::Function::New(env, UnpinNamespace, "unpinNamespace"));
  exports.Set("namespaceFileState", Napi::Function::New(env, NamespaceFileState, "namespaceFileState"));
}

}  // namespace berth
