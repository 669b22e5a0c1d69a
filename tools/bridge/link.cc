#include "tools/bridge/link.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
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

struct CurveKeys {
  std::string secret;      // Z85
  std::string public_key;  // Z85, derived from the secret
  std::string server;      // Z85; connecting side
  std::set<std::string> allowed_clients;  // 32-byte keys; listening side
};

absl::StatusOr<CurveKeys> LoadCurveKeys(const LinkOptions& options) {
  if (!zmq_has("curve")) {
    return absl::FailedPreconditionError("this libzmq was built without CURVE; install Debian's libzmq3-dev");
  }
  CurveKeys keys;
  absl::StatusOr<std::string> secret = ReadKeyFile(options.curve_secret_key_file, "secret");
  if (!secret.ok()) return secret.status();
  keys.secret = *secret;
  char public_key[kZ85KeyChars + 1];
  if (zmq_curve_public(public_key, keys.secret.c_str()) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("the CURVE secret key in ", options.curve_secret_key_file,
                                                   " is not a valid key"));
  }
  keys.public_key = public_key;
  if (options.listen) {
    if (!options.curve_server_key_file.empty()) {
      return absl::InvalidArgumentError("--curve_server_key_file is for the connecting side (--connect)");
    }
    // CURVE without a list of clients would encrypt for anyone who knows the server's public key: whoever
    // asks for CURVE gets client authentication too.
    if (options.curve_allowed_clients_file.empty()) {
      return absl::InvalidArgumentError(
          "a listening bridge with --curve_secret_key_file also needs --curve_allowed_clients=FILE: the public "
          "keys (PATH.public of --generate_curve_keypair) of the bridges allowed to connect, one per line");
    }
    absl::StatusOr<std::set<std::string>> allowed = ReadAllowedClients(options.curve_allowed_clients_file);
    if (!allowed.ok()) return allowed.status();
    keys.allowed_clients = *std::move(allowed);
    return keys;
  }
  if (!options.curve_allowed_clients_file.empty()) {
    return absl::InvalidArgumentError("--curve_allowed_clients is for the listening side (--listen)");
  }
  if (options.curve_server_key_file.empty()) {
    return absl::InvalidArgumentError(
        "a connecting bridge with --curve_secret_key_file also needs --curve_server_key_file (the listening "
        "bridge's public key)");
  }
  absl::StatusOr<std::string> server = ReadKeyFile(options.curve_server_key_file, "server public");
  if (!server.ok()) return server.status();
  keys.server = *server;
  return keys;
}

std::int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// A refused client retries every reconnect interval; its refusal is logged at most this often.
constexpr std::int64_t kRefusalLogIntervalNs = 10'000'000'000;
constexpr std::size_t kMaxRefusalsRemembered = 1024;

}  // namespace

absl::StatusOr<std::set<std::string>> ReadAllowedClients(const std::string& path) {
  const std::string fix = " (one Z85 public key per line, as --generate_curve_keypair writes PATH.public; blank "
                          "lines and lines starting with \"# \" are ignored)";
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read the CURVE allowed-clients file ", path, ": ",
                                            strerror(errno), fix));
  }
  std::set<std::string> keys;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string text(absl::StripAsciiWhitespace(line));
    if (text.empty() || text == "#" || absl::StartsWith(text, "# ") || absl::StartsWith(text, "#\t")) continue;
    std::uint8_t decoded[32];
    if (text.size() != kZ85KeyChars || zmq_z85_decode(decoded, text.c_str()) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("line ", number, " of the CURVE allowed-clients file ", path,
                                                     " is not a public key", fix));
    }
    keys.insert(std::string(reinterpret_cast<const char*>(decoded), sizeof(decoded)));
  }
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("cannot read the CURVE allowed-clients file ", path, ": ", strerror(errno)));
  }
  if (keys.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the CURVE allowed-clients file ", path,
                                                   " holds no key: no bridge could connect", fix));
  }
  return keys;
}

absl::Status CheckCurveOptions(const LinkOptions& options) {
  if (options.curve_secret_key_file.empty()) {
    if (!options.curve_server_key_file.empty()) {
      return absl::InvalidArgumentError("--curve_server_key_file needs --curve_secret_key_file (this side's key)");
    }
    if (!options.curve_allowed_clients_file.empty()) {
      return absl::InvalidArgumentError("--curve_allowed_clients needs --curve_secret_key_file (this side's key)");
    }
    return absl::OkStatus();
  }
  return LoadCurveKeys(options).status();
}

