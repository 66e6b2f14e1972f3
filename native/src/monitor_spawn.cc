// Starts a detached monitor process (conmon) with posix_spawn, which glibc
// runs as clone(CLONE_VM|CLONE_VFORK): the child shares berthd's address
// space until it execs. libuv's spawn forks instead, copying the page tables
// of berthd's whole heap and tearing them down again at exec, which blocks
// the event loop ~8 ms per container create at berthd's usual size. The spawn
// itself runs on a pool thread (vfork suspends only the calling thread).
#include "addon.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <string>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <vector>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace berth {

namespace {

std::vector<std::string> StringArray(const Napi::Array& array) {
  std::vector<std::string> out;
  out.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); i++) out.push_back(array.Get(i).As<Napi::String>().Utf8Value());
  return out;
}

std::vector<char*> CPointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// A pipe end numbered at or above `floor`, so no dup2 onto a low child fd can clobber another source.
int LiftFd(int fd, int floor) {
  if (fd >= floor) return fd;
  int lifted = fcntl(fd, F_DUPFD_CLOEXEC, floor);
  int saved = errno;
  close(fd);
  errno = saved;
  return lifted;
}

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
void CloseInheritedFds(posix_spawn_file_actions_t* actions, int keepBelow) {
  posix_spawn_file_actions_addclosefrom_np(actions, keepBelow);
}
#else
// Without closefrom in posix_spawn: every fd of berthd from keepBelow up is
// made close-on-exec before the spawn (berthd hands fds on only this way).
void CloseInheritedFds(posix_spawn_file_actions_t*, int keepBelow) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return;
  int own = dirfd(dir);
  while (struct dirent* entry = readdir(dir)) {
    int fd = atoi(entry->d_name);
    if (fd < keepBelow || fd == own || entry->d_name[0] == '.') continue;
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0 && !(flags & FD_CLOEXEC)) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
  closedir(dir);
}
#endif

void CloseAll(const std::vector<int>& fds) {
  for (int fd : fds)
    if (fd >= 0) close(fd);
}

}  // namespace

