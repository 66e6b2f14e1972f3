// Signals every process of one cgroup, for a container whose processes cannot
// be reached through a PID namespace of its own (the pod's, a target's or the
// host's) and whose OCI runtime may not find them (runc 1.1's kill --all reads
// a devices cgroup a nested systemd leaves empty).
//
// A pid read from cgroup.procs may be reaped and reused before it is signalled.
// Each pid is therefore opened as a pidfd first, the cgroup.procs files are read
// again, and only a pidfd whose pid is still listed is signalled: had that pid's
// process been reaped and its number reused between the open and the second
// read, the pidfd names the dead process and the signal goes nowhere; if it is
// alive, the second read was about it. So no process outside the cgroup is
// signalled (processes that move out of it meanwhile aside).
//
// Processes may fork while a round runs: rounds repeat until a read lists no pid
// not yet signalled, at most maxRounds times. Runs on a pool thread.
#include "addon.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <set>
#include <string>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <utility>
#include <vector>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace berth {

namespace {

// cgroup.procs holds one pid per line; 1 MiB is some 140,000 of them, far past pids.max on a node.
constexpr size_t kMaxProcsBytes = 1 << 20;

// Adds the pids listed in each file to `out`. A file that cannot be opened is noted in firstError,
// unless it is absent (ENOENT: that hierarchy has no such cgroup, or it was removed meanwhile).
void ReadPids(const std::vector<std::string>& files, std::set<pid_t>* out, std::string* firstError) {
  std::vector<char> buf(kMaxProcsBytes);
  for (const std::string& file : files) {
    int fd = ::open(file.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    if (fd < 0) {
      if (errno != ENOENT && firstError->empty()) *firstError = file + ": " + std::strerror(errno);
      continue;
    }
    struct stat st;
    size_t total = 0;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
      while (total < buf.size()) {
        ssize_t n = ::read(fd, buf.data() + total, buf.size() - total);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        total += static_cast<size_t>(n);
      }
    }
    ::close(fd);
    long value = -1;
    for (size_t i = 0; i < total; i++) {
      char c = buf[i];
      if (c >= '0' && c <= '9') {
        value = (value < 0 ? 0 : value * 10) + (c - '0');
        if (value > 0x3fffffff) value = 0x3fffffff;
      } else {
        if (value > 0) out->insert(static_cast<pid_t>(value));
        value = -1;
      }
    }
    if (value > 0) out->insert(static_cast<pid_t>(value));
  }
}

class CgroupSignalWorker : public Napi::AsyncWorker {
 public:
  CgroupSignalWorker(Napi::Env env, std::vector<std::string> files, int signal, int maxRounds)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), files_(std::move(files)), signal_(signal), maxRounds_(maxRounds) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    const pid_t self = ::getpid();
    std::set<pid_t> done;
    for (int round = 0; round < maxRounds_; round++) {
      rounds_ = round + 1;
      std::set<pid_t> listed;
      ReadPids(files_, &listed, &error_);
      std::vector<std::pair<pid_t, int>> opened;
      for (pid_t pid : listed) {
        // 1: this PID namespace's init, never a container's process when berth shares it; self: berthd.
        if (done.count(pid) || pid <= 1 || pid == self) continue;
        int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
        if (fd >= 0) {
          opened.emplace_back(pid, fd);
        } else if (errno == ESRCH) {
          done.insert(pid);
        } else if (error_.empty()) {
          error_ = "pidfd_open " + std::to_string(pid) + ": " + std::strerror(errno);
        }
      }
      if (opened.empty()) break;
      std::set<pid_t> still;
      ReadPids(files_, &still, &error_);
      for (const auto& [pid, fd] : opened) {
        if (still.count(pid)) {
          if (::syscall(SYS_pidfd_send_signal, fd, signal_, nullptr, 0) == 0) {
            signalled_.push_back(pid);
          } else if (errno != ESRCH && error_.empty()) {
            error_ = "pidfd_send_signal " + std::to_string(pid) + ": " + std::strerror(errno);
          }
        }
        // Signalled, gone, or left the cgroup: in each case not this cgroup's to signal again.
        done.insert(pid);
        ::close(fd);
      }
    }
    std::set<pid_t> after;
    std::string ignored;
    ReadPids(files_, &after, &ignored);
    for (pid_t pid : after) {
      if (!done.count(pid) && pid > 1 && pid != self) left_.push_back(pid);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    Napi::Array signalled = Napi::Array::New(env, signalled_.size());
    for (size_t i = 0; i < signalled_.size(); i++) signalled.Set(static_cast<uint32_t>(i), Napi::Number::New(env, signalled_[i]));
    Napi::Array left = Napi::Array::New(env, left_.size());
    for (size_t i = 0; i < left_.size(); i++) left.Set(static_cast<uint32_t>(i), Napi::Number::New(env, left_[i]));
    out.Set("signalled", signalled);
    out.Set("left", left);
    out.Set("rounds", Napi::Number::New(env, rounds_));
    if (!error_.empty()) out.Set("error", Napi::String::New(env, error_));
    deferred_.Resolve(out);
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<std::string> files_;
  int signal_;
  int maxRounds_;
  int rounds_ = 0;
  std::vector<pid_t> signalled_;
  std::vector<pid_t> left_;
  std::string error_;
};

}  // namespace

// signalCgroupProcesses(procsFiles, signal, maxRounds): Promise<{ signalled, left, rounds, error? }>:
// the cgroup.procs files of one cgroup (one per hierarchy); every process listed is signalled once.
// left: pids still listed and never signalled when the rounds ran out; error: the first failure seen.
static Napi::Value SignalCgroupProcesses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "signalCgroupProcesses(procsFiles, signal, maxRounds)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array array = info[0].As<Napi::Array>();
  std::vector<std::string> files;
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value v = array.Get(i);
    if (!v.IsString()) {
      Napi::TypeError::New(env, "signalCgroupProcesses: procsFiles must be strings").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::string file = v.As<Napi::String>().Utf8Value();
    const std::string suffix = "/cgroup.procs";
    if (file.size() <= suffix.size() || file.compare(file.size() - suffix.size(), suffix.size(), suffix) != 0) {
      Napi::TypeError::New(env, "signalCgroupProcesses: " + file + " is not a cgroup.procs file").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    files.push_back(std::move(file));
  }
  int signal = info[1].As<Napi::Number>().Int32Value();
  int maxRounds = info[2].As<Napi::Number>().Int32Value();
  if (signal <= 0 || signal >= 65 || maxRounds <= 0 || maxRounds > 64) {
    Napi::RangeError::New(env, "signalCgroupProcesses: signal must be 1..64 and maxRounds 1..64").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new CgroupSignalWorker(env, std::move(files), signal, maxRounds);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

void RegisterCgroupSignal(Napi::Env env, Napi::Object exports) {
  exports.Set("signalCgroupProcesses", Napi::Function::New(env, SignalCgroupProcesses, "signalCgroupProcesses"));
}

}  // namespace berth
