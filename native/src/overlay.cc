// Overlay mounts of container root filesystems through the new mount API
// (fsopen/fsconfig/fsmount/move_mount): each lower layer is passed on its own
// with "lowerdir+" (Linux 6.8+), so an image's layer count is not limited by the
// one-page option string of mount(2). Callers fall back to mount(2) when this
// throws ENOSYS or EINVAL (older kernels).
#include "addon.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>
#include <vector>

namespace berth {

// Reads the messages the kernel queued on an fs-context fd (why fsconfig failed).
static std::string ContextMessages(int fd) {
  std::string out;
  char buf[512];
  for (int i = 0; i < 8; i++) {
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0) break;
    buf[n] = '\0';
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

static Napi::Value Fail(Napi::Env env, int err, int fd, const std::string& step, const std::string& target) {
  std::string detail = fd >= 0 ? ContextMessages(fd) : std::string();
  if (fd >= 0) close(fd);
  return ThrowErrno(env, err, detail.empty() ? step : step + " (" + detail + ")", target);
}

// mountOverlay(lowerDirsTopFirst: string[], upperDir: string, workDir: string, target: string, readonly: boolean,
//              options?: [key, value][]): further overlay options, each set as a string.
static Napi::Value MountOverlay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsArray() || !info[1].IsString() || !info[2].IsString() || !info[3].IsString()) {
    Napi::TypeError::New(env, "mountOverlay(lowerDirs, upperDir, workDir, target, readonly)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array lowers = info[0].As<Napi::Array>();
  std::string upper = info[1].As<Napi::String>().Utf8Value();
  std::string work = info[2].As<Napi::String>().Utf8Value();
  std::string target = info[3].As<Napi::String>().Utf8Value();
  bool readonly = info[4].ToBoolean().Value();

  int fd = fsopen("overlay", FSOPEN_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, errno, "fsopen", target);
  for (uint32_t i = 0; i < lowers.Length(); i++) {
    std::string dir = lowers.Get(i).As<Napi::String>().Utf8Value();
    if (fsconfig(fd, FSCONFIG_SET_STRING, "lowerdir+", dir.c_str(), 0) != 0) return Fail(env, errno, fd, "fsconfig lowerdir+", dir);
  }
  if (!upper.empty()) {
    if (fsconfig(fd, FSCONFIG_SET_STRING, "upperdir", upper.c_str(), 0) != 0) return Fail(env, errno, fd, "fsconfig upperdir", upper);
    if (fsconfig(fd, FSCONFIG_SET_STRING, "workdir", work.c_str(), 0) != 0) return Fail(env, errno, fd, "fsconfig workdir", work);
  }
  if (info.Length() > 5 && info[5].IsArray()) {
    Napi::Array options = info[5].As<Napi::Array>();
    for (uint32_t i = 0; i < options.Length(); i++) {
      Napi::Value pair = options.Get(i);
      if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2) {
        close(fd);
        Napi::TypeError::New(env, "mountOverlay: options are [key, value] pairs").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      std::string key = pair.As<Napi::Array>().Get(0u).ToString().Utf8Value();
      std::string value = pair.As<Napi::Array>().Get(1u).ToString().Utf8Value();
      if (fsconfig(fd, FSCONFIG_SET_STRING, key.c_str(), value.c_str(), 0) != 0) return Fail(env, errno, fd, "fsconfig " + key + "=" + value, target);
    }
  }
  if (fsconfig(fd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) return Fail(env, errno, fd, "fsconfig create", target);
  int mfd = fsmount(fd, FSMOUNT_CLOEXEC, readonly ? MOUNT_ATTR_RDONLY : 0);
  if (mfd < 0) return Fail(env, errno, fd, "fsmount", target);
  close(fd);
  if (move_mount(mfd, "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    int err = errno;
    close(mfd);
    return ThrowErrno(env, err, "move_mount", target);
  }
  close(mfd);
  return env.Undefined();
}

void RegisterOverlay(Napi::Env env, Napi::Object exports) {
  exports.Set("mountOverlay", Napi::Function::New(env, MountOverlay, "mountOverlay"));
}

}  // namespace berth
