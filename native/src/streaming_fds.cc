// File-descriptor work the streaming server needs and Node cannot do:
// receiving a pty master over SCM_RIGHTS (runc --console-socket), TIOCSWINSZ,
// SOCK_SEQPACKET sockets (conmon's attach socket; libuv refuses to wrap them),
// a reader thread per fd for pty masters and seqpacket sockets, and TCP
// connections opened inside a pod's network namespace. Every blocking call runs
// off the main thread; setns only ever happens on a worker thread, which is
// switched back before it returns to the pool.
#include "addon.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <string>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace berth {

static std::string ErrnoMessage(const std::string& what, int err) { return what + ": " + std::strerror(err); }

// Unix socket paths are limited to 108 bytes; container bundle dirs under a
// temp root easily exceed that. Connecting through /proc/self/fd/<dirfd>/<name>
// keeps the address short whatever the directory.
static int ConnectUnix(const std::string& path, int type, int* errOut) {
  int fd = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *errOut = errno;
    return -1;
  }
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  int dirFd = -1;
  if (path.size() < sizeof(addr.sun_path)) {
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  } else {
    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    dirFd = ::open(dir.c_str(), O_PATH | O_CLOEXEC);
    if (dirFd < 0) {
      *errOut = errno;
      ::close(fd);
      return -1;
    }
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "/proc/self/fd/%d/%s", dirFd, base.c_str());
  }
  int rc = ::connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  if (dirFd >= 0) ::close(dirFd);
  if (rc != 0) {
    *errOut = err;
    ::close(fd);
    return -1;
  }
  return fd;
}

// consoleSocketListen(path): a listening SOCK_STREAM unix socket for runc's --console-socket.
static Napi::Value ConsoleSocketListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "consoleSocketListen(path)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  struct sockaddr_un addr {};
  if (path.size() >= sizeof(addr.sun_path)) return ThrowErrno(env, ENAMETOOLONG, "bind", path);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket", path);
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 1) != 0) {
    int err = errno;
    ::close(fd);
    return ThrowErrno(env, err, "bind", path);
  }
  return Napi::Number::New(env, fd);
}

class ReceiveFdWorker : public Napi::AsyncWorker {
 public:
  ReceiveFdWorker(Napi::Env env, int listenFd, int timeoutMs)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), listenFd_(listenFd), timeoutMs_(timeoutMs) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    struct pollfd p { listenFd_, POLLIN, 0 };
    int rc;
    do rc = ::poll(&p, 1, timeoutMs_);
    while (rc < 0 && errno == EINTR);
    if (rc == 0) return SetError("timed out waiting for the runtime to send the terminal");
    if (rc < 0) return SetError(ErrnoMessage("poll", errno));
    int conn = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) return SetError(ErrnoMessage("accept", errno));
    char data[256];
    struct iovec iov { data, sizeof(data) };
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n;
    do n = ::recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    int err = errno;
    ::close(conn);
    if (n < 0) return SetError(ErrnoMessage("recvmsg", err));
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        std::memcpy(&fd_, CMSG_DATA(c), sizeof(int));
        return;
      }
    }
    SetError("the runtime sent no file descriptor on the console socket");
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), fd_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int listenFd_;
  int timeoutMs_;
  int fd_ = -1;
};

// receivePtyMaster(listenFd, timeoutMs): Promise<fd> of the first fd sent over the socket.
static Napi::Value ReceivePtyMaster(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "receivePtyMaster(listenFd, timeoutMs)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new ReceiveFdWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// openPty(): { master, slave } — a fresh pty pair, neither becoming our controlling terminal.
static Napi::Value OpenPty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return ThrowErrno(env, errno, "posix_openpt");
  char name[128];
  if (::grantpt(master) != 0 || ::unlockpt(master) != 0 || ::ptsname_r(master, name, sizeof(name)) != 0) {
    int err = errno;
    ::close(master);
    return ThrowErrno(env, err, "ptsname");
  }
  int slave = ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) {
    int err = errno;
    ::close(master);
    return ThrowErrno(env, err, "open", name);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("master", Napi::Number::New(env, master));
  out.Set("slave", Napi::Number::New(env, slave));
  return out;
}

