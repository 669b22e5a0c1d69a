#include "tools/bridge/bridge.h"

#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <thread>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "eshm/deadline.h"
#include "tools/bridge/crc32c.h"
#include "tools/bridge/endpoint.h"

namespace eshm::bridge {
namespace {

// At most this many frames are taken from the socket per loop turn, so that the local ring is served too.
constexpr int kMaxFramesPerTurn = 256;
// At most this many messages move from the local ring into the window per loop turn, for the same reason.
constexpr int kMaxIngestPerTurn = 256;
// A gap asks for a resend at most this often: the replay it triggers needs a moment to arrive.
constexpr std::int64_t kResendRequestIntervalNs = 20'000'000;
// Invalid frames are logged at most this often (a hostile peer must not flood the log).
constexpr std::int64_t kInvalidLogIntervalNs = 1'000'000'000;

std::int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::string AppStateName(int state) {
  return state < 0 ? "unknown (link down)" : PeerStateName(static_cast<PeerState>(state));
}

// While ZeroMQ refuses frames but says its socket can take some (a ROUTER says so for any far bridge's
// queue, not only ours), the loop looks again this often rather than sleeping until a timer.
constexpr std::int64_t kSendRetryNs = 1'000'000;

}  // namespace

// Wakes the loop's WaitSet when the link has news. The loop sleeps in WaitSet::Wait, which watches the
// local channel's rings but no file descriptor; this thread sleeps in epoll_wait on ZeroMQ's notification
// descriptors for it. It never touches a ZeroMQ socket or the channel (neither is thread-safe): it only
// waits on descriptors and calls WaitSet::Wake, which any thread may.
//
// Why no news is lost. ZeroMQ signals a socket's notification descriptor (ZMQ_FD) whenever it posts news
// for the socket (a frame after the socket found its queue empty, a connection, room in a full queue) to
// a socket whose thread has taken in all earlier news; taking news in (ZMQ_EVENTS) is what re-enables the
// signal. The loop, before every sleep, calls Link::Events(), taking in all news, and does not sleep if it
// shows a frame; then it sleeps in Wait. The descriptors are registered edge-triggered, so every signal
// after that call is one epoll event, whether or not the descriptor was still readable from an earlier
// one, and each event makes this thread call Wake(): that ends the Wait in progress or, if the loop is not
// in it yet, the next one (WaitSet keeps the request). A signal while the loop is busy costs at most one
// extra loop turn; the thread never spins, as an edge comes only with new news.
class Bridge::LinkWatcher {
 public:
  LinkWatcher(const std::vector<int>& fds, WaitSet* set) : set_(set) {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (epoll_fd_ < 0 || stop_fd_ < 0) return;
    epoll_event stop{};
    stop.events = EPOLLIN;
    stop.data.fd = stop_fd_;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, stop_fd_, &stop) != 0) return;
    for (int fd : fds) {
      epoll_event news{};
      news.events = EPOLLIN | EPOLLET;
      news.data.fd = fd;
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &news) != 0) return;
    }
    thread_ = std::thread([this] { Run(); });
  }
  LinkWatcher(const LinkWatcher&) = delete;
  LinkWatcher& operator=(const LinkWatcher&) = delete;
  ~LinkWatcher() {
    if (thread_.joinable()) {
      const std::uint64_t one = 1;
      [[maybe_unused]] const ssize_t n = write(stop_fd_, &one, sizeof one);  // ends its epoll_wait
      thread_.join();
    }
    if (stop_fd_ >= 0) close(stop_fd_);
    if (epoll_fd_ >= 0) close(epoll_fd_);
  }
  bool ok() const { return thread_.joinable(); }

 private:
  void Run() {
    epoll_event events[4];
    while (true) {
      const int n = epoll_wait(epoll_fd_, events, 4, -1);
      if (n < 0) {
        if (errno == EINTR) continue;  // a signal (the bridge's own SIGTERM may land on this thread)
        set_->Wake();                  // cannot happen with valid descriptors; the loop's timers go on
        return;
      }
      bool news = false;
      for (int i = 0; i < n; ++i) {
        if (events[i].data.fd == stop_fd_) return;
        news = true;
      }
      if (news) set_->Wake();
    }
  }

  WaitSet* const set_;
  int epoll_fd_ = -1;
  int stop_fd_ = -1;
  std::thread thread_;
};

