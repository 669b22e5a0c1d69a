// The eshm shared-memory ABI: everything that lives in a segment, and nothing else.
//
// Two processes, possibly built by different compilers with different flags, map the same file, so every
// type here has a fixed width, a fixed offset (checked by static_assert below) and no compiler-dependent
// padding. Bump kLayoutVersion for any change to this file that an older peer would misread.
//
// Segment (a file at /dev/shm/eshm_<name>):
//
//   offset 0     +--------------------------------------------------------------+
//                | SegmentHeader                                       384 bytes |
//                |   0   magic "ESHMSEG\0"            u64                        |
//                |   8   layout_version (written LAST) u32 atomic                |
//                |  12   header_bytes                 u32                        |
//                |  16   segment_bytes                u64                        |
//                |  24   creation_epoch_ns            u64 (CLOCK_REALTIME)       |
//                |  32   ring_offset[2]               u64 x2                     |
//                |  48   ring_capacity[2]             u64 x2                     |
//                |  64   max_message_bytes            u32                        |
//                |  68   creator_pid                  u32                        |
//                |  72   reserved                     56 bytes                   |
//                | 128   roles[kMaster]  RoleControl  128 bytes                  |
//                | 256   roles[kSlave]   RoleControl  128 bytes                  |
//   384          +--------------------------------------------------------------+
//                | RingControl master->slave                           384 bytes |
//                |   0   producer line: tail, messages_written                  |
//                | 128   consumer line: head, messages_read                      |
//                | 256   wait line: futex words, sleeper flags, space wanted     |
//   768          +--------------------------------------------------------------+
//                | ring data master->slave          ring_capacity[0] bytes      |
//                +--------------------------------------------------------------+
//                | RingControl slave->master                           384 bytes |
//                | ring data slave->master          ring_capacity[1] bytes      |
//                +--------------------------------------------------------------+
//                | gap up to the next multiple of kTrailerAlignment (64 KiB):   |
//                | never written, left unallocated (a hole in the file)         |
//   trailer_     +--------------------------------------------------------------+
//   offset       | SegmentTrailer                                      128 bytes |
//                |   0   reserved                     120 bytes                  |
//                | 120   canary "ESHMEND!"  (written before layout_version) u64 |
//   segment_bytes+--------------------------------------------------------------+
//
// Ring data is a sequence of records, each 16-byte aligned (so a header never straddles the end), never wrapping past the end of the data area
// (the producer fills the tail end with a padding record instead):
//
//    0               8               12              16
//   +---------------+---------------+---------------+------------------------------+
//   | commit (u64)  | length (u32)  | kind (u32)    | payload: length bytes, then  |
//   | = position+1  |               | data/padding  | zero to fifteen bytes of pad |
//   +---------------+---------------+---------------+------------------------------+
//
// A record is committed when its commit word equals its own stream position + 1 (stored with release
// order after the rest of the record). Before it publishes a record, the producer zeroes the commit word
// of the position right after it (unless the ring is exactly full there), so the word the consumer looks
// at next is always 0, a commit word of an earlier lap, or the real commit: never message content, which
// the consumer would otherwise take for a record (ring.h argues it in full).
//
// Producer- and consumer-written words are kept kFalseSharingRange (128) bytes apart: a fixed constant,
// because std::hardware_destructive_interference_size depends on compiler flags, and because adjacent-line
// prefetchers on x86 pull cache lines in 128-byte pairs.
#ifndef ESHM_LAYOUT_H_
#define ESHM_LAYOUT_H_

