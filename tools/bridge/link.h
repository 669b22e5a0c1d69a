// The ZeroMQ socket between two bridges. The listening side is a ROUTER bound to one explicit address; it
// talks to the one far bridge that last sent it a valid frame (a restarted far bridge arrives as a new
// routing id and takes over). The connecting side is a DEALER that ZeroMQ reconnects by itself. Either way
// ZeroMQ only moves frames: it may drop what was queued on a connection that broke, which the bridge's
// sequence numbers repair (docs/bridge.md).
#ifndef ESHM_TOOLS_BRIDGE_LINK_H_
#define ESHM_TOOLS_BRIDGE_LINK_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "absl/status/statusor.h"

namespace eshm::bridge {

struct LinkOptions {
  std::string endpoint;  // tcp://ADDRESS:PORT
  bool listen = false;   // bind (ROUTER) rather than connect (DEALER)
  bool allow_insecure_remote = false;
  // CURVE: this side's secret key; on the connecting side also the listening side's public key. Files of
  // Z85 text (40 characters), as zmq_curve_keypair writes them.
  std::string curve_secret_key_file;
  std::string curve_server_key_file;
  // Listening side with CURVE: the client public keys allowed to connect, one Z85 key per line (blank lines
  // and lines starting with "# " are ignored). Required there: CURVE without it is refused at start.
  std::string curve_allowed_clients_file;
  int high_water_mark = 1000;        // frames queued per direction
  std::uint64_t max_frame_bytes = 0; // larger frames are refused by ZeroMQ itself (bounded memory)
  // Where the link reports what the bridge operator should see (a refused client); stderr if empty.
  std::function<void(const std::string&)> log;
};

// Reads and checks every key file `options` names, and the combination of CURVE flags, without opening
// anything: the bridge calls it before it creates its state file or channel.
absl::Status CheckCurveOptions(const LinkOptions& options);

// The 32-byte client keys of a --curve_allowed_clients file; an error naming the file (and line) if it
// cannot be read, holds something that is not a key, or holds no key.
absl::StatusOr<std::set<std::string>> ReadAllowedClients(const std::string& path);

class Link {
 public:
  struct Received {
    zmq::message_t frame;
    std::string peer;  // the routing id it came from (listening side; empty when connecting)
  };

  static absl::StatusOr<std::unique_ptr<Link>> Open(const LinkOptions& options);

  // The address actually bound or connected (a listening "*" port resolved).
  const std::string& endpoint() const { return endpoint_; }

  // Sends `header` followed by `payload` as one frame without waiting. False when it cannot go now: no far
  // bridge known (listening), not connected, or ZeroMQ's queue is full.
  bool Send(std::span<const std::byte> header, std::span<const std::byte> payload = {});
  // The next frame, if one is waiting.
  std::optional<Received> TryReceive();
  // For waiting on the link from another thread without touching its sockets (ZeroMQ sockets are not
  // thread-safe): the sockets' ZMQ_FD descriptors. One becomes readable when ZeroMQ has news for its socket
  // (a frame, a connection, room in a full queue) that Events() has not yet taken in; it is not readable
  // merely because frames are queued.
  std::vector<int> NotificationFds();
  // The bridge's thread, before it sleeps: takes in ZeroMQ's news (so that the descriptors signal anything
  // later) and returns ZMQ_EVENTS of the link's socket, with ZMQ_POLLIN also when an authentication request
  // waits (it is answered by the next TryReceive).
  int Events();
  // Whether ZeroMQ itself refused a Send (its queue full, not connected) since the last call: the bridge
  // must look again when the socket can take frames.
  bool TakeSendRefused() {
    const bool refused = send_refused_;
    send_refused_ = false;
    return refused;
  }
  // Listening side: talk to `peer` from now on (it sent a valid frame). True if it is a new peer.
  bool SetPeer(const std::string& peer);
  // Listening side: forget the current peer (it fell silent); connecting side: nothing to forget.
  void ForgetPeer() { peer_.clear(); }
  bool listening() const { return listen_; }
  // Listening side: the current far bridge's routing id (empty: none).
  const std::string& peer() const { return peer_; }

 private:
  Link() = default;

  // Answers the ZAP requests waiting on zap_ (listening side with CURVE): each connecting client's key is
  // looked up in allowed_clients_. Run on the bridge's thread, from TryReceive, so the
  // handshake of a connecting bridge waits at most one loop turn.
  void ServeAuthentication();

  zmq::context_t context_{1};
  zmq::socket_t socket_;
  zmq::socket_t zap_;  // bound to inproc://zeromq.zap.01 before socket_ binds; empty when not listening with CURVE
  std::set<std::string> allowed_clients_;
  std::function<void(const std::string&)> log_;
  std::map<std::string, std::int64_t> refusal_logged_ns_;  // per refused key: when it was last logged
  bool listen_ = false;
  std::string endpoint_;
  std::string peer_;  // listening side: the far bridge's routing id
  bool send_refused_ = false;
};

}  // namespace eshm::bridge

#endif  // ESHM_TOOLS_BRIDGE_LINK_H_
