// Reads back, from a ring's memory, the messages its producer has staged (written with Publish::kDeferred)
// and not published yet. A channel whose write side moves to a new segment uses it to write them there
// (channel.cc, Channel::CarryStaged): the consumer of the old ring can never have seen them, so sending
// them again is exactly-once.
//
// It relies only on the record protocol of layout.h and ring.h ("Publication"), not on a producer's private
// state: from the consumer's head on, records are committed (commit word = position + 1, padding included)
// up to the first record of the staged batch, whose commit word is withheld; the batch then covers the
// producer's staged_bytes() from there, every record after its first committed.
//
// The ring's memory may be shared with a hostile peer, so every header field is read once, every length
// and kind is checked, and nothing outside the data area is touched: a batch that does not read back as
// described is reported (false), never trusted.
//
// Threading: call it from the producer's thread (the staged records are its own writes); the consumer may
// keep reading the published records meanwhile.
#ifndef ESHM_INTERNAL_STAGED_MESSAGES_H_
#define ESHM_INTERNAL_STAGED_MESSAGES_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "eshm/layout.h"

namespace eshm::internal {

// Appends to `out`, in order, the payloads of the data records in the `staged_bytes` staged after the last
// published record of the ring `control` / `data[0, capacity)` (`capacity` a valid ring capacity, records
// at most `max_message_bytes`). True if the whole batch read back; false if it did not (the messages before
// the first bad record are in `out`).
bool CopyStagedMessages(const RingControl& control, const std::byte* data, std::uint64_t capacity,
                        std::uint64_t staged_bytes, std::uint64_t max_message_bytes,
                        std::vector<std::vector<std::byte>>* out);

}  // namespace eshm::internal

#endif  // ESHM_INTERNAL_STAGED_MESSAGES_H_
