// Reads one file from inside an image or container root filesystem, which is
// hostile content: the file may be a FIFO (an open or read that never returns),
// a device (endless bytes, or side effects on open), a symlink aimed at the
// host, or huge. The path is resolved relative to the root with no symlink
// followed anywhere on the way (openat2 RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS, or
// one O_NOFOLLOW openat per component on kernels before 5.6), first as an
// O_PATH handle that opens nothing; only a regular file is then reopened for
// reading, through that handle, O_NONBLOCK, and read up to a cap. All of it
// runs on a libuv pool thread, never on berthd's event loop.
#include "addon.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace berth {

namespace {

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

struct RootReadResult {
  int err = 0;
  std::string syscall;
  // "file", "missing" is an errno; otherwise the kind of the non-regular file found.
  std::string type;
  std::string data;
  uint64_t size = 0;
  bool truncated = false;
};

const char* TypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symlink";
    case S_IFIFO: return "fifo";
    case S_IFCHR: return "char-device";
    case S_IFBLK: return "block-device";
    case S_IFSOCK: return "socket";
    default: return "unknown";
  }
}

// An O_PATH handle on `path` below `rootFd`, no symlink followed (a symlink as
// the last component comes back as the link itself). -1 with errno set.
int OpenPathBeneath(int rootFd, const std::string& path, bool walk) {
  if (!walk) {
    struct open_how how;
    std::memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long fd = ::syscall(SYS_openat2, rootFd, path.c_str(), &how, sizeof how);
    if (fd >= 0 || errno != ENOSYS) return static_cast<int>(fd);
  }

  // Before Linux 5.6: one component at a time, each from its parent's handle.
  std::vector<std::string> parts;
  size_t at = 0;
  while (at <= path.size()) {
    size_t slash = path.find('/', at);
    if (slash == std::string::npos) slash = path.size();
    std::string part = path.substr(at, slash - at);
    if (part == "..") {
      errno = EXDEV;
      return -1;
    }
    if (!part.empty() && part != ".") parts.push_back(part);
    at = slash + 1;
  }
  int current = ::fcntl(rootFd, F_DUPFD_CLOEXEC, 0);
  if (current < 0) return -1;
  for (size_t i = 0; i < parts.size(); i++) {
    int next = ::openat(current, parts[i].c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    int err = errno;
    ::close(current);
    if (next < 0) {
      errno = err;
      return -1;
    }
    if (i + 1 < parts.size()) {
      struct stat st;
      if (::fstat(next, &st) != 0) {
        err = errno;
        ::close(next);
        errno = err;
        return -1;
      }
      if (!S_ISDIR(st.st_mode)) {
        ::close(next);
        errno = S_ISLNK(st.st_mode) ? ELOOP : ENOTDIR;
        return -1;
      }
    }
    current = next;
  }
  return current;
}

void ReadBeneath(const std::string& root, const std::string& path, uint64_t maxBytes, bool walk, RootReadResult* out) {
  auto fail = [out](const char* syscall) {
    out->err = errno;
    out->syscall = syscall;
  };
  Fd rootFd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (rootFd.get() < 0) return fail("open");
  Fd handle(OpenPathBeneath(rootFd.get(), path, walk));
  if (handle.get() < 0) return fail("openat2");
  struct stat st;
  if (::fstat(handle.get(), &st) != 0) return fail("fstat");
  out->type = TypeName(st.st_mode);
  out->size = static_cast<uint64_t>(st.st_size);
  if (!S_ISREG(st.st_mode)) return;

  // Reopened through the handle just checked, so it is the same regular file
  // whatever is renamed meanwhile. O_NONBLOCK all the same: a lease or mandatory lock must not hold a pool thread.
  std::string self = "/proc/self/fd/" + std::to_string(handle.get());
  Fd file(::open(self.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (file.get() < 0) return fail("open");
  struct stat again;
  if (::fstat(file.get(), &again) != 0) return fail("fstat");
  if (again.st_dev != st.st_dev || again.st_ino != st.st_ino || !S_ISREG(again.st_mode)) {
    errno = ESTALE;
    return fail("open");
  }
  out->data.reserve(static_cast<size_t>(std::min<uint64_t>(static_cast<uint64_t>(again.st_size), maxBytes) + 1));
  char buf[65536];
  while (out->data.size() <= maxBytes) {
    size_t room = static_cast<size_t>(std::min<uint64_t>(sizeof buf, maxBytes + 1 - out->data.size()));
    ssize_t n = ::read(file.get(), buf, room);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("read");
    }
    if (n == 0) break;
    out->data.append(buf, static_cast<size_t>(n));
  }
  if (out->data.size() > maxBytes) {
    out->data.resize(static_cast<size_t>(maxBytes));
    out->truncated = true;
  }
}

class RootReadWorker : public Napi::AsyncWorker {
 public:
  RootReadWorker(Napi::Env env, std::string root, std::string path, uint64_t maxBytes, bool walk)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        root_(std::move(root)),
        path_(std::move(path)),
        maxBytes_(maxBytes),
        walk_(walk) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override { ReadBeneath(root_, path_, maxBytes_, walk_, &result_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (result_.err != 0) {
      std::string message = result_.syscall + " " + path_ + " in " + root_ + ": " + std::strerror(result_.err);
      Napi::Error error = Napi::Error::New(env, message);
      error.Set("errno", Napi::Number::New(env, result_.err));
      error.Set("syscall", Napi::String::New(env, result_.syscall));
      error.Set("path", Napi::String::New(env, path_));
      deferred_.Reject(error.Value());
      return;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("type", Napi::String::New(env, result_.type));
    out.Set("size", Napi::Number::New(env, static_cast<double>(result_.size)));
    if (result_.type == "file") {
      out.Set("data", Napi::Buffer<char>::Copy(env, result_.data.data(), result_.data.size()));
      out.Set("truncated", Napi::Boolean::New(env, result_.truncated));
    }
    deferred_.Resolve(out);
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string root_;
  std::string path_;
  uint64_t maxBytes_;
  bool walk_;
  RootReadResult result_;
};

// readFileBeneath(root, path, maxBytes, walk?): Promise<{ type, size, data?, truncated? }>
// walk: the per-component resolution old kernels get, chosen (for its tests) even where openat2 exists.
Napi::Value ReadFileBeneath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "readFileBeneath(root: string, path: string, maxBytes: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  double max = info[2].As<Napi::Number>().DoubleValue();
  if (!(max >= 0) || max > 1024.0 * 1024 * 1024) {
    Napi::RangeError::New(env, "readFileBeneath: maxBytes must be between 0 and 1 GiB").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new RootReadWorker(env, info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value(), static_cast<uint64_t>(max), info.Length() > 3 && info[3].ToBoolean().Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void RegisterRootfsOpen(Napi::Env env, Napi::Object exports) {
  exports.Set("readFileBeneath", Napi::Function::New(env, ReadFileBeneath, "readFileBeneath"));
}

}  // namespace berth
