// eshmctl: inspect and clean up eshm segments (/dev/shm/eshm_<name>) without disturbing them.
//
//   eshmctl ls [--json] [--sample_ms=150]
//   eshmctl stat NAME [--json] [--watch] [--interval_ms=1000] [--sample_ms=150]
//   eshmctl rm NAME [--force] [--json]
//   eshmctl rm --stale [--match=PREFIX] [--min_age_s=5] [--json]
//
// Read-only by construction: every look at a file is the engine's InspectSegment (eshm/segment_inspection.h),
// which maps it PROT_READ, takes no locks (it asks the kernel, with F_OFD_GETLK, whether a role's lock is
// held), never opens or follows anything but a regular file, survives a file truncated under it, and checks
// the file with the very check Segment::Open makes before anything else is read: foreign, truncated and
// half-created files are reported, never trusted. Each sample is a fresh inspection.
// Only `rm` changes anything: it unlinks the name, and only when no role lock is held (or with --force).
//
// Role states, per master and slave:
//   alive         the role lock is held (kernel evidence that the holder's open file is still open)
//   unresponsive  the role lock is held but the heartbeat did not advance over the sampling window (nor the
//                 holder's monitor thread, for a holder whose peer watches that thread instead)
//   dead          the lock is free but the role's control block still names a holder (it crashed)
//   vacant        the lock is free and the control block is clear (never attached, or closed cleanly)
//
// Text output shows file names (and anything read from a file) with every byte outside printable ASCII
// escaped as \xNN and a backslash doubled, so a hostile name under /dev/shm cannot send escape sequences
// to the operator's terminal; --json escapes the same bytes as \u00NN.
//
// Exit status: 0 on success, 1 on a failure or refusal, 2 on a usage error.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "eshm/deadline.h"
#include "eshm/segment_inspection.h"
#include "eshm/segment_name.h"

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

using eshm::RingSnapshot;
using eshm::RoleSnapshot;
using eshm::SegmentFileStatus;
using eshm::SegmentSnapshot;

// Set by the SIGINT/SIGTERM handler, polled by SleepMs: a lock-free atomic is what a handler may touch, and
// seq_cst (the default) costs nothing at this pace.
std::atomic<bool> g_interrupted{false};
void OnInterrupt(int) { g_interrupted.store(true); }

// Sleeps up to `ms`, in short steps so that Ctrl-C ends the wait quickly. False if interrupted.
bool SleepMs(std::int64_t ms) {
  const eshm::Deadline end = eshm::Deadline::AfterMs(ms);
  while (!g_interrupted.load()) {
    if (end.Expired()) return true;
    const timespec step = end.CappedAfterNs(20'000'000).ToTimespec();
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &step, nullptr);
  }
  return false;
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

// ---- What a file is ----

// `status` in JSON.
const char* StatusName(SegmentFileStatus s) {
  switch (s) {
    case SegmentFileStatus::kOk: return "ok";
    case SegmentFileStatus::kNotRegularFile:
    case SegmentFileStatus::kForeign: return "not_eshm";
    case SegmentFileStatus::kTruncated: return "truncated";
    case SegmentFileStatus::kHalfCreated: return "uninitialized";
    case SegmentFileStatus::kIncompatibleVersion: return "incompatible_version";
    case SegmentFileStatus::kCorrupt: return "corrupt";
    case SegmentFileStatus::kMissing:  // gone between a listing (or an earlier sample) and this look
    case SegmentFileStatus::kUnreadable: return "unreadable";
  }
  return "unknown";
}