// setWindowSize(fd, rows, cols)
static Napi::Value SetWindowSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "setWindowSize(fd, rows, cols)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct winsize ws {};
  ws.ws_row = static_cast<unsigned short>(info[1].As<Napi::Number>().Uint32Value());
  ws.ws_col = static_cast<unsigned short>(info[2].As<Napi::Number>().Uint32Value());
  if (::ioctl(info[0].As<Napi::Number>().Int32Value(), TIOCSWINSZ, &ws) != 0) return ThrowErrno(env, errno, "ioctl(TIOCSWINSZ)");
  return env.Undefined();
}

static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "closeFd(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (::close(info[0].As<Napi::Number>().Int32Value()) != 0 && errno != EINTR) return ThrowErrno(env, errno, "close");
  return env.Undefined();
}

// shutdownFd(fd, how): 0 read, 1 write, 2 both.
static Napi::Value ShutdownFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "shutdownFd(fd, how)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (::shutdown(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value()) != 0 && errno != ENOTCONN) {
    return ThrowErrno(env, errno, "shutdown");
  }
  return env.Undefined();
}

// seqpacketConnect(path): fd of a SOCK_SEQPACKET connection (conmon's attach socket).
static Napi::Value SeqpacketConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "seqpacketConnect(path)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int err = 0;
  int fd = ConnectUnix(path, SOCK_SEQPACKET, &err);
  if (fd < 0) return ThrowErrno(env, err, "connect", path);
  return Napi::Number::New(env, fd);
}

