// eshmctl: inspect and clean up eshm segments (/dev/shm/eshm_<name>) without disturbing them.
//
//   eshmctl ls [--json] [--sample_ms=150]
//   eshmctl stat NAME [--json] [--watch] [--interval_ms=1000] [--sample_ms=150]
//   eshmctl rm NAME [--force] [--json]
//   eshmctl rm --stale [--match=PREFIX] [--min_age_s=5] [--json]
//
// Read-only by construction: a segment is opened O_RDONLY and mapped PROT_READ, so eshmctl cannot write to
// it, and it takes no locks (it only asks the kernel, with F_OFD_GETLK, whether a role's lock is held). The
// header is validated as Segment::Open does (regular file, size, magic, layout version, sizes and offsets)
// before anything else is read; foreign, truncated and half-created files are reported, never trusted.
// Only `rm` changes anything: it unlinks the name, and only when no role lock is held (or with --force).
//
// Role states, per master and slave:
//   alive         the role lock is held (kernel evidence that the holder's open file is still open)
//   unresponsive  the role lock is held but the heartbeat did not advance over the sampling window
//   dead          the lock is free but the role's control block still names a holder (it crashed)
//   vacant        the lock is free and the control block is clear (never attached, or closed cleanly)
//
// Text output shows file names (and anything read from a file) with every byte outside printable ASCII
// escaped as \xNN and a backslash doubled, so a hostile name under /dev/shm cannot send escape sequences
// to the operator's terminal; --json escapes the same bytes as \u00NN.
//
// Exit status: 0 on success, 1 on a failure or refusal, 2 on a usage error.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/ring.h"
#include "eshm/role_lock.h"
#include "eshm/segment.h"

ABSL_FLAG(bool, json, false, "machine-readable JSON output (stat --watch: one JSON object per line)");
ABSL_FLAG(bool, watch, false, "stat: repeat every --interval_ms until Ctrl-C");
ABSL_FLAG(std::int64_t, interval_ms, 1000, "stat --watch: time between reports");
ABSL_FLAG(std::int64_t, sample_ms, 150,
          "ls/stat: sampling window for heartbeats and rates; a held role whose heartbeat does not advance "
          "within it (and within half the stale threshold the holder published) is reported unresponsive");
ABSL_FLAG(bool, force, false, "rm NAME: remove even if a role lock is held or the file is not an eshm segment");
ABSL_FLAG(bool, stale, false, "rm: remove every segment whose owners are proven dead");
ABSL_FLAG(std::string, match, "", "rm --stale: consider only segment names that start with this prefix");
ABSL_FLAG(std::int64_t, min_age_s, 5,
          "rm --stale: leave alone segments created (or modified) less than this many seconds ago, so a "
          "channel that is still being set up is never removed");

namespace {

using eshm::kSegmentDirectory;
using eshm::kSegmentFilePrefix;
using eshm::MonotonicNowNs;
using eshm::RealtimeNowNs;

std::atomic<bool> g_interrupted{false};
void OnInterrupt(int) { g_interrupted.store(true); }

// Sleeps up to `ms`, in short steps so that Ctrl-C ends the wait quickly. False if interrupted.
bool SleepMs(std::int64_t ms) {
  const std::int64_t end = MonotonicNowNs() + ms * 1'000'000;
  while (!g_interrupted.load()) {
    const std::int64_t left = end - MonotonicNowNs();
    if (left <= 0) return true;
    const std::int64_t step = std::min<std::int64_t>(left, 20'000'000);
    const timespec pause{0, static_cast<long>(step)};
    nanosleep(&pause, nullptr);
  }
  return false;
}

// ---- Protection against a file truncated under our mapping (SIGBUS): the read is abandoned. ----
sigjmp_buf* g_bus_jump = nullptr;

void OnSigbus(int signo) {
  if (g_bus_jump != nullptr) siglongjmp(*g_bus_jump, 1);
  signal(signo, SIG_DFL);
  raise(signo);
}

// ---- Text ----
// `s` for a terminal: printable ASCII as is, a backslash as \\, every other byte (control characters such
// as ESC, BEL, CR and LF, DEL, and every byte >= 0x80, so also C1 controls and invalid UTF-8) as \xNN.
// The result is one line that cannot move the cursor, change colours or the window title, and that tells
// every name apart.
std::string Printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      out += absl::StrFormat("\\x%02x", c);
    }
  }
  return out;
}

// ---- JSON ----
std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        // Control characters, and bytes outside ASCII (file names need not be UTF-8): \u00XX keeps the
        // output valid JSON whatever the name holds.
        if (c < 0x20 || c >= 0x7f) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += ch;
        }
    }
  }
  out += "\"";
  return out;
}

// A JSON object built member by member; values are already-encoded JSON.
class JsonObject {
 public:
  JsonObject& Raw(std::string_view key, std::string_view json) {
    if (!body_.empty()) body_ += ",";
    absl::StrAppend(&body_, JsonString(key), ":", absl::string_view(json.data(), json.size()));
    return *this;
  }
  JsonObject& Str(std::string_view key, std::string_view value) { return Raw(key, JsonString(value)); }
  JsonObject& Int(std::string_view key, std::int64_t value) { return Raw(key, absl::StrCat(value)); }
  JsonObject& Uint(std::string_view key, std::uint64_t value) { return Raw(key, absl::StrCat(value)); }
  JsonObject& Bool(std::string_view key, bool value) { return Raw(key, value ? "true" : "false"); }
  JsonObject& Double(std::string_view key, double value) {
    return Raw(key, absl::StrFormat("%.1f", value));  // never NaN or infinite: callers guard divisions
  }
  std::string Done() const { return absl::StrCat("{", body_, "}"); }

