// Host checks berthd makes at start: kernel identity and the capabilities the
// process really holds (capget, not /proc parsing, so it is what the kernel
// will enforce on our own writes to oom_score_adj and friends).
#include "addon.h"

#include <cerrno>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

namespace berth {

static Napi::Value Uname(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct utsname u {};
  if (uname(&u) != 0) return ThrowErrno(env, errno, "uname");
  Napi::Object out = Napi::Object::New(env);
  out.Set("sysname", u.sysname);
  out.Set("release", u.release);
  out.Set("version", u.version);
  out.Set("machine", u.machine);
  out.Set("nodename", u.nodename);
  return out;
}

// Returns the effective capability set as a decimal string of the 64-bit mask
// (JS numbers cannot hold all 64 bits exactly).
static Napi::Value EffectiveCapabilities(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct __user_cap_header_struct header {};
  struct __user_cap_data_struct data[2] {};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  if (syscall(SYS_capget, &header, data) != 0) return ThrowErrno(env, errno, "capget");
  unsigned long long mask = (static_cast<unsigned long long>(data[1].effective) << 32) | data[0].effective;
  return Napi::String::New(env, std::to_string(mask));
}

void RegisterHost(Napi::Env env, Napi::Object exports) {
  exports.Set("uname", Napi::Function::New(env, Uname, "uname"));
  exports.Set("effectiveCapabilities", Napi::Function::New(env, EffectiveCapabilities, "effectiveCapabilities"));
}

}  // namespace berth