Bridge::Bridge(const BridgeOptions& options, WindowFile window) : options_(options), window_(std::move(window)) {}

Bridge::~Bridge() {
  watcher_.reset();   // first: it wakes the set and waits on the link's descriptors
  wait_set_.reset();  // then the set, which must leave its member channel before that closes
}

absl::StatusOr<std::unique_ptr<Bridge>> Bridge::Open(const BridgeOptions& options, const std::atomic<bool>& stop) {
  if (options.channel.role == ChannelRole::kAuto) {
    return absl::InvalidArgumentError("a bridge takes the role its local application does not: --role=master or --role=slave");
  }
  // The address policy first: a refused address must not wait for a master or create anything.
  absl::StatusOr<TcpEndpoint> endpoint = ParseTcpEndpoint(options.link.endpoint, options.link.listen);
  if (!endpoint.ok()) return endpoint.status();
  absl::Status policy = CheckEndpointPolicy(*endpoint, !options.link.curve_secret_key_file.empty(),
                                            options.link.allow_insecure_remote);
  if (!policy.ok()) return policy;
  // Key files and the allowed-clients list too: a bad one must not leave a state file or channel behind.
  absl::Status curve = CheckCurveOptions(options.link);
  if (!curve.ok()) return curve;
  absl::StatusOr<WindowFile> window = WindowFile::Open(options.state_file, options.window_bytes);
  if (!window.ok()) return window.status();
  std::unique_ptr<Bridge> bridge(new Bridge(options, *std::move(window)));
  if (bridge->window_.created()) {
    bridge->Log(absl::StrCat("new stream ", absl::Hex(bridge->window_.stream_id()), " in ", options.state_file));
  } else {
    bridge->Log(absl::StrCat("resuming stream ", absl::Hex(bridge->window_.stream_id()), " from ", options.state_file,
                             ": ", bridge->window_.entries().size(), " unacknowledged messages, far stream ",
                             absl::Hex(bridge->window_.far_stream_id()), " delivered up to ",
                             bridge->window_.far_delivered_seq()));
  }

  ChannelOptions channel_options = options.channel;
  channel_options.wait_check = [&stop]() -> absl::Status {
    return stop.load(std::memory_order_relaxed) ? absl::CancelledError("stopped by a signal") : absl::OkStatus();
  };
  absl::StatusOr<std::unique_ptr<Channel>> channel = Channel::Open(options.name, channel_options);
  if (!channel.ok()) return channel.status();
  bridge->channel_ = *std::move(channel);
  // The local application's peer is the far application, which nobody has seen yet.
  bridge->channel_->SetRepresentedPeerState(PeerState::kAbsent);
  bridge->max_message_bytes_ = bridge->channel_->max_message_bytes();
  if (WindowFile::RecordBytes(bridge->max_message_bytes_) > bridge->window_.capacity()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the window (", bridge->window_.capacity(), " bytes in ", options.state_file,
        ") cannot hold the local channel's largest message (", bridge->max_message_bytes_,
        " bytes): give a larger --window_bytes (and move the state file away once it is empty)"));
  }
  bridge->scratch_.resize(bridge->max_message_bytes_);

  LinkOptions link_options = options.link;
  link_options.max_frame_bytes = bridge->max_message_bytes_ + kDataHeaderBytes;
  link_options.log = [b = bridge.get()](const std::string& line) { b->Log(line); };
  absl::StatusOr<std::unique_ptr<Link>> link = Link::Open(link_options);
  if (!link.ok()) return link.status();
  bridge->link_ = *std::move(link);

  bridge->send_seq_ = bridge->window_.oldest_seq();
  bridge->accepted_seq_ = bridge->window_.far_delivered_seq();

  // The channel's spin budget, but no sched_yield phase: with the yields, a round trip through a bridge
  // pair whose applications spin on both CPUs took 4.0 ms instead of 0.14 ms (eshm-bench --compare=bridge
  // --wait=spin, 2 CPUs). Each yield most likely pushes the thread's scheduling deadline back, so that
  // when its wake came it could not preempt the spinning processes until a scheduler tick.
  WaitStrategy strategy = options.channel.wait;
  strategy.yield_ns = 0;
  bridge->wait_set_ = std::make_unique<WaitSet>(strategy);
  absl::Status interest = bridge->UpdateInterest();
  if (!interest.ok()) return interest;
  bridge->watcher_ = std::make_unique<LinkWatcher>(bridge->link_->NotificationFds(), bridge->wait_set_.get());
  if (!bridge->watcher_->ok()) return absl::InternalError("cannot start the bridge's link watcher (epoll or eventfd failed)");
  return bridge;
}