 private:
  std::string body_;
};

std::string JsonArray(const std::vector<std::string>& items) { return absl::StrCat("[", absl::StrJoin(items, ","), "]"); }

// ---- Reading a segment ----

// What a file under /dev/shm/eshm_* turned out to be.
enum class FileStatus {
  kOk,
  kNotEshm,        // not a regular file, or wrong magic
  kTruncated,      // smaller than a header, or not the size its header says
  kUninitialized,  // the creator has not written the layout version (still creating, or died doing so)
  kIncompatible,   // another layout version
  kCorrupt,        // inconsistent header
  kUnreadable,     // open/stat/mmap failed (e.g. permissions)
};

const char* FileStatusName(FileStatus s) {
  switch (s) {
    case FileStatus::kOk: return "ok";
    case FileStatus::kNotEshm: return "not_eshm";
    case FileStatus::kTruncated: return "truncated";
    case FileStatus::kUninitialized: return "uninitialized";
    case FileStatus::kIncompatible: return "incompatible_version";
    case FileStatus::kCorrupt: return "corrupt";
    case FileStatus::kUnreadable: return "unreadable";
  }
  return "unknown";
}

const char* FileStatusText(FileStatus s) {
  switch (s) {
    case FileStatus::kOk: return "eshm segment";
    case FileStatus::kNotEshm: return "not an eshm segment";
    case FileStatus::kTruncated: return "truncated";
    case FileStatus::kUninitialized: return "uninitialized";
    case FileStatus::kIncompatible: return "incompatible layout version";
    case FileStatus::kCorrupt: return "corrupt header";
    case FileStatus::kUnreadable: return "unreadable";
  }
  return "unknown";
}

struct RoleSample {
  std::uint32_t state = 0;
  std::uint32_t pid = 0;
  std::uint64_t heartbeat = 0;
  std::uint64_t attach_epoch = 0;
  std::uint32_t stale_threshold_ms = 0;  // as the holder published it (0: not said)
  bool locked = false;  // the role's OFD lock is held by some process
};

struct RingSample {
  std::uint64_t tail = 0;
  std::uint64_t messages_written = 0;
  std::uint64_t head = 0;
  std::uint64_t messages_read = 0;
  std::uint64_t wake_syscalls = 0;
  std::uint64_t wait_syscalls = 0;
  std::uint64_t QueuedMessages() const { return messages_written - std::min(messages_written, messages_read); }
  std::uint64_t QueuedBytes() const { return tail - std::min(tail, head); }
};

struct Sample {
  std::int64_t when_ns = 0;  // CLOCK_MONOTONIC
  RoleSample roles[2];
  RingSample rings[2];
};

// One opened segment file: validated once, then sampled any number of times.
class SegmentFile {
 public:
  explicit SegmentFile(std::string name) : name_(std::move(name)), path_(eshm::Segment::PathFor(name_)) {}
  SegmentFile(const SegmentFile&) = delete;
  SegmentFile& operator=(const SegmentFile&) = delete;
  ~SegmentFile() {
    if (base_ != nullptr) munmap(const_cast<std::byte*>(base_), size_);
    if (fd_ >= 0) close(fd_);
  }

