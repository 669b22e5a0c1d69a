// Uses eshm as an external Bazel repository: a master and a slave in one process exchange a message
// each way over /dev/shm/eshm_<name>. Prints "OK" and exits 0 on success.
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"

namespace {

int Fail(std::string_view what, const absl::Status& status) {
  std::fprintf(stderr, "FAIL: %.*s: %s\n", static_cast<int>(what.size()), what.data(), status.ToString().c_str());
  return 1;
}

bool Exchange(eshm::Channel& from, eshm::Channel& to, const std::string& text, std::string* error) {
  absl::Status sent = from.Write(std::as_bytes(std::span(text)), eshm::Deadline::AfterMs(5000));
  if (!sent.ok()) {
    *error = absl::StrCat("write: ", sent.ToString());
    return false;
  }
  std::array<std::byte, 256> buffer;
  absl::StatusOr<std::size_t> n = to.Read(buffer, eshm::Deadline::AfterMs(5000));
  if (!n.ok()) {
    *error = absl::StrCat("read: ", n.status().ToString());
    return false;
  }
  const std::string got(reinterpret_cast<const char*>(buffer.data()), *n);
  if (got != text) {
    *error = absl::StrCat("read \"", got, "\", expected \"", text, "\"");
    return false;
  }
  return true;
}

}  // namespace

int main() {
  const std::string name = absl::StrCat("bazel_dep_", getpid());
  eshm::ChannelOptions options;
  options.m2s_capacity = 4096;
  options.s2m_capacity = 4096;
  options.role = eshm::ChannelRole::kMaster;
  absl::StatusOr<std::unique_ptr<eshm::Channel>> master = eshm::Channel::Open(name, options);
  if (!master.ok()) return Fail("open master", master.status());
  options.role = eshm::ChannelRole::kSlave;
  absl::StatusOr<std::unique_ptr<eshm::Channel>> slave = eshm::Channel::Open(name, options);
  if (!slave.ok()) return Fail("open slave", slave.status());

  std::string error;
  if (!Exchange(**master, **slave, "hello from master", &error)) return Fail("master -> slave", absl::InternalError(error));
  if (!Exchange(**slave, **master, "hello from slave", &error)) return Fail("slave -> master", absl::InternalError(error));
  (*slave)->Close();
  (*master)->Close();  // auto_cleanup: removes the segment name
  if (access(("/dev/shm/eshm_" + name).c_str(), F_OK) == 0) {
    return Fail("cleanup", absl::InternalError("the master left its segment behind"));
  }
  std::printf("OK\n");
  return 0;
}
