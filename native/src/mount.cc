// mount(2) and umount2(2): Node has no binding for them. Used for namespace
// pinning (bind mounts), pod /dev/shm tmpfs and container root filesystems.
#include "addon.h"

#include <cerrno>
#include <sys/mount.h>

namespace berth {

static std::string OptionalString(const Napi::Value& v) {
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

// mount(source, target, fstype, flags, data)
static Napi::Value Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[1].IsString() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "mount(source, target, fstype, flags, data?)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string source = OptionalString(info[0]);
  std::string target = info[1].As<Napi::String>().Utf8Value();
  std::string fstype = OptionalString(info[2]);
  unsigned long flags = static_cast<unsigned long>(info[3].As<Napi::Number>().Int64Value());
  std::string data = info.Length() > 4 ? OptionalString(info[4]) : std::string();
  if (::mount(source.empty() ? nullptr : source.c_str(), target.c_str(), fstype.empty() ? nullptr : fstype.c_str(), flags,
              data.empty() ? nullptr : data.c_str()) != 0) {
    return ThrowErrno(env, errno, "mount", target);
  }
  return env.Undefined();
}

// umount2(target, flags); EINVAL (not a mount point) and ENOENT are reported, the caller decides.
static Napi::Value Umount2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "umount2(target, flags?)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string target = info[0].As<Napi::String>().Utf8Value();
  int flags = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  if (::umount2(target.c_str(), flags) != 0) return ThrowErrno(env, errno, "umount2", target);
  return env.Undefined();
}

void RegisterMount(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, Mount, "mount"));
  exports.Set("umount2", Napi::Function::New(env, Umount2, "umount2"));
  Napi::Object c = Napi::Object::New(env);
  c.Set("MS_RDONLY", static_cast<double>(MS_RDONLY));
  c.Set("MS_NOSUID", static_cast<double>(MS_NOSUID));
  c.Set("MS_NODEV", static_cast<double>(MS_NODEV));
  c.Set("MS_NOEXEC", static_cast<double>(MS_NOEXEC));
  c.Set("MS_REMOUNT", static_cast<double>(MS_REMOUNT));
  c.Set("MS_BIND", static_cast<double>(MS_BIND));
  c.Set("MS_REC", static_cast<double>(MS_REC));
  c.Set("MS_PRIVATE", static_cast<double>(MS_PRIVATE));
  c.Set("MS_SLAVE", static_cast<double>(MS_SLAVE));
  c.Set("MS_SHARED", static_cast<double>(MS_SHARED));
  c.Set("MNT_DETACH", static_cast<double>(MNT_DETACH));
  c.Set("MNT_FORCE", static_cast<double>(MNT_FORCE));
  exports.Set("mountFlags", c);
}

}  // namespace berth
