// One eshm-bridge: a local channel joined to a far bridge's over a Link, with the protocol of
// docs/bridge.md (sequence numbers, cumulative acknowledgements, a bounded window in a WindowFile, replay
// after reconnection, liveness in STATUS frames). One loop thread does all the work; a watcher thread only
// wakes it when ZeroMQ has news (docs/bridge.md section 1, "Waiting").
#ifndef ESHM_TOOLS_BRIDGE_BRIDGE_H_
#define ESHM_TOOLS_BRIDGE_BRIDGE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "eshm/channel.h"
#include "eshm/wait_set.h"
#include "tools/bridge/frame.h"
#include "tools/bridge/link.h"
#include "tools/bridge/window_file.h"

namespace eshm::bridge {

struct BridgeOptions {
  std::string name;                   // the local channel
  ChannelOptions channel;             // its options (role: the one the local application does not hold)
  LinkOptions link;
  std::string state_file;             // the WindowFile
  std::uint64_t window_bytes = 8 << 20;
  int heartbeat_ms = 100;             // STATUS at least this often
  int link_timeout_ms = 1000;         // no frame for this long: the link is down
  int retransmit_ms = 500;            // unacknowledged data with no progress for this long is sent again
};

// What a bridge counted, for its exit line and for tests.
struct BridgeCounters {
  std::uint64_t messages_out = 0;        // taken from the local ring into the window
  std::uint64_t messages_in = 0;         // written into the local ring
  std::uint64_t frames_sent = 0;         // DATA frames, replays included
  std::uint64_t replays = 0;             // times the send cursor went back
  std::uint64_t duplicates_dropped = 0;  // DATA already accepted
  std::uint64_t gaps = 0;                // DATA beyond the next expected one
  std::uint64_t invalid_frames = 0;      // refused by the decoder or by the protocol
};

class Bridge {
 public:
  // Opens the state file, the local channel (waiting for a master, when the bridge is the slave, until
  // `stop`) and the link.
  static absl::StatusOr<std::unique_ptr<Bridge>> Open(const BridgeOptions& options, const std::atomic<bool>& stop);

  // Runs until `stop` becomes true (OK) or something the bridge cannot go on with (the error says what).
  absl::Status Run(const std::atomic<bool>& stop);

  ~Bridge();  // out of line: LinkWatcher is complete only in bridge.cc
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  const BridgeCounters& counters() const { return counters_; }
  const std::string& link_endpoint() const { return link_->endpoint(); }

 private:
  struct Pending {
    std::uint64_t seq;
    std::vector<std::byte> payload;
  };

  class LinkWatcher;

  explicit Bridge(const BridgeOptions& options, WindowFile window);
  // Sleeps until the local channel or the link needs the loop, or the next timer is due (docs/bridge.md
  // section 1, "Waiting").
  absl::Status Sleep(const std::atomic<bool>& stop, std::int64_t now_ns);
  // What the loop waits for on the local channel: a message to take (unless the window is full), room for
  // the next pending message.
  absl::Status UpdateInterest();

  // Each step returns true if it did something (the loop then does not sleep).
  absl::StatusOr<bool> ReceiveFrames(std::int64_t now_ns);
  absl::Status HandleStatus(const StatusFrame& status, std::int64_t now_ns);
  absl::Status HandleData(const DataFrame& data);
  absl::StatusOr<bool> DeliverPending();
  absl::StatusOr<bool> IngestLocal();
  absl::StatusOr<bool> SendWindow();
  bool SendStatus(std::int64_t now_ns);
  void CheckTimers(std::int64_t now_ns);
  void OnConnection();
  // Where sending resumes when frames were lost: the first message the far bridge has not accepted.
  std::uint64_t ResumeSeq() const;
  // Listening side: whether a valid frame from a routing id other than the current far bridge's may take
  // the link over (a restarted far bridge may; a second far bridge while the first is live may not).
  bool MayTakeOver(const Frame& frame) const;
  // IoResult of a local-ring write: OK, or an error for results the bridge cannot go on with.
  absl::Status WriteResultError(IoResult result, std::uint64_t seq);
  void Log(const std::string& line) const;

  BridgeOptions options_;
  WindowFile window_;
  std::unique_ptr<Channel> channel_;
  std::unique_ptr<Link> link_;
  std::uint64_t max_message_bytes_ = 0;

  // Outgoing.
  std::uint64_t send_seq_ = 1;         // the next window entry to send
  bool far_adopted_ = false;           // the far bridge acknowledges our stream: DATA may go
  std::uint64_t far_accepted_ = 0;     // the far bridge has received our stream in order up to here
  std::int64_t last_accept_progress_ns_ = 0;
  std::vector<std::byte> scratch_;     // one message read back from the window

  // Incoming.
  std::uint64_t accepted_seq_ = 0;     // delivered, or queued in pending_
  std::deque<Pending> pending_;        // accepted, waiting for room in the local ring
  std::uint64_t pending_bytes_ = 0;
  bool dropped_for_room_ = false;      // a frame was refused for lack of queue room: ask again once it drains

  // Link and liveness.
  bool link_up_ = false;
  std::int64_t last_frame_ns_ = 0;
  std::int64_t last_status_sent_ns_ = 0;
  std::int64_t last_status_try_ns_ = 0;  // the last STATUS attempt, refused or not
  std::int64_t last_resend_request_ns_ = 0;
  bool ack_dirty_ = true;              // the acknowledgement changed since the last STATUS
  bool resend_wanted_ = false;         // ask the far bridge to send again from our acknowledgement
  int far_app_state_ = -1;             // PeerState of the far application; -1 unknown
  int last_sent_app_state_ = -1;       // the local application's state in our last STATUS
  std::int64_t last_invalid_log_ns_ = 0;

  BridgeCounters counters_;

  // Waiting. Declared last, destroyed first: the watcher uses the set and the link's descriptors, the set
  // its member channel.
  bool window_full_ = false;           // IngestLocal left a message in the ring for want of window room
  unsigned interest_ = 0;              // the channel's WaitSet interest now (0: not a member)
  std::size_t write_size_ = 0;         // with kWritable: the size of the pending message that must fit
  std::vector<WaitSet::Ready> ready_;
  std::unique_ptr<WaitSet> wait_set_;
  std::unique_ptr<LinkWatcher> watcher_;
};

}  // namespace eshm::bridge

#endif  // ESHM_TOOLS_BRIDGE_BRIDGE_H_
