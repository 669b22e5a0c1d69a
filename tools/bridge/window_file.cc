#include "tools/bridge/window_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tools/bridge/crc32c.h"

namespace eshm::bridge {

// The file's first 128 bytes; the log follows. Positions are monotonic byte counts, used modulo capacity.
struct WindowFile::Header {
  std::uint64_t magic;  // written last at creation: a file without it was never finished
  std::uint32_t version;
  std::uint32_t header_bytes;
  std::uint64_t capacity;
  std::uint64_t stream_id;
  std::uint64_t head;  // position of the oldest unacknowledged record
  std::uint64_t tail;  // end of the newest record
  std::uint64_t next_seq;
  std::uint64_t far_stream_id;
  std::uint64_t far_delivered_seq;
  std::uint64_t reserved[7];
};

namespace {

constexpr std::uint64_t kMagic = 0x31574252424d4845;  // "EHMBRBW1"
constexpr std::uint32_t kVersion = 1;
constexpr std::uint64_t kHeaderBytes = 128;
constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 36;  // 64 GiB: a sanity bound on the file's word

// The file's commit words. Release stores: what precedes them in program order (the record, the message
// copied into the ring) is in the file before the word says so, wherever a kill -9 stops this process (the
// compiler may not sink those writes below the store). A restarted bridge reads the file with pread after
// taking the file's lock, which the dead holder's exit released: that orders its reads after these stores.
void StoreWord(std::uint64_t& word, std::uint64_t value) {
  std::atomic_ref<std::uint64_t>(word).store(value, std::memory_order_release);
}

std::string Fix(const std::string& path) {
  return absl::StrCat("; if it is not needed any more, move ", path,
                      " away to start a new stream (the messages it held that the far side has not received are lost)");
}

}  // namespace

WindowFile::WindowFile(WindowFile&& other) noexcept { *this = std::move(other); }

WindowFile& WindowFile::operator=(WindowFile&& other) noexcept {
  if (this != &other) {
    Unmap();
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    map_ = std::exchange(other.map_, nullptr);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
    log_ = std::exchange(other.log_, nullptr);
    capacity_ = other.capacity_;
    next_seq_ = other.next_seq_;
    created_ = other.created_;
    entries_ = std::move(other.entries_);
  }
  return *this;
}

WindowFile::~WindowFile() { Unmap(); }

void WindowFile::Unmap() {
  if (map_ != nullptr) munmap(map_, map_bytes_);
  if (fd_ >= 0) close(fd_);  // also drops the OFD lock
  map_ = nullptr;
  fd_ = -1;
}

WindowFile::Header* WindowFile::header() const { return reinterpret_cast<Header*>(map_); }

absl::StatusOr<WindowFile> WindowFile::Open(const std::string& path, std::uint64_t capacity) {
  capacity = (capacity + 7) & ~std::uint64_t{7};
  if (capacity < 64 || capacity > kMaxCapacity) {
    return absl::InvalidArgumentError(absl::StrCat("window of ", capacity, " bytes: give 64 bytes to 64 GiB"));
  }
  WindowFile file;
  file.path_ = path;
  file.fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (file.fd_ < 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot open the bridge state file ", path, ": ",
                                                      strerror(errno), " (give another --state_file)"));
  }
  struct flock lock = {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (fcntl(file.fd_, F_OFD_SETLK, &lock) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("the bridge state file ", path,
                                                      " is in use by another eshm-bridge (one bridge per file: "
                                                      "stop the other one, or give this one another --state_file)"));
  }
  struct stat st;
  if (fstat(file.fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file; give another --state_file"));
  }
  if (st.st_uid != geteuid()) {
    return absl::PermissionDeniedError(absl::StrCat("the bridge state file ", path, " belongs to uid ", st.st_uid,
                                                    ", not to this user: refused (it could hold forged messages)"));
  }
  bool fresh = static_cast<std::uint64_t>(st.st_size) < kHeaderBytes;
  if (!fresh) {
    std::uint64_t magic = 0;
    if (pread(file.fd_, &magic, sizeof(magic), 0) != static_cast<ssize_t>(sizeof(magic))) {
      return absl::DataLossError(absl::StrCat("cannot read the bridge state file ", path, ": ", strerror(errno)));
    }
    // A creator killed before it wrote the magic left nothing anyone relied on: start again.
    fresh = magic == 0;
  }
  if (fresh) {
    absl::Status status = file.Initialize(capacity);
    if (!status.ok()) return status;
    file.created_ = true;
    return file;
  }
  absl::Status status = file.Validate(static_cast<std::uint64_t>(st.st_size));
  if (!status.ok()) return status;
  return file;
}