  // Opens and validates. Returns false (with status() and detail() set) if the file is not a usable segment.
  bool Open() {
    fd_ = open(path_.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd_ < 0) {
      const int error = errno;
      return Fail(error == ELOOP ? FileStatus::kNotEshm : FileStatus::kUnreadable,
                  error == ELOOP ? "a symbolic link" : absl::StrCat("open: ", std::strerror(error)));
    }
    struct stat st;
    if (fstat(fd_, &st) != 0) return Fail(FileStatus::kUnreadable, absl::StrCat("fstat: ", std::strerror(errno)));
    mtime_ns_ = std::int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
    uid_ = st.st_uid;
    mode_ = st.st_mode & 07777;
    if (!S_ISREG(st.st_mode)) return Fail(FileStatus::kNotEshm, "not a regular file");
    file_bytes_ = static_cast<std::uint64_t>(st.st_size);
    if (file_bytes_ < eshm::kSegmentHeaderBytes) {
      // Too small to map as a header; its first word still tells a foreign file from a truncated one.
      std::uint64_t magic = 0;
      if (file_bytes_ >= sizeof(magic) && pread(fd_, &magic, sizeof(magic), 0) == sizeof(magic) && magic != 0 &&
          magic != eshm::kSegmentMagic) {
        return Fail(FileStatus::kNotEshm, absl::StrFormat("magic 0x%016x", magic));
      }
      return Fail(FileStatus::kTruncated, absl::StrFormat("%d bytes, smaller than a %d-byte header", file_bytes_,
                                                          eshm::kSegmentHeaderBytes));
    }
    void* base = mmap(nullptr, file_bytes_, PROT_READ, MAP_SHARED, fd_, 0);
    if (base == MAP_FAILED) return Fail(FileStatus::kUnreadable, absl::StrCat("mmap: ", std::strerror(errno)));
    base_ = static_cast<const std::byte*>(base);
    size_ = file_bytes_;

    eshm::SegmentHeader copy;
    std::uint32_t version = 0;
    {
      sigjmp_buf jump;
      if (sigsetjmp(jump, 1) != 0) {
        g_bus_jump = nullptr;
        return Fail(FileStatus::kTruncated, "the file shrank while being read");
      }
      g_bus_jump = &jump;
      const auto* h = reinterpret_cast<const eshm::SegmentHeader*>(base_);
      // Acquire pairs with the creator's release store of the version (see segment.cc).
      version = h->layout_version.load(std::memory_order_acquire);
      std::memcpy(static_cast<void*>(&copy), h, sizeof(copy));
      g_bus_jump = nullptr;
    }
    if (copy.magic != 0 && copy.magic != eshm::kSegmentMagic) {
      return Fail(FileStatus::kNotEshm, absl::StrFormat("magic 0x%016x", copy.magic));
    }
    if (version == 0) return Fail(FileStatus::kUninitialized, "the layout version is not written yet");
    if (copy.magic != eshm::kSegmentMagic) return Fail(FileStatus::kNotEshm, "no magic");
    if (version != eshm::kLayoutVersion) {
      return Fail(FileStatus::kIncompatible,
                  absl::StrFormat("layout version %d; this eshmctl reads %d", version, eshm::kLayoutVersion));
    }
    // The checks of ValidateHeader in segment.cc.
    if (copy.header_bytes != eshm::kSegmentHeaderBytes) {
      return Fail(FileStatus::kCorrupt, absl::StrFormat("header size %d", copy.header_bytes));
    }
    for (int d = 0; d < 2; ++d) {
      if (absl::Status s = eshm::ValidateRingCapacity(copy.ring_capacity[d]); !s.ok()) {
        return Fail(FileStatus::kCorrupt, std::string(s.message()));
      }
    }
    const eshm::SegmentGeometry g = eshm::ComputeGeometry(copy.ring_capacity[0], copy.ring_capacity[1]);
    if (copy.ring_offset[0] != g.ring_offset[0] || copy.ring_offset[1] != g.ring_offset[1] ||
        copy.segment_bytes != g.segment_bytes) {
      return Fail(FileStatus::kCorrupt, "ring offsets and size do not match the capacities");
    }
    if (file_bytes_ != copy.segment_bytes) {
      return Fail(FileStatus::kTruncated, absl::StrFormat("the file is %d bytes but its header says %d", file_bytes_,
                                                          copy.segment_bytes));
    }
    trailer_ = reinterpret_cast<const eshm::SegmentTrailer*>(base_ + copy.segment_bytes - eshm::kTrailerBytes);
    if (!TrailerIntact()) {
      return Fail(FileStatus::kTruncated,
                  "the file has its size but not eshm's trailer (its last 8 bytes): it was truncated and grown "
                  "back, or overwritten");
    }
    const std::uint64_t limit = std::min(eshm::MaxPayloadForCapacity(copy.ring_capacity[0]),
                                         eshm::MaxPayloadForCapacity(copy.ring_capacity[1]));
    if (copy.max_message_bytes == 0 || copy.max_message_bytes > limit) {
      return Fail(FileStatus::kCorrupt, absl::StrFormat("maximum message size %d", copy.max_message_bytes));
    }
    capacity_[0] = copy.ring_capacity[0];
    capacity_[1] = copy.ring_capacity[1];
    offset_[0] = copy.ring_offset[0];
    offset_[1] = copy.ring_offset[1];
    max_message_bytes_ = copy.max_message_bytes;
    creation_epoch_ns_ = copy.creation_epoch_ns;
    creator_pid_ = copy.creator_pid;
    status_ = FileStatus::kOk;
    return true;
  }

