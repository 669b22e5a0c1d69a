// Which ZeroMQ endpoints eshm-bridge agrees to bind to or connect to (docs/bridge.md, section 5): tcp
// only, an explicit address (never a wildcard), and without CURVE keys loopback only unless the operator
// says otherwise: a plaintext link that leaves the host is a choice, not a default.
#ifndef ESHM_TOOLS_BRIDGE_ENDPOINT_H_
#define ESHM_TOOLS_BRIDGE_ENDPOINT_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace eshm::bridge {

struct TcpEndpoint {
  std::string host;  // as written (an IPv6 address without its brackets)
  std::string port;  // digits, or "*" (listen only: any free port)
  bool loopback = false;
};

// Parses tcp://HOST:PORT (IPv6 as tcp://[ADDR]:PORT). `listen`: this side binds.
absl::StatusOr<TcpEndpoint> ParseTcpEndpoint(absl::string_view endpoint, bool listen);

// Applies the policy: OK, or InvalidArgument / PermissionDenied naming the flag that changes it.
absl::Status CheckEndpointPolicy(const TcpEndpoint& endpoint, bool encrypted, bool allow_insecure_remote);

}  // namespace eshm::bridge

#endif  // ESHM_TOOLS_BRIDGE_ENDPOINT_H_
