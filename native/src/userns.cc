// A pod's user namespace, pinned like its other namespaces, with the pod's
// network, IPC and UTS namespaces created inside it so they are owned by it
// (sysctls, routes and the hostname are then the pod's root's to change).
//
// The uid/gid maps of a new user namespace can only be written with
// CAP_SETUID/CAP_SETGID in its parent, i.e. by berthd, while a process is in
// it: so a clone()d child unshares the user namespace and waits; berthd writes
// /proc/<child>/{uid,gid}_map; the child unshares net/IPC/UTS inside it, sets
// the hostname, brings lo up and writes the sysctls; berthd bind-mounts the
// child's /proc/<pid>/ns/* onto the pin files (the child has no capability over
// berthd's mount namespace any more) and lets it exit.
#include "addon.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace berth {

namespace {

struct Pin {
  int flag;          // 0 for the user namespace itself
  const char* kind;  // /proc/<pid>/ns/<kind>
  std::string path;
};

struct Sysctl {
  std::string procPath;
  std::string value;
};

// Prepared before clone(): the child shares berthd's memory (CLONE_VM) and must not allocate.
struct UsernsPlan {
  std::vector<Pin> pins;  // pins[0] is the user namespace
  std::vector<Sysctl> sysctls;
  std::string hostname;
  bool loopbackUp = false;
  // The child's pipe ends and berthd's, apart: the memory is shared, so berthd
  // must never write a field the child reads.
  int childReads = -1, childWrites = -1;
  int parentWrites = -1, parentReads = -1;
  // Written by the child, read by berthd after the child exited.
  int failedErrno = 0;
  const char* failedSyscall = nullptr;
  const char* failedPath = nullptr;
};

int ChildFail(UsernsPlan* plan, int err, const char* syscall, const char* path) {
  plan->failedErrno = err;
  plan->failedSyscall = syscall;
  plan->failedPath = path;
  return 1;
}

// Blocks until berthd writes a byte (go on) or closes the pipe (stop).
bool AwaitParent(UsernsPlan* plan) {
  char c;
  ssize_t n;
  do n = read(plan->childReads, &c, 1);
  while (n < 0 && errno == EINTR);
  return n == 1;
}

bool TellParent(UsernsPlan* plan) {
  ssize_t n;
  do n = write(plan->childWrites, "r", 1);
  while (n < 0 && errno == EINTR);
  return n == 1;
}

int SetLoopbackUp(UsernsPlan* plan) {
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return ChildFail(plan, errno, "socket", "lo");
  struct ifreq req;
  memset(&req, 0, sizeof(req));
  memcpy(req.ifr_name, "lo", 3);
  int rc = ioctl(sock, SIOCGIFFLAGS, &req);
  if (rc == 0) {
    req.ifr_flags |= IFF_UP;
    rc = ioctl(sock, SIOCSIFFLAGS, &req);
  }
  int err = errno;
  close(sock);
  return rc == 0 ? 0 : ChildFail(plan, err, "ioctl(SIOCSIFFLAGS)", "lo");
}

int RunChild(void* arg) {
  UsernsPlan* plan = static_cast<UsernsPlan*>(arg);
  // The child has its own copy of the fd table: drop berthd's pipe ends so that
  // berthd closing its end is seen here as end-of-file.
  close(plan->parentWrites);
  close(plan->parentReads);
  if (unshare(CLONE_NEWUSER) != 0) return ChildFail(plan, errno, "unshare(CLONE_NEWUSER)", nullptr);
  if (!TellParent(plan) || !AwaitParent(plan)) return 1;  // berthd gave up (it reports why)

  int flags = 0;
  for (size_t i = 1; i < plan->pins.size(); i++) flags |= plan->pins[i].flag;
  // Created by a member of the new user namespace, so owned by it.
  if (flags != 0 && unshare(flags) != 0) return ChildFail(plan, errno, "unshare", nullptr);
  if (!plan->hostname.empty() && (flags & CLONE_NEWUTS)) {
    if (sethostname(plan->hostname.data(), plan->hostname.size()) != 0) return ChildFail(plan, errno, "sethostname", plan->hostname.c_str());
  }
  if (plan->loopbackUp && (flags & CLONE_NEWNET) && SetLoopbackUp(plan) != 0) return 1;
  // /proc/sys/{net,kernel} resolve against the opener's namespaces: the pod's.
  for (const Sysctl& s : plan->sysctls) {
    int fd = open(s.procPath.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return ChildFail(plan, errno, "open", s.procPath.c_str());
    ssize_t n = write(fd, s.value.data(), s.value.size());
    int err = errno;
    close(fd);
    if (n < 0) return ChildFail(plan, err, "write", s.procPath.c_str());
  }
  if (!TellParent(plan)) return 1;
  AwaitParent(plan);  // berthd pins /proc/<pid>/ns/* meanwhile, then closes the pipe
  return 0;
}

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

bool AwaitChild(int parentReads) {
  char c;
  ssize_t n;
  do n = read(parentReads, &c, 1);
  while (n < 0 && errno == EINTR);
  return n == 1;
}

int WriteProcFile(pid_t pid, const char* name, const std::string& data) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + name;
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  // One write(2): the kernel accepts a map only whole and only once.
  ssize_t n = write(fd, data.data(), data.size());
  int err = n < 0 ? errno : (static_cast<size_t>(n) == data.size() ? 0 : EIO);
  close(fd);
  return err;
}

// "containerId hostId size\n" lines from [{ containerId, hostId, size }]; "" with an error set when malformed.
std::string IdMap(const Napi::Value& value, const char* field, std::string* error) {
  if (!value.IsArray() || value.As<Napi::Array>().Length() == 0) {
    *error = std::string(field) + ": expected a non-empty array of { containerId, hostId, size }";
    return "";
  }
  Napi::Array list = value.As<Napi::Array>();
  std::string out;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value entry = list.Get(i);
    if (!entry.IsObject()) {
      *error = std::string(field) + ": expected { containerId, hostId, size }";
      return "";
    }
    Napi::Object o = entry.As<Napi::Object>();
    const char* keys[] = {"containerId", "hostId", "size"};
    for (const char* key : keys) {
      Napi::Value v = o.Get(key);
      double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
      if (d < 0 || d > 4294967295.0 || d != static_cast<double>(static_cast<uint64_t>(d)) || (key[0] == 's' && d == 0)) {
        *error = std::string(field) + "[" + std::to_string(i) + "]." + key + ": expected a 32-bit unsigned integer" + (key[0] == 's' ? " above 0" : "");
        return "";
      }
      out += std::to_string(static_cast<uint64_t>(d));
      out += key[0] == 's' ? "\n" : " ";
    }
  }
  return out;
}