absl::Status WindowFile::Initialize(std::uint64_t capacity) {
  if (ftruncate(fd_, 0) != 0 || ftruncate(fd_, static_cast<off_t>(kHeaderBytes + capacity)) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot size the bridge state file ", path_, " to ",
                                                     kHeaderBytes + capacity, " bytes: ", strerror(errno),
                                                     " (a smaller --window_bytes, or more room in its file system)"));
  }
  map_bytes_ = kHeaderBytes + capacity;
  void* map = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (map == MAP_FAILED) return absl::InternalError(absl::StrCat("mmap ", path_, ": ", strerror(errno)));
  map_ = static_cast<std::byte*>(map);
  log_ = map_ + kHeaderBytes;
  capacity_ = capacity;
  std::uint64_t stream_id = 0;
  while (stream_id == 0) {
    if (getrandom(&stream_id, sizeof(stream_id), 0) != static_cast<ssize_t>(sizeof(stream_id))) {
      return absl::InternalError(absl::StrCat("getrandom: ", strerror(errno)));
    }
  }
  static_assert(sizeof(Header) == kHeaderBytes);
  Header* h = header();
  h->version = kVersion;
  h->header_bytes = kHeaderBytes;
  h->capacity = capacity;
  h->stream_id = stream_id;
  h->head = 0;
  h->tail = 0;
  h->next_seq = 1;
  h->far_stream_id = 0;
  h->far_delivered_seq = 0;
  StoreWord(h->magic, kMagic);
  next_seq_ = 1;
  return absl::OkStatus();
}

absl::Status WindowFile::Validate(std::uint64_t file_bytes) {
  Header h;
  if (pread(fd_, &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h))) {
    return absl::DataLossError(absl::StrCat("cannot read the bridge state file ", path_, ": ", strerror(errno)));
  }
  auto damaged = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat("the bridge state file ", path_, " is damaged: ", what, Fix(path_)));
  };
  if (h.magic != kMagic) return damaged("it is not an eshm-bridge state file (bad magic)");
  if (h.version != kVersion || h.header_bytes != kHeaderBytes) {
    return absl::FailedPreconditionError(absl::StrCat("the bridge state file ", path_, " has layout version ",
                                                      h.version, "; this eshm-bridge reads version ", kVersion,
                                                      Fix(path_)));
  }
  if (h.capacity < 64 || h.capacity > kMaxCapacity || h.capacity % 8 != 0 || file_bytes != kHeaderBytes + h.capacity) {
    return damaged(absl::StrCat("its window capacity (", h.capacity, ") does not match its size (", file_bytes, ")"));
  }
  if (h.stream_id == 0) return damaged("stream id 0");
  if (h.tail < h.head || h.tail - h.head > h.capacity || h.head % 8 != 0 || h.tail % 8 != 0) {
    return damaged(absl::StrCat("window positions [", h.head, ", ", h.tail, ")"));
  }
  if (h.next_seq == 0 || (h.far_stream_id == 0 && h.far_delivered_seq != 0)) {
    return damaged("sequence numbers out of range");
  }
  map_bytes_ = file_bytes;
  void* map = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (map == MAP_FAILED) return absl::InternalError(absl::StrCat("mmap ", path_, ": ", strerror(errno)));
  map_ = static_cast<std::byte*>(map);
  log_ = map_ + kHeaderBytes;
  capacity_ = h.capacity;
  // Every record between head and tail: whole, consecutive, intact.
  std::uint64_t position = h.head;
  std::uint64_t expected_seq = 0;
  std::vector<std::byte> payload;
  while (position < h.tail) {
    if (h.tail - position < kRecordHeaderBytes) return damaged("a record header cut by the tail");
    std::byte record[kRecordHeaderBytes];
    CopyOut(position, record);
    Entry entry;
    entry.position = position;
    std::memcpy(&entry.seq, record, 8);
    std::memcpy(&entry.length, record + 8, 4);
    std::memcpy(&entry.crc, record + 12, 4);
    if (RecordBytes(entry.length) > h.tail - position) return damaged("a record longer than the window");
    if (entry.seq == 0 || (expected_seq != 0 && entry.seq != expected_seq)) {
      return damaged(absl::StrCat("record sequence ", entry.seq, " where ", expected_seq, " belongs"));
    }
    payload.resize(entry.length);
    absl::Status status = Read(entry, payload);
    if (!status.ok()) return damaged(status.message());
    entries_.push_back(entry);
    expected_seq = entry.seq + 1;
    position += RecordBytes(entry.length);
  }
  // The newest record's next_seq store may not have happened before a kill: it is then one behind.
  if (entries_.empty()) {
    next_seq_ = h.next_seq;
  } else if (h.next_seq == expected_seq || h.next_seq + 1 == expected_seq) {
    next_seq_ = expected_seq;
    StoreWord(header()->next_seq, next_seq_);
  } else {
    return damaged(absl::StrCat("next sequence number ", h.next_seq, " after record ", expected_seq - 1));
  }
  return absl::OkStatus();
}

