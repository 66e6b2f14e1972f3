// File-system calls Node has no binding for, needed to unpack image layers with
// full fidelity: mknod (devices, fifos, overlay whiteouts) and extended
// attributes (overlay opaque dirs, file capabilities, layer xattrs).
#include "addon.h"

#include <cerrno>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>

namespace berth {

// mknod(path, mode, major, minor): mode includes the file type bits (S_IFCHR, S_IFBLK, S_IFIFO).
static Napi::Value Mknod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "mknod(path, mode, major, minor)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  mode_t mode = static_cast<mode_t>(info[1].As<Napi::Number>().Uint32Value());
  dev_t dev = makedev(info[2].As<Napi::Number>().Uint32Value(), info[3].As<Napi::Number>().Uint32Value());
  if (::mknod(path.c_str(), mode, dev) != 0) return ThrowErrno(env, errno, "mknod", path);
  return env.Undefined();
}

// lsetxattr(path, name, value: Buffer): never follows a symlink.
static Napi::Value Lsetxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsBuffer()) {
    Napi::TypeError::New(env, "lsetxattr(path, name, value)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  Napi::Buffer<char> value = info[2].As<Napi::Buffer<char>>();
  if (::lsetxattr(path.c_str(), name.c_str(), value.Data(), value.Length(), 0) != 0) return ThrowErrno(env, errno, "lsetxattr", path);
  return env.Undefined();
}

// lgetxattr(path, name): Buffer, or undefined when the attribute is absent.
static Napi::Value Lgetxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "lgetxattr(path, name)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  ssize_t size = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
  if (size < 0) {
    if (errno == ENODATA) return env.Undefined();
    return ThrowErrno(env, errno, "lgetxattr", path);
  }
  std::string buf(static_cast<size_t>(size), '\0');
  size = ::lgetxattr(path.c_str(), name.c_str(), buf.data(), buf.size());
  if (size < 0) return ThrowErrno(env, errno, "lgetxattr", path);
  return Napi::Buffer<char>::Copy(env, buf.data(), static_cast<size_t>(size));
}

void RegisterFsExtras(Napi::Env env, Napi::Object exports) {
  exports.Set("mknod", Napi::Function::New(env, Mknod, "mknod"));
  exports.Set("lsetxattr", Napi::Function::New(env, Lsetxattr, "lsetxattr"));
  exports.Set("lgetxattr", Napi::Function::New(env, Lgetxattr, "lgetxattr"));
  Napi::Object c = Napi::Object::New(env);
  c.Set("S_IFCHR", static_cast<double>(S_IFCHR));
  c.Set("S_IFBLK", static_cast<double>(S_IFBLK));
  c.Set("S_IFIFO", static_cast<double>(S_IFIFO));
  exports.Set("fileTypes", c);
}

}  // namespace berth
