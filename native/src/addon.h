// Shared declarations of the berth native addon: each source file registers its
// functions on the exports object.
#pragma once
#include <napi.h>
#include <string>

namespace berth {

// Throws a JS Error carrying errno, the syscall and the path it was made on.
Napi::Value ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& path = "");

void RegisterHost(Napi::Env env, Napi::Object exports);
void RegisterMount(Napi::Env env, Napi::Object exports);
void RegisterOverlay(Napi::Env env, Napi::Object exports);
void RegisterFsExtras(Napi::Env env, Napi::Object exports);
void RegisterNamespaces(Napi::Env env, Napi::Object exports);
void RegisterStreamingFds(Napi::Env env, Napi::Object exports);
void RegisterNetnsRead(Napi::Env env, Napi::Object exports);
void RegisterMonitorSpawn(Napi::Env env, Napi::Object exports);
void RegisterUserns(Napi::Env env, Napi::Object exports);
void RegisterPreparedMounts(Napi::Env env, Napi::Object exports);
void RegisterRootfsOpen(Napi::Env env, Napi::Object exports);
void RegisterSdNotify(Napi::Env env, Napi::Object exports);
void RegisterPidNamespace(Napi::Env env, Napi::Object exports);
void RegisterLogOpen(Napi::Env env, Napi::Object exports);
void RegisterPidWatch(Napi::Env env, Napi::Object exports);
void RegisterSmallFiles(Napi::Env env, Napi::Object exports);
void RegisterSealedCopy(Napi::Env env, Napi::Object exports);
void RegisterCgroupSignal(Napi::Env env, Napi::Object exports);
void RegisterMemoryTrim(Napi::Env env, Napi::Object exports);

}  // namespace berth