#include "eshm/internal/require_cxx20.h"
#if ESHM_CXX20

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace eshm {

inline constexpr std::size_t kFalseSharingRange = 128;

// "ESHMSEG\0" read as a little-endian u64.
inline constexpr std::uint64_t kSegmentMagic = 0x004745534d485345ull;
// 2: the producer clears the next commit word before each publication; the consumer publishes its head
// per message; WaitLine::space_wanted; the SegmentTrailer (and its gap) at the end of the segment.
// (RoleControl::represented_state, monitor_tid and kernel_watch took words that were reserved and zero:
// readers that ignore them see what they always saw, so they needed no new version.)
inline constexpr std::uint32_t kLayoutVersion = 2;

// Ring capacities are powers of two in this range (per direction).
inline constexpr std::uint64_t kMinRingCapacity = 4096;
inline constexpr std::uint64_t kMaxRingCapacity = std::uint64_t{1} << 32;  // 4 GiB

enum class Direction : std::uint32_t {
  kMasterToSlave = 0,
  kSlaveToMaster = 1,
};

enum class Role : std::uint32_t {
  kMaster = 0,
  kSlave = 1,
};

// One per role. Written by the endpoint that holds the role; read by everyone. The channel layer defines
// the state machine; the engine core only reserves and zero-initialises it.
struct alignas(kFalseSharingRange) RoleControl {
  std::atomic<std::uint32_t> state;        // 0 = vacant
  std::atomic<std::uint32_t> pid;          // holder's pid, in the creator's pid namespace when possible
  std::atomic<std::uint64_t> heartbeat;    // advanced by the holder while it is alive
  std::atomic<std::uint64_t> attach_epoch; // incremented each time a new holder attaches
  // What the holder tells its peer, so that the peer beats often enough and can watch the holder's exit.
  // 0 = not said (a holder that does not publish them): the peer then assumes nothing.
  std::atomic<std::uint32_t> stale_threshold_ms;  // the holder calls its peer unresponsive after this
  // What the holder says about an endpoint it stands for (eshm-bridge: the application on the far host);
  // the peer takes the worse of this and its own evidence about the holder. 0 = nothing represented (every
  // endpoint that does not relay, and every engine before this word existed: it was reserved, zero).
  // Otherwise bits 0-7: 1 + a PeerState; bits 8-31: the low 24 bits of the holder's attach_epoch when it
  // wrote the word. A value whose tag does not match attach_epoch was left by an earlier holder (one killed
  // before it could clear it, followed by an engine that does not know the word) and is ignored.
  std::atomic<std::uint32_t> represented_state;
  std::atomic<std::uint64_t> pid_namespace;  // inode of the holder's /proc/self/ns/pid; pid is valid there
  // The kernel as heartbeat (both words were reserved, zero: an engine that does not know them beats as
  // before, and never asks its peer to stop). The holder's monitor thread, by its id in the holder's pid
  // namespace (0 = none: no monitor, or not said). A peer in that namespace can watch the thread's
  // voluntary context switches (/proc/PID/task/TID/status), which grow each time the monitor sleeps, so
  // the thread's progress is the holder's heartbeat for all its channels with one read per process.
  std::atomic<std::uint32_t> monitor_tid;
  std::uint32_t reserved_word;  // zero
  // What the holder says about its peer: "I watch your monitor thread through the kernel", so the peer
  // need not beat in this segment more than once a second. 0 = not watching; otherwise the low 32 bits of
  // the holder's attach_epoch (high half) and of the watched peer's (low half), so that a word left by a
  // killed holder, or aimed at an earlier peer, is never taken for a current one (EncodeKernelWatch).
  std::atomic<std::uint64_t> kernel_watch;
  std::uint8_t reserved[kFalseSharingRange - 56];
};

// RoleControl::kernel_watch: who watches whom. Attach epochs start at 1, so a valid word is never 0.
constexpr std::uint64_t EncodeKernelWatch(std::uint64_t watcher_epoch, std::uint64_t watched_epoch) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(watcher_epoch)) << 32) |
         static_cast<std::uint32_t>(watched_epoch);
}

// RoleControl::represented_state: the encoding, and its decoding against the holder's attach epoch. The
// state is a PeerState's value (channel.h), 0..3; anything else decodes as nothing represented.
inline constexpr std::uint32_t kRepresentedStateMask = 0xff;
inline constexpr std::uint32_t kRepresentedEpochMask = 0xffffff;
constexpr std::uint32_t EncodeRepresentedState(std::uint32_t peer_state, std::uint64_t attach_epoch) {
  return ((static_cast<std::uint32_t>(attach_epoch) & kRepresentedEpochMask) << 8) | ((peer_state + 1) & kRepresentedStateMask);
}
// The represented PeerState's value, or -1 when the word says nothing valid for the holder of `attach_epoch`.
constexpr int DecodeRepresentedState(std::uint32_t word, std::uint64_t attach_epoch) {
  const std::uint32_t code = word & kRepresentedStateMask;
  if (code == 0 || code > 4) return -1;
  if ((word >> 8) != (static_cast<std::uint32_t>(attach_epoch) & kRepresentedEpochMask)) return -1;
  return static_cast<int>(code) - 1;
}

