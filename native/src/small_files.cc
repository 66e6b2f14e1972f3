// Reads many small files (cgroup control files) in one trip to a pool thread.
// Through fs/promises each file is an open, a read and a close, three trips
// through the pool and three promise settlements on the event loop; at 110
// pods a stats call reads over a thousand of them, and that bookkeeping was
// most of the event loop's time under a kubelet's load.
#include "addon.h"

#include <cerrno>
#include <fcntl.h>
#include <linux/capability.h>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace berth {

namespace {

// A batch read for the stats calls (background work: the kubelet asks every 10 s and waits
// seconds) runs its pool thread at nice 10 meanwhile, so on a busy node the CPU goes first to
// what a caller is waiting on right now: an ExecSync probe's helper and command, the event loop.
// Only where berthd may raise the thread's priority back again afterwards (CAP_SYS_NICE), since
// the pool thread goes on serving everything else.
constexpr int kBackgroundNice = 10;

bool MayRaisePriority() {
  static const bool may = [] {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {};
    if (syscall(SYS_capget, &header, data) != 0) return false;
    return (data[CAP_SYS_NICE / 32].effective & (1u << (CAP_SYS_NICE % 32))) != 0;
  }();
  return may;
}

class BackgroundPriority {
 public:
  explicit BackgroundPriority(bool background) {
    if (!background || !MayRaisePriority()) return;
    tid_ = static_cast<pid_t>(syscall(SYS_gettid));
    errno = 0;
    int before = getpriority(PRIO_PROCESS, tid_);
    if ((before == -1 && errno != 0) || before >= kBackgroundNice) return;
    if (setpriority(PRIO_PROCESS, tid_, kBackgroundNice) != 0) return;
    before_ = before;
    lowered_ = true;
  }
  ~BackgroundPriority() {
    if (lowered_) setpriority(PRIO_PROCESS, tid_, before_);
  }
  BackgroundPriority(const BackgroundPriority&) = delete;
  BackgroundPriority& operator=(const BackgroundPriority&) = delete;

 private:
  pid_t tid_ = 0;
  int before_ = 0;
  bool lowered_ = false;
};

class SmallFilesWorker : public Napi::AsyncWorker {
 public:
  SmallFilesWorker(Napi::Env env, std::vector<std::string> paths, size_t maxBytes, bool background)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), paths_(std::move(paths)), maxBytes_(maxBytes), background_(background) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    BackgroundPriority priority(background_);
    texts_.resize(paths_.size());
    found_.assign(paths_.size(), false);
    std::vector<char> buf(maxBytes_ > 0 ? maxBytes_ : 1);
    for (size_t i = 0; i < paths_.size(); i++) {
      // O_NONBLOCK: a FIFO put where a file was expected must not hold the pool thread.
      int fd = ::open(paths_[i].c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
      if (fd < 0) continue;
      struct stat st;
      if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        size_t total = 0;
        bool ok = true;
        while (total < maxBytes_) {
          ssize_t n = ::read(fd, buf.data() + total, maxBytes_ - total);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) {
            ok = false;
            break;
          }
          if (n == 0) break;
          total += static_cast<size_t>(n);
        }
        if (ok) {
          texts_[i].assign(buf.data(), total);
          found_[i] = true;
        }
      }
      ::close(fd);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array out = Napi::Array::New(env, paths_.size());
    for (size_t i = 0; i < paths_.size(); i++) {
      out.Set(static_cast<uint32_t>(i), found_[i] ? Napi::String::New(env, texts_[i]) : env.Null());
    }
    deferred_.Resolve(out);
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<std::string> paths_;
  size_t maxBytes_;
  bool background_;
  std::vector<std::string> texts_;
  std::vector<bool> found_;
};

}  // namespace

// readSmallFiles(paths, maxBytes[, background]): Promise<(string | null)[]>: each regular
// file's first maxBytes as UTF-8; null when it is missing, unreadable or not a
// regular file. background: read at nice 10 (BackgroundPriority).
static Napi::Value ReadSmallFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "readSmallFiles(paths, maxBytes)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array array = info[0].As<Napi::Array>();
  std::vector<std::string> paths;
  paths.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value v = array.Get(i);
    if (!v.IsString()) {
      Napi::TypeError::New(env, "readSmallFiles: paths are strings").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    paths.push_back(v.As<Napi::String>().Utf8Value());
  }
  int64_t maxBytes = info[1].As<Napi::Number>().Int64Value();
  if (maxBytes < 0 || maxBytes > (16 << 20)) {
    Napi::RangeError::New(env, "readSmallFiles: maxBytes is 0 to 16 MiB").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const bool background = info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  auto* worker = new SmallFilesWorker(env, std::move(paths), static_cast<size_t>(maxBytes), background);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

void RegisterSmallFiles(Napi::Env env, Napi::Object exports) {
  exports.Set("readSmallFiles", Napi::Function::New(env, ReadSmallFiles, "readSmallFiles"));
}

}  // namespace berth