void Bridge::Log(const std::string& line) const {
  fprintf(stderr, "eshm-bridge[%s]: %s\n", options_.name.c_str(), line.c_str());
}

absl::Status Bridge::Run(const std::atomic<bool>& stop) {
  // relaxed: the flag only asks the loop to end; it guards no data.
  while (!stop.load(std::memory_order_relaxed)) {
    const std::int64_t now = NowNs();
    absl::StatusOr<bool> received = ReceiveFrames(now);
    if (!received.ok()) return received.status();
    absl::StatusOr<bool> delivered = DeliverPending();
    if (!delivered.ok()) return delivered.status();
    absl::StatusOr<bool> ingested = IngestLocal();
    if (!ingested.ok()) return ingested.status();
    absl::StatusOr<bool> sent = SendWindow();
    if (!sent.ok()) return sent.status();
    const bool status_sent = SendStatus(now);
    CheckTimers(now);
    if (!*received && !*delivered && !*ingested && !*sent && !status_sent) {
      absl::Status slept = Sleep(stop, now);
      if (!slept.ok()) return slept;
    }
  }
  return absl::OkStatus();
}

absl::Status Bridge::UpdateInterest() {
  unsigned interest = 0;
  // A full window leaves the next message in the ring: waiting for it to be readable would never sleep.
  // Room in the window comes from an acknowledgement, which the link brings.
  if (!window_full_) interest |= WaitSet::kReadable;
  const std::size_t write_size = pending_.empty() ? 0 : std::max<std::size_t>(1, pending_.front().payload.size());
  if (write_size != 0) interest |= WaitSet::kWritable;
  if (interest == interest_ && write_size == write_size_) return absl::OkStatus();
  if (interest_ != 0) {
    absl::Status removed = wait_set_->Remove(channel_.get());
    if (!removed.ok()) return removed;
  }
  interest_ = 0;
  write_size_ = 0;
  if (interest != 0) {
    absl::Status added = wait_set_->Add(channel_.get(), interest, std::max<std::size_t>(1, write_size));
    if (!added.ok()) return added;
    interest_ = interest;
    write_size_ = write_size;
  }
  return absl::OkStatus();
}

