// Reads a small file as seen from inside a network namespace (a pod's
// /proc/thread-self/net/dev for its interface counters). The read happens on a
// short-lived thread that joins the namespace and then exits, so neither the
// main thread nor a libuv pool thread is ever left inside a pod's namespace.
#include "addon.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sched.h>
#include <string>
#include <thread>
#include <unistd.h>

namespace berth {

namespace {

struct NetnsReadResult {
  std::string text;
  int err = 0;
  std::string syscall;
  std::string path;
};

void ReadInNamespace(const std::string& nsPath, const std::string& file, NetnsReadResult* out) {
  int ns = ::open(nsPath.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0) {
    *out = {"", errno, "open", nsPath};
    return;
  }
  if (::setns(ns, CLONE_NEWNET) != 0) {
    int err = errno;
    ::close(ns);
    *out = {"", err, "setns", nsPath};
    return;
  }
  ::close(ns);
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *out = {"", errno, "open", file};
    return;
  }
  char buf[8192];
  // Bounded: a pod with thousands of interfaces still stops at 4 MiB.
  while (out->text.size() < (4u << 20)) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      out->err = errno;
      out->syscall = "read";
      out->path = file;
      break;
    }
    if (n == 0) break;
    out->text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
}

class NetnsReadWorker : public Napi::AsyncWorker {
 public:
  NetnsReadWorker(Napi::Env env, std::string nsPath, std::string file)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), nsPath_(std::move(nsPath)), file_(std::move(file)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::thread reader(ReadInNamespace, nsPath_, file_, &result_);
    reader.join();
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (result_.err != 0) {
      std::string message = result_.syscall + " " + result_.path + ": " + std::strerror(result_.err);
      Napi::Error error = Napi::Error::New(env, message);
      error.Set("errno", Napi::Number::New(env, result_.err));
      error.Set("syscall", Napi::String::New(env, result_.syscall));
      error.Set("path", Napi::String::New(env, result_.path));
      deferred_.Reject(error.Value());
      return;
    }
    deferred_.Resolve(Napi::String::New(env, result_.text));
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string nsPath_;
  std::string file_;
  NetnsReadResult result_;
};

// readFileInNetns(nsPath, file): Promise<string>
Napi::Value ReadFileInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "readFileInNetns(nsPath: string, file: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new NetnsReadWorker(env, info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void RegisterNetnsRead(Napi::Env env, Napi::Object exports) {
  exports.Set("readFileInNetns", Napi::Function::New(env, ReadFileInNetns, "readFileInNetns"));
}

}  // namespace berth