struct alignas(kFalseSharingRange) SegmentHeader {
  std::uint64_t magic;
  // Written last by the creator with release order; an opener reads it first with acquire order and
  // trusts no other field until it holds kLayoutVersion.
  std::atomic<std::uint32_t> layout_version;
  std::uint32_t header_bytes;
  std::uint64_t segment_bytes;
  std::uint64_t creation_epoch_ns;
  std::uint64_t ring_offset[2];    // indexed by Direction; offset of that ring's RingControl
  std::uint64_t ring_capacity[2];  // indexed by Direction; bytes of record data, a power of two
  std::uint32_t max_message_bytes; // largest payload either ring accepts
  std::uint32_t creator_pid;
  std::uint8_t reserved[56];
  RoleControl roles[2];            // indexed by Role
};

// Shared state of one single-producer/single-consumer ring; the record data follows it directly.
struct alignas(kFalseSharingRange) RingControl {
  // Written only by the producer.
  struct alignas(kFalseSharingRange) ProducerLine {
    // Position one past the last published record. The consumer never reads it (records carry their own
    // commit words); it is for observers that report what is queued.
    std::atomic<std::uint64_t> tail;
    std::atomic<std::uint64_t> messages_written;
  } producer;
  // Written only by the consumer.
  struct alignas(kFalseSharingRange) ConsumerLine {
    // Position of the oldest record not yet released, stored after every message; the producer may
    // overwrite everything before it.
    std::atomic<std::uint64_t> head;
    std::atomic<std::uint64_t> messages_read;
    std::uint64_t reserved;  // zero
  } consumer;
  // Written rarely: only by a side that is about to sleep, or that wakes a sleeper.
  struct alignas(kFalseSharingRange) WaitLine {
    std::atomic<std::uint32_t> data_futex;     // bumped by the producer to wake a sleeping consumer
    std::atomic<std::uint32_t> data_sleeping;  // nonzero while the consumer may be in FUTEX_WAIT
    std::atomic<std::uint32_t> space_futex;    // bumped by the consumer to wake a sleeping producer
    std::atomic<std::uint32_t> space_sleeping; // nonzero while the producer may be in FUTEX_WAIT
    std::atomic<std::uint64_t> wake_syscalls;  // FUTEX_WAKE calls made on this ring, both sides
    std::atomic<std::uint64_t> wait_syscalls;  // FUTEX_WAIT calls made on this ring, both sides
    // While space_sleeping: the head at which the producer's next message fits. The consumer wakes the
    // producer only once its head reaches it.
    std::atomic<std::uint64_t> space_wanted;
    // Odd while the consumer may sleep for data: the producer then publishes with seq_cst stores, and
    // acknowledges each value it follows in data_sleepy_ack (ring.h, "Memory ordering").
    std::atomic<std::uint32_t> data_sleepy_epoch;
    std::atomic<std::uint32_t> data_sleepy_ack;
  } wait;
};

enum class RecordKind : std::uint32_t {
  kData = 0x44415441,     // "DATA"
  kPadding = 0x50414444,  // "PADD"
};

struct RecordHeader {
  std::atomic<std::uint64_t> commit;  // record position + 1 once the record is complete
  std::uint32_t length;               // payload bytes (data) or bytes skipped after the header (padding)
  std::uint32_t kind;                 // a RecordKind
};

inline constexpr std::uint64_t kRecordAlignment = 16;
inline constexpr std::uint64_t kRecordHeaderBytes = sizeof(RecordHeader);

// Bytes a record with `payload_bytes` of payload occupies in the ring.
constexpr std::uint64_t RecordBytes(std::uint64_t payload_bytes) {
  return (kRecordHeaderBytes + payload_bytes + kRecordAlignment - 1) & ~(kRecordAlignment - 1);
}

// The largest payload a ring of `capacity` bytes accepts: any record up to half the ring fits once the
// ring drains, whatever the position of the wrap.
constexpr std::uint64_t MaxPayloadForCapacity(std::uint64_t capacity) {
  return capacity / 2 - kRecordHeaderBytes;
}

// The last bytes of a segment: a canary the creator writes (before the layout version) and nobody changes.
// Truncating the file anywhere removes it, so one load of it tells a reader whether the segment is whole
// (Segment::TrailerIntact explains why one load after copying a message suffices). It starts a page of its
// own: every byte of the page that holds it is either trailer or gap, never ring data, so a truncation
// that zeroes part of the page holding ring data unmaps the canary's page first. kTrailerAlignment is the
// largest base page size Linux uses (64 KiB on arm64 and ppc64; x86-64 has 4 KiB), so this holds on all.
struct alignas(kFalseSharingRange) SegmentTrailer {
  std::uint8_t reserved[kFalseSharingRange - 8];
  std::atomic<std::uint64_t> canary;  // kTrailerCanary: the segment's last eight bytes
};

