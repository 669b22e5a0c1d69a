#include "tools/bridge/link.h"

#include <errno.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "tools/bridge/endpoint.h"

namespace eshm::bridge {
namespace {

constexpr std::size_t kZ85KeyChars = 40;

absl::StatusOr<std::string> ReadKeyFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read the CURVE ", what, " key file ", path, ": ",
                                            strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string key(absl::StripAsciiWhitespace(text.str()));
  if (key.size() != kZ85KeyChars) {
    return absl::InvalidArgumentError(absl::StrCat("the CURVE ", what, " key file ", path, " holds ", key.size(),
                                                   " characters; a key is ", kZ85KeyChars,
                                                   " characters of Z85 text (zmq_curve_keypair)"));
  }
  std::uint8_t decoded[32];
  if (zmq_z85_decode(decoded, key.c_str()) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("the CURVE ", what, " key file ", path, " is not Z85 text"));
  }
  return key;
}

absl::Status ConfigureCurve(zmq::socket_t& socket, const LinkOptions& options) {
  if (!zmq_has("curve")) {
    return absl::FailedPreconditionError("this libzmq was built without CURVE; install Debian's libzmq3-dev");
  }
  absl::StatusOr<std::string> secret = ReadKeyFile(options.curve_secret_key_file, "secret");
  if (!secret.ok()) return secret.status();
  char public_key[kZ85KeyChars + 1];
  if (zmq_curve_public(public_key, secret->c_str()) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("the CURVE secret key in ", options.curve_secret_key_file,
                                                   " is not a valid key"));
  }
  if (options.listen) {
    if (!options.curve_server_key_file.empty()) {
      return absl::InvalidArgumentError("--curve_server_key_file is for the connecting side (--connect)");
    }
    socket.set(zmq::sockopt::curve_server, 1);
    socket.set(zmq::sockopt::curve_secretkey, *secret);
    return absl::OkStatus();
  }
  if (options.curve_server_key_file.empty()) {
    return absl::InvalidArgumentError(
        "a connecting bridge with --curve_secret_key_file also needs --curve_server_key_file (the listening "
        "bridge's public key)");
  }
  absl::StatusOr<std::string> server = ReadKeyFile(options.curve_server_key_file, "server public");
  if (!server.ok()) return server.status();
  socket.set(zmq::sockopt::curve_serverkey, *server);
  socket.set(zmq::sockopt::curve_publickey, std::string(public_key));
  socket.set(zmq::sockopt::curve_secretkey, *secret);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Link>> Link::Open(const LinkOptions& options) {
  absl::StatusOr<TcpEndpoint> endpoint = ParseTcpEndpoint(options.endpoint, options.listen);
  if (!endpoint.ok()) return endpoint.status();
  const bool encrypted = !options.curve_secret_key_file.empty();
  if (!encrypted && !options.curve_server_key_file.empty()) {
    return absl::InvalidArgumentError("--curve_server_key_file needs --curve_secret_key_file (this side's key)");
  }
  absl::Status policy = CheckEndpointPolicy(*endpoint, encrypted, options.allow_insecure_remote);
  if (!policy.ok()) return policy;

  std::unique_ptr<Link> link(new Link());
  link->listen_ = options.listen;
  try {
    link->socket_ = zmq::socket_t(link->context_, options.listen ? zmq::socket_type::router : zmq::socket_type::dealer);
    zmq::socket_t& s = link->socket_;
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::sndhwm, options.high_water_mark);
    s.set(zmq::sockopt::rcvhwm, options.high_water_mark);
    if (options.max_frame_bytes > 0) s.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(options.max_frame_bytes));
    // ZeroMQ's own heartbeats close a connection whose far end vanished (a cut cable sends no FIN), so that
    // the connecting side reconnects instead of waiting on a dead TCP connection.
    s.set(zmq::sockopt::heartbeat_ivl, 500);
    s.set(zmq::sockopt::heartbeat_timeout, 2000);
    s.set(zmq::sockopt::reconnect_ivl, 100);
    s.set(zmq::sockopt::reconnect_ivl_max, 1000);
    if (options.listen) {
      // A frame for a far bridge that is gone fails at once (EHOSTUNREACH) rather than vanishing.
      s.set(zmq::sockopt::router_mandatory, 1);
    } else {
      // Queue nothing while not connected: frames wait in the window, not in ZeroMQ.
      s.set(zmq::sockopt::immediate, 1);
    }
    if (encrypted) {
      absl::Status curve = ConfigureCurve(s, options);
      if (!curve.ok()) return curve;
    }
    if (options.listen) {
      s.bind(options.endpoint);
      link->endpoint_ = s.get(zmq::sockopt::last_endpoint);
    } else {
      s.connect(options.endpoint);
      link->endpoint_ = options.endpoint;
    }
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat(options.listen ? "cannot listen on " : "cannot connect to ",
                                               options.endpoint, ": ", e.what(),
                                               options.listen ? " (is the address this host's, and the port free?)" : ""));
  }
  return link;
}

bool Link::Send(std::span<const std::byte> header, std::span<const std::byte> payload) {
  if (listen_ && peer_.empty()) return false;
  zmq::message_t frame(header.size() + payload.size());
  std::memcpy(frame.data(), header.data(), header.size());
  if (!payload.empty()) std::memcpy(static_cast<std::byte*>(frame.data()) + header.size(), payload.data(), payload.size());
  try {
    if (listen_) {
      zmq::message_t id(peer_.data(), peer_.size());
      if (!socket_.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
    }
    return socket_.send(frame, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) peer_.clear();  // the far bridge's connection is gone
    return false;
  }
}

std::optional<Link::Received> Link::TryReceive() {
  Received received;
  try {
    if (listen_) {
      zmq::message_t id;
      if (!socket_.recv(id, zmq::recv_flags::dontwait)) return std::nullopt;
      received.peer = id.to_string();
      // A ROUTER delivers the routing id and the frame together.
      if (!id.more()) return received;  // an empty frame: refused by the decoder as too short
      if (!socket_.recv(received.frame, zmq::recv_flags::dontwait)) return std::nullopt;
    } else if (!socket_.recv(received.frame, zmq::recv_flags::dontwait)) {
      return std::nullopt;
    }
    // A peer sending more than one part per frame breaks the protocol: its extra parts are read and dropped
    // here so that they can never be taken for frames.
    if (received.frame.more()) {
      zmq::message_t extra;
      while (socket_.recv(extra, zmq::recv_flags::dontwait) && extra.more()) {
      }
      received.frame.rebuild(std::size_t{0});  // an empty frame: refused by the decoder as too short
    }
  } catch (const zmq::error_t&) {
    return std::nullopt;
  }
  return received;
}

void Link::WaitReadable(int timeout_ms) {
  zmq::pollitem_t item{static_cast<void*>(socket_), 0, ZMQ_POLLIN, 0};
  try {
    zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms));
  } catch (const zmq::error_t&) {
    // EINTR: a signal; the caller's loop looks at its stop flag.
  }
}

bool Link::SetPeer(const std::string& peer) {
  if (!listen_ || peer == peer_) return false;
  peer_ = peer;
  return true;
}

}  // namespace eshm::bridge
