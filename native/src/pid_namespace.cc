// PID namespaces by something that cannot be reused: a pid names a process
// only until it is reaped, after which /proc/<pid>/ns/pid may be a stranger's
// namespace (even the host's). pinPidNamespace reads a process's PID
// namespace and start time through a pidfd-checked window (the process is
// alive after both were read, so both are its own) and bind-mounts that very
// namespace onto a file; namespaceIdentity tells what a pin holds, so a
// caller can check it right before handing the path to the OCI runtime.
#include "addon.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <poll.h>
#include <sched.h>
#include <string>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace berth {

namespace {

class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

const char* NamespaceTypeName(int type) {
  switch (type) {
    case CLONE_NEWPID: return "pid";
    case CLONE_NEWNET: return "net";
    case CLONE_NEWIPC: return "ipc";
    case CLONE_NEWUTS: return "uts";
    case CLONE_NEWNS: return "mnt";
    case CLONE_NEWUSER: return "user";
    case CLONE_NEWCGROUP: return "cgroup";
#ifdef CLONE_NEWTIME
    case CLONE_NEWTIME: return "time";
#endif
    default: return "unknown";
  }
}

// Field 22 of /proc/<pid>/stat (clock ticks after boot): with the pid, a process's identity.
bool ReadStartTime(pid_t pid, std::string* out) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  ScopedFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return false;
  char buf[1024];
  ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return false;
  buf[n] = '\0';
  // The command name may hold spaces and parentheses: fields count from the last ')'.
  char* close = std::strrchr(buf, ')');
  if (!close) return false;
  char* field = close + 2;  // field 3 (state)
  for (int i = 3; i < 22 && field; i++) {
    field = std::strchr(field, ' ');
    if (field) field++;
  }
  if (!field) return false;
  char* end = std::strchr(field, ' ');
  out->assign(field, end ? static_cast<size_t>(end - field) : std::strlen(field));
  return !out->empty();
}

}  // namespace

// pinPidNamespace(pid, pinPath): { inode, startTime } of the PID namespace and
// start time of process `pid`, read while a pidfd shows it alive, with that
// namespace bind-mounted onto pinPath (created as an empty file). ESRCH when
// the process is gone (or exits meanwhile); nothing stays pinned on failure.
static Napi::Value PinPidNamespace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString()) {
    Napi::TypeError::New(env, "pinPidNamespace(pid, pinPath)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  pid_t pid = static_cast<pid_t>(info[0].As<Napi::Number>().Int32Value());
  std::string pin = info[1].As<Napi::String>().Utf8Value();
  if (pid <= 0) return ThrowErrno(env, ESRCH, "pidfd_open", std::to_string(pid));

  ScopedFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd.get() < 0) return ThrowErrno(env, errno, "pidfd_open", std::to_string(pid));
  std::string nsPath = "/proc/" + std::to_string(pid) + "/ns/pid";
  ScopedFd ns(::open(nsPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (ns.get() < 0) return ThrowErrno(env, errno == ENOENT ? ESRCH : errno, "open", nsPath);
  if (::ioctl(ns.get(), NS_GET_NSTYPE) != CLONE_NEWPID) return ThrowErrno(env, EINVAL, "ioctl(NS_GET_NSTYPE)", nsPath);
  std::string startTime;
  if (!ReadStartTime(pid, &startTime)) return ThrowErrno(env, ESRCH, "read", "/proc/" + std::to_string(pid) + "/stat");
  // Still alive after both reads: the pid was never reused in between, so both are this process's.
  struct pollfd p = {pidfd.get(), POLLIN, 0};
  int ready = ::poll(&p, 1, 0);
  if (ready < 0) return ThrowErrno(env, errno, "poll(pidfd)", std::to_string(pid));
  if (ready > 0) return ThrowErrno(env, ESRCH, "pidfd", std::to_string(pid) + " exited");
  struct stat st;
  if (::fstat(ns.get(), &st) != 0) return ThrowErrno(env, errno, "fstat", nsPath);

  ScopedFd file(::open(pin.c_str(), O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0444));
  if (file.get() < 0) return ThrowErrno(env, errno, "open", pin);
  std::string self = "/proc/self/fd/" + std::to_string(ns.get());
  if (::mount(self.c_str(), pin.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    int err = errno;
    ::unlink(pin.c_str());
    return ThrowErrno(env, err, "mount(MS_BIND)", pin);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("inode", Napi::Number::New(env, static_cast<double>(st.st_ino)));
  out.Set("startTime", Napi::String::New(env, startTime));
  return out;
}

// namespaceIdentity(path): { type, inode } of the namespace a pin (or
// /proc/<pid>/ns/<kind>) holds; type "none" when path is not a namespace file.
static Napi::Value NamespaceIdentity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "namespaceIdentity(path)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (fd.get() < 0) return ThrowErrno(env, errno, "open", path);
  Napi::Object out = Napi::Object::New(env);
  struct statfs fs;
  if (::fstatfs(fd.get(), &fs) != 0) return ThrowErrno(env, errno, "fstatfs", path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ThrowErrno(env, errno, "fstat", path);
  if (static_cast<unsigned long>(fs.f_type) != NSFS_MAGIC) {
    out.Set("type", Napi::String::New(env, "none"));
    out.Set("inode", Napi::Number::New(env, static_cast<double>(st.st_ino)));
    return out;
  }
  int type = ::ioctl(fd.get(), NS_GET_NSTYPE);
  if (type < 0) return ThrowErrno(env, errno, "ioctl(NS_GET_NSTYPE)", path);
  out.Set("type", Napi::String::New(env, NamespaceTypeName(type)));
  out.Set("inode", Napi::Number::New(env, static_cast<double>(st.st_ino)));
  return out;
}

void RegisterPidNamespace(Napi::Env env, Napi::Object exports) {
  exports.Set("pinPidNamespace", Napi::Function::New(env, PinPidNamespace, "pinPidNamespace"));
  exports.Set("namespaceIdentity", Napi::Function::New(env, NamespaceIdentity, "namespaceIdentity"));
}

}  // namespace berth
