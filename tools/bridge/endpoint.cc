#include "tools/bridge/endpoint.h"

#include <arpa/inet.h>

#include <cstdint>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace eshm::bridge {
namespace {

bool IsLoopback(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

bool IsWildcard(const std::string& host) {
  if (host == "*") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return v4.s_addr == INADDR_ANY;
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_UNSPECIFIED(&v6);
  return false;
}

}  // namespace

absl::StatusOr<TcpEndpoint> ParseTcpEndpoint(absl::string_view endpoint, bool listen) {
  const absl::string_view original = endpoint;
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("endpoint '", original, "': ", why,
                                                   " (write tcp://ADDRESS:PORT, e.g. tcp://127.0.0.1:5555 or "
                                                   "tcp://[::1]:5555)"));
  };
  if (!absl::ConsumePrefix(&endpoint, "tcp://")) return bad("only tcp:// endpoints are supported");
  TcpEndpoint parsed;
  absl::string_view port;
  if (absl::ConsumePrefix(&endpoint, "[")) {
    const std::size_t close = endpoint.find(']');
    if (close == absl::string_view::npos || close + 1 >= endpoint.size() || endpoint[close + 1] != ':') {
      return bad("an IPv6 address needs [ADDRESS]:PORT");
    }
    parsed.host = std::string(endpoint.substr(0, close));
    port = endpoint.substr(close + 2);
  } else {
    const std::size_t colon = endpoint.rfind(':');
    if (colon == absl::string_view::npos) return bad("no port");
    parsed.host = std::string(endpoint.substr(0, colon));
    port = endpoint.substr(colon + 1);
    if (parsed.host.find(':') != std::string::npos) return bad("an IPv6 address needs brackets");
  }
  if (parsed.host.empty()) return bad("no address");
  for (char c : parsed.host) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != ':' && c != '*' && c != '_') {
      return bad("the address has characters no address has");
    }
  }
  if (port == "*") {
    if (!listen) return bad("a connecting side needs the port number");
  } else {
    std::uint32_t number = 0;
    if (!absl::SimpleAtoi(port, &number) || number == 0 || number > 65535 || port.find_first_not_of("0123456789") != absl::string_view::npos) {
      return bad("the port must be a number from 1 to 65535");
    }
  }
  parsed.port = std::string(port);
  if (IsWildcard(parsed.host)) {
    return bad(listen ? "binding to every address is refused: give the one address the far bridge connects to"
                      : "connecting to a wildcard address");
  }
  parsed.loopback = IsLoopback(parsed.host);
  return parsed;
}

absl::Status CheckEndpointPolicy(const TcpEndpoint& endpoint, bool encrypted, bool allow_insecure_remote) {
  if (endpoint.loopback || encrypted || allow_insecure_remote) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "address ", endpoint.host, " is not loopback and the link is not encrypted: give CURVE keys "
      "(--curve_secret_key_file, and --curve_allowed_clients listening or --curve_server_key_file connecting) or, "
      "on a network you trust, --allow_insecure_remote"));
}

}  // namespace eshm::bridge