  // Reads the live words. Only for an Open()ed kOk segment. False, with the status set to kTruncated, if the
  // file was truncated since Open: shorter now (a cut inside a page raises no SIGBUS, so fstat is asked),
  // its trailer gone (cut and grown back), or shrinking while being read.
  bool Take(Sample* out) {
    struct stat st;
    if (fstat(fd_, &st) == 0 && static_cast<std::uint64_t>(st.st_size) != file_bytes_) {
      return Fail(FileStatus::kTruncated,
                  absl::StrFormat("the file is now %d bytes, not the segment's %d: it was truncated (or resized) "
                                  "while eshmctl looked; the processes using it get DataLoss",
                                  static_cast<std::uint64_t>(st.st_size), file_bytes_));
    }
    if (!TrailerIntact()) {
      return Fail(FileStatus::kTruncated,
                  "its trailer (the last 8 bytes) is gone: it was truncated and grown back, or overwritten");
    }
    Sample s;
    sigjmp_buf jump;
    if (sigsetjmp(jump, 1) != 0) {
      g_bus_jump = nullptr;
      return Fail(FileStatus::kTruncated, "the file shrank while being read");
    }
    g_bus_jump = &jump;
    const auto* h = reinterpret_cast<const eshm::SegmentHeader*>(base_);
    for (int r = 0; r < 2; ++r) {
      const eshm::RoleControl& rc = h->roles[r];
      s.roles[r].state = rc.state.load(std::memory_order_acquire);
      s.roles[r].pid = rc.pid.load(std::memory_order_relaxed);
      s.roles[r].heartbeat = rc.heartbeat.load(std::memory_order_relaxed);
      s.roles[r].attach_epoch = rc.attach_epoch.load(std::memory_order_relaxed);
      s.roles[r].stale_threshold_ms = rc.stale_threshold_ms.load(std::memory_order_relaxed);
    }
    for (int d = 0; d < 2; ++d) {
      const auto* rc = reinterpret_cast<const eshm::RingControl*>(base_ + offset_[d]);
      // Consumer words first: they only grow and never pass the producer's, so the differences reported
      // below are never negative.
      s.rings[d].head = rc->consumer.head.load(std::memory_order_acquire);
      s.rings[d].messages_read = rc->consumer.messages_read.load(std::memory_order_acquire);
      s.rings[d].tail = rc->producer.tail.load(std::memory_order_acquire);
      s.rings[d].messages_written = rc->producer.messages_written.load(std::memory_order_acquire);
      s.rings[d].wake_syscalls = rc->wait.wake_syscalls.load(std::memory_order_relaxed);
      s.rings[d].wait_syscalls = rc->wait.wait_syscalls.load(std::memory_order_relaxed);
    }
    g_bus_jump = nullptr;
    for (int r = 0; r < 2; ++r) {
      s.roles[r].locked = eshm::IsRoleLockedByOther(fd_, static_cast<eshm::Role>(r));
    }
    s.when_ns = MonotonicNowNs();
    *out = s;
    return true;
  }

  const std::string& name() const { return name_; }
  const std::string& path() const { return path_; }
  FileStatus status() const { return status_; }
  const std::string& detail() const { return detail_; }
  bool ok() const { return status_ == FileStatus::kOk; }
  std::uint64_t file_bytes() const { return file_bytes_; }
  std::uint64_t capacity(int d) const { return capacity_[d]; }
  std::uint64_t max_message_bytes() const { return max_message_bytes_; }
  std::uint64_t creation_epoch_ns() const { return creation_epoch_ns_; }
  std::uint32_t creator_pid() const { return creator_pid_; }
  std::int64_t mtime_ns() const { return mtime_ns_; }
  uid_t uid() const { return uid_; }
  mode_t mode() const { return mode_; }
  bool opened() const { return fd_ >= 0; }

 private:
  bool Fail(FileStatus status, std::string detail) {
    status_ = status;
    detail_ = std::move(detail);
    return false;
  }

  // The trailer's canary, read under the SIGBUS jump (it lies in the page a truncation unmaps first).
  bool TrailerIntact() const {
    sigjmp_buf jump;
    if (sigsetjmp(jump, 1) != 0) {
      g_bus_jump = nullptr;
      return false;
    }
    g_bus_jump = &jump;
    const std::uint64_t canary = trailer_->canary.load(std::memory_order_relaxed);
    g_bus_jump = nullptr;
    return canary == eshm::kTrailerCanary;
  }

  std::string name_;
  std::string path_;
  int fd_ = -1;
  const std::byte* base_ = nullptr;
  const eshm::SegmentTrailer* trailer_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t file_bytes_ = 0;
  FileStatus status_ = FileStatus::kUnreadable;
  std::string detail_;
  std::uint64_t capacity_[2] = {0, 0};
  std::uint64_t offset_[2] = {0, 0};
  std::uint64_t max_message_bytes_ = 0;
  std::uint64_t creation_epoch_ns_ = 0;
  std::uint32_t creator_pid_ = 0;
  std::int64_t mtime_ns_ = 0;
  uid_t uid_ = 0;
  mode_t mode_ = 0;
};