absl::Status Bridge::Sleep(const std::atomic<bool>& stop, std::int64_t now_ns) {
  absl::Status interest = UpdateInterest();
  if (!interest.ok()) return interest;
  // Take in the link's news (so that ZeroMQ signals anything later: see LinkWatcher); a frame (or an
  // authentication request) that came meanwhile is served now.
  const int events = link_->Events();
  if ((events & ZMQ_POLLIN) != 0) return absl::OkStatus();
  // The next timer: a heartbeat, the link timeout, a retransmission, a resend request.
  const std::int64_t heartbeat_ns = std::int64_t{options_.heartbeat_ms} * 1'000'000;
  std::int64_t wake_ns = last_status_sent_ns_ + heartbeat_ns;
  if (resend_wanted_) wake_ns = std::min(wake_ns, last_resend_request_ns_ + kResendRequestIntervalNs);
  // A STATUS the link refused (not connected, no far bridge known, ZeroMQ's queue full) is not retried in
  // a spin: the watcher wakes the loop when ZeroMQ connects or has room, else the next heartbeat retries.
  if (last_status_try_ns_ > last_status_sent_ns_) wake_ns = std::max(wake_ns, last_status_try_ns_ + heartbeat_ns);
  if (link_up_) wake_ns = std::min(wake_ns, last_frame_ns_ + std::int64_t{options_.link_timeout_ms} * 1'000'000 + 1);
  if (send_seq_ > ResumeSeq()) {
    wake_ns = std::min(wake_ns, last_accept_progress_ns_ + std::int64_t{options_.retransmit_ms} * 1'000'000 + 1);
  }
  // A refused send is retried when ZeroMQ has room (its descriptor signals that), except that a ROUTER's
  // POLLOUT does not say which far bridge has room: then poll as the loop did before it could wait.
  if (link_->TakeSendRefused() && (events & ZMQ_POLLOUT) != 0) wake_ns = std::min(wake_ns, now_ns + kSendRetryNs);
  if (wake_ns <= NowNs()) return absl::OkStatus();
  // With no room in the window and nothing pending the channel is not a member: its application's
  // state changes then go out with the next heartbeat rather than at once.
  absl::Status waited = wait_set_->Wait(Deadline::AtMonotonicNs(wake_ns), &ready_, [&stop]() -> absl::Status {
    return stop.load(std::memory_order_relaxed) ? absl::CancelledError("stopped") : absl::OkStatus();
  });
  if (absl::IsCancelled(waited)) return absl::OkStatus();  // the loop looks at the flag
  return waited;
}

absl::StatusOr<bool> Bridge::ReceiveFrames(std::int64_t now_ns) {
  bool any = false;
  for (int i = 0; i < kMaxFramesPerTurn; ++i) {
    std::optional<Link::Received> received = link_->TryReceive();
    if (!received.has_value()) break;
    any = true;
    const std::span<const std::byte> bytes(static_cast<const std::byte*>(received->frame.data()),
                                           received->frame.size());
    absl::StatusOr<Frame> frame = DecodeFrame(bytes, max_message_bytes_);
    if (!frame.ok()) {
      ++counters_.invalid_frames;
      if (now_ns - last_invalid_log_ns_ >= kInvalidLogIntervalNs) {
        last_invalid_log_ns_ = now_ns;
        Log(absl::StrCat("dropped an invalid frame from the far side (", counters_.invalid_frames,
                         " so far): ", frame.status().ToString()));
      }
      continue;
    }
    if (link_->listening() && received->peer != link_->peer() && !MayTakeOver(*frame)) {
      ++counters_.invalid_frames;
      if (now_ns - last_invalid_log_ns_ >= kInvalidLogIntervalNs) {
        last_invalid_log_ns_ = now_ns;
        Log("refused frames from a second far bridge while the current one is live (one far bridge per link)");
      }
      continue;
    }
    // Only a valid frame makes its sender the far bridge (listening side) or brings the link up.
    const bool new_peer = link_->SetPeer(received->peer);
    last_frame_ns_ = now_ns;
    if (!link_up_ || new_peer) {
      link_up_ = true;
      Log(new_peer ? "link up (a far bridge connected)" : "link up");
      OnConnection();
    }
    absl::Status handled = std::holds_alternative<StatusFrame>(*frame)
                               ? HandleStatus(std::get<StatusFrame>(*frame), now_ns)
                               : HandleData(std::get<DataFrame>(*frame));
    if (!handled.ok()) return handled;
  }
  return any;
}

bool Bridge::MayTakeOver(const Frame& frame) const {
  if (!link_up_ || link_->peer().empty()) return true;
  // The same stream from a new connection: the far bridge restarted (its state file kept) or reconnected.
  const auto* status = std::get_if<StatusFrame>(&frame);
  return status != nullptr && status->stream_id == window_.far_stream_id();
}

