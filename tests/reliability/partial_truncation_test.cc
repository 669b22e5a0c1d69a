// A hostile peer truncates the segment file to a size inside a page of ring data. No SIGBUS is raised for
// what lies in that page: its tail just reads as zeros. So the reader's next record may read as "nothing
// committed" (a reader would wait forever), or a message whose payload straddles the cut may have its
// tail zeroed (a reader would deliver it as fine). The reader must get DataLoss, within the stale
// threshold (the time is printed, not asserted), and never an OK read of a damaged message: every message
// read is checked byte by byte against what was sent (ParseSeqMessage).
//
// Cuts: at the reader's next record while it waits for one (nothing queued), at the next record while
// messages are queued, in the middle of the next message's payload within one page, and in the middle of
// a payload that continues on the next page (that page is unmapped: the copy itself faults). Each through
// Channel::Read, TryRead, Peek + Release, and the C ABI's eshm_read.
//
// Processes: a master child writes a planned stream, then idles; a truncator child cuts the file when
// told; the parent is the slave reader, opened after both forks (see channel_test_util.h).
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/eshm.h"
#include "eshm/layout.h"
#include "eshm/segment.h"
#include "gtest/gtest.h"
#include "tests/channel_test_util.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using eshm_test::Child;
using eshm_test::NowNs;

constexpr absl::Duration kWatchdog = absl::Seconds(60);
// The longest a read may wait for the truncation to be reported: far beyond the stale threshold, so that
// only a reader that never notices (it would wait forever) runs into it.
constexpr int kReadWaitMs = 20'000;
constexpr std::uint32_t kIncarnation = 1;

enum class Cut { kAtNextRecordWhileWaiting, kAtNextRecordWithQueue, kInPayload, kInPayloadAcrossPages };
enum class ReadWith { kRead, kTryRead, kPeek, kCRead };

const char* CutName(Cut cut) {
  switch (cut) {
    case Cut::kAtNextRecordWhileWaiting: return "AtNextRecordWhileWaiting";
    case Cut::kAtNextRecordWithQueue: return "AtNextRecordWithQueue";
    case Cut::kInPayload: return "InPayload";
    case Cut::kInPayloadAcrossPages: return "InPayloadAcrossPages";
  }
  return "?";
}

const char* ReadWithName(ReadWith mode) {
  switch (mode) {
    case ReadWith::kRead: return "Read";
    case ReadWith::kTryRead: return "TryRead";
    case ReadWith::kPeek: return "Peek";
    case ReadWith::kCRead: return "CRead";
  }
  return "?";
}

// What the master writes and where the file is cut. The m2s ring starts empty at position 0, and nothing
// here wraps, so a record at position p lies at file offset kSegmentHeaderBytes + kRingControlBytes + p.
struct Plan {
  std::vector<std::size_t> preamble;  // read before the cut
  std::vector<std::size_t> queued;    // queued when the cut comes (the first one at next_record)
  std::uint64_t next_record = 0;      // file offset of the reader's next record
  off_t cut = 0;                      // the file's new size
};

Plan MakePlan(Cut cut) {
  const std::uint64_t page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  const std::uint64_t data = kSegmentHeaderBytes + kRingControlBytes;
  Plan plan;
  // The next record 512 bytes into the fourth page: preamble records of 512 bytes, and one of 256.
  plan.next_record = 3 * page + 512;
  std::uint64_t left = plan.next_record - data;
  for (; left > 512; left -= 512) plan.preamble.push_back(512 - kRecordHeaderBytes);
  plan.preamble.push_back(left - kRecordHeaderBytes);
  switch (cut) {
    case Cut::kAtNextRecordWhileWaiting:
      plan.cut = static_cast<off_t>(plan.next_record + 8);  // inside the header of a record not yet written
      break;
    case Cut::kAtNextRecordWithQueue:
      plan.queued = {1024, 100, 100};
      plan.cut = static_cast<off_t>(plan.next_record);  // the first queued record's header reads as zeros
      break;
    case Cut::kInPayload:
      plan.queued = {1024, 100, 100};  // the first one's payload ends inside the same page
      plan.cut = static_cast<off_t>(plan.next_record + kRecordHeaderBytes + 512);
      break;
    case Cut::kInPayloadAcrossPages:
      plan.queued = {page, 100};  // the first one's payload runs into the next page
      plan.cut = static_cast<off_t>(plan.next_record + kRecordHeaderBytes + 512);
      break;
  }
  return plan;
}

ChannelOptions Options(ChannelRole role) {
  ChannelOptions o;
  o.role = role;
  o.m2s_capacity = 1 << 20;
  o.s2m_capacity = 1 << 20;
  return o;
}