void WindowFile::CopyOut(std::uint64_t position, std::span<std::byte> out) const {
  const std::uint64_t offset = position % capacity_;
  const std::uint64_t first = std::min<std::uint64_t>(out.size(), capacity_ - offset);
  std::memcpy(out.data(), log_ + offset, first);
  if (first < out.size()) std::memcpy(out.data() + first, log_, out.size() - first);
}

void WindowFile::CopyIn(std::uint64_t position, std::span<const std::byte> in) {
  const std::uint64_t offset = position % capacity_;
  const std::uint64_t first = std::min<std::uint64_t>(in.size(), capacity_ - offset);
  std::memcpy(log_ + offset, in.data(), first);
  if (first < in.size()) std::memcpy(log_, in.data() + first, in.size() - first);
}

std::uint64_t WindowFile::stream_id() const { return header()->stream_id; }

std::uint64_t WindowFile::used_bytes() const {
  const Header* h = header();
  return h->tail - h->head;
}

std::uint64_t WindowFile::Append(std::span<const std::byte> message, std::uint32_t crc) {
  Header* h = header();
  Entry entry;
  entry.seq = next_seq_;
  entry.position = h->tail;
  entry.length = static_cast<std::uint32_t>(message.size());
  entry.crc = crc;
  std::byte record[kRecordHeaderBytes];
  std::memcpy(record, &entry.seq, 8);
  std::memcpy(record + 8, &entry.length, 4);
  std::memcpy(record + 12, &entry.crc, 4);
  CopyIn(entry.position, record);
  CopyIn(entry.position + kRecordHeaderBytes, message);
  StoreWord(h->tail, entry.position + RecordBytes(message.size()));
  ++next_seq_;
  StoreWord(h->next_seq, next_seq_);
  entries_.push_back(entry);
  return entry.seq;
}

absl::Status WindowFile::Read(const Entry& entry, std::span<std::byte> out) const {
  CopyOut(entry.position + kRecordHeaderBytes, out.first(entry.length));
  if (Crc32c(out.first(entry.length)) != entry.crc) {
    return absl::DataLossError(absl::StrCat("window record ", entry.seq, " in ", path_, " fails its checksum"));
  }
  return absl::OkStatus();
}

void WindowFile::Acknowledge(std::uint64_t seq) {
  if (entries_.empty() || entries_.front().seq > seq) return;
  while (!entries_.empty() && entries_.front().seq <= seq) entries_.pop_front();
  StoreWord(header()->head, entries_.empty() ? header()->tail : entries_.front().position);
}

std::uint64_t WindowFile::far_stream_id() const { return header()->far_stream_id; }
std::uint64_t WindowFile::far_delivered_seq() const { return header()->far_delivered_seq; }

void WindowFile::AdoptFarStream(std::uint64_t stream_id, std::uint64_t delivered_seq) {
  // delivered first: a kill between the two stores leaves the old stream id, which the next STATUS of the
  // new stream replaces again.
  StoreWord(header()->far_delivered_seq, delivered_seq);
  StoreWord(header()->far_stream_id, stream_id);
}

void WindowFile::SetDelivered(std::uint64_t seq) { StoreWord(header()->far_delivered_seq, seq); }

}  // namespace eshm::bridge
