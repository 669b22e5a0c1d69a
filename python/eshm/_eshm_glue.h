// Thin C++ helpers for the Cython layer: the conversions Cython cannot spell cleanly (std::span<const
// std::byte>, std::string_view, the Deadline class without a default constructor, scoped enums). Each is a
// one-line forward to the public eshm::Channel API (Open also gives the channel a wait_check that runs
// Python's signal handlers); no other logic lives here.
#ifndef ESHM_PYTHON_ESHM_GLUE_H_
#define ESHM_PYTHON_ESHM_GLUE_H_

#include <Python.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/wait_set.h"
#include "eshm/wait_strategy.h"

namespace eshm_py {

inline std::int64_t NowNs() { return eshm::MonotonicNowNs(); }

// The interpreter's main thread, the only one whose waits run Python's signal handlers (set at import).
inline unsigned long& MainThreadIdent() {
  static unsigned long ident = 0;
  return ident;
}
inline void SetMainThreadIdent(unsigned long ident) { MainThreadIdent() = ident; }

// The channel's wait_check (every wait: Open, and every blocking call, with the GIL released): on the main
// thread, Python's signal handlers run. If one raises (Ctrl-C: KeyboardInterrupt), the wait ends with
// Cancelled and the exception stays set for the caller to raise. Other threads never run handlers: they
// return at once, without the GIL.
inline absl::Status RunSignalHandlers() {
  if (PyThread_get_thread_ident() != MainThreadIdent()) return absl::OkStatus();
  const PyGILState_STATE gil = PyGILState_Ensure();
  const int raised = PyErr_CheckSignals();
  PyGILState_Release(gil);
  return raised == 0 ? absl::OkStatus() : absl::CancelledError("interrupted: a signal handler raised");
}

// Opens the channel (call it without the GIL); the channel's waits, this one included, run Python's signal
// handlers (RunSignalHandlers).
inline absl::StatusOr<std::unique_ptr<eshm::Channel>> Open(const std::string& name, eshm::ChannelOptions options) {
  options.wait_check = RunSignalHandlers;
  return eshm::Channel::Open(std::string_view(name), options);
}

inline void SetEnums(eshm::ChannelOptions* options, int role, int disconnect_behavior) {
  options->role = static_cast<eshm::ChannelRole>(role);
  options->disconnect_behavior = static_cast<eshm::DisconnectBehavior>(disconnect_behavior);
}

inline int RoleOf(const eshm::Channel& channel) { return static_cast<int>(channel.role()); }
inline int PeerStateOf(const eshm::Channel& channel) { return static_cast<int>(channel.peer_state()); }
inline int IoResultCode(eshm::IoResult result) { return static_cast<int>(result); }

// StatusOf() for an IoResult given by its number (the order of the enum in channel.h).
inline absl::Status StatusOfResult(const eshm::Channel& channel, int result) {
  return channel.StatusOf(static_cast<eshm::IoResult>(result));
}

inline std::string MessageOf(const absl::Status& status) { return std::string(status.message()); }

inline eshm::IoResult TryWrite(eshm::Channel* channel, const char* data, std::size_t size) {
  return channel->TryWrite(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size));
}

// Waits at most until `deadline_ns` on CLOCK_MONOTONIC (INT64_MAX: forever).
inline absl::Status Write(eshm::Channel* channel, const char* data, std::size_t size, std::int64_t deadline_ns) {
  return channel->Write(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size),
                        eshm::Deadline::AtMonotonicNs(deadline_ns));
}

inline eshm::IoResult TryRead(eshm::Channel* channel, char* buffer, std::size_t capacity, std::size_t* size) {
  return channel->TryRead(std::span<std::byte>(reinterpret_cast<std::byte*>(buffer), capacity), size);
}

// Polls TryRead for up to budget_ns, for endpoints that spin: the binding calls it with the GIL held, so a
// message that arrives within the budget is taken without releasing and re-taking the GIL around a blocking
// Read. The clock is read every few polls only.
inline eshm::IoResult SpinTryRead(eshm::Channel* channel, char* buffer, std::size_t capacity, std::size_t* size,
                                  std::int64_t budget_ns) {
  const std::int64_t end = eshm::MonotonicNowNs() + budget_ns;
  for (;;) {
    for (int i = 0; i < 8; ++i) {
      const eshm::IoResult result = TryRead(channel, buffer, capacity, size);
      if (result != eshm::IoResult::kWouldBlock) return result;
      eshm::CpuRelax();
    }
    if (eshm::MonotonicNowNs() >= end) return eshm::IoResult::kWouldBlock;
  }
}