// One read's outcome, whatever the API.
struct Outcome {
  enum Kind { kMessage, kDataLoss, kNothing, kError } kind = kError;
  std::vector<std::byte> bytes;
  std::string error;
};

// The slave's read side, through the API under test.
class Reader {
 public:
  Reader(const std::string& name, ReadWith mode) : mode_(mode), buffer_(1 << 20) {
    if (mode == ReadWith::kCRead) {
      eshm_config cfg;
      eshm_config_init(&cfg);
      cfg.role = ESHM_ROLE_SLAVE;
      cfg.m2s_capacity = 1 << 20;
      cfg.s2m_capacity = 1 << 20;
      if (eshm_open(name.c_str(), &cfg, &handle_) != ESHM_SUCCESS) open_error_ = eshm_last_error();
    } else {
      absl::StatusOr<std::unique_ptr<Channel>> c = Channel::Open(name, Options(ChannelRole::kSlave));
      if (c.ok()) {
        channel_ = *std::move(c);
      } else {
        open_error_ = c.status().ToString();
      }
    }
  }
  ~Reader() {
    if (handle_ != nullptr) eshm_close(handle_);
  }
  const std::string& open_error() const { return open_error_; }

  // Waits up to wait_ms for the next message.
  Outcome Next(int wait_ms) {
    switch (mode_) {
      case ReadWith::kRead: {
        absl::StatusOr<std::size_t> n = channel_->Read(buffer_, Deadline::AfterMs(wait_ms));
        if (n.ok()) return Message(buffer_.data(), *n);
        return FromStatus(n.status());
      }
      case ReadWith::kTryRead: {
        const std::int64_t give_up = NowNs() + std::int64_t{wait_ms} * 1'000'000;
        for (;;) {
          std::size_t size = 0;
          const IoResult r = channel_->TryRead(buffer_, &size);
          if (r == IoResult::kOk) return Message(buffer_.data(), size);
          if (r != IoResult::kWouldBlock) return FromStatus(channel_->StatusOf(r));
          if (NowNs() >= give_up) return {Outcome::kNothing, {}, "TryRead: nothing"};
          usleep(100);
        }
      }
      case ReadWith::kPeek: {
        absl::StatusOr<std::span<const std::byte>> view = channel_->Peek(Deadline::AfterMs(wait_ms));
        if (!view.ok()) return FromStatus(view.status());
        Outcome out = Message(view->data(), view->size());
        // Release says whether what was read from the view can be trusted.
        const IoResult released = channel_->Release();
        if (released != IoResult::kOk) return FromStatus(channel_->StatusOf(released));
        return out;
      }
      case ReadWith::kCRead: {
        std::size_t size = 0;
        const int rc = eshm_read(handle_, buffer_.data(), buffer_.size(), &size, wait_ms);
        if (rc == ESHM_SUCCESS) return Message(buffer_.data(), size);
        if (rc == ESHM_ERROR_CORRUPT) return {Outcome::kDataLoss, {}, eshm_last_error()};
        if (rc == ESHM_ERROR_TIMEOUT) return {Outcome::kNothing, {}, eshm_last_error()};
        return {Outcome::kError, {}, absl::StrCat("eshm_read: ", rc, " ", eshm_last_error())};
      }
    }
    return {};
  }

 private:
  static Outcome Message(const std::byte* data, std::size_t size) {
    return {Outcome::kMessage, std::vector<std::byte>(data, data + size), ""};
  }
  static Outcome FromStatus(const absl::Status& s) {
    if (absl::IsDataLoss(s)) return {Outcome::kDataLoss, {}, s.ToString()};
    if (absl::IsDeadlineExceeded(s)) return {Outcome::kNothing, {}, s.ToString()};
    return {Outcome::kError, {}, s.ToString()};
  }

  ReadWith mode_;
  std::unique_ptr<Channel> channel_;
  eshm_handle* handle_ = nullptr;
  std::string open_error_;
  std::vector<std::byte> buffer_;
};

class PartialTruncationTest : public eshm_test::ChannelTestBase,
                              public ::testing::WithParamInterface<std::tuple<Cut, ReadWith>> {};
class PartialTruncationRaceTest : public eshm_test::ChannelTestBase {};

