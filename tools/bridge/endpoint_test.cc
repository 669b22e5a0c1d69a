#include "tools/bridge/endpoint.h"

#include "gtest/gtest.h"

namespace eshm::bridge {
namespace {

TEST(EndpointTest, ParsesAddressesAndPorts) {
  absl::StatusOr<TcpEndpoint> v4 = ParseTcpEndpoint("tcp://127.0.0.1:5555", false);
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, "5555");
  EXPECT_TRUE(v4->loopback);
  absl::StatusOr<TcpEndpoint> v6 = ParseTcpEndpoint("tcp://[::1]:5555", true);
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_TRUE(v6->loopback);
  absl::StatusOr<TcpEndpoint> remote = ParseTcpEndpoint("tcp://10.1.2.3:*", true);
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_FALSE(remote->loopback);
  EXPECT_TRUE(ParseTcpEndpoint("tcp://localhost:1", false)->loopback);
}

TEST(EndpointTest, RefusesWhatIsNotAnExplicitTcpEndpoint) {
  for (const char* bad : {"ipc:///tmp/x", "tcp://127.0.0.1", "tcp://:5555", "tcp://127.0.0.1:0", "tcp://127.0.0.1:65536",
                          "tcp://127.0.0.1:55a", "tcp://::1:5555", "tcp://[::1]5555", "tcp://a b:1"}) {
    EXPECT_FALSE(ParseTcpEndpoint(bad, true).ok()) << bad;
  }
  // Wildcards: the listening address must be explicit.
  for (const char* wildcard : {"tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://[::]:5555"}) {
    EXPECT_FALSE(ParseTcpEndpoint(wildcard, true).ok()) << wildcard;
  }
  EXPECT_FALSE(ParseTcpEndpoint("tcp://127.0.0.1:*", false).ok());  // a connecting side needs the port
}

TEST(EndpointTest, PlaintextLeavesTheHostOnlyWhenAsked) {
  const TcpEndpoint remote = *ParseTcpEndpoint("tcp://192.168.1.5:5555", true);
  const absl::Status refused = CheckEndpointPolicy(remote, /*encrypted=*/false, /*allow_insecure_remote=*/false);
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(refused.message().find("--allow_insecure_remote"), std::string::npos);
  EXPECT_TRUE(CheckEndpointPolicy(remote, true, false).ok());
  EXPECT_TRUE(CheckEndpointPolicy(remote, false, true).ok());
  EXPECT_TRUE(CheckEndpointPolicy(*ParseTcpEndpoint("tcp://127.0.0.2:5555", true), false, false).ok());
}

}  // namespace
}  // namespace eshm::bridge
