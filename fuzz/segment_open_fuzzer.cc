// libFuzzer harness: arbitrary bytes as the content of a segment file, opened with eshm::Segment::Open.
//
// Each input is written to a fresh file /dev/shm/eshm_fuzz_<pid> (removed again after the input). Open must
// return a Status, never crash or read outside the file. A failed Open must leave the file untouched, and
// so must a successful one (Open only reads). When Open succeeds, the header it accepted must describe
// rings that lie inside the mapping, and a consumer of each direction must read until it reports empty or
// corrupt without leaving its ring.
// Set ESHM_FUZZ_VERBOSE=1 to print what Open and each consumer report for each input.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/ring.h"
#include "eshm/segment.h"

namespace {

void Fail(const char* what) {
  std::fprintf(stderr, "segment_open_fuzzer: %s\n", what);
  std::abort();
}

const std::string& SegmentName() {
  static const std::string name = "fuzz_" + std::to_string(getpid());
  return name;
}

bool WriteAll(int fd, const std::uint8_t* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = write(fd, data, size);
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

std::vector<std::uint8_t> ReadFile(const std::string& path) {
  std::vector<std::uint8_t> content;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Fail("cannot reopen the segment file");
  std::uint8_t buffer[4096];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0) Fail("cannot read the segment file");
    if (n == 0) break;
    content.insert(content.end(), buffer, buffer + n);
  }
  close(fd);
  return content;
}

void CheckUnchanged(const std::string& path, const std::uint8_t* data, std::size_t size, const char* what) {
  const std::vector<std::uint8_t> now = ReadFile(path);
  if (now.size() != size || (size != 0 && std::memcmp(now.data(), data, size) != 0)) Fail(what);
}

void DrainRing(const eshm::Segment& segment, eshm::Direction direction, bool peek) {
  eshm::RingConsumer consumer = segment.MakeConsumer(direction);
  std::vector<std::byte> buffer(segment.max_message_bytes());
  for (int i = 0; i < 1000; ++i) {
    eshm::ReadResult result;
    if (peek) {
      std::span<const std::byte> message;
      result = consumer.TryPeek(&message);
      if (result == eshm::ReadResult::kOk) {
        if (message.size() > segment.max_message_bytes()) Fail("peeked a message above the maximum size");
        // Touch every byte of the message: ASan reports any that lie outside the mapping's ring.
        const std::byte* data = segment.ring_data(direction);
        if (message.size() != 0 &&
            (message.data() < data || message.data() + message.size() > data + segment.ring_capacity(direction))) {
          Fail("peeked message lies outside its ring's data area");
        }
        volatile std::uint8_t sum = 0;
        for (std::byte b : message) sum = sum + static_cast<std::uint8_t>(b);
        consumer.Release();
      }
    } else {
      std::size_t size = 0;
      result = consumer.TryRead(buffer, &size);
      if (result == eshm::ReadResult::kOk && size > buffer.size()) Fail("TryRead reported more than it copied");
    }
    if (result != eshm::ReadResult::kOk) {
      if (result == eshm::ReadResult::kBufferTooSmall) Fail("a max_message_bytes buffer was too small");
      if ((result == eshm::ReadResult::kCorrupt) != consumer.corrupted()) Fail("kCorrupt without corrupted()");
      if (consumer.corrupted() && consumer.corruption_status().ok()) Fail("corrupted() with an OK status");
      break;
    }
  }
  static const bool verbose = std::getenv("ESHM_FUZZ_VERBOSE") != nullptr;
  if (verbose) {
    std::fprintf(stderr, "  direction %d: %llu messages read, %s\n", static_cast<int>(direction),
                 static_cast<unsigned long long>(consumer.messages_read()), consumer.corruption_status().ToString().c_str());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& name = SegmentName();
  const std::string path = eshm::Segment::PathFor(name);
  unlink(path.c_str());
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) Fail("cannot create the segment file");
  const bool written = WriteAll(fd, data, size);
  close(fd);
  if (!written) {
    unlink(path.c_str());
    Fail("cannot write the segment file (is /dev/shm full?)");
  }

  {
    absl::StatusOr<eshm::Segment> segment = eshm::Segment::Open(name, eshm::Deadline::AfterMs(0));
    static const bool verbose = std::getenv("ESHM_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "Open: %s\n", segment.status().ToString().c_str());
    // Open only reads, whether it succeeds or not.
    CheckUnchanged(path, data, size, segment.ok() ? "a successful Open modified the file"
                                                  : "a failed Open modified the file");
    if (!segment.ok()) {
      const absl::StatusCode code = segment.status().code();
      // FailedPrecondition: not a complete segment of this layout; DataLoss: a header that contradicts itself.
      if (code != absl::StatusCode::kFailedPrecondition && code != absl::StatusCode::kDataLoss &&
          code != absl::StatusCode::kDeadlineExceeded) {
        std::fprintf(stderr, "unexpected status: %s\n", segment.status().ToString().c_str());
        Fail("Open failed with an unexpected status code");
      }
    } else {
      // What Open accepted must describe rings inside the file.
      if (segment->size_bytes() != size) Fail("segment size differs from the file size");
      for (eshm::Direction d : {eshm::Direction::kMasterToSlave, eshm::Direction::kSlaveToMaster}) {
        const std::uint64_t capacity = segment->ring_capacity(d);
        if (!eshm::ValidateRingCapacity(capacity).ok()) Fail("accepted an invalid ring capacity");
        const std::byte* end = segment->ring_data(d) + capacity;
        const std::byte* base = reinterpret_cast<const std::byte*>(segment->header());
        if (end > base + size) Fail("a ring extends past the end of the file");
        if (segment->max_message_bytes() == 0 || segment->max_message_bytes() > eshm::MaxPayloadForCapacity(capacity)) {
          Fail("accepted a maximum message size its rings cannot carry");
        }
      }
      DrainRing(*segment, eshm::Direction::kMasterToSlave, /*peek=*/false);
      DrainRing(*segment, eshm::Direction::kSlaveToMaster, /*peek=*/true);
    }
  }
  unlink(path.c_str());
  return 0;
}
