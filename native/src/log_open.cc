// Container log files, which live where a request says (the pod's
// log_directory and the container's log_path): every directory on the way is
// opened relative to its parent with O_NOFOLLOW (made when missing, never
// through a symlink), and the file itself is created with
// O_CREAT|O_NOFOLLOW|O_NONBLOCK relative to that directory's fd and checked to
// be a regular file, so no link planted in the log tree can point conmon's
// writes (or berth's mkdir) at another file on the host.
#include "addon.h"

#include <cerrno>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

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
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// Splits a path into its components; false when one is "..".
bool Components(const std::string& path, std::vector<std::string>* out) {
  size_t at = 0;
  while (at <= path.size()) {
    size_t slash = path.find('/', at);
    if (slash == std::string::npos) slash = path.size();
    std::string part = path.substr(at, slash - at);
    if (part == "..") return false;
    if (!part.empty() && part != ".") out->push_back(part);
    at = slash + 1;
  }
  return true;
}

struct Failure {
  int err = 0;
  std::string syscall;
  std::string path;
};

// Opens (making it when missing) the directory `name` below `parent`, never
// following a symlink: ELOOP when `name` is one, ENOTDIR when it is another file.
int OpenDirNoFollow(int parent, const std::string& name, bool create, Failure* f) {
  for (int attempt = 0; attempt < 2; attempt++) {
    int fd = ::openat(parent, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) return fd;
    int err = errno;
    if (err == ENOTDIR) {
      struct stat st;
      if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) err = ELOOP;
    }
    if (err != ENOENT || !create || attempt > 0) {
      *f = {err, "openat", name};
      return -1;
    }
    if (::mkdirat(parent, name.c_str(), 0755) != 0 && errno != EEXIST) {
      *f = {errno, "mkdirat", name};
      return -1;
    }
  }
  return -1;
}

}  // namespace

// prepareLogFile(dir, relPath, { create, dirMayFollow }):
//   { created, dev, ino } of the regular file dir/relPath, made (mode 0600)
//   when missing and create is set. Directories on the way are made (0755)
//   when missing. No symlink is followed below dir, nor, unless dirMayFollow
//   (berth's own bundle), in dir itself from "/". relPath "" answers for dir.
static Napi::Value PrepareLogFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsObject()) {
    Napi::TypeError::New(env, "prepareLogFile(dir, relPath, { create, dirMayFollow })").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string dir = info[0].As<Napi::String>().Utf8Value();
  std::string rel = info[1].As<Napi::String>().Utf8Value();
  Napi::Object options = info[2].As<Napi::Object>();
  bool create = options.Get("create").ToBoolean().Value();
  bool dirMayFollow = options.Get("dirMayFollow").ToBoolean().Value();
  if (dir.empty() || dir[0] != '/') return ThrowErrno(env, EINVAL, "prepareLogFile", dir + " is not absolute");

  std::vector<std::string> dirParts;
  std::vector<std::string> relParts;
  if (!Components(dir, &dirParts)) return ThrowErrno(env, EXDEV, "prepareLogFile", dir);
  if (!Components(rel, &relParts)) return ThrowErrno(env, EXDEV, "prepareLogFile", rel);

  Failure failure;
  ScopedFd current;
  std::string walked;
  if (dirMayFollow) {
    current.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (current.get() < 0) return ThrowErrno(env, errno, "open", dir);
    walked = dir;
  } else {
    current.reset(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (current.get() < 0) return ThrowErrno(env, errno, "open", "/");
    for (const std::string& part : dirParts) {
      walked += "/" + part;
      int next = OpenDirNoFollow(current.get(), part, create, &failure);
      if (next < 0) return ThrowErrno(env, failure.err, failure.syscall, walked);
      current.reset(next);
    }
  }
  std::string fileName;
  if (!relParts.empty()) {
    fileName = relParts.back();
    relParts.pop_back();
  }
  for (const std::string& part : relParts) {
    walked += "/" + part;
    int next = OpenDirNoFollow(current.get(), part, create, &failure);
    if (next < 0) return ThrowErrno(env, failure.err, failure.syscall, walked);
    current.reset(next);
  }

  Napi::Object out = Napi::Object::New(env);
  struct stat st;
  if (fileName.empty()) {
    if (::fstat(current.get(), &st) != 0) return ThrowErrno(env, errno, "fstat", walked);
    out.Set("created", Napi::Boolean::New(env, false));
  } else {
    walked += "/" + fileName;
    const int flags = O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    bool created = false;
    ScopedFd file(create ? ::openat(current.get(), fileName.c_str(), flags | O_CREAT | O_EXCL, 0600) : -1);
    if (file.get() >= 0) {
      created = true;
    } else {
      if (create && errno != EEXIST) return ThrowErrno(env, errno, "openat", walked);
      file.reset(::openat(current.get(), fileName.c_str(), flags));
      if (file.get() < 0) {
        int err = errno;
        // A FIFO nobody reads refuses a non-blocking writer (ENXIO): it is no log file either.
        if (err == ENXIO) err = EINVAL;
        return ThrowErrno(env, err, "openat", walked);
      }
    }
    if (::fstat(file.get(), &st) != 0) return ThrowErrno(env, errno, "fstat", walked);
    if (!S_ISREG(st.st_mode)) {
      if (created) ::unlinkat(current.get(), fileName.c_str(), 0);
      return ThrowErrno(env, EINVAL, "fstat", walked + " is not a regular file");
    }
    out.Set("created", Napi::Boolean::New(env, created));
  }
  out.Set("dev", Napi::Number::New(env, static_cast<double>(st.st_dev)));
  out.Set("ino", Napi::Number::New(env, static_cast<double>(st.st_ino)));
  return out;
}

void RegisterLogOpen(Napi::Env env, Napi::Object exports) {
  exports.Set("prepareLogFile", Napi::Function::New(env, PrepareLogFile, "prepareLogFile"));
}

}  // namespace berth