TEST_P(PartialTruncationTest, IsDataLossNeverADamagedMessage) {
  const auto [cut, mode] = GetParam();
  const Plan plan = MakePlan(cut);
  const std::string name = NewName();
  eshm_test::Pipe created, written, stop, cut_now, cut_done;

  Child master = StartChild([&]() -> int {
    auto c = Channel::Open(name, Options(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(c);
    ESHM_CHILD_CHECK(created.Send(1));
    std::uint64_t seq = 0;
    for (const std::vector<std::size_t>* part : {&plan.preamble, &plan.queued}) {
      for (const std::size_t size : *part) {
        ESHM_CHILD_CHECK_OK((*c)->Write(eshm_test::MakeSeqMessage(kIncarnation, seq++, size), Deadline::AfterMs(10'000)));
      }
    }
    ESHM_CHILD_CHECK(written.Send(seq));
    // Idle (heartbeat going) until the parent is done: a live peer that will never write again.
    ESHM_CHILD_CHECK(stop.Receive(kWatchdog).has_value());
    return 0;
  });
  Child truncator = StartChild([&]() -> int {
    const std::optional<std::uint64_t> delay_ms = cut_now.Receive(kWatchdog);
    ESHM_CHILD_CHECK(delay_ms.has_value());
    eshm_test::SleepMs(static_cast<int>(*delay_ms));
    const int fd = open(Segment::PathFor(name).c_str(), O_RDWR | O_CLOEXEC);
    ESHM_CHILD_CHECK(fd >= 0);
    ESHM_CHILD_CHECK(ftruncate(fd, plan.cut) == 0);
    const std::int64_t at = NowNs();  // CLOCK_MONOTONIC is one clock for every process
    close(fd);
    ESHM_CHILD_CHECK(cut_done.Send(static_cast<std::uint64_t>(at)));
    return 0;
  });
  ASSERT_TRUE(created.Receive(kWatchdog, &master).has_value()) << master.Describe();

  Reader reader(name, mode);
  ASSERT_EQ(reader.open_error(), "");
  const std::optional<std::uint64_t> total = written.Receive(kWatchdog, &master);
  ASSERT_TRUE(total.has_value()) << master.Describe();
  ASSERT_EQ(*total, plan.preamble.size() + plan.queued.size());

  // Read the preamble: the next record is then the planned one.
  std::uint64_t seq = 0;
  for (; seq < plan.preamble.size(); ++seq) {
    const Outcome out = reader.Next(10'000);
    ASSERT_EQ(out.kind, Outcome::kMessage) << "preamble message " << seq << ": " << out.error;
    const auto m = eshm_test::ParseSeqMessage(out.bytes);
    ASSERT_TRUE(m.has_value() && m->seq == seq) << "preamble message " << seq;
  }

  // Waiting: the cut comes while the reader waits for its next record. Queued: before it reads on.
  const bool while_waiting = cut == Cut::kAtNextRecordWhileWaiting;
  ASSERT_TRUE(cut_now.Send(while_waiting ? 100 : 0));
  if (!while_waiting) {
    ASSERT_TRUE(cut_done.Receive(kWatchdog, &truncator).has_value()) << truncator.Describe();
  }

  std::uint64_t intact_after_cut = 0;
  Outcome out;
  for (;;) {
    out = reader.Next(kReadWaitMs);
    if (out.kind != Outcome::kMessage) break;
    // Never a damaged message: each one is exactly what was sent, in order.
    const auto m = eshm_test::ParseSeqMessage(out.bytes);
    ASSERT_TRUE(m.has_value()) << "a damaged message of " << out.bytes.size() << " bytes was delivered as OK";
    ASSERT_EQ(m->seq, seq);
    ++seq;
    ++intact_after_cut;
  }
  const std::int64_t reported = NowNs();
  ASSERT_EQ(out.kind, Outcome::kDataLoss) << out.error;
  EXPECT_NE(out.error.find("truncated"), std::string::npos) << out.error;
  if (while_waiting) {
    const std::optional<std::uint64_t> at = cut_done.Receive(kWatchdog, &truncator);
    ASSERT_TRUE(at.has_value()) << truncator.Describe();
    std::printf("[truncation] %s via %s: DataLoss %.1f ms after the cut\n", CutName(cut), ReadWithName(mode),
                static_cast<double>(reported - static_cast<std::int64_t>(*at)) / 1e6);
  } else {
    std::printf("[truncation] %s via %s: DataLoss after %llu intact messages\n", CutName(cut), ReadWithName(mode),
                static_cast<unsigned long long>(intact_after_cut));
  }
  // And it stays lost.
  EXPECT_EQ(reader.Next(10).kind, Outcome::kDataLoss);

  ASSERT_TRUE(stop.Send(1));
  EXPECT_TRUE(eshm_test::WaitForChildren({&master, &truncator}, kWatchdog));
}

INSTANTIATE_TEST_SUITE_P(
    AllCutsAndReads, PartialTruncationTest,
    ::testing::Combine(::testing::Values(Cut::kAtNextRecordWhileWaiting, Cut::kAtNextRecordWithQueue, Cut::kInPayload,
                                         Cut::kInPayloadAcrossPages),
                       ::testing::Values(ReadWith::kRead, ReadWith::kTryRead, ReadWith::kPeek,
                                         ReadWith::kCRead)),
    [](const ::testing::TestParamInfo<std::tuple<Cut, ReadWith>>& param) {
      return absl::StrCat(CutName(std::get<0>(param.param)), "_", ReadWithName(std::get<1>(param.param)));
    });

// The cut races the reader: a master streams messages of random sizes while the truncator cuts the file at
// a random moment to a random size inside the ring, so that some cuts land while the reader is copying the
// very message they damage. However the race goes: only whole messages, in order, then DataLoss.
TEST_F(PartialTruncationRaceTest, RandomCutsWhileStreaming) {
  const int rounds = eshm_test::ScaledCount(40, 8);
  const std::uint64_t seed = static_cast<std::uint64_t>(NowNs());
  std::printf("[truncation] race: %d rounds, seed %llu\n", rounds, static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  constexpr std::uint64_t kRing = 64 * 1024;
  std::uint64_t total_messages = 0;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    const std::string name = NewName();
    const std::uint64_t data = kSegmentHeaderBytes + kRingControlBytes;
    const off_t cut = static_cast<off_t>(data + 4096 + rng() % (kRing - 4096));
    const int delay_us = static_cast<int>(rng() % 3000);
    const std::uint64_t child_seed = rng();
    eshm_test::Pipe created, go, stop;
    ChannelOptions options = Options(ChannelRole::kMaster);
    options.m2s_capacity = options.s2m_capacity = kRing;
    Child master = StartChild([&]() -> int {
      auto c = Channel::Open(name, options);
      ESHM_CHILD_CHECK_OK(c);
      ESHM_CHILD_CHECK(created.Send(1));
      std::mt19937_64 sizes(child_seed);
      // Until the channel reports the truncation (or the parent is done).
      for (std::uint64_t seq = 0;; ++seq) {
        const absl::Status w =
            (*c)->Write(eshm_test::MakeSeqMessage(kIncarnation, seq, 16 + sizes() % 3000), Deadline::AfterMs(10'000));
        if (!w.ok()) break;
      }
      ESHM_CHILD_CHECK(stop.Receive(kWatchdog).has_value());
      return 0;
    });
    Child truncator = StartChild([&]() -> int {
      ESHM_CHILD_CHECK(go.Receive(kWatchdog).has_value());
      usleep(static_cast<useconds_t>(delay_us));
      const int fd = open(Segment::PathFor(name).c_str(), O_RDWR | O_CLOEXEC);
      ESHM_CHILD_CHECK(fd >= 0);
      ESHM_CHILD_CHECK(ftruncate(fd, cut) == 0);
      close(fd);
      return 0;
    });
    ASSERT_TRUE(created.Receive(kWatchdog, &master).has_value()) << master.Describe();
    {
      options.role = ChannelRole::kSlave;
      auto slave = Channel::Open(name, options);
      ASSERT_TRUE(slave.ok()) << slave.status();
      Channel& c = **slave;
      std::vector<std::byte> buffer(c.max_message_bytes());
      ASSERT_TRUE(go.Send(1));
      std::uint64_t seq = 0;
      const std::int64_t give_up = NowNs() + absl::ToInt64Nanoseconds(kWatchdog);
      absl::Status last;
      for (int i = 0; NowNs() < give_up; ++i) {
        std::size_t size = 0;
        absl::StatusOr<std::size_t> n = std::size_t{0};
        if (i % 2 == 0) {
          const IoResult r = c.TryRead(buffer, &size);
          if (r == IoResult::kWouldBlock) continue;
          n = r == IoResult::kOk ? absl::StatusOr<std::size_t>(size) : absl::StatusOr<std::size_t>(c.StatusOf(r));
        } else {
          n = c.Read(buffer, Deadline::AfterMs(kReadWaitMs));
        }
        if (!n.ok()) {
          last = n.status();
          break;
        }
        const auto m = eshm_test::ParseSeqMessage(std::span<const std::byte>(buffer.data(), *n));
        ASSERT_TRUE(m.has_value()) << "a damaged message of " << *n << " bytes was delivered as OK (cut at " << cut
                                   << ", message " << seq << ")";
        ASSERT_EQ(m->seq, seq);
        ++seq;
      }
      EXPECT_TRUE(absl::IsDataLoss(last)) << last;
      total_messages += seq;
    }
    ASSERT_TRUE(stop.Send(1));
    EXPECT_TRUE(eshm_test::WaitForChildren({&master, &truncator}, kWatchdog));
  }
  std::printf("[truncation] race: %llu whole messages read before the cuts\n",
              static_cast<unsigned long long>(total_messages));
}

}  // namespace
}  // namespace eshm
