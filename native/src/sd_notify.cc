// systemd's notify protocol (sd_notify(3)): one datagram "READY=1",
// "STOPPING=1", ... to the unix socket named by $NOTIFY_SOCKET, which may be
// a path or an abstract name ("@..."). Node has no unix datagram sockets, so
// the few lines live here; the receiving side is for tests that play systemd.
#include "addon.h"

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace berth {

// Fills addr for a path or an "@abstract" name; returns the address length, or 0 when it does not fit.
static socklen_t NotifyAddress(const std::string& name, struct sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  if (name.empty() || name.size() >= sizeof(addr->sun_path)) return 0;
  std::memcpy(addr->sun_path, name.data(), name.size());
  if (name[0] == '@') addr->sun_path[0] = '\0';
  return static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + name.size() + (name[0] == '@' ? 0 : 1));
}

// notifySend(socketName, message): sends one datagram; throws with errno on failure.
static Napi::Value NotifySend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "notifySend(socketName, message)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  std::string message = info[1].As<Napi::String>().Utf8Value();
  struct sockaddr_un addr;
  socklen_t len = NotifyAddress(name, &addr);
  if (len == 0) return ThrowErrno(env, ENAMETOOLONG, "notify socket", name);
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket", name);
  ssize_t n;
  do n = ::sendto(fd, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<struct sockaddr*>(&addr), len);
  while (n < 0 && errno == EINTR);
  int err = errno;
  ::close(fd);
  if (n < 0) return ThrowErrno(env, err, "sendto", name);
  return env.Undefined();
}

// notifyListen(socketName): fd of a datagram socket bound to the name (tests play systemd with it).
static Napi::Value NotifyListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "notifyListen(socketName)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  struct sockaddr_un addr;
  socklen_t len = NotifyAddress(name, &addr);
  if (len == 0) return ThrowErrno(env, ENAMETOOLONG, "notify socket", name);
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket", name);
  if (::bind(fd, reinterpret_cast<struct sockaddr*>(&addr), len) != 0) {
    int err = errno;
    ::close(fd);
    return ThrowErrno(env, err, "bind", name);
  }
  return Napi::Number::New(env, fd);
}

class NotifyReceiveWorker : public Napi::AsyncWorker {
 public:
  NotifyReceiveWorker(Napi::Env env, int fd, int timeoutMs)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), timeoutMs_(timeoutMs) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    struct pollfd p { fd_, POLLIN, 0 };
    int rc;
    do rc = ::poll(&p, 1, timeoutMs_);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) return SetError(std::string("poll: ") + std::strerror(errno));
    if (rc == 0) return;  // timed out: resolves null
    char buffer[4096];
    ssize_t n;
    do n = ::recv(fd_, buffer, sizeof(buffer), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) return SetError(std::string("recv: ") + std::strerror(errno));
    message_.assign(buffer, static_cast<size_t>(n));
    received_ = true;
  }
  void OnOK() override {
    if (received_) deferred_.Resolve(Napi::String::New(Env(), message_));
    else deferred_.Resolve(Env().Null());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  int timeoutMs_;
  bool received_ = false;
  std::string message_;
};

// notifyReceive(fd, timeoutMs): Promise of the next datagram's text, or null after timeoutMs.
static Napi::Value NotifyReceive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "notifyReceive(fd, timeoutMs)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new NotifyReceiveWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

void RegisterSdNotify(Napi::Env env, Napi::Object exports) {
  exports.Set("notifySend", Napi::Function::New(env, NotifySend, "notifySend"));
  exports.Set("notifyListen", Napi::Function::New(env, NotifyListen, "notifyListen"));
  exports.Set("notifyReceive", Napi::Function::New(env, NotifyReceive, "notifyReceive"));
}

}  // namespace berth
