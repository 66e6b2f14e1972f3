// Mounts prepared host-side so that runc 1.1 (no idmap, no rro) only bind-mounts
// a ready path: a detached copy of a tree (open_tree OPEN_TREE_CLONE) gets its
// attributes with mount_setattr while nobody can see it, then is attached with
// move_mount. Attributes: read-only on every mount of the tree (recursive
// read-only, KEP-3857), an id mapping from a pinned user namespace (KEP-127),
// private propagation.
//
// Overlayfs does not accept MOUNT_ATTR_IDMAP on itself (6.18: EINVAL), so an
// idmapped container rootfs is an overlay whose lower layers are idmapped
// mounts: each layer is an idmapped detached clone handed to
// fsconfig(FSCONFIG_SET_FD) (Linux 6.13+); nothing but the overlay is attached.
// The upper dir is not idmapped: overlayfs works in it with its mounter's
// credentials (host root), which a mapping of the pod's ids cannot express
// (EOVERFLOW, and the overlay falls back to read-only). So the upper holds host
// ids (the container's root writes as host uid 100000, say), and its top
// directory must be owned by the container root's host ids, as the overlay's
// root directory takes its owner from it.
#include "addon.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>
#include <vector>

namespace berth {

namespace {

struct Failure {
  int err = 0;
  std::string step;
  std::string path;
};

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) close(fd_);
      fd_ = other.fd_;
      other.fd_ = -1;
    }
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// A detached clone of path (and its submounts when recursive), private, with the attributes set on every mount of it.
Fd CloneWithAttributes(const std::string& path, bool recursive, bool readonly, int usernsFd, Failure* failure) {
  unsigned int treeFlags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0);
  Fd tree(open_tree(AT_FDCWD, path.c_str(), treeFlags));
  if (tree.get() < 0) {
    *failure = {errno, "open_tree", path};
    return Fd();
  }
  struct mount_attr attr = {};
  attr.propagation = MS_PRIVATE;
  if (readonly) attr.attr_set |= MOUNT_ATTR_RDONLY;
  if (usernsFd >= 0) {
    attr.attr_set |= MOUNT_ATTR_IDMAP;
    attr.userns_fd = static_cast<__u64>(usernsFd);
  }
  if (mount_setattr(tree.get(), "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof(attr)) != 0) {
    std::string step = "mount_setattr(";
    step += readonly ? "RDONLY" : "";
    step += usernsFd >= 0 ? (readonly ? "|IDMAP" : "IDMAP") : "";
    step += recursive ? ", AT_RECURSIVE)" : ")";
    *failure = {errno, step, path};
    return Fd();
  }
  return tree;
}

bool Attach(const Fd& tree, const std::string& target, Failure* failure) {
  if (move_mount(tree.get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) == 0) return true;
  *failure = {errno, "move_mount", target};
  return false;
}

Fd OpenUserns(const std::string& path, Failure* failure) {
  if (path.empty()) return Fd();
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) *failure = {errno, "open", path};
  return fd;
}

Napi::Value Throw(Napi::Env env, const Failure& f) { return ThrowErrno(env, f.err, f.step, f.path); }

// Reads the messages the kernel queued on an fs-context fd (why fsconfig failed).
std::string ContextMessages(int fd) {
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

bool Config(const Fd& fs, const char* key, int fd, const std::string& path, Failure* failure) {
  if (fsconfig(fs.get(), FSCONFIG_SET_FD, key, nullptr, fd) == 0) return true;
  int err = errno;
  std::string detail = ContextMessages(fs.get());
  *failure = {err, std::string("fsconfig ") + key + (detail.empty() ? "" : " (" + detail + ")"), path};
  return false;
}

}  // namespace

// bindMountTree(source, target, { recursive, readonly, usernsPath })
static Napi::Value BindMountTree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsObject()) {
    Napi::TypeError::New(env, "bindMountTree(source, target, { recursive, readonly, usernsPath })").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string source = info[0].As<Napi::String>().Utf8Value();
  std::string target = info[1].As<Napi::String>().Utf8Value();
  Napi::Object options = info[2].As<Napi::Object>();
  bool recursive = options.Get("recursive").ToBoolean().Value();
  bool readonly = options.Get("readonly").ToBoolean().Value();
  Napi::Value userns = options.Get("usernsPath");
  std::string usernsPath = userns.IsString() ? userns.As<Napi::String>().Utf8Value() : std::string();

  Failure failure;
  Fd usernsFd = OpenUserns(usernsPath, &failure);
  if (failure.err != 0) return Throw(env, failure);
  Fd tree = CloneWithAttributes(source, recursive, readonly, usernsFd.get(), &failure);
  if (tree.get() < 0 || !Attach(tree, target, &failure)) return Throw(env, failure);
  return env.Undefined();
}