absl::StatusOr<std::unique_ptr<Link>> Link::Open(const LinkOptions& options) {
  absl::StatusOr<TcpEndpoint> endpoint = ParseTcpEndpoint(options.endpoint, options.listen);
  if (!endpoint.ok()) return endpoint.status();
  const bool encrypted = !options.curve_secret_key_file.empty();
  CurveKeys keys;
  if (!encrypted) {
    absl::Status curve_options = CheckCurveOptions(options);  // CURVE flags without a secret key
    if (!curve_options.ok()) return curve_options;
  } else {
    absl::StatusOr<CurveKeys> loaded = LoadCurveKeys(options);
    if (!loaded.ok()) return loaded.status();
    keys = *std::move(loaded);
  }
  absl::Status policy = CheckEndpointPolicy(*endpoint, encrypted, options.allow_insecure_remote);
  if (!policy.ok()) return policy;

  std::unique_ptr<Link> link(new Link());
  link->listen_ = options.listen;
  link->log_ = options.log;
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
    if (encrypted && options.listen) {
      // ZeroMQ asks the handler bound here about every CURVE handshake on this context; it must exist
      // before the first client can arrive, so before the bind.
      link->zap_ = zmq::socket_t(link->context_, zmq::socket_type::rep);
      link->zap_.set(zmq::sockopt::linger, 0);
      link->zap_.bind("inproc://zeromq.zap.01");
      link->allowed_clients_ = std::move(keys.allowed_clients);
      s.set(zmq::sockopt::zap_domain, "eshm-bridge");
      s.set(zmq::sockopt::curve_server, 1);
      s.set(zmq::sockopt::curve_secretkey, keys.secret);
    } else if (encrypted) {
      s.set(zmq::sockopt::curve_serverkey, keys.server);
      s.set(zmq::sockopt::curve_publickey, keys.public_key);
      s.set(zmq::sockopt::curve_secretkey, keys.secret);
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
      if (!socket_.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        send_refused_ = true;
        return false;
      }
    }
    if (socket_.send(frame, zmq::send_flags::dontwait).has_value()) return true;
    send_refused_ = true;
    return false;
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) peer_.clear();  // the far bridge's connection is gone
    return false;
  }
}

void Link::ServeAuthentication() {
  if (!zap_) return;
  try {
    while (true) {
      // A ZAP request (rfc.zeromq.org/spec/27): version, request id, domain, address, routing id, mechanism,
      // then the mechanism's credentials (CURVE: the client's 32-byte public key).
      std::vector<zmq::message_t> parts;
      zmq::message_t part;
      if (!zap_.recv(part, zmq::recv_flags::dontwait)) return;
      bool more = part.more();
      parts.push_back(std::move(part));
      // The parts of one message arrive together.
      while (more && parts.size() < 16) {
        zmq::message_t next;
        if (!zap_.recv(next, zmq::recv_flags::dontwait)) break;
        more = next.more();
        parts.push_back(std::move(next));
      }
      while (more) {  // more parts than any request has: read and drop them
        zmq::message_t extra;
        if (!zap_.recv(extra, zmq::recv_flags::dontwait)) break;
        more = extra.more();
      }
      const std::string request_id = parts.size() > 1 ? parts[1].to_string() : std::string();
      std::string code = "400";
      std::string text = "client key not allowed";
      std::string address;
      if (parts.size() != 7 || parts[0].to_string() != "1.0" || parts[5].to_string() != "CURVE" ||
          parts[6].size() != 32) {
        code = "500";
        text = "malformed request";
      } else {
        address = parts[3].to_string();
        if (allowed_clients_.count(parts[6].to_string()) > 0) {
          code = "200";
          text = "OK";
        } else {
          char z85[kZ85KeyChars + 1];
          zmq_z85_encode(z85, static_cast<const std::uint8_t*>(parts[6].data()), 32);
          const std::int64_t now = MonotonicNs();
          auto [it, inserted] = refusal_logged_ns_.try_emplace(parts[6].to_string(), now);
          if (inserted || now - it->second >= kRefusalLogIntervalNs) {
            it->second = now;
            const std::string line =
                absl::StrCat("refused a bridge connecting from ", address, " with CURVE client key ", z85,
                             ": not in --curve_allowed_clients");
            if (log_) {
              log_(line);
            } else {
              fprintf(stderr, "eshm-bridge: %s\n", line.c_str());
            }
          }
          if (refusal_logged_ns_.size() > kMaxRefusalsRemembered) refusal_logged_ns_.clear();
        }
      }
      const std::string reply[] = {"1.0", request_id, code, text, "", ""};
      for (std::size_t i = 0; i < std::size(reply); ++i) {
        zmq::message_t frame(reply[i].data(), reply[i].size());
        zap_.send(frame, i + 1 < std::size(reply) ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    }
  } catch (const zmq::error_t&) {
    // EINTR or a closing context; the next turn tries again.
  }
}

std::optional<Link::Received> Link::TryReceive() {
  ServeAuthentication();
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

std::vector<int> Link::NotificationFds() {
  std::vector<int> fds{socket_.get(zmq::sockopt::fd)};
  if (zap_) fds.push_back(zap_.get(zmq::sockopt::fd));
  return fds;
}

int Link::Events() {
  try {
    int events = socket_.get(zmq::sockopt::events);
    if (zap_ && (zap_.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0) events |= ZMQ_POLLIN;
    return events;
  } catch (const zmq::error_t&) {
    return ZMQ_POLLIN;  // EINTR: look again rather than sleep on news not taken in
  }
}

bool Link::SetPeer(const std::string& peer) {
  if (!listen_ || peer == peer_) return false;
  peer_ = peer;
  return true;
}

}  // namespace eshm::bridge
