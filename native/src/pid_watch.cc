// watchProcessExit(pid, onExit): tells berthd when a process that is not its
// child (a pod's PID-namespace holder outlives berthd and is re-parented) exits.
// A pidfd (pidfd_open, Linux 5.3) turns readable when the process exits; libuv
// polls it on berthd's own event loop, so one watch costs one fd and no thread,
// and nothing runs until the exit.
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <map>

#include "addon.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace berth {
namespace {

struct PidWatch {
  uv_poll_t poll;
  int fd = -1;
  int id = 0;
  napi_env env = nullptr;
  Napi::FunctionReference onExit;
};

std::map<int, PidWatch*> watches;
int nextWatchId = 1;

void FreeWatch(uv_handle_t* handle) {
  auto* watch = static_cast<PidWatch*>(handle->data);
  if (watch->fd >= 0) close(watch->fd);
  delete watch;
}

void EndWatch(PidWatch* watch) {
  watches.erase(watch->id);
  uv_poll_stop(&watch->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&watch->poll), FreeWatch);
}

void OnPidfdReadable(uv_poll_t* handle, int /*status*/, int /*events*/) {
  auto* watch = static_cast<PidWatch*>(handle->data);
  Napi::Env env(watch->env);
  Napi::HandleScope scope(env);
  Napi::FunctionReference onExit = std::move(watch->onExit);
  EndWatch(watch);
  // MakeCallback: the callback's promises and microtasks run as after any I/O callback.
  onExit.MakeCallback(env.Global(), {});
  if (env.IsExceptionPending()) {
    Napi::Error error = env.GetAndClearPendingException();
    napi_fatal_exception(env, error.Value());
  }
}

Napi::Value WatchProcessExit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "watchProcessExit(pid, onExit)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int pid = info[0].As<Napi::Number>().Int32Value();
  if (pid <= 0) return ThrowErrno(env, EINVAL, "pidfd_open");
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return ThrowErrno(env, errno, "pidfd_open");
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    close(fd);
    Napi::Error::New(env, "watchProcessExit: no event loop").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* watch = new PidWatch();
  watch->fd = fd;
  watch->env = env;
  watch->onExit = Napi::Persistent(info[1].As<Napi::Function>());
  int err = uv_poll_init(loop, &watch->poll, fd);
  if (err != 0) {
    close(fd);
    delete watch;
    return ThrowErrno(env, -err, "uv_poll_init");
  }
  watch->poll.data = watch;
  err = uv_poll_start(&watch->poll, UV_READABLE, OnPidfdReadable);
  if (err != 0) {
    watch->onExit.Reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&watch->poll), FreeWatch);
    return ThrowErrno(env, -err, "uv_poll_start");
  }
  // A watch never keeps berthd alive by itself.
  uv_unref(reinterpret_cast<uv_handle_t*>(&watch->poll));
  watch->id = nextWatchId++;
  watches[watch->id] = watch;
  return Napi::Number::New(env, watch->id);
}

Napi::Value UnwatchProcessExit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "unwatchProcessExit(watchId)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto found = watches.find(info[0].As<Napi::Number>().Int32Value());
  if (found != watches.end()) {
    found->second->onExit.Reset();
    EndWatch(found->second);
  }
  return env.Undefined();
}

}  // namespace

void RegisterPidWatch(Napi::Env env, Napi::Object exports) {
  exports.Set("watchProcessExit", Napi::Function::New(env, WatchProcessExit));
  exports.Set("unwatchProcessExit", Napi::Function::New(env, UnwatchProcessExit));
}

}  // namespace berth