// mountIdmappedOverlay(lowerDirsTopFirst, upperDir, workDir, target, readonly, usernsPath)
// upperDir and workDir are "" both for an overlay without upper, which is then
// read-only; one layer without upper is a read-only idmapped bind of it.
static Napi::Value MountIdmappedOverlay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsArray() || !info[1].IsString() || !info[2].IsString() || !info[3].IsString() || !info[5].IsString()) {
    Napi::TypeError::New(env, "mountIdmappedOverlay(lowerDirs, upperDir, workDir, target, readonly, usernsPath)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array lowers = info[0].As<Napi::Array>();
  std::string upper = info[1].As<Napi::String>().Utf8Value();
  std::string work = info[2].As<Napi::String>().Utf8Value();
  std::string target = info[3].As<Napi::String>().Utf8Value();
  bool readonly = info[4].ToBoolean().Value();
  std::string usernsPath = info[5].As<Napi::String>().Utf8Value();
  if (usernsPath.empty() || lowers.Length() == 0 || upper.empty() != work.empty()) {
    Napi::TypeError::New(env, "mountIdmappedOverlay: needs a user namespace, at least one lower dir, and both upper and work dirs or neither")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }

  Failure failure;
  Fd usernsFd = OpenUserns(usernsPath, &failure);
  if (failure.err != 0) return Throw(env, failure);
  if (lowers.Length() == 1 && upper.empty()) {
    // overlayfs wants two lowers when there is no upper; one layer alone is the same tree read-only.
    std::string dir = lowers.Get(0u).ToString().Utf8Value();
    Fd layer = CloneWithAttributes(dir, false, true, usernsFd.get(), &failure);
    if (layer.get() < 0 || !Attach(layer, target, &failure)) return Throw(env, failure);
    return env.Undefined();
  }
  Fd fs(fsopen("overlay", FSOPEN_CLOEXEC));
  if (fs.get() < 0) return ThrowErrno(env, errno, "fsopen", target);
  // A detached tree is gone with its last fd, and overlayfs clones the layers
  // only at create: every clone stays open until the overlay exists.
  std::vector<Fd> clones;
  clones.reserve(lowers.Length() + 1);
  for (uint32_t i = 0; i < lowers.Length(); i++) {
    std::string dir = lowers.Get(i).ToString().Utf8Value();
    // A layer is shared by every container of the image: its idmapped clone is
    // private to this overlay, the layer itself is never changed.
    clones.push_back(CloneWithAttributes(dir, false, false, usernsFd.get(), &failure));
    if (clones.back().get() < 0 || !Config(fs, "lowerdir+", clones.back().get(), dir, &failure)) return Throw(env, failure);
  }
  if (!upper.empty()) {
    for (const auto& [key, dir] : {std::pair<const char*, const std::string&>{"upperdir", upper}, {"workdir", work}}) {
      if (fsconfig(fs.get(), FSCONFIG_SET_STRING, key, dir.c_str(), 0) != 0) {
        int err = errno;
        std::string detail = ContextMessages(fs.get());
        return ThrowErrno(env, err, std::string("fsconfig ") + key + (detail.empty() ? "" : " (" + detail + ")"), dir);
      }
    }
  }
  // As every container rootfs (OVERLAY_SAFETY_OPTIONS in runtime/image/rootfs-mounter.ts): a layer's
  // trusted.overlay.redirect / .metacopy is never acted on.
  for (const auto& [key, value] : {std::pair<const char*, const char*>{"redirect_dir", "nofollow"}, {"metacopy", "off"}}) {
    if (fsconfig(fs.get(), FSCONFIG_SET_STRING, key, value, 0) != 0) {
      int err = errno;
      std::string detail = ContextMessages(fs.get());
      return ThrowErrno(env, err, std::string("fsconfig ") + key + (detail.empty() ? "" : " (" + detail + ")"), target);
    }
  }
  if (fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    int err = errno;
    std::string detail = ContextMessages(fs.get());
    return ThrowErrno(env, err, detail.empty() ? "fsconfig create" : "fsconfig create (" + detail + ")", target);
  }
  Fd mnt(fsmount(fs.get(), FSMOUNT_CLOEXEC, readonly ? MOUNT_ATTR_RDONLY : 0));
  if (mnt.get() < 0) return ThrowErrno(env, errno, "fsmount", target);
  if (!Attach(mnt, target, &failure)) return Throw(env, failure);
  return env.Undefined();
}

void RegisterPreparedMounts(Napi::Env env, Napi::Object exports) {
  exports.Set("bindMountTree", Napi::Function::New(env, BindMountTree, "bindMountTree"));
  exports.Set("mountIdmappedOverlay", Napi::Function::New(env, MountIdmappedOverlay, "mountIdmappedOverlay"));
}

}  // namespace berth
