#include "addon.h"

#include <cstring>

namespace berth {

Napi::Value ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& path) {
  std::string message = syscall;
  if (!path.empty()) message += " " + path;
  message += ": ";
  message += std::strerror(err);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) error.Set("path", Napi::String::New(env, path));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

}  // namespace berth

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  berth::RegisterHost(env, exports);
  berth::RegisterMount(env, exports);
  berth::RegisterOverlay(env, exports);
  berth::RegisterFsExtras(env, exports);
  berth::RegisterNamespaces(env, exports);
  berth::RegisterStreamingFds(env, exports);
  berth::RegisterNetnsRead(env, exports);
  berth::RegisterMonitorSpawn(env, exports);
  berth::RegisterUserns(env, exports);
  berth::RegisterPreparedMounts(env, exports);
  berth::RegisterRootfsOpen(env, exports);
  berth::RegisterSdNotify(env, exports);
  berth::RegisterPidNamespace(env, exports);
  berth::RegisterLogOpen(env, exports);
  berth::RegisterPidWatch(env, exports);
  berth::RegisterSmallFiles(env, exports);
  berth::RegisterSealedCopy(env, exports);
  berth::RegisterCgroupSignal(env, exports);
  berth::RegisterMemoryTrim(env, exports);
  return exports;
}

NODE_API_MODULE(berth_native, Init)