// Every eshm_* name under /dev/shm, sorted.
std::vector<std::string> ListNames() {
  std::vector<std::string> names;
  DIR* dir = opendir(kSegmentDirectory);
  if (dir == nullptr) return names;
  while (const dirent* e = readdir(dir)) {
    absl::string_view file = e->d_name;
    if (absl::ConsumePrefix(&file, kSegmentFilePrefix) && !file.empty()) names.emplace_back(file.data(), file.size());
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

enum class RoleState { kAlive, kUnresponsive, kDead, kVacant };

const char* RoleStateName(RoleState s) {
  switch (s) {
    case RoleState::kAlive: return "alive";
    case RoleState::kUnresponsive: return "unresponsive";
    case RoleState::kDead: return "dead";
    case RoleState::kVacant: return "vacant";
  }
  return "unknown";
}

// `before` may be null (a single sample: a held lock counts as alive). A holder beats at least every quarter
// of the stale threshold it published: a window shorter than half of it cannot call it unresponsive.
RoleState Classify(const RoleSample& now, const RoleSample* before, std::int64_t span_ns) {
  if (now.locked) {
    const bool same_holder = before != nullptr && before->locked && before->attach_epoch == now.attach_epoch;
    const bool long_enough = span_ns >= std::int64_t{now.stale_threshold_ms} * 1'000'000 / 2;
    if (same_holder && before->heartbeat == now.heartbeat && long_enough) return RoleState::kUnresponsive;
    return RoleState::kAlive;
  }
  if (now.state != 0 || now.pid != 0) return RoleState::kDead;
  return RoleState::kVacant;
}

constexpr const char* kRoleKey[2] = {"master", "slave"};
constexpr const char* kDirectionKey[2] = {"m2s", "s2m"};

// What one report needs beyond the latest sample.
struct Report {
  const SegmentFile* file = nullptr;
  Sample now;
  std::optional<Sample> before;  // an earlier sample of the same file, for liveness and rates
  // stat only: heartbeat age as seen by this observer (ms since the heartbeat was last seen to change; a
  // lower bound on the first report), and whether rates are included.
  bool detailed = false;
  std::int64_t heartbeat_age_ms[2] = {0, 0};
};

double Rate(std::uint64_t later, std::uint64_t earlier, std::int64_t ns) {
  if (ns <= 0 || later < earlier) return 0;
  return static_cast<double>(later - earlier) * 1e9 / static_cast<double>(ns);
}

double FillPercent(const RingSample& r, std::uint64_t capacity) {
  return capacity == 0 ? 0 : 100.0 * static_cast<double>(std::min(r.QueuedBytes(), capacity)) / static_cast<double>(capacity);
}

RoleState StateOf(const Report& rep, int role) {
  return Classify(rep.now.roles[role], rep.before ? &rep.before->roles[role] : nullptr,
                  rep.before ? rep.now.when_ns - rep.before->when_ns : 0);
}

std::string ReportJson(const SegmentFile& f, const Report* rep) {
  JsonObject o;
  o.Str("name", f.name()).Str("path", f.path()).Str("status", FileStatusName(f.status()));
  if (!f.ok()) {
    o.Str("error", f.detail());
    if (f.opened()) o.Uint("size_bytes", f.file_bytes());
    return o.Done();
  }
  o.Uint("size_bytes", f.file_bytes())
      .Uint("m2s_capacity", f.capacity(0))
      .Uint("s2m_capacity", f.capacity(1))
      .Uint("max_message_bytes", f.max_message_bytes())
      .Uint("creation_epoch_ns", f.creation_epoch_ns())
      .Uint("creator_pid", f.creator_pid())
      .Uint("uid", f.uid())
      .Str("mode", absl::StrFormat("0%o", f.mode()));
  if (rep == nullptr) {
    o.Str("error", "the file was truncated while being read");
    return o.Done();
  }
  o.Uint("epoch", rep->now.roles[0].attach_epoch);
  const std::int64_t span_ns = rep->before ? rep->now.when_ns - rep->before->when_ns : 0;
  for (int r = 0; r < 2; ++r) {
    const RoleSample& s = rep->now.roles[r];
    JsonObject role;
    role.Str("state", RoleStateName(StateOf(*rep, r)))
        .Uint("pid", s.pid)
        .Bool("lock_held", s.locked)
        .Uint("heartbeat", s.heartbeat)
        .Uint("attach_epoch", s.attach_epoch);
    if (rep->detailed) role.Int("heartbeat_age_ms", rep->heartbeat_age_ms[r]);
    o.Raw(kRoleKey[r], role.Done());
  }
  for (int d = 0; d < 2; ++d) {
    const RingSample& s = rep->now.rings[d];
    JsonObject ring;
    ring.Uint("queued_messages", s.QueuedMessages())
        .Uint("queued_bytes", s.QueuedBytes())
        .Uint("messages_written", s.messages_written)
        .Uint("messages_read", s.messages_read)
        .Uint("bytes_written", s.tail)
        .Uint("bytes_read", s.head);
    if (rep->detailed) {
      const RingSample* b = rep->before ? &rep->before->rings[d] : nullptr;
      ring.Double("fill_percent", FillPercent(s, f.capacity(d)))
          .Double("messages_per_s", b ? Rate(s.messages_written, b->messages_written, span_ns) : 0)
          .Double("bytes_per_s", b ? Rate(s.tail, b->tail, span_ns) : 0)
          .Uint("wake_syscalls", s.wake_syscalls)
          .Uint("wait_syscalls", s.wait_syscalls);
    }
    o.Raw(kDirectionKey[d], ring.Done());
  }
  if (rep->detailed) o.Int("sample_ms", span_ns / 1'000'000);
  return o.Done();
}

std::string HumanBytes(std::uint64_t n) {
  if (n >= (std::uint64_t{1} << 30) && n % (std::uint64_t{1} << 30) == 0) return absl::StrCat(n >> 30, "G");
  if (n >= (std::uint64_t{1} << 20) && n % (std::uint64_t{1} << 20) == 0) return absl::StrCat(n >> 20, "M");
  if (n >= (std::uint64_t{1} << 10) && n % (std::uint64_t{1} << 10) == 0) return absl::StrCat(n >> 10, "K");
  return absl::StrCat(n);
}

std::string RoleText(const Report& rep, int r) {
  const RoleState state = StateOf(rep, r);
  if (state == RoleState::kVacant) return "vacant";
  return absl::StrCat(RoleStateName(state), ":", rep.now.roles[r].pid);
}

// ---- ls ----

int CommandLs(bool json) {
  const std::int64_t sample_ms = std::max<std::int64_t>(absl::GetFlag(FLAGS_sample_ms), 0);
  std::vector<std::unique_ptr<SegmentFile>> files;
  std::vector<std::optional<Sample>> first;
  for (const std::string& name : ListNames()) {
    files.push_back(std::make_unique<SegmentFile>(name));
    files.back()->Open();
  }
  for (const auto& f : files) {
    Sample s;
    first.push_back(f->ok() && f->Take(&s) ? std::optional<Sample>(s) : std::nullopt);
  }
  if (!files.empty() && sample_ms > 0) SleepMs(sample_ms);

  std::vector<std::string> json_items;
  std::vector<std::vector<std::string>> rows;
  for (std::size_t i = 0; i < files.size(); ++i) {
    SegmentFile& f = *files[i];
    Report rep;
    rep.file = &f;
    rep.before = first[i];
    const bool sampled = f.ok() && first[i].has_value() && f.Take(&rep.now);
    if (json) {
      json_items.push_back(ReportJson(f, sampled ? &rep : nullptr));
      continue;
    }
    if (!f.ok() || !sampled) {
      rows.push_back({Printable(f.name()), f.opened() ? HumanBytes(f.file_bytes()) : "-",
                      absl::StrCat(FileStatusText(f.status()), ": ",
                                   f.ok() ? "shrank while read" : Printable(f.detail()))});
      continue;
    }
    rows.push_back({Printable(f.name()), HumanBytes(f.file_bytes()),
                    absl::StrCat(HumanBytes(f.capacity(0)), "/", HumanBytes(f.capacity(1))),
                    absl::StrCat(f.max_message_bytes()), RoleText(rep, 0), RoleText(rep, 1),
                    absl::StrCat(rep.now.roles[0].attach_epoch),
                    absl::StrFormat("%d/%s", rep.now.rings[0].QueuedMessages(), HumanBytes(rep.now.rings[0].QueuedBytes())),
                    absl::StrFormat("%d/%s", rep.now.rings[1].QueuedMessages(), HumanBytes(rep.now.rings[1].QueuedBytes()))});
  }
  if (json) {
    absl::PrintF("%s\n", JsonObject().Raw("segments", JsonArray(json_items)).Done().c_str());
    return 0;
  }
  if (rows.empty()) {
    absl::PrintF("no eshm segments in %s\n", kSegmentDirectory);
    return 0;
  }
  const std::vector<std::string> header = {"NAME", "SIZE", "RINGS", "MAXMSG", "MASTER", "SLAVE", "EPOCH",
                                           "QUEUED_M2S", "QUEUED_S2M"};
  std::vector<std::size_t> width(header.size(), 0);
  for (std::size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows) {
    if (row.size() != header.size()) {
      width[0] = std::max(width[0], row[0].size());
      continue;
    }
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      if (c + 1 == row.size()) {
        absl::StrAppend(&line, row[c]);
      } else {
        absl::StrAppend(&line, absl::StrFormat("%-*s  ", static_cast<int>(width[c]), row[c]));
      }
    }
    absl::PrintF("%s\n", line.c_str());
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
  return 0;
}

// ---- stat ----

void PrintStatHuman(const SegmentFile& f, const Report& rep) {
  const std::int64_t span_ns = rep.before ? rep.now.when_ns - rep.before->when_ns : 0;
  absl::PrintF("segment %s (%s)\n", Printable(f.name()), Printable(f.path()));
  absl::PrintF("  size %d bytes, rings m2s %d / s2m %d bytes, max message %d bytes, mode 0%o, uid %d\n",
              f.file_bytes(), f.capacity(0), f.capacity(1), f.max_message_bytes(), f.mode(), f.uid());
  absl::PrintF("  epoch %d (master attachments), created by pid %d\n", rep.now.roles[0].attach_epoch,
              f.creator_pid());
  for (int r = 0; r < 2; ++r) {
    const RoleSample& s = rep.now.roles[r];
    absl::PrintF("  %-6s %-12s pid %-8d heartbeat %d (age %d ms), attach epoch %d\n", kRoleKey[r],
                RoleStateName(StateOf(rep, r)), s.pid, s.heartbeat, rep.heartbeat_age_ms[r], s.attach_epoch);
  }
  for (int d = 0; d < 2; ++d) {
    const RingSample& s = rep.now.rings[d];
    const RingSample* b = rep.before ? &rep.before->rings[d] : nullptr;
    absl::PrintF(
        "  %s    queued %d msg / %d bytes, fill %.1f%%, %.1f msg/s, %.1f bytes/s, written %d, read %d, "
        "wake/wait syscalls %d/%d\n",
        kDirectionKey[d], s.QueuedMessages(), s.QueuedBytes(), FillPercent(s, f.capacity(d)),
        b ? Rate(s.messages_written, b->messages_written, span_ns) : 0.0, b ? Rate(s.tail, b->tail, span_ns) : 0.0,
        s.messages_written, s.messages_read, s.wake_syscalls, s.wait_syscalls);
  }
  std::fflush(stdout);
}

int CommandStat(const std::string& name, bool json) {
  if (absl::Status s = eshm::Segment::ValidateName(name); !s.ok()) {
    absl::FPrintF(stderr, "eshmctl stat: %s\n", Printable(std::string(s.message())));
    return 2;
  }
  const bool watch = absl::GetFlag(FLAGS_watch);
  const std::int64_t sample_ms = std::max<std::int64_t>(absl::GetFlag(FLAGS_sample_ms), 1);
  const std::int64_t interval_ms = std::max<std::int64_t>(absl::GetFlag(FLAGS_interval_ms), 10);

  SegmentFile f(name);
  if (!f.Open()) {
    if (!f.opened() && f.status() == FileStatus::kUnreadable && access(f.path().c_str(), F_OK) != 0) {
      absl::FPrintF(stderr, "eshmctl stat: no segment %s\n", Printable(f.path()));
      return 1;
    }
    if (json) {
      absl::PrintF("%s\n", ReportJson(f, nullptr).c_str());
    } else {
      absl::PrintF("%s: %s: %s\n", Printable(f.path()), FileStatusText(f.status()), Printable(f.detail()));
    }
    return 1;
  }
  // A segment truncated under us is reported as one found truncated at Open.
  auto report_failure = [&] {
    if (json) {
      absl::PrintF("%s\n", ReportJson(f, nullptr).c_str());
      std::fflush(stdout);
    } else {
      absl::PrintF("%s: %s: %s\n", Printable(f.path()), FileStatusText(f.status()), Printable(f.detail()));
    }
    return 1;
  };
  Sample previous;
  if (!f.Take(&previous)) return report_failure();
  // When each role's heartbeat was last seen to change (initially: the first sample, a lower bound).
  std::int64_t heartbeat_changed_ns[2] = {previous.when_ns, previous.when_ns};
  std::int64_t wait_ms = sample_ms;
  for (;;) {
    if (!SleepMs(wait_ms)) return 0;  // Ctrl-C
    Report rep;
    rep.file = &f;
    rep.detailed = true;
    rep.before = previous;
    if (!f.Take(&rep.now)) return report_failure();
    for (int r = 0; r < 2; ++r) {
      if (rep.now.roles[r].heartbeat != previous.roles[r].heartbeat ||
          rep.now.roles[r].attach_epoch != previous.roles[r].attach_epoch) {
        // Changed at some point in the window; the midpoint is the best estimate.
        heartbeat_changed_ns[r] = previous.when_ns + (rep.now.when_ns - previous.when_ns) / 2;
      }
      rep.heartbeat_age_ms[r] = (rep.now.when_ns - heartbeat_changed_ns[r]) / 1'000'000;
    }
    if (json) {
      absl::PrintF("%s\n", ReportJson(f, &rep).c_str());
      std::fflush(stdout);
    } else {
      PrintStatHuman(f, rep);
    }
    if (!watch) return 0;
    previous = rep.now;
    wait_ms = interval_ms;
  }
}

// ---- rm ----

struct RemoveOutcome {
  bool removed = false;
  bool skipped = false;  // --stale: not stale, left alone silently
  std::string reason;    // why it was refused or failed
  std::vector<std::uint32_t> pids;
};

// Decides about one file and removes it if allowed. `stale_mode`: rm --stale (conservative, no --force).
RemoveOutcome RemoveOne(const std::string& name, bool stale_mode, bool force) {
  RemoveOutcome out;
  SegmentFile f(name);
  f.Open();
  if (!f.opened() && access(f.path().c_str(), F_OK) != 0) {
    out.reason = "no such segment";
    return out;
  }
  if (!force) {
    const std::int64_t min_age_ns = std::max<std::int64_t>(absl::GetFlag(FLAGS_min_age_s), 0) * 1'000'000'000;
    const std::int64_t now_ns = RealtimeNowNs();
    const bool young = now_ns - f.mtime_ns() < min_age_ns ||
                       (f.ok() && now_ns - static_cast<std::int64_t>(f.creation_epoch_ns()) < min_age_ns);
    switch (f.status()) {
      case FileStatus::kOk: {
        Sample s;
        if (!f.Take(&s)) {
          out.reason = f.detail();
          return out;
        }
        std::vector<std::string> holders;
        for (int r = 0; r < 2; ++r) {
          if (s.roles[r].locked) {
            out.pids.push_back(s.roles[r].pid);
            holders.push_back(absl::StrCat(kRoleKey[r], " pid ", s.roles[r].pid));
          }
        }
        if (!holders.empty()) {
          out.skipped = stale_mode;
          out.reason = absl::StrCat("in use: role lock held by ", absl::StrJoin(holders, " and "),
                                    " (stop them first, or use --force)");
          return out;
        }
        // Vacant in both roles and recent: probably a channel being set up. (A dead role is proof enough.)
        const bool vacant = s.roles[0].state == 0 && s.roles[0].pid == 0 && s.roles[1].state == 0 &&
                            s.roles[1].pid == 0;
        if (stale_mode && vacant && young) {
          out.skipped = true;
          out.reason = "created recently";
          return out;
        }
        break;
      }
      case FileStatus::kUninitialized:
      case FileStatus::kTruncated:
        // A creator still at work, or one that died while creating: stale once old enough.
        if (young) {
          out.skipped = stale_mode;
          out.reason = absl::StrCat(FileStatusText(f.status()), " and modified less than ",
                                    absl::GetFlag(FLAGS_min_age_s), " s ago: its creator may still be at work (use --force)");
          return out;
        }
        break;
      case FileStatus::kUnreadable:
        out.skipped = stale_mode;
        out.reason = absl::StrCat("cannot inspect it (", f.detail(), "); use --force to remove it anyway");
        return out;
      default:
        out.skipped = stale_mode;
        out.reason = absl::StrCat(FileStatusText(f.status()), " (", f.detail(),
                                  "): not removed without --force");
        return out;
    }
  }
  if (unlink(f.path().c_str()) != 0) {
    out.skipped = false;
    out.reason = absl::StrCat("unlink: ", std::strerror(errno));
    return out;
  }
  out.removed = true;
  return out;
}

int CommandRm(const std::vector<std::string>& args, bool json) {
  const bool stale = absl::GetFlag(FLAGS_stale);
  const bool force = absl::GetFlag(FLAGS_force);
  if (stale == !args.empty()) {
    absl::FPrintF(stderr, "usage: eshmctl rm NAME [--force]  |  eshmctl rm --stale\n");
    return 2;
  }
  if (stale && force) {
    absl::FPrintF(stderr, "eshmctl rm: --stale and --force do not mix: --stale removes only proven-dead segments\n");
    return 2;
  }
  std::vector<std::string> names = stale ? ListNames() : args;
  if (stale) {
    const std::string prefix = absl::GetFlag(FLAGS_match);
    names.erase(std::remove_if(names.begin(), names.end(),
                               [&](const std::string& n) { return n.compare(0, prefix.size(), prefix) != 0; }),
                names.end());
  }
  if (!stale) {
    for (const std::string& name : names) {
      if (absl::Status s = eshm::Segment::ValidateName(name); !s.ok()) {
        absl::FPrintF(stderr, "eshmctl rm: %s\n", Printable(std::string(s.message())));
        return 2;
      }
    }
  }
  std::vector<std::string> removed, refused, kept;
  bool failed = false;
  for (const std::string& name : names) {
    const RemoveOutcome o = RemoveOne(name, stale, force);
    const std::string path = eshm::Segment::PathFor(name);
    if (o.removed) {
      removed.push_back(JsonString(name));
      if (!json) absl::PrintF("removed %s\n", Printable(path));
      continue;
    }
    std::vector<std::string> pids;
    for (std::uint32_t p : o.pids) pids.push_back(absl::StrCat(p));
    const std::string item =
        JsonObject().Str("name", name).Str("reason", o.reason).Raw("pids", JsonArray(pids)).Done();
    if (o.skipped) {
      kept.push_back(item);
      continue;
    }
    failed = true;
    refused.push_back(item);
    if (!json) absl::FPrintF(stderr, "eshmctl rm: %s not removed: %s\n", Printable(path), Printable(o.reason));
  }
  if (json) {
    absl::PrintF("%s\n", JsonObject()
                            .Raw("removed", JsonArray(removed))
                            .Raw("refused", JsonArray(refused))
                            .Raw("kept", JsonArray(kept))
                            .Done()
                            .c_str());
  } else if (stale && removed.empty()) {
    absl::PrintF("no stale segments\n");
  }
  return failed ? 1 : 0;
}

constexpr char kUsage[] =
    "inspects and cleans up eshm shared-memory segments (/dev/shm/eshm_<name>), read-only.\n"
    "\n"
    "  eshmctl ls [--json]                          every segment: size, rings, roles, queues\n"
    "  eshmctl stat NAME [--json] [--watch] [--interval_ms=1000]\n"
    "                                               one segment with rates, fill and heartbeat age\n"
    "  eshmctl rm NAME [--force] [--json]           remove a segment no live process holds\n"
    "  eshmctl rm --stale [--match=PREFIX] [--min_age_s=5] [--json]\n"
    "                                               remove every segment whose owners are dead\n"
    "\n"
    "Role states: alive (role lock held), unresponsive (lock held, heartbeat not advancing within\n"
    "--sample_ms), dead (lock free, holder recorded: it crashed), vacant (lock free, no holder).";

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  std::vector<std::string> args(positional.begin() + 1, positional.end());

  struct sigaction bus = {};
  bus.sa_handler = OnSigbus;
  sigemptyset(&bus.sa_mask);
  sigaction(SIGBUS, &bus, nullptr);
  struct sigaction interrupt = {};
  interrupt.sa_handler = OnInterrupt;
  sigemptyset(&interrupt.sa_mask);
  sigaction(SIGINT, &interrupt, nullptr);
  sigaction(SIGTERM, &interrupt, nullptr);

  const bool json = absl::GetFlag(FLAGS_json);
  if (args.empty()) {
    absl::FPrintF(stderr, "%s\n", kUsage);
    return 2;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  if (command == "ls" && args.empty()) return CommandLs(json);
  if (command == "stat" && args.size() == 1) return CommandStat(args[0], json);
  if (command == "rm") return CommandRm(args, json);
  absl::FPrintF(stderr, "%s\n", kUsage);
  return 2;
}