std::uint64_t Bridge::ResumeSeq() const { return std::max(window_.oldest_seq(), far_accepted_ + 1); }

void Bridge::OnConnection() {
  // Whatever was in flight on the previous connection may be gone: send again from the acknowledgement,
  // and ask the far side to do the same.
  if (send_seq_ != window_.oldest_seq()) ++counters_.replays;
  send_seq_ = window_.oldest_seq();
  resend_wanted_ = true;
  ack_dirty_ = true;
  far_adopted_ = false;
  far_accepted_ = 0;  // unknown until its next STATUS
}

absl::Status Bridge::HandleStatus(const StatusFrame& status, std::int64_t now_ns) {
  if (status.app_state != far_app_state_) {
    Log(absl::StrCat("far application: ", AppStateName(status.app_state)));
    far_app_state_ = status.app_state;
    // The local application sees it as its peer's state (DecodeStatus admits only PeerState values).
    channel_->SetRepresentedPeerState(static_cast<PeerState>(status.app_state));
  }
  // Incoming: adopt the far stream, or notice that messages it no longer holds never reached us.
  if (status.stream_id != window_.far_stream_id()) {
    if (window_.far_stream_id() != 0) {
      Log(absl::StrCat("the far bridge started a new stream ", absl::Hex(status.stream_id), " (its state file was re-created):",
                       " messages of its old stream ", absl::Hex(window_.far_stream_id()), " after ",
                       window_.far_delivered_seq(), " that it had not delivered are lost"));
    }
    window_.AdoptFarStream(status.stream_id, status.oldest_seq - 1);
    accepted_seq_ = status.oldest_seq - 1;
    pending_.clear();
    pending_bytes_ = 0;
    ack_dirty_ = true;
  } else if (window_.far_delivered_seq() + 1 < status.oldest_seq) {
    Log(absl::StrCat("LOST: messages ", window_.far_delivered_seq() + 1, " to ", status.oldest_seq - 1,
                     " of the far stream were acknowledged to the far bridge but are not in this side's ring (was ",
                     options_.state_file, " replaced?)"));
    window_.AdoptFarStream(status.stream_id, status.oldest_seq - 1);
    accepted_seq_ = status.oldest_seq - 1;
    pending_.clear();
    pending_bytes_ = 0;
    ack_dirty_ = true;
  }
  // Outgoing: the far side's acknowledgement of our stream.
  if (status.acked_stream_id != window_.stream_id()) {
    far_adopted_ = false;  // it will adopt our stream from our next STATUS
    ack_dirty_ = true;
    return absl::OkStatus();
  }
  if (status.accepted_seq >= window_.next_seq()) {
    ++counters_.invalid_frames;
    Log(absl::StrCat("dropped a STATUS acknowledging message ", status.accepted_seq, ", which was never sent (next is ",
                     window_.next_seq(), ")"));
    return absl::OkStatus();
  }
  far_adopted_ = true;
  if (status.delivered_seq >= window_.oldest_seq()) window_.Acknowledge(status.delivered_seq);
  if (status.accepted_seq > far_accepted_) last_accept_progress_ns_ = now_ns;
  // Fewer accepted than before: the far bridge lost the frames it held for its ring (it restarted).
  const bool receiver_forgot = status.accepted_seq < far_accepted_;
  far_accepted_ = status.accepted_seq;
  if ((status.resend || receiver_forgot) && send_seq_ > ResumeSeq()) {
    ++counters_.replays;
    send_seq_ = ResumeSeq();
  }
  if (send_seq_ < window_.oldest_seq()) send_seq_ = window_.oldest_seq();
  return absl::OkStatus();
}