inline constexpr std::uint64_t kTrailerAlignment = 64 * 1024;
// "ESHMEND!" read as a little-endian u64. No byte is zero, so zeroing any part of it changes it.
inline constexpr std::uint64_t kTrailerCanary = 0x21444e454d485345ull;

inline constexpr std::uint64_t kSegmentHeaderBytes = sizeof(SegmentHeader);
inline constexpr std::uint64_t kRingControlBytes = sizeof(RingControl);
inline constexpr std::uint64_t kTrailerBytes = sizeof(SegmentTrailer);

// Where each part of a segment with the given capacities lives.
struct SegmentGeometry {
  std::uint64_t ring_offset[2];
  std::uint64_t rings_end;       // one past the last byte of ring data; the gap starts here
  std::uint64_t trailer_offset;  // a multiple of kTrailerAlignment
  std::uint64_t segment_bytes;
};

constexpr SegmentGeometry ComputeGeometry(std::uint64_t m2s_capacity, std::uint64_t s2m_capacity) {
  SegmentGeometry g{};
  g.ring_offset[0] = kSegmentHeaderBytes;
  g.ring_offset[1] = g.ring_offset[0] + kRingControlBytes + m2s_capacity;
  g.rings_end = g.ring_offset[1] + kRingControlBytes + s2m_capacity;
  g.trailer_offset = (g.rings_end + kTrailerAlignment - 1) & ~(kTrailerAlignment - 1);
  g.segment_bytes = g.trailer_offset + kTrailerBytes;
  return g;
}

// ---- ABI checks: every offset, size and alignment above. ----
static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "shared atomics must be lock-free");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "shared atomics must be lock-free");
static_assert(sizeof(std::atomic<std::uint64_t>) == 8 && alignof(std::atomic<std::uint64_t>) == 8);
static_assert(sizeof(std::atomic<std::uint32_t>) == 4 && alignof(std::atomic<std::uint32_t>) == 4);

static_assert(std::is_standard_layout_v<RoleControl>);
static_assert(sizeof(RoleControl) == 128 && alignof(RoleControl) == 128);
static_assert(offsetof(RoleControl, state) == 0);
static_assert(offsetof(RoleControl, pid) == 4);
static_assert(offsetof(RoleControl, heartbeat) == 8);
static_assert(offsetof(RoleControl, attach_epoch) == 16);
static_assert(offsetof(RoleControl, stale_threshold_ms) == 24);
static_assert(offsetof(RoleControl, represented_state) == 28);
static_assert(offsetof(RoleControl, pid_namespace) == 32);
static_assert(offsetof(RoleControl, monitor_tid) == 40);
static_assert(offsetof(RoleControl, kernel_watch) == 48);
static_assert(EncodeKernelWatch(1, 1) != 0 && EncodeKernelWatch(0x100000001, 2) == 0x0000000100000002);

static_assert(std::is_standard_layout_v<SegmentHeader>);
static_assert(offsetof(SegmentHeader, magic) == 0);
static_assert(offsetof(SegmentHeader, layout_version) == 8);
static_assert(offsetof(SegmentHeader, header_bytes) == 12);
static_assert(offsetof(SegmentHeader, segment_bytes) == 16);
static_assert(offsetof(SegmentHeader, creation_epoch_ns) == 24);
static_assert(offsetof(SegmentHeader, ring_offset) == 32);
static_assert(offsetof(SegmentHeader, ring_capacity) == 48);
static_assert(offsetof(SegmentHeader, max_message_bytes) == 64);
static_assert(offsetof(SegmentHeader, creator_pid) == 68);
static_assert(offsetof(SegmentHeader, reserved) == 72);
static_assert(offsetof(SegmentHeader, roles) == 128);
static_assert(sizeof(SegmentHeader) == 384 && alignof(SegmentHeader) == 128);