// writeNonBlocking(fd, buffer): bytes written now (0 when the fd would block). Sockets
// use send(MSG_DONTWAIT|MSG_NOSIGNAL); other fds (pty masters) are polled first and
// written in small pieces so a full terminal never blocks the event loop.
static Napi::Value WriteNonBlocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBuffer()) {
    Napi::TypeError::New(env, "writeNonBlocking(fd, buffer)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto buf = info[1].As<Napi::Buffer<char>>();
  if (buf.Length() == 0) return Napi::Number::New(env, 0);
  struct stat st {};
  bool isSocket = ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
  ssize_t n;
  if (isSocket) {
    do n = ::send(fd, buf.Data(), buf.Length(), MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
  } else {
    struct pollfd p { fd, POLLOUT, 0 };
    if (::poll(&p, 1, 0) <= 0 || !(p.revents & POLLOUT)) {
      if (p.revents & (POLLERR | POLLHUP)) return ThrowErrno(env, EPIPE, "write");
      return Napi::Number::New(env, 0);
    }
    size_t len = buf.Length() < 512 ? buf.Length() : 512;
    do n = ::write(fd, buf.Data(), len);
    while (n < 0 && errno == EINTR);
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, 0);
    return ThrowErrno(env, errno, "write");
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// A thread per fd that reads (or, for seqpacket sockets, receives one packet at a
// time, keeping packet boundaries) and hands each chunk to JS; an eventfd wakes it
// to stop. The fd stays owned by JS, which closes it after the end callback.
struct FdReader {
  int id;
  int fd;
  int wakeFd;
  bool seqpacket;
  Napi::ThreadSafeFunction tsfn;
  std::thread thread;
};

struct ReaderChunk {
  std::vector<char> data;
  bool end = false;
  std::string error;
};

static std::mutex readersMutex;
static std::map<int, FdReader*> readers;
static int nextReaderId = 1;

static void DeliverChunk(Napi::Env env, Napi::Function callback, ReaderChunk* chunk) {
  if (env != nullptr && callback != nullptr) {
    if (chunk->end) {
      callback.Call({env.Null(), chunk->error.empty() ? env.Null() : Napi::String::New(env, chunk->error)});
    } else {
      callback.Call({Napi::Buffer<char>::Copy(env, chunk->data.data(), chunk->data.size())});
    }
  }
  delete chunk;
}

static void ReaderLoop(FdReader* reader) {
  std::vector<char> buf(65536);
  std::string error;
  for (;;) {
    struct pollfd p[2] = {{reader->fd, POLLIN, 0}, {reader->wakeFd, POLLIN, 0}};
    int rc = ::poll(p, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      error = ErrnoMessage("poll", errno);
      break;
    }
    if (p[1].revents) break;
    if (!p[0].revents) continue;
    ssize_t n = reader->seqpacket ? ::recv(reader->fd, buf.data(), buf.size(), 0) : ::read(reader->fd, buf.data(), buf.size());
    if (n > 0) {
      auto* chunk = new ReaderChunk();
      chunk->data.assign(buf.data(), buf.data() + n);
      if (reader->tsfn.BlockingCall(chunk, DeliverChunk) != napi_ok) {
        delete chunk;
        break;
      }
      continue;
    }
    if (n == 0) break;
    if (errno == EINTR || errno == EAGAIN) continue;
    // A pty master reads EIO once the last slave fd is closed: the process is gone.
    if (errno != EIO && errno != ECONNRESET) error = ErrnoMessage("read", errno);
    break;
  }
  auto* end = new ReaderChunk();
  end->end = true;
  end->error = error;
  if (reader->tsfn.BlockingCall(end, DeliverChunk) != napi_ok) delete end;
  reader->tsfn.Release();
}

// startFdReader(fd, seqpacket, onChunk(buffer | null, error | null)): reader id.
static Napi::Value StartFdReader(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsBoolean() || !info[2].IsFunction()) {
    Napi::TypeError::New(env, "startFdReader(fd, seqpacket, onChunk)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int wakeFd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakeFd < 0) return ThrowErrno(env, errno, "eventfd");
  auto* reader = new FdReader();
  reader->fd = info[0].As<Napi::Number>().Int32Value();
  reader->wakeFd = wakeFd;
  reader->seqpacket = info[1].As<Napi::Boolean>().Value();
  {
    std::lock_guard<std::mutex> lock(readersMutex);
    reader->id = nextReaderId++;
    readers[reader->id] = reader;
  }
  reader->tsfn = Napi::ThreadSafeFunction::New(
      env, info[2].As<Napi::Function>(), "berthFdReader", 16, 1, reader, [](Napi::Env, FdReader* r) {
        if (r->thread.joinable()) r->thread.join();
        {
          std::lock_guard<std::mutex> lock(readersMutex);
          readers.erase(r->id);
        }
        ::close(r->wakeFd);
        delete r;
      });
  reader->thread = std::thread(ReaderLoop, reader);
  return Napi::Number::New(env, reader->id);
}

// stopFdReader(id): wakes the reader thread; its end callback follows.
static Napi::Value StopFdReader(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "stopFdReader(id)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::lock_guard<std::mutex> lock(readersMutex);
  auto it = readers.find(info[0].As<Napi::Number>().Int32Value());
  if (it != readers.end()) {
    uint64_t one = 1;
    ssize_t ignored = ::write(it->second->wakeFd, &one, sizeof(one));
    (void)ignored;
  }
  return env.Undefined();
}

class NetnsConnectWorker : public Napi::AsyncWorker {
 public:
  NetnsConnectWorker(Napi::Env env, std::string netns, std::string host, int port, int timeoutMs)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        netns_(std::move(netns)),
        host_(std::move(host)),
        port_(port),
        timeoutMs_(timeoutMs) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    struct sockaddr_storage addr {};
    socklen_t addrLen;
    int family;
    auto* v4 = reinterpret_cast<struct sockaddr_in*>(&addr);
    auto* v6 = reinterpret_cast<struct sockaddr_in6*>(&addr);
    if (::inet_pton(AF_INET, host_.c_str(), &v4->sin_addr) == 1) {
      family = AF_INET;
      v4->sin_family = AF_INET;
      v4->sin_port = htons(static_cast<uint16_t>(port_));
      addrLen = sizeof(*v4);
    } else if (::inet_pton(AF_INET6, host_.c_str(), &v6->sin6_addr) == 1) {
      family = AF_INET6;
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(static_cast<uint16_t>(port_));
      addrLen = sizeof(*v6);
    } else {
      return SetError("not an IP address: " + host_);
    }

    int selfNs = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (selfNs < 0) return SetError(ErrnoMessage("open /proc/thread-self/ns/net", errno));
    int targetNs = ::open(netns_.c_str(), O_RDONLY | O_CLOEXEC);
    if (targetNs < 0) {
      int err = errno;
      ::close(selfNs);
      return SetError(ErrnoMessage("open " + netns_, err));
    }
    if (::setns(targetNs, CLONE_NEWNET) != 0) {
      int err = errno;
      ::close(selfNs);
      ::close(targetNs);
      return SetError(ErrnoMessage("setns " + netns_, err));
    }
    // A socket belongs to the namespace it was created in, so the thread can go
    // back to the host namespace right away; connect() then happens in the pod's.
    int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int socketErr = errno;
    if (::setns(selfNs, CLONE_NEWNET) != 0) {
      // A pool thread left in a pod's namespace would poison every later job on it.
      std::abort();
    }
    ::close(selfNs);
    ::close(targetNs);
    if (fd < 0) return SetError(ErrnoMessage("socket", socketErr));

    if (::connect(fd, reinterpret_cast<struct sockaddr*>(&addr), addrLen) != 0) {
      if (errno != EINPROGRESS) {
        int err = errno;
        ::close(fd);
        return SetError(ErrnoMessage("connect " + host_ + ":" + std::to_string(port_), err));
      }
      struct pollfd p { fd, POLLOUT, 0 };
      int rc;
      do rc = ::poll(&p, 1, timeoutMs_);
      while (rc < 0 && errno == EINTR);
      if (rc == 0) {
        ::close(fd);
        return SetError("connect " + host_ + ":" + std::to_string(port_) + ": timed out");
      }
      int soErr = 0;
      socklen_t len = sizeof(soErr);
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soErr, &len);
      if (soErr != 0) {
        ::close(fd);
        return SetError(ErrnoMessage("connect " + host_ + ":" + std::to_string(port_), soErr));
      }
    }
    fd_ = fd;
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), fd_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string netns_;
  std::string host_;
  int port_;
  int timeoutMs_;
  int fd_ = -1;
};

// connectInNetns(netnsPath, host, port, timeoutMs): Promise<fd> of a connected, non-blocking TCP socket.
static Napi::Value ConnectInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsString() || !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "connectInNetns(netnsPath, host, port, timeoutMs)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new NetnsConnectWorker(env, info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value(),
                                        info[2].As<Napi::Number>().Int32Value(), info[3].As<Napi::Number>().Int32Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

void RegisterStreamingFds(Napi::Env env, Napi::Object exports) {
  exports.Set("consoleSocketListen", Napi::Function::New(env, ConsoleSocketListen, "consoleSocketListen"));
  exports.Set("receivePtyMaster", Napi::Function::New(env, ReceivePtyMaster, "receivePtyMaster"));
  exports.Set("openPty", Napi::Function::New(env, OpenPty, "openPty"));
  exports.Set("setWindowSize", Napi::Function::New(env, SetWindowSize, "setWindowSize"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("shutdownFd", Napi::Function::New(env, ShutdownFd, "shutdownFd"));
  exports.Set("seqpacketConnect", Napi::Function::New(env, SeqpacketConnect, "seqpacketConnect"));
  exports.Set("writeNonBlocking", Napi::Function::New(env, WriteNonBlocking, "writeNonBlocking"));
  exports.Set("startFdReader", Napi::Function::New(env, StartFdReader, "startFdReader"));
  exports.Set("stopFdReader", Napi::Function::New(env, StopFdReader, "stopFdReader"));
  exports.Set("connectInNetns", Napi::Function::New(env, ConnectInNetns, "connectInNetns"));
}

}  // namespace berth
