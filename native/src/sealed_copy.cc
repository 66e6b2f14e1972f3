// A sealed in-memory copy of an executable berthd runs inside containers'
// namespaces (berth-exec): exec'd through /proc/self/fd, the process's
// /proc/self/exe is this copy, which nothing can write, so a container that
// re-executes /proc/self/exe (the CVE-2019-5736 class) cannot reach the file
// on the host.
#include "addon.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace berth {

// sealedCopy(path): fd (close-on-exec) of a memfd holding the file, sealed against any change.
static Napi::Value SealedCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "sealedCopy(path)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int src = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (src < 0) return ThrowErrno(env, errno, "open", path);
  struct stat st;
  if (fstat(src, &st) != 0 || !S_ISREG(st.st_mode)) {
    int err = errno ? errno : EINVAL;
    close(src);
    return ThrowErrno(env, err, "fstat", path);
  }
  int mem = memfd_create("berth-exec", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (mem < 0) {
    int err = errno;
    close(src);
    return ThrowErrno(env, err, "memfd_create");
  }
  char buf[65536];
  for (;;) {
    ssize_t n = read(src, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(src);
      close(mem);
      return ThrowErrno(env, err, "read", path);
    }
    if (n == 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(mem, buf + off, static_cast<size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        int err = errno;
        close(src);
        close(mem);
        return ThrowErrno(env, err, "write", "memfd");
      }
      off += w;
    }
  }
  close(src);
  if (fchmod(mem, 0500) != 0 || fcntl(mem, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0) {
    int err = errno;
    close(mem);
    return ThrowErrno(env, err, "sealing the copy of", path);
  }
  return Napi::Number::New(env, mem);
}

void RegisterSealedCopy(Napi::Env env, Napi::Object exports) {
  exports.Set("sealedCopy", Napi::Function::New(env, SealedCopy, "sealedCopy"));
}

}  // namespace berth