const char* StatusText(SegmentFileStatus s) {
  switch (s) {
    case SegmentFileStatus::kOk: return "eshm segment";
    case SegmentFileStatus::kNotRegularFile:
    case SegmentFileStatus::kForeign: return "not an eshm segment";
    case SegmentFileStatus::kTruncated: return "truncated";
    case SegmentFileStatus::kHalfCreated: return "uninitialized";
    case SegmentFileStatus::kIncompatibleVersion: return "incompatible layout version";
    case SegmentFileStatus::kCorrupt: return "corrupt header";
    case SegmentFileStatus::kMissing:
    case SegmentFileStatus::kUnreadable: return "unreadable";
  }
  return "unknown";
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
// of the stale threshold it published: a window shorter than half of it cannot call it unresponsive. A
// holder whose peer watches its monitor thread through the kernel beats here only once a second; its
// thread's voluntary context switches, which grow at least as often as it would beat, stand in for the
// heartbeat (and when they cannot be read here, nothing says it is unresponsive).
RoleState Classify(const RoleSnapshot& now, const RoleSnapshot* before, const RoleSnapshot& peer,
                   std::int64_t span_ns) {
  if (now.lock_held) {
    const bool same_holder = before != nullptr && before->lock_held && before->attach_epoch == now.attach_epoch;
    const bool long_enough = span_ns >= std::int64_t{now.stale_threshold_ms} * 1'000'000 / 2;
    if (!same_holder || !long_enough || before->heartbeat != now.heartbeat) return RoleState::kAlive;
    if (now.WatchedBy(peer)) {
      const bool readable = now.monitor_switches >= 0 && before->monitor_switches >= 0 &&
                            before->monitor_tid == now.monitor_tid;
      return readable && now.monitor_switches == before->monitor_switches ? RoleState::kUnresponsive
                                                                          : RoleState::kAlive;
    }
    return RoleState::kUnresponsive;
  }
  if (now.state != 0 || now.pid != 0) return RoleState::kDead;
  return RoleState::kVacant;
}

constexpr const char* kRoleKey[2] = {"master", "slave"};
constexpr const char* kDirectionKey[2] = {"m2s", "s2m"};

// One report: the latest inspection of a file, and an earlier one of the same segment.
struct Report {
  std::string name;  // as listed or asked for; escape before printing
  SegmentSnapshot now;
  std::optional<SegmentSnapshot> before;  // for liveness and rates
  // stat only: heartbeat age as seen by this observer (ms since the heartbeat was last seen to change; a
  // lower bound on the first report), and whether rates are included.
  bool detailed = false;
  std::int64_t heartbeat_age_ms[2] = {0, 0};

  std::int64_t span_ns() const { return before ? now.sampled_ns - before->sampled_ns : 0; }
};

// `before` counts only if both inspections read a whole segment, and the same one (the name may have been
// given to a new segment in between).
Report MakeReport(std::string name, SegmentSnapshot before, SegmentSnapshot now) {
  Report rep;
  rep.name = std::move(name);
  rep.now = std::move(now);
  if (before.ok() && rep.now.ok() && before.device == rep.now.device && before.inode == rep.now.inode) {
    rep.before = std::move(before);
  }
  return rep;
}

double Rate(std::uint64_t later, std::uint64_t earlier, std::int64_t ns) {
  if (ns <= 0 || later < earlier) return 0;
  return static_cast<double>(later - earlier) * 1e9 / static_cast<double>(ns);
}

double FillPercent(const RingSnapshot& r, std::uint64_t capacity) {
  return capacity == 0 ? 0 : 100.0 * static_cast<double>(std::min(r.QueuedBytes(), capacity)) / static_cast<double>(capacity);
}

RoleState StateOf(const Report& rep, int role) {
  return Classify(rep.now.roles[role], rep.before ? &rep.before->roles[role] : nullptr, rep.now.roles[1 - role],
                  rep.span_ns());
}

// A file that is not a whole segment: name, path, status, what is wrong, and its size if it was opened.
std::string UnusableJson(std::string_view name, const SegmentSnapshot& s) {
  JsonObject o;
  o.Str("name", name).Str("path", s.path).Str("status", StatusName(s.status)).Str("error", s.problem);
  if (s.opened) o.Uint("size_bytes", s.file_bytes);
  return o.Done();
}

std::string ReportJson(const Report& rep) {
  const SegmentSnapshot& s = rep.now;
  if (!s.ok()) return UnusableJson(rep.name, s);
  JsonObject o;
  o.Str("name", rep.name).Str("path", s.path).Str("status", StatusName(s.status));
  o.Uint("size_bytes", s.file_bytes)
      .Uint("m2s_capacity", s.ring_capacity[0])
      .Uint("s2m_capacity", s.ring_capacity[1])
      .Uint("max_message_bytes", s.max_message_bytes)
      .Uint("creation_epoch_ns", s.creation_epoch_ns)
      .Uint("creator_pid", s.creator_pid)
      .Uint("uid", s.uid)
      .Str("mode", absl::StrFormat("0%o", s.mode));
  o.Uint("epoch", s.roles[0].attach_epoch);
  for (int r = 0; r < 2; ++r) {
    const RoleSnapshot& role_now = s.roles[r];
    JsonObject role;
    role.Str("state", RoleStateName(StateOf(rep, r)))
        .Uint("pid", role_now.pid)
        .Bool("lock_held", role_now.lock_held)
        .Uint("heartbeat", role_now.heartbeat)
        .Uint("attach_epoch", role_now.attach_epoch);
    if (rep.detailed) role.Int("heartbeat_age_ms", rep.heartbeat_age_ms[r]);
    o.Raw(kRoleKey[r], role.Done());
  }
  for (int d = 0; d < 2; ++d) {
    const RingSnapshot& ring_now = s.rings[d];
    JsonObject ring;
    ring.Uint("queued_messages", ring_now.QueuedMessages())
        .Uint("queued_bytes", ring_now.QueuedBytes())
        .Uint("messages_written", ring_now.messages_written)
        .Uint("messages_read", ring_now.messages_read)
        .Uint("bytes_written", ring_now.tail)
        .Uint("bytes_read", ring_now.head);
    if (rep.detailed) {
      const RingSnapshot* b = rep.before ? &rep.before->rings[d] : nullptr;
      ring.Double("fill_percent", FillPercent(ring_now, s.ring_capacity[d]))
          .Double("messages_per_s", b ? Rate(ring_now.messages_written, b->messages_written, rep.span_ns()) : 0)
          .Double("bytes_per_s", b ? Rate(ring_now.tail, b->tail, rep.span_ns()) : 0)
          .Uint("wake_syscalls", ring_now.wake_syscalls)
          .Uint("wait_syscalls", ring_now.wait_syscalls);
    }
    o.Raw(kDirectionKey[d], ring.Done());
  }
  if (rep.detailed) o.Int("sample_ms", rep.span_ns() / 1'000'000);
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
  const absl::StatusOr<std::vector<std::string>> names = eshm::ListSegmentFiles();
  if (!names.ok()) {
    absl::FPrintF(stderr, "eshmctl ls: %s\n", Printable(std::string(names.status().message())));
    return 1;
  }
  std::vector<SegmentSnapshot> first;
  for (const std::string& name : *names) first.push_back(eshm::InspectSegmentFile(name));
  if (!names->empty() && sample_ms > 0) SleepMs(sample_ms);

  std::vector<std::string> json_items;
  std::vector<std::vector<std::string>> rows;
  for (std::size_t i = 0; i < names->size(); ++i) {
    const std::string& name = (*names)[i];
    const Report rep = MakeReport(name, std::move(first[i]), eshm::InspectSegmentFile(name));
    const SegmentSnapshot& s = rep.now;
    if (json) {
      json_items.push_back(ReportJson(rep));
      continue;
    }
    if (!s.ok()) {
      rows.push_back({Printable(name), s.opened ? HumanBytes(s.file_bytes) : "-",
                      absl::StrCat(StatusText(s.status), ": ", Printable(s.problem))});
      continue;
    }
    rows.push_back({Printable(name), HumanBytes(s.file_bytes),
                    absl::StrCat(HumanBytes(s.ring_capacity[0]), "/", HumanBytes(s.ring_capacity[1])),
                    absl::StrCat(s.max_message_bytes), RoleText(rep, 0), RoleText(rep, 1),
                    absl::StrCat(s.roles[0].attach_epoch),
                    absl::StrFormat("%d/%s", s.rings[0].QueuedMessages(), HumanBytes(s.rings[0].QueuedBytes())),
                    absl::StrFormat("%d/%s", s.rings[1].QueuedMessages(), HumanBytes(s.rings[1].QueuedBytes()))});
  }
  if (json) {
    absl::PrintF("%s\n", JsonObject().Raw("segments", JsonArray(json_items)).Done().c_str());
    return 0;
  }
  if (rows.empty()) {
    absl::PrintF("no eshm segments in %s\n", eshm::kSegmentDirectory);
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

void PrintStatHuman(const Report& rep) {
  const SegmentSnapshot& s = rep.now;
  absl::PrintF("segment %s (%s)\n", Printable(rep.name), Printable(s.path));
  absl::PrintF("  size %d bytes, rings m2s %d / s2m %d bytes, max message %d bytes, mode 0%o, uid %d\n",
              s.file_bytes, s.ring_capacity[0], s.ring_capacity[1], s.max_message_bytes, s.mode, s.uid);
  absl::PrintF("  epoch %d (master attachments), created by pid %d\n", s.roles[0].attach_epoch, s.creator_pid);
  for (int r = 0; r < 2; ++r) {
    const RoleSnapshot& role = s.roles[r];
    absl::PrintF("  %-6s %-12s pid %-8d heartbeat %d (age %d ms), attach epoch %d\n", kRoleKey[r],
                RoleStateName(StateOf(rep, r)), role.pid, role.heartbeat, rep.heartbeat_age_ms[r],
                role.attach_epoch);
  }
  for (int d = 0; d < 2; ++d) {
    const RingSnapshot& ring = s.rings[d];
    const RingSnapshot* b = rep.before ? &rep.before->rings[d] : nullptr;
    absl::PrintF(
        "  %s    queued %d msg / %d bytes, fill %.1f%%, %.1f msg/s, %.1f bytes/s, written %d, read %d, "
        "wake/wait syscalls %d/%d\n",
        kDirectionKey[d], ring.QueuedMessages(), ring.QueuedBytes(), FillPercent(ring, s.ring_capacity[d]),
        b ? Rate(ring.messages_written, b->messages_written, rep.span_ns()) : 0.0,
        b ? Rate(ring.tail, b->tail, rep.span_ns()) : 0.0, ring.messages_written, ring.messages_read,
        ring.wake_syscalls, ring.wait_syscalls);
  }
  std::fflush(stdout);
}

int CommandStat(const std::string& name, bool json) {
  const absl::StatusOr<eshm::SegmentName> segment = eshm::SegmentName::Create(name);
  if (!segment.ok()) {
    absl::FPrintF(stderr, "eshmctl stat: %s\n", Printable(std::string(segment.status().message())));
    return 2;
  }
  const bool watch = absl::GetFlag(FLAGS_watch);
  const std::int64_t sample_ms = std::max<std::int64_t>(absl::GetFlag(FLAGS_sample_ms), 1);
  const std::int64_t interval_ms = std::max<std::int64_t>(absl::GetFlag(FLAGS_interval_ms), 10);

  // Not a whole segment, at the first look or a later one (truncated while watched, say): reported, exit 1.
  auto report_unusable = [&](const SegmentSnapshot& s) {
    if (s.status == SegmentFileStatus::kMissing) {
      absl::FPrintF(stderr, "eshmctl stat: no segment %s\n", Printable(s.path));
    } else if (json) {
      absl::PrintF("%s\n", UnusableJson(name, s).c_str());
      std::fflush(stdout);
    } else {
      absl::PrintF("%s: %s: %s\n", Printable(s.path), StatusText(s.status), Printable(s.problem));
    }
    return 1;
  };
  SegmentSnapshot previous = eshm::InspectSegment(*segment);
  if (!previous.ok()) return report_unusable(previous);
  // When each role's heartbeat was last seen to change (initially: the first sample, a lower bound).
  std::int64_t heartbeat_changed_ns[2] = {previous.sampled_ns, previous.sampled_ns};
  std::int64_t wait_ms = sample_ms;
  for (;;) {
    if (!SleepMs(wait_ms)) return 0;  // Ctrl-C
    Report rep = MakeReport(name, previous, eshm::InspectSegment(*segment));
    if (!rep.now.ok()) return report_unusable(rep.now);
    rep.detailed = true;
    for (int r = 0; r < 2; ++r) {
      const RoleSnapshot& now = rep.now.roles[r];
      if (!rep.before) {
        heartbeat_changed_ns[r] = rep.now.sampled_ns;  // another segment has the name now: start over
      } else if (now.heartbeat != rep.before->roles[r].heartbeat ||
                 now.attach_epoch != rep.before->roles[r].attach_epoch) {
        // Changed at some point in the window; the midpoint is the best estimate.
        heartbeat_changed_ns[r] = rep.before->sampled_ns + rep.span_ns() / 2;
      }
      rep.heartbeat_age_ms[r] = (rep.now.sampled_ns - heartbeat_changed_ns[r]) / 1'000'000;
    }
    if (json) {
      absl::PrintF("%s\n", ReportJson(rep).c_str());
      std::fflush(stdout);
    } else {
      PrintStatHuman(rep);
    }
    if (!watch) return 0;
    previous = std::move(rep.now);
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

// Decides about the file `s` inspected and removes it if allowed. `stale_mode`: rm --stale (conservative,
// no --force).
RemoveOutcome RemoveOne(const SegmentSnapshot& s, bool stale_mode, bool force) {
  RemoveOutcome out;
  if (s.status == SegmentFileStatus::kMissing) {
    out.reason = "no such segment";
    return out;
  }
  if (!force) {
    const std::int64_t min_age_ns = std::max<std::int64_t>(absl::GetFlag(FLAGS_min_age_s), 0) * 1'000'000'000;
    const std::int64_t now_ns = eshm::RealtimeNowNs();
    const bool young = now_ns - s.modified_ns < min_age_ns ||
                       (s.ok() && now_ns - static_cast<std::int64_t>(s.creation_epoch_ns) < min_age_ns);
    switch (s.status) {
      case SegmentFileStatus::kOk: {
        std::vector<std::string> holders;
        for (int r = 0; r < 2; ++r) {
          if (s.roles[r].lock_held) {
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
      case SegmentFileStatus::kHalfCreated:
      case SegmentFileStatus::kTruncated:
        // A creator still at work (an older eshm created in place), or one that died: stale once old enough.
        if (young) {
          out.skipped = stale_mode;
          out.reason = absl::StrCat(StatusText(s.status), " and modified less than ", absl::GetFlag(FLAGS_min_age_s),
                                    " s ago: its creator may still be at work (use --force)");
          return out;
        }
        break;
      case SegmentFileStatus::kUnreadable:
        out.skipped = stale_mode;
        out.reason = absl::StrCat("cannot inspect it (", s.problem, "); use --force to remove it anyway");
        return out;
      default:
        out.skipped = stale_mode;
        out.reason = absl::StrCat(StatusText(s.status), " (", s.problem, "): not removed without --force");
        return out;
    }
  }
  if (unlink(s.path.c_str()) != 0) {
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
  // rm NAME: names someone asked for, each checked before anything is removed. rm --stale: whatever is
  // listed, any name at all.
  std::vector<std::string> names;
  std::vector<eshm::SegmentName> asked;
  if (stale) {
    absl::StatusOr<std::vector<std::string>> listed = eshm::ListSegmentFiles();
    if (!listed.ok()) {
      absl::FPrintF(stderr, "eshmctl rm: %s\n", Printable(std::string(listed.status().message())));
      return 1;
    }
    const std::string prefix = absl::GetFlag(FLAGS_match);
    // A shell pattern would match nothing and report "no stale segments", as if there were none.
    if (prefix.find_first_of("*?[") != std::string::npos) {
      absl::FPrintF(stderr,
                    "eshmctl rm: --match takes the literal start of segment names, not a pattern: '%s' "
                    "matches nothing; drop the wildcard (e.g. --match=%s)\n",
                    Printable(prefix), Printable(prefix.substr(0, prefix.find_first_of("*?["))));
      return 2;
    }
    for (std::string& name : *listed) {
      if (name.compare(0, prefix.size(), prefix) == 0) names.push_back(std::move(name));
    }
  } else {
    for (const std::string& name : args) {
      absl::StatusOr<eshm::SegmentName> valid = eshm::SegmentName::Create(name);
      if (!valid.ok()) {
        absl::FPrintF(stderr, "eshmctl rm: %s\n", Printable(std::string(valid.status().message())));
        return 2;
      }
      names.push_back(name);
      asked.push_back(*std::move(valid));
    }
  }
  std::vector<std::string> removed, refused, kept;
  bool failed = false;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    const SegmentSnapshot s = stale ? eshm::InspectSegmentFile(name) : eshm::InspectSegment(asked[i]);
    const RemoveOutcome o = RemoveOne(s, stale, force);
    if (o.removed) {
      removed.push_back(JsonString(name));
      if (!json) absl::PrintF("removed %s\n", Printable(s.path));
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
    if (!json) absl::FPrintF(stderr, "eshmctl rm: %s not removed: %s\n", Printable(s.path), Printable(o.reason));
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

std::string Usage() {
  return absl::StrCat(
      "inspects and cleans up eshm shared-memory segments (", eshm::SegmentName::PathOf("<name>"),
      "), read-only.\n"
      "\n"
      "  eshmctl ls [--json]                          every segment: size, rings, roles, queues\n"
      "  eshmctl stat NAME [--json] [--watch] [--interval_ms=1000]\n"
      "                                               one segment with rates, fill and heartbeat age\n"
      "  eshmctl rm NAME [--force] [--json]           remove a segment no live process holds\n"
      "  eshmctl rm --stale [--match=PREFIX] [--min_age_s=5] [--json]\n"
      "                                               remove every segment whose owners are dead\n"
      "\n"
      "Role states: alive (role lock held), unresponsive (lock held, heartbeat not advancing within\n"
      "--sample_ms), dead (lock free, holder recorded: it crashed), vacant (lock free, no holder).");
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(Usage());
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  std::vector<std::string> args(positional.begin() + 1, positional.end());

  struct sigaction interrupt = {};
  interrupt.sa_handler = OnInterrupt;
  sigemptyset(&interrupt.sa_mask);
  sigaction(SIGINT, &interrupt, nullptr);
  sigaction(SIGTERM, &interrupt, nullptr);

  const bool json = absl::GetFlag(FLAGS_json);
  if (args.empty()) {
    absl::FPrintF(stderr, "%s\n", Usage());
    return 2;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  if (command == "ls" && args.empty()) return CommandLs(json);
  if (command == "stat" && args.size() == 1) return CommandStat(args[0], json);
  if (command == "rm") return CommandRm(args, json);
  absl::FPrintF(stderr, "%s\n", Usage());
  return 2;
}