namespace {

// The pipes and the posix_spawn of one spawnDetached, on a libuv pool thread:
// posix_spawn's vfork suspends the calling thread until the child execs, which
// under load (a busy 2-core node) took ~20 ms per conmon or `runc exec`; the
// event loop goes on meanwhile. Everything it reads was copied from JS first.
class SpawnWorker : public Napi::AsyncWorker {
 public:
  SpawnWorker(Napi::Env env, std::string file, std::vector<std::string> argv, std::vector<std::string> envp, std::string cwd, std::vector<std::string> kinds,
              std::vector<int> inherit, std::vector<std::string> inputs)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        file_(std::move(file)),
        argv_(std::move(argv)),
        envp_(std::move(envp)),
        cwd_(std::move(cwd)),
        kinds_(std::move(kinds)),
        inherit_(std::move(inherit)),
        inputs_(std::move(inputs)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    const int count = static_cast<int>(kinds_.size());
    parentEnds_.assign(count, -1);
    std::vector<int> childEnds(count, -1);
    for (int i = 0; i < count; i++) {
      if (kinds_[i] == "null") continue;
      if (kinds_[i] == "fd") {
        // One of berthd's own fds, handed on as child fd i (lifted above the child's fds first).
        childEnds[i] = fcntl(inherit_[i], F_DUPFD_CLOEXEC, count);
        if (childEnds[i] < 0) return Fail(errno, "fcntl(F_DUPFD_CLOEXEC)", childEnds);
        continue;
      }
      int p[2];
      if (pipe2(p, O_CLOEXEC) != 0) return Fail(errno, "pipe2", childEnds);
      const bool childReads = kinds_[i] == "read";
      parentEnds_[i] = LiftFd(childReads ? p[1] : p[0], count);
      childEnds[i] = LiftFd(childReads ? p[0] : p[1], count);
      if (parentEnds_[i] < 0 || childEnds[i] < 0) return Fail(errno, "fcntl(F_DUPFD_CLOEXEC)", childEnds);
      if (childReads && i < static_cast<int>(inputs_.size()) && !inputs_[i].empty()) WriteInput(i);
    }

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    for (int i = 0; i < count; i++) {
      if (childEnds[i] >= 0) posix_spawn_file_actions_adddup2(&actions, childEnds[i], i);
      else posix_spawn_file_actions_addopen(&actions, i, "/dev/null", O_RDWR, 0);
    }
    if (!cwd_.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd_.c_str());
    // Only the fds asked for reach conmon (and through it runc and the container):
    // whatever berthd inherited or opened without O_CLOEXEC (a socket from its
    // service manager, an addon's fd) is closed in the child after the dup2s.
    CloseInheritedFds(&actions, count);
    sigset_t empty;
    sigset_t all;
    sigemptyset(&empty);
    sigfillset(&all);
    // The pool thread's own mask is not the child's: it starts with none blocked.
    posix_spawnattr_setsigmask(&attr, &empty);
    // Node ignores SIGPIPE; an ignored disposition would survive exec.
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<char*> argvPtrs = CPointers(argv_);
    std::vector<char*> envPtrs = CPointers(envp_);
    int err = posix_spawn(&pid_, file_.c_str(), &actions, &attr, argvPtrs.data(), envPtrs.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (err != 0) {
      Fail(err, "posix_spawn", childEnds, file_);
      return;
    }
    CloseAll(childEnds);
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      std::string message = syscall_;
      if (!path_.empty()) message += " " + path_;
      message += ": ";
      message += std::strerror(err_);
      Napi::Error error = Napi::Error::New(env, message);
      error.Set("errno", Napi::Number::New(env, err_));
      error.Set("syscall", Napi::String::New(env, syscall_));
      if (!path_.empty()) error.Set("path", Napi::String::New(env, path_));
      deferred_.Reject(error.Value());
      return;
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("pid", Napi::Number::New(env, pid_));
    Napi::Array fds = Napi::Array::New(env, parentEnds_.size());
    Napi::Array written = Napi::Array::New(env, parentEnds_.size());
    for (size_t i = 0; i < parentEnds_.size(); i++) {
      fds.Set(static_cast<uint32_t>(i), Napi::Number::New(env, parentEnds_[i]));
      written.Set(static_cast<uint32_t>(i), Napi::Number::New(env, i < written_.size() ? static_cast<double>(written_[i]) : 0));
    }
    result.Set("fds", fds);
    result.Set("written", written);
    deferred_.Resolve(result);
  }

 private:
  // The child's input put into its pipe before it starts, as far as the pipe takes it without
  // blocking: a child that reads its input first (berth-exec's request) then never waits for
  // berthd's event loop to come round and write it. All of it written, the parent's end is closed
  // (the child reads to EOF); otherwise berthd writes the rest from written_[i] on.
  void WriteInput(int i) {
    written_.resize(kinds_.size(), 0);
    const std::string& data = inputs_[i];
    int fd = parentEnds_[i];
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return;
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = write(fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    fcntl(fd, F_SETFL, flags);
    written_[i] = done;
    if (done == data.size()) {
      close(fd);
      parentEnds_[i] = -1;
    }
  }

  void Fail(int err, const char* syscall, std::vector<int>& childEnds, const std::string& path = "") {
    err_ = err;
    syscall_ = syscall;
    path_ = path;
    CloseAll(parentEnds_);
    CloseAll(childEnds);
    parentEnds_.assign(parentEnds_.size(), -1);
  }

  Napi::Promise::Deferred deferred_;
  std::string file_;
  std::vector<std::string> argv_;
  std::vector<std::string> envp_;
  std::string cwd_;
  std::vector<std::string> kinds_;
  std::vector<int> inherit_;
  std::vector<std::string> inputs_;
  std::vector<size_t> written_;
  std::vector<int> parentEnds_;
  pid_t pid_ = 0;
  int err_ = 0;
  std::string syscall_;
  std::string path_;
};

}  // namespace

// spawnDetached(file, argv, env, cwd, childFds[, inputs]): Promise<{ pid, fds, written }>.
// inputs[i] (a Buffer, for a "read" fd) is put into that pipe before the child starts, as far as it
// takes it without blocking; written[i] says how much; all of it written, fds[i] is -1 (closed).
// childFds[i] says what the child's fd i is: "null" (/dev/null), "read" (a
// pipe the child reads; the parent gets its write end) or "write" (a pipe the
// child writes; the parent gets its read end) or a number (that fd of
// berthd's, e.g. a sealed executable). The child starts a new session
// with default signal dispositions and an empty mask. fds[i] is the parent's
// pipe end (close-on-exec) or -1. The child must be reaped with waitChild(pid).
static Napi::Value SpawnDetached(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsString() || !info[1].IsArray() || !info[2].IsArray() || !info[3].IsString() || !info[4].IsArray()) {
    Napi::TypeError::New(env, "spawnDetached(file, argv, env, cwd, childFds)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array childFds = info[4].As<Napi::Array>();
  std::vector<std::string> kinds;
  std::vector<int> inherit;
  for (uint32_t i = 0; i < childFds.Length(); i++) {
    Napi::Value entry = childFds.Get(i);
    if (entry.IsNumber() && entry.As<Napi::Number>().Int32Value() >= 0) {
      kinds.push_back("fd");
      inherit.push_back(entry.As<Napi::Number>().Int32Value());
      continue;
    }
    std::string kind = entry.IsString() ? entry.As<Napi::String>().Utf8Value() : "";
    if (kind != "null" && kind != "read" && kind != "write") {
      Napi::TypeError::New(env, "spawnDetached: childFds entries are \"null\", \"read\", \"write\" or an fd").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    kinds.push_back(kind);
    inherit.push_back(-1);
  }
  std::vector<std::string> inputs(kinds.size());
  if (info.Length() > 5 && info[5].IsArray()) {
    Napi::Array given = info[5].As<Napi::Array>();
    for (uint32_t i = 0; i < given.Length() && i < kinds.size(); i++) {
      Napi::Value v = given.Get(i);
      if (v.IsBuffer() && kinds[i] == "read") {
        Napi::Buffer<char> b = v.As<Napi::Buffer<char>>();
        inputs[i].assign(b.Data(), b.Length());
      }
    }
  }
  auto* worker = new SpawnWorker(env, info[0].As<Napi::String>().Utf8Value(), StringArray(info[1].As<Napi::Array>()), StringArray(info[2].As<Napi::Array>()),
                                 info[3].As<Napi::String>().Utf8Value(), std::move(kinds), std::move(inherit), std::move(inputs));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

namespace {

class WaitChildWorker : public Napi::AsyncWorker {
 public:
  WaitChildWorker(Napi::Env env, pid_t pid, Napi::Promise::Deferred deferred) : Napi::AsyncWorker(env), deferred_(deferred), pid_(pid) {}

  void Execute() override {
    int status = 0;
    pid_t got;
    do {
      got = waitpid(pid_, &status, 0);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
      err_ = errno;
      return;
    }
    if (WIFEXITED(status)) code_ = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) signal_ = WTERMSIG(status);
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      std::string message = "waitpid " + std::to_string(pid_) + ": " + std::strerror(err_);
      Napi::Error error = Napi::Error::New(env, message);
      error.Set("errno", Napi::Number::New(env, err_));
      deferred_.Reject(error.Value());
      return;
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("code", code_ >= 0 ? Napi::Number::New(env, code_) : env.Null());
    result.Set("signal", signal_ > 0 ? Napi::Number::New(env, signal_) : env.Null());
    deferred_.Resolve(result);
  }

 private:
  Napi::Promise::Deferred deferred_;
  pid_t pid_;
  int err_ = 0;
  int code_ = -1;
  int signal_ = 0;
};

}  // namespace

namespace {

Napi::Object ExitStatus(Napi::Env env, int status) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("code", WIFEXITED(status) ? Napi::Number::New(env, WEXITSTATUS(status)) : env.Null());
  result.Set("signal", WIFSIGNALED(status) ? Napi::Number::New(env, WTERMSIG(status)) : env.Null());
  return result;
}

// A child waited for on the event loop: its pidfd turns readable when it exits, and
// waitpid then reaps the zombie at once. No pool thread waits (a pool thread held by
// waitpid is one fewer for everything else, and an exec's reaping queued behind
// others' file reads was part of a probe's tail).
struct ChildWatch {
  explicit ChildWatch(Napi::Env env) : env(env), deferred(Napi::Promise::Deferred::New(env)), context(env, "berth.waitChild") {}
  uv_poll_t poll;
  int fd = -1;
  pid_t pid = 0;
  Napi::Env env;
  Napi::Promise::Deferred deferred;
  Napi::AsyncContext context;
};

void FreeChildWatch(uv_handle_t* handle) {
  auto* watch = static_cast<ChildWatch*>(handle->data);
  if (watch->fd >= 0) close(watch->fd);
  delete watch;
}

void OnChildExit(uv_poll_t* handle, int /*status*/, int /*events*/) {
  auto* watch = static_cast<ChildWatch*>(handle->data);
  // Stopped, the pidfd is out of the poll set: closed now, so no fd outlives the settled wait.
  uv_poll_stop(&watch->poll);
  close(watch->fd);
  watch->fd = -1;
  int status = 0;
  pid_t got;
  // Readable means exited: the blocking form returns at once (and is correct if it were not so).
  do {
    got = waitpid(watch->pid, &status, 0);
  } while (got < 0 && errno == EINTR);
  int err = got < 0 ? errno : 0;
  {
    Napi::HandleScope scope(watch->env);
    // A callback scope: the promise's reactions run when it closes, as after any I/O callback.
    Napi::CallbackScope callbackScope(watch->env, watch->context);
    if (err != 0) {
      Napi::Error error = Napi::Error::New(watch->env, "waitpid " + std::to_string(watch->pid) + ": " + std::strerror(err));
      error.Set("errno", Napi::Number::New(watch->env, err));
      watch->deferred.Reject(error.Value());
    } else {
      watch->deferred.Resolve(ExitStatus(watch->env, status));
    }
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&watch->poll), FreeChildWatch);
}

}  // namespace

// waitChild(pid): Promise<{ code, signal }>; reaps a child of spawnDetached. Through a pidfd on the
// event loop where the kernel has pidfd_open (5.3), else waitpid on a pool thread. Either way the
// wait keeps the event loop alive, as any pending I/O does.
static Napi::Value WaitChild(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "waitChild(pid)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const pid_t pid = static_cast<pid_t>(info[0].As<Napi::Number>().Int32Value());
  // Already exited (its output closed first, as callers wait for): reaped now, not a loop turn later.
  int status = 0;
  pid_t got;
  do {
    got = pid > 0 ? waitpid(pid, &status, WNOHANG) : -1;
  } while (got < 0 && errno == EINTR);
  if (got == pid) {
    Napi::Promise::Deferred reaped = Napi::Promise::Deferred::New(env);
    reaped.Resolve(ExitStatus(env, status));
    return reaped.Promise();
  }
  uv_loop_t* loop = nullptr;
  int fd = pid > 0 ? static_cast<int>(syscall(SYS_pidfd_open, pid, 0)) : -1;
  if (fd >= 0 && (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr)) {
    close(fd);
    fd = -1;
  }
  if (fd >= 0) {
    auto* watch = new ChildWatch(env);
    watch->fd = fd;
    watch->pid = pid;
    watch->poll.data = watch;
    if (uv_poll_init(loop, &watch->poll, fd) == 0) {
      Napi::Promise promise = watch->deferred.Promise();
      if (uv_poll_start(&watch->poll, UV_READABLE, OnChildExit) == 0) return promise;
      // Never started: settled by the pool's wait below, and the handle let go.
      auto* worker = new WaitChildWorker(env, pid, watch->deferred);
      uv_close(reinterpret_cast<uv_handle_t*>(&watch->poll), FreeChildWatch);
      worker->Queue();
      return promise;
    }
    close(fd);
    delete watch;
  }
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  auto* worker = new WaitChildWorker(env, pid, deferred);
  worker->Queue();
  return deferred.Promise();
}

void RegisterMonitorSpawn(Napi::Env env, Napi::Object exports) {
  exports.Set("spawnDetached", Napi::Function::New(env, SpawnDetached));
  exports.Set("waitChild", Napi::Function::New(env, WaitChild));
}

}  // namespace berth