static_assert(std::is_standard_layout_v<RingControl>);
static_assert(offsetof(RingControl, producer) == 0);
static_assert(offsetof(RingControl, consumer) == 128);
static_assert(offsetof(RingControl, wait) == 256);
static_assert(offsetof(RingControl::ProducerLine, tail) == 0);
static_assert(offsetof(RingControl::ProducerLine, messages_written) == 8);
static_assert(offsetof(RingControl::ConsumerLine, head) == 0);
static_assert(offsetof(RingControl::ConsumerLine, messages_read) == 8);
static_assert(offsetof(RingControl::ConsumerLine, reserved) == 16);
static_assert(offsetof(RingControl::WaitLine, data_futex) == 0);
static_assert(offsetof(RingControl::WaitLine, data_sleeping) == 4);
static_assert(offsetof(RingControl::WaitLine, space_futex) == 8);
static_assert(offsetof(RingControl::WaitLine, space_sleeping) == 12);
static_assert(offsetof(RingControl::WaitLine, wake_syscalls) == 16);
static_assert(offsetof(RingControl::WaitLine, wait_syscalls) == 24);
static_assert(offsetof(RingControl::WaitLine, space_wanted) == 32);
static_assert(offsetof(RingControl::WaitLine, data_sleepy_epoch) == 40);
static_assert(offsetof(RingControl::WaitLine, data_sleepy_ack) == 44);
static_assert(sizeof(RingControl) == 384 && alignof(RingControl) == 128);
// The producer's and the consumer's words are a full false-sharing range apart.
static_assert(offsetof(RingControl, consumer) - offsetof(RingControl, producer) >= kFalseSharingRange);

static_assert(std::is_standard_layout_v<RecordHeader>);
static_assert(offsetof(RecordHeader, commit) == 0);
static_assert(offsetof(RecordHeader, length) == 8);
static_assert(offsetof(RecordHeader, kind) == 12);
static_assert(sizeof(RecordHeader) == 16 && alignof(RecordHeader) == 8);
static_assert(kRecordHeaderBytes % kRecordAlignment == 0, "a padding header must fit any tail end");
static_assert(DecodeRepresentedState(0, 1) == -1 && DecodeRepresentedState(EncodeRepresentedState(3, 7), 7) == 3);
static_assert(DecodeRepresentedState(EncodeRepresentedState(0, 7), 7) == 0 && DecodeRepresentedState(EncodeRepresentedState(1, 7), 8) == -1);
static_assert(DecodeRepresentedState(EncodeRepresentedState(2, (1u << 24) + 5), 5) == 2, "the tag is the epoch's low 24 bits");
static_assert(RecordBytes(0) == 16 && RecordBytes(1) == 32 && RecordBytes(64) == 80);

static_assert(std::is_standard_layout_v<SegmentTrailer>);
static_assert(offsetof(SegmentTrailer, reserved) == 0);
static_assert(offsetof(SegmentTrailer, canary) == 120);
static_assert(sizeof(SegmentTrailer) == 128 && alignof(SegmentTrailer) == 128);
static_assert(offsetof(SegmentTrailer, canary) + 8 == kTrailerBytes, "the canary ends the segment");
static_assert((kTrailerCanary & 0xff) != 0 && ((kTrailerCanary >> 8) & 0xff) != 0 &&
                  ((kTrailerCanary >> 16) & 0xff) != 0 && ((kTrailerCanary >> 24) & 0xff) != 0 &&
                  ((kTrailerCanary >> 32) & 0xff) != 0 && ((kTrailerCanary >> 40) & 0xff) != 0 &&
                  ((kTrailerCanary >> 48) & 0xff) != 0 && ((kTrailerCanary >> 56) & 0xff) != 0,
              "every byte of the canary is nonzero");
static_assert((kTrailerAlignment & (kTrailerAlignment - 1)) == 0 && kTrailerAlignment % 4096 == 0);

static_assert(ComputeGeometry(4096, 4096).ring_offset[0] == 384);
static_assert(ComputeGeometry(4096, 4096).ring_offset[1] == 384 + 384 + 4096);
static_assert(ComputeGeometry(4096, 4096).rings_end == 384 + 2 * (384 + 4096));
static_assert(ComputeGeometry(4096, 4096).trailer_offset == 65536);
static_assert(ComputeGeometry(4096, 4096).segment_bytes == 65536 + 128);
static_assert(ComputeGeometry(1 << 20, 1 << 20).trailer_offset == (2 << 20) + 65536);
static_assert(ComputeGeometry(4096, 4096).ring_offset[1] % kFalseSharingRange == 0);
static_assert(kMinRingCapacity % kFalseSharingRange == 0, "ring data must keep RingControl aligned");

}  // namespace eshm

#endif  // ESHM_CXX20
#endif  // ESHM_LAYOUT_H_
