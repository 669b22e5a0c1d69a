// The one mapping from an engine status to a result code of eshm.h (ESHM_SUCCESS, ESHM_ERROR_*), shared by
// the C ABI (c_api.cc) and the Python glue (_eshm.pyx), so that a failure has the same code in every
// language. It reads only the status code, never the message: each engine failure that needs its own
// result code has its own absl::StatusCode.
#ifndef ESHM_INTERNAL_RESULT_CODE_H_
#define ESHM_INTERNAL_RESULT_CODE_H_

#include "absl/status/status.h"
#include "eshm/channel.h"
#include "eshm/eshm.h"

namespace eshm::internal {

enum class Operation : int { kOpen = 0, kWrite = 1, kRead = 2 };

// `role` is the endpoint's role, or for kOpen the role asked for (kAuto: as a master would).
inline int ResultCodeFor(const absl::Status& status, Operation op, ChannelRole role) {
  if (status.ok()) return ESHM_SUCCESS;
  if (op == Operation::kOpen) {
    switch (status.code()) {
      case absl::StatusCode::kInvalidArgument:
        return ESHM_ERROR_INVALID_PARAM;
      case absl::StatusCode::kAlreadyExists:
        return ESHM_ERROR_ROLE_TAKEN;
      case absl::StatusCode::kNotFound:
        return ESHM_ERROR_NOT_FOUND;
      case absl::StatusCode::kPermissionDenied:
        return ESHM_ERROR_PERMISSION;
      case absl::StatusCode::kResourceExhausted:  // ENOSPC, ENOMEM, EMFILE, ENFILE
        return ESHM_ERROR_NO_SPACE;
      case absl::StatusCode::kFailedPrecondition:
        // Segment::Open's refusals: a FIFO, directory, socket or symlink, a foreign or unfinished file,
        // another layout version, a truncated or resized file.
        return ESHM_ERROR_INCOMPATIBLE;
      case absl::StatusCode::kDataLoss:  // a header that contradicts itself
        return ESHM_ERROR_CORRUPT;
      case absl::StatusCode::kDeadlineExceeded:  // another process was still replacing the segment
        return ESHM_ERROR_TIMEOUT;
      case absl::StatusCode::kCancelled:  // ChannelOptions::wait_check ended the wait
        return ESHM_ERROR_CLOSED;
      default:
        // Any other operating-system failure.
        return role == ChannelRole::kSlave ? ESHM_ERROR_SHM_ATTACH : ESHM_ERROR_SHM_CREATE;
    }
  }
  switch (status.code()) {
    case absl::StatusCode::kDeadlineExceeded:
      return ESHM_ERROR_TIMEOUT;
    case absl::StatusCode::kUnavailable:
      // The peer is the one that is gone.
      return role == ChannelRole::kMaster ? ESHM_ERROR_SLAVE_STALE : ESHM_ERROR_MASTER_STALE;
    case absl::StatusCode::kInvalidArgument:
      return op == Operation::kWrite ? ESHM_ERROR_MESSAGE_TOO_LARGE : ESHM_ERROR_INVALID_PARAM;
    case absl::StatusCode::kOutOfRange:
      return ESHM_ERROR_BUFFER_TOO_SMALL;
    case absl::StatusCode::kResourceExhausted:
      return op == Operation::kWrite ? ESHM_ERROR_RING_FULL : ESHM_ERROR_NO_DATA;
    case absl::StatusCode::kDataLoss:
      return ESHM_ERROR_CORRUPT;
    case absl::StatusCode::kFailedPrecondition:  // "channel is closed"
    case absl::StatusCode::kCancelled:           // closed during a wait
      return ESHM_ERROR_CLOSED;
    default:
      return ESHM_ERROR_INTERNAL;
  }
}

}  // namespace eshm::internal

#endif  // ESHM_INTERNAL_RESULT_CODE_H_
