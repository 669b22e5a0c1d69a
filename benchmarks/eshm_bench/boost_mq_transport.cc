// Boost.Interprocess message_queue: two named queues (parent -> child, child -> parent) in POSIX shared
// memory, each slot sized for the largest message. Compiled in only when the header is available.
//
// The parent creates both queues before the fork; the child uses the mappings it inherits (they are
// MAP_SHARED, and the queue keeps no per-process state). spin polls try_send/try_receive; blocking calls
// timed_send/timed_receive in 100 ms slices.
#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>

#include "benchmarks/eshm_bench/transport.h"

#if __has_include(<boost/interprocess/ipc/message_queue.hpp>)
#define ESHM_BENCH_HAVE_BOOST 1
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/ipc/message_queue.hpp>
#else
#define ESHM_BENCH_HAVE_BOOST 0
#endif

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace eshm_bench {

#if ESHM_BENCH_HAVE_BOOST

namespace {

namespace bip = boost::interprocess;

// Queue memory: about 4 MiB per direction, between 4 and 256 slots.
std::size_t SlotsFor(std::size_t message_bytes) {
  return std::clamp<std::size_t>((std::size_t{4} << 20) / std::max<std::size_t>(message_bytes, 1), 4, 256);
}

boost::posix_time::ptime SliceEnd() {
  return boost::posix_time::microsec_clock::universal_time() + boost::posix_time::milliseconds(100);
}

class BoostEndpoint final : public Endpoint {
 public:
  BoostEndpoint(bip::message_queue& out, bip::message_queue& in, bool spin, Watchdog& watchdog)
      : out_(out), in_(in), spin_(spin), watchdog_(watchdog) {}

  absl::Status Send(std::span<const std::byte> message) override {
    try {
      for (;;) {
        const bool sent = spin_ ? out_.try_send(message.data(), message.size(), 0)
                                : out_.timed_send(message.data(), message.size(), 0, SliceEnd());
        if (sent) return absl::OkStatus();
        if (spin_ ? watchdog_.SpinExpired() : watchdog_.ExpiredNow()) return watchdog_.Error("boost_mq send");
      }
    } catch (const bip::interprocess_exception& e) {
      return absl::InternalError(absl::StrCat("boost_mq send: ", e.what()));
    }
  }

  absl::Status Receive(std::span<std::byte> buffer, std::size_t* size) override {
    try {
      for (;;) {
        bip::message_queue::size_type received = 0;
        unsigned int priority = 0;
        const bool got = spin_ ? in_.try_receive(buffer.data(), buffer.size(), received, priority)
                               : in_.timed_receive(buffer.data(), buffer.size(), received, priority, SliceEnd());
        if (got) {
          *size = received;
          return absl::OkStatus();
        }
        if (spin_ ? watchdog_.SpinExpired() : watchdog_.ExpiredNow()) return watchdog_.Error("boost_mq receive");
      }
    } catch (const bip::interprocess_exception& e) {
      return absl::InternalError(absl::StrCat("boost_mq receive: ", e.what()));
    }
  }

 private:
  bip::message_queue& out_;
  bip::message_queue& in_;
  const bool spin_;
  Watchdog& watchdog_;
};

class BoostMqTransport final : public Transport {
 public:
  ~BoostMqTransport() override { Cleanup(); }
  std::string name() const override { return "boost_mq"; }

  absl::Status Prepare(const TransportSpec& spec) override {
    spec_ = spec;
    const std::string base = UniqueName();
    down_name_ = base + "_down";
    up_name_ = base + "_up";
    // Boost names POSIX shared memory objects /dev/shm/<name> on Linux.
    down_slot_ = RegisterCleanupPath("/dev/shm/" + down_name_);
    up_slot_ = RegisterCleanupPath("/dev/shm/" + up_name_);
    const std::size_t bytes = std::max<std::size_t>(spec.max_message_bytes, 1);
    try {
      down_ = std::make_unique<bip::message_queue>(bip::create_only, down_name_.c_str(), SlotsFor(bytes), bytes);
      up_ = std::make_unique<bip::message_queue>(bip::create_only, up_name_.c_str(), SlotsFor(bytes), bytes);
    } catch (const bip::interprocess_exception& e) {
      return absl::InternalError(absl::StrCat("boost::interprocess::message_queue(", base, "): ", e.what()));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl& /*control*/, Watchdog& watchdog) override {
    if (down_ == nullptr || up_ == nullptr) return absl::FailedPreconditionError("boost_mq: not prepared");
    const bool spin = spec_.wait == Wait::kSpin;
    return std::unique_ptr<Endpoint>(parent ? new BoostEndpoint(*down_, *up_, spin, watchdog)
                                            : new BoostEndpoint(*up_, *down_, spin, watchdog));
  }

  void Cleanup() override {
    down_.reset();
    up_.reset();
    if (!down_name_.empty()) bip::message_queue::remove(down_name_.c_str());
    if (!up_name_.empty()) bip::message_queue::remove(up_name_.c_str());
    down_name_.clear();
    up_name_.clear();
    UnregisterCleanupPath(down_slot_);
    UnregisterCleanupPath(up_slot_);
    down_slot_ = up_slot_ = -1;
  }

 private:
  TransportSpec spec_;
  std::string down_name_, up_name_;
  int down_slot_ = -1, up_slot_ = -1;
  std::unique_ptr<bip::message_queue> down_;  // parent -> child
  std::unique_ptr<bip::message_queue> up_;    // child -> parent
};

}  // namespace

bool BoostAvailable() { return true; }
std::unique_ptr<Transport> MakeBoostMqTransport() { return std::make_unique<BoostMqTransport>(); }

#else

bool BoostAvailable() { return false; }
std::unique_ptr<Transport> MakeBoostMqTransport() { return nullptr; }

#endif

}  // namespace eshm_bench