std::string StringField(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

// "a b c\nd e f\n" as "a b c; d e f", for an error message.
std::string OneLine(const std::string& map) {
  std::string out;
  for (char c : map.substr(0, map.size() - 1)) {
    if (c == '\n') out += "; ";
    else out += c;
  }
  return out;
}

void Unpin(const std::string& path) {
  umount2(path.c_str(), MNT_DETACH);
  unlink(path.c_str());
}

}  // namespace

// createPodUserNamespace({ user, uidMappings, gidMappings, net, ipc, uts, hostname, sysctls, loopbackUp })
static Napi::Value CreatePodUserNamespace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "createPodUserNamespace({ user, uidMappings, gidMappings, net, ipc, uts, hostname, sysctls, loopbackUp })").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object options = info[0].As<Napi::Object>();
  std::string error;
  std::string uidMap = IdMap(options.Get("uidMappings"), "uidMappings", &error);
  std::string gidMap = error.empty() ? IdMap(options.Get("gidMappings"), "gidMappings", &error) : "";
  std::string userPin = StringField(options, "user");
  if (error.empty() && userPin.empty()) error = "user: the pin path of the user namespace is required";
  if (!error.empty()) {
    Napi::TypeError::New(env, error).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  UsernsPlan plan;
  plan.pins.push_back({0, "user", userPin});
  const struct {
    const char* key;
    int flag;
  } kinds[] = {{"net", CLONE_NEWNET}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}};
  for (const auto& kind : kinds) {
    std::string pin = StringField(options, kind.key);
    if (!pin.empty()) plan.pins.push_back({kind.flag, kind.key, pin});
  }
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

  // Pin files first, so that the child's namespaces can be pinned the moment they exist.
  for (size_t i = 0; i < plan.pins.size(); i++) {
    int fd = open(plan.pins[i].path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0444);
    if (fd < 0) {
      int err = errno;
      for (size_t j = 0; j < i; j++) unlink(plan.pins[j].path.c_str());
      return ThrowErrno(env, err, "open", plan.pins[i].path);
    }
    close(fd);
  }
  auto unpinAll = [&plan]() {
    for (const Pin& p : plan.pins) Unpin(p.path);
  };
  int toChild[2] = {-1, -1}, fromChild[2] = {-1, -1};
  if (pipe2(toChild, O_CLOEXEC) != 0 || pipe2(fromChild, O_CLOEXEC) != 0) {
    int err = errno;
    for (int* fd : {&toChild[0], &toChild[1]}) CloseFd(fd);
    unpinAll();
    return ThrowErrno(env, err, "pipe2");
  }
  plan.childReads = toChild[0];
  plan.childWrites = fromChild[1];
  int parentWrites = plan.parentWrites = toChild[1];
  int parentReads = plan.parentReads = fromChild[0];
  int childReads = toChild[0], childWrites = fromChild[1];
  auto closeAll = [&]() {
    for (int* fd : {&parentWrites, &parentReads, &childReads, &childWrites}) CloseFd(fd);
  };

  const size_t stackSize = 256 * 1024;
  void* stack = malloc(stackSize);
  if (!stack) {
    closeAll();
    unpinAll();
    return ThrowErrno(env, ENOMEM, "malloc");
  }
  // The child runs in berthd's memory on a borrowed stack; with every signal
  // blocked, none of Node's handlers can run on it. No CLONE_VFORK: berthd
  // must run while the child waits inside its new user namespace.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  pid_t pid = clone(RunChild, static_cast<char*>(stack) + stackSize, CLONE_VM | SIGCHLD, &plan);
  int cloneErr = errno;
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  CloseFd(&childReads);
  CloseFd(&childWrites);

  int stepErr = 0;
  std::string stepSyscall, stepPath;
  if (pid > 0) {
    if (!AwaitChild(parentReads)) {
      stepErr = -1;  // the child failed and said why in plan
    } else if ((stepErr = WriteProcFile(pid, "uid_map", uidMap)) != 0) {
      stepSyscall = "write";
      stepPath = "uid_map (" + OneLine(uidMap) + ")";
    } else if ((stepErr = WriteProcFile(pid, "gid_map", gidMap)) != 0) {
      stepSyscall = "write";
      stepPath = "gid_map (" + OneLine(gidMap) + ")";
    } else if (write(parentWrites, "g", 1) != 1 || !AwaitChild(parentReads)) {
      stepErr = -1;
    } else {
      for (const Pin& p : plan.pins) {
        std::string source = "/proc/" + std::to_string(pid) + "/ns/" + p.kind;
        if (mount(source.c_str(), p.path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
          stepErr = errno;
          stepSyscall = "mount";
          stepPath = p.path;
          break;
        }
      }
    }
    // Closing the pipe releases the child wherever it waits (before or after the maps).
    CloseFd(&parentWrites);
    int status = 0;
    while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR) {
    }
    if (stepErr == -1 && !plan.failedSyscall) {
      stepErr = ECHILD;
      stepSyscall = "clone child";
      stepPath = "user namespace child died";
    }
  }
  closeAll();
  free(stack);
  if (pid < 0) {
    unpinAll();
    return ThrowErrno(env, cloneErr, "clone");
  }
  if (stepErr != 0) {
    unpinAll();
    if (stepErr == -1) return ThrowErrno(env, plan.failedErrno, plan.failedSyscall, plan.failedPath ? plan.failedPath : "");
    return ThrowErrno(env, stepErr, stepSyscall, stepPath);
  }
  return env.Undefined();
}

// namespaceOwner(path): the inode of the user namespace that owns the namespace at path (ioctl NS_GET_USERNS).
static Napi::Value NamespaceOwner(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "namespaceOwner(path)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, errno, "open", path);
  int owner = ioctl(fd, NS_GET_USERNS);
  int err = errno;
  close(fd);
  if (owner < 0) return ThrowErrno(env, err, "ioctl(NS_GET_USERNS)", path);
  struct stat st;
  int rc = fstat(owner, &st);
  err = errno;
  close(owner);
  if (rc != 0) return ThrowErrno(env, err, "fstat", path);
  return Napi::Number::New(env, static_cast<double>(st.st_ino));
}

void RegisterUserns(Napi::Env env, Napi::Object exports) {
  exports.Set("createPodUserNamespace", Napi::Function::New(env, CreatePodUserNamespace, "createPodUserNamespace"));
  exports.Set("namespaceOwner", Napi::Function::New(env, NamespaceOwner, "namespaceOwner"));
}

}  // namespace berth