inline absl::StatusOr<std::size_t> Read(eshm::Channel* channel, char* buffer, std::size_t capacity,
                                        std::int64_t deadline_ns) {
  return channel->Read(std::span<std::byte>(reinterpret_cast<std::byte*>(buffer), capacity),
                       eshm::Deadline::AtMonotonicNs(deadline_ns));
}

// The size of the next queued message, or -1 when none is queued.
inline std::int64_t NextMessageSize(eshm::Channel* channel) {
  const std::optional<std::size_t> size = channel->NextMessageSize();
  return size.has_value() ? static_cast<std::int64_t>(*size) : -1;
}

// WriteBatch over `count` messages given as parallel arrays of pointers and sizes (Cython cannot build a
// span of spans); publishes once at the end. Returns how many were written (an error only if none was).
inline absl::StatusOr<std::size_t> WriteBatch(eshm::Channel* channel, const char* const* data,
                                              const std::size_t* sizes, std::size_t count,
                                              std::int64_t deadline_ns) {
  std::vector<std::span<const std::byte>> messages;
  messages.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    messages.emplace_back(reinterpret_cast<const std::byte*>(data[i]), sizes[i]);
  }
  return channel->WriteBatch(messages, eshm::Deadline::AtMonotonicNs(deadline_ns));
}

// Writes messages with TryWrite(kDeferred) until one does not fit now (or fails), then publishes them with
// one Flush. Returns how many were written; never waits.
inline std::size_t TryWriteBatch(eshm::Channel* channel, const char* const* data, const std::size_t* sizes,
                                 std::size_t count) {
  std::size_t written = 0;
  while (written < count &&
         channel->TryWrite(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data[written]),
                                                      sizes[written]),
                           eshm::Publish::kDeferred) == eshm::IoResult::kOk) {
    ++written;
  }
  if (written > 0) channel->Flush();
  return written;
}

// Zero-copy read: the next message stays in the ring (and *data valid) until channel->Release().
inline eshm::IoResult TryPeek(eshm::Channel* channel, const char** data, std::size_t* size) {
  std::span<const std::byte> message;
  const eshm::IoResult result = channel->TryPeek(&message);
  if (result == eshm::IoResult::kOk) {
    *data = reinterpret_cast<const char*>(message.data());
    *size = message.size();
  }
  return result;
}

// TryPeek polled for up to budget_ns, as SpinTryRead (for read(), which builds its bytes from the ring).
inline eshm::IoResult SpinTryPeek(eshm::Channel* channel, const char** data, std::size_t* size,
                                  std::int64_t budget_ns) {
  const std::int64_t end = eshm::MonotonicNowNs() + budget_ns;
  for (;;) {
    for (int i = 0; i < 8; ++i) {
      const eshm::IoResult result = TryPeek(channel, data, size);
      if (result != eshm::IoResult::kWouldBlock) return result;
      eshm::CpuRelax();
    }
    if (eshm::MonotonicNowNs() >= end) return eshm::IoResult::kWouldBlock;
  }
}

inline absl::Status Peek(eshm::Channel* channel, std::int64_t deadline_ns, const char** data, std::size_t* size) {
  absl::StatusOr<std::span<const std::byte>> message = channel->Peek(eshm::Deadline::AtMonotonicNs(deadline_ns));
  if (!message.ok()) return message.status();
  *data = reinterpret_cast<const char*>(message->data());
  *size = message->size();
  return absl::OkStatus();
}

inline char* TryClaim(eshm::Channel* channel, std::size_t size) {
  return reinterpret_cast<char*>(channel->TryClaim(size));
}

inline absl::Status ClaimWait(eshm::Channel* channel, std::size_t size, std::int64_t deadline_ns, char** data) {
  absl::StatusOr<std::byte*> claimed = channel->Claim(size, eshm::Deadline::AtMonotonicNs(deadline_ns));
  if (!claimed.ok()) return claimed.status();
  *data = reinterpret_cast<char*>(*claimed);
  return absl::OkStatus();
}

// Waits on the set (call it without the GIL), running Python's signal handlers every kWaitCheckIntervalNs
// (not at every look of a polling wait: the check takes the GIL on the main thread).
inline absl::Status WaitOnSet(eshm::WaitSet* wait_set, std::int64_t deadline_ns,
                              std::vector<eshm::WaitSet::Ready>* ready) {
  std::int64_t next_check = eshm::MonotonicNowNs() + eshm::kWaitCheckIntervalNs;
  return wait_set->Wait(eshm::Deadline::AtMonotonicNs(deadline_ns), ready, [&next_check] {
    const std::int64_t now = eshm::MonotonicNowNs();
    if (now < next_check) return absl::OkStatus();
    next_check = now + eshm::kWaitCheckIntervalNs;
    return RunSignalHandlers();
  });
}

}  // namespace eshm_py

#endif  // ESHM_PYTHON_ESHM_GLUE_H_