absl::Status Bridge::HandleData(const DataFrame& data) {
  if (data.stream_id != window_.far_stream_id()) {
    ++counters_.invalid_frames;  // a stream not adopted (yet): its STATUS comes first
    return absl::OkStatus();
  }
  if (data.seq <= accepted_seq_) {
    ++counters_.duplicates_dropped;
    ack_dirty_ = true;  // the sender may have missed our acknowledgement
    return absl::OkStatus();
  }
  if (data.seq > accepted_seq_ + 1) {
    ++counters_.gaps;
    // Frames refused for lack of room are asked for once the queue drains (DeliverPending), not now.
    if (!dropped_for_room_) resend_wanted_ = true;
    return absl::OkStatus();
  }
  if (pending_.empty()) {
    const IoResult result = channel_->TryWrite(data.payload);
    if (result == IoResult::kOk) {
      window_.SetDelivered(data.seq);
      accepted_seq_ = data.seq;
      ++counters_.messages_in;
      ack_dirty_ = true;
      return absl::OkStatus();
    }
    if (result != IoResult::kWouldBlock && result != IoResult::kPeerGone && result != IoResult::kLost) {
      return WriteResultError(result, data.seq);
    }
  }
  if (pending_bytes_ + data.payload.size() > options_.window_bytes) {
    dropped_for_room_ = true;  // not accepted: asked for again once the ring drains
    return absl::OkStatus();
  }
  pending_.push_back(Pending{data.seq, std::vector<std::byte>(data.payload.begin(), data.payload.end())});
  pending_bytes_ += data.payload.size();
  accepted_seq_ = data.seq;
  return absl::OkStatus();
}

absl::Status Bridge::WriteResultError(IoResult result, std::uint64_t seq) {
  return absl::Status(channel_->StatusOf(result).code(),
                      absl::StrCat("writing message ", seq, " of the far stream into channel '", options_.name,
                                   "': ", channel_->StatusOf(result).message(),
                                   result == IoResult::kTooLarge
                                       ? " (give both channels the same max_message_bytes; the message stays in the "
                                         "far bridge's window)"
                                       : ""));
}

absl::StatusOr<bool> Bridge::DeliverPending() {
  bool any = false;
  while (!pending_.empty()) {
    Pending& next = pending_.front();
    const IoResult result = channel_->TryWrite(next.payload);
    if (result == IoResult::kWouldBlock || result == IoResult::kPeerGone || result == IoResult::kLost) break;
    if (result != IoResult::kOk) return WriteResultError(result, next.seq);
    window_.SetDelivered(next.seq);
    ++counters_.messages_in;
    pending_bytes_ -= next.payload.size();
    pending_.pop_front();
    ack_dirty_ = true;
    any = true;
  }
  if (dropped_for_room_ && pending_bytes_ <= options_.window_bytes / 2) {
    dropped_for_room_ = false;
    resend_wanted_ = true;
  }
  return any;
}

absl::StatusOr<bool> Bridge::IngestLocal() {
  bool any = false;
  window_full_ = false;
  for (int i = 0; i < kMaxIngestPerTurn; ++i) {
    std::span<const std::byte> message;
    const IoResult peeked = channel_->TryPeek(&message);
    if (peeked == IoResult::kWouldBlock || peeked == IoResult::kPeerGone) break;
    if (peeked != IoResult::kOk) {
      return absl::Status(channel_->StatusOf(peeked).code(),
                          absl::StrCat("reading channel '", options_.name, "': ", channel_->StatusOf(peeked).message()));
    }
    // Backpressure: a full window leaves the message in the ring (peeked again once an acknowledgement
    // makes room).
    if (!window_.Fits(message.size())) {
      window_full_ = true;
      break;
    }
    window_full_ = false;
    // The view lies in shared memory: copy first, then trust the copy only once Release() says the segment
    // was intact meanwhile (channel.h). The window is the copy; a record whose Release fails is never sent
    // because the bridge stops.
    window_.Append(message, Crc32c(message));
    const IoResult released = channel_->Release();
    if (released != IoResult::kOk) {
      return absl::Status(channel_->StatusOf(released).code(),
                          absl::StrCat("releasing a message of channel '", options_.name,
                                       "': ", channel_->StatusOf(released).message()));
    }
    ++counters_.messages_out;
    any = true;
  }
  return any;
}

