// releaseFreeMemory(): glibc's malloc_trim(0) on a pool thread. Memory a
// retired worker thread (a layer worker's V8 isolate) freed stays in its
// malloc arena, counted in berthd's resident set, until something returns it
// to the kernel; glibc only trims an arena's top on its own, and that is
// rarely free after an isolate's many allocations. malloc_trim walks every
// arena and gives back every free page (MADV_DONTNEED), which is what an idle
// daemon wants once its bursts of work are over.
#include "addon.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace berth {

namespace {

class TrimWorker : public Napi::AsyncWorker {
 public:
  explicit TrimWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
#if defined(__GLIBC__)
    released_ = malloc_trim(0) != 0;
#endif
  }

  void OnOK() override { deferred_.Resolve(Napi::Boolean::New(Env(), released_)); }

 private:
  Napi::Promise::Deferred deferred_;
  bool released_ = false;
};

}  // namespace

// releaseFreeMemory(): Promise<boolean>, true when some memory went back to the kernel
// (false where the C library is not glibc).
static Napi::Value ReleaseFreeMemory(const Napi::CallbackInfo& info) {
  auto* worker = new TrimWorker(info.Env());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

void RegisterMemoryTrim(Napi::Env env, Napi::Object exports) {
  exports.Set("releaseFreeMemory", Napi::Function::New(env, ReleaseFreeMemory, "releaseFreeMemory"));
}

}  // namespace berth