absl::StatusOr<bool> Bridge::SendWindow() {
  if (!link_up_ || !far_adopted_) return false;
  bool any = false;
  // Everything sent had been accepted: the retransmission timer starts with this send.
  if (send_seq_ == ResumeSeq() && send_seq_ < window_.next_seq()) last_accept_progress_ns_ = NowNs();
  const std::deque<WindowFile::Entry>& entries = window_.entries();
  while (send_seq_ < window_.next_seq()) {
    const WindowFile::Entry& entry = entries[send_seq_ - entries.front().seq];
    absl::Status read = window_.Read(entry, scratch_);
    if (!read.ok()) return read;  // the file was damaged under us: never send what the checksum refuses
    const auto header = EncodeDataHeader(window_.stream_id(), entry.seq, entry.length, entry.crc);
    if (!link_->Send(header, std::span<const std::byte>(scratch_).first(entry.length))) break;
    ++send_seq_;
    ++counters_.frames_sent;
    any = true;
  }
  return any;
}

bool Bridge::SendStatus(std::int64_t now_ns) {
  const bool due = now_ns - last_status_sent_ns_ >= std::int64_t{options_.heartbeat_ms} * 1'000'000;
  // A change of the local application's state goes out at once: the far application learns of a death
  // within a loop turn, not a heartbeat (and a quick restart is less likely to go unseen).
  const int app_state = static_cast<int>(channel_->peer_state());
  const bool app_changed = app_state != last_sent_app_state_;
  bool resend = false;
  if (resend_wanted_ && now_ns - last_resend_request_ns_ >= kResendRequestIntervalNs) resend = true;
  if (!due && !ack_dirty_ && !resend && !app_changed) return false;
  StatusFrame status;
  status.stream_id = window_.stream_id();
  status.resend = resend;
  status.oldest_seq = window_.oldest_seq();
  status.next_seq = window_.next_seq();
  status.acked_stream_id = window_.far_stream_id();
  status.delivered_seq = window_.far_delivered_seq();
  status.accepted_seq = accepted_seq_;
  status.app_state = static_cast<std::uint8_t>(app_state);
  last_status_try_ns_ = now_ns;
  if (!link_->Send(EncodeStatus(status))) return false;
  last_status_sent_ns_ = now_ns;
  last_sent_app_state_ = app_state;
  ack_dirty_ = false;
  if (resend) {
    resend_wanted_ = false;
    last_resend_request_ns_ = now_ns;
  }
  return true;
}

void Bridge::CheckTimers(std::int64_t now_ns) {
  if (link_up_ && now_ns - last_frame_ns_ > std::int64_t{options_.link_timeout_ms} * 1'000'000) {
    link_up_ = false;
    far_adopted_ = false;
    link_->ForgetPeer();
    Log(absl::StrCat("link down: nothing from the far bridge for ", options_.link_timeout_ms, " ms"));
    if (far_app_state_ != -1) {
      far_app_state_ = -1;
      Log(absl::StrCat("far application: ", AppStateName(far_app_state_)));
      // Unknown: it may be fine behind a cut link, so not kDead; but nothing it sends arrives now.
      channel_->SetRepresentedPeerState(PeerState::kUnresponsive);
    }
  }
  // Sent but not accepted, with no progress: frames (or the STATUS saying they arrived) were lost. Frames
  // accepted and waiting for room in a full far ring are not sent again: backpressure costs no bandwidth.
  if (send_seq_ > ResumeSeq() && now_ns - last_accept_progress_ns_ > std::int64_t{options_.retransmit_ms} * 1'000'000) {
    ++counters_.replays;
    send_seq_ = ResumeSeq();
    last_accept_progress_ns_ = now_ns;
  }
}

}  // namespace eshm::bridge
