// bridge_impair: loss and delay for the bridge's network-namespace test on kernels without sch_netem.
//
// A netfilter rule sends the packets to impair to NFQUEUE --queue (with bypass: when this program is not
// running they pass untouched). This program takes each packet's notification from the kernel over
// nfnetlink (no library: the few messages it needs are built here), drops it with probability
// --loss_percent, and otherwise holds it for --delay_ms and lets it go. Every packet is held equally long,
// so the queue is first in, first out: order is kept, as netem keeps it for a fixed delay.
//
//   iptables -A OUTPUT -o veth0 -j NFQUEUE --queue-num 0 --queue-bypass
//   bridge_impair --queue=0 --delay_ms=10 --loss_percent=1
//
// (iptables, not nft's own `queue` statement: this machine's kernel has the xt NFQUEUE target, which
// iptables-nft reaches through nft_compat, but not CONFIG_NFT_QUEUE.)
//
// Verdicts release packets in batches (NFQNL_MSG_VERDICT_BATCH: every packet queued up to an id), so a
// notification lost to a full socket buffer does not strand its packet: it goes with the next batch (its
// delay then is shorter; counted as "overruns"). Prints its counts on SIGTERM or SIGINT and exits 0.
// Needs CAP_NET_ADMIN in the namespace whose packets it sees (run it with `ip netns exec`).
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <random>
#include <string>
#include <vector>

namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

std::int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// One nfnetlink request: netlink header, nfgenmsg, attributes (each 4-byte aligned).
class Request {
 public:
  Request(std::uint16_t queue, std::uint8_t message, std::uint16_t flags) {
    buffer_.resize(NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg)));
    auto* header = reinterpret_cast<nlmsghdr*>(buffer_.data());
    header->nlmsg_type = static_cast<std::uint16_t>((NFNL_SUBSYS_QUEUE << 8) | message);
    header->nlmsg_flags = static_cast<std::uint16_t>(NLM_F_REQUEST | flags);
    auto* generic = reinterpret_cast<nfgenmsg*>(buffer_.data() + NLMSG_HDRLEN);
    generic->nfgen_family = AF_UNSPEC;
    generic->version = NFNETLINK_V0;
    generic->res_id = htons(queue);
  }
  template <typename T>
  Request& Attribute(std::uint16_t type, const T& value) {
    const std::size_t at = buffer_.size();
    buffer_.resize(at + NLA_ALIGN(NLA_HDRLEN + sizeof(T)));
    nlattr attribute{static_cast<std::uint16_t>(NLA_HDRLEN + sizeof(T)), type};
    memcpy(buffer_.data() + at, &attribute, sizeof attribute);
    memcpy(buffer_.data() + at + NLA_HDRLEN, &value, sizeof(T));
    return *this;
  }
  const std::vector<char>& Finish() {
    reinterpret_cast<nlmsghdr*>(buffer_.data())->nlmsg_len = static_cast<std::uint32_t>(buffer_.size());
    return buffer_;
  }

 private:
  std::vector<char> buffer_;
};

bool SendRequest(int fd, Request& request) {
  const std::vector<char>& bytes = request.Finish();
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  return sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) ==
         static_cast<ssize_t>(bytes.size());
}

// Sends a configuration request and waits for the kernel's acknowledgement: 0, or the error it reports.
int Configure(int fd, Request& request) {
  if (!SendRequest(fd, request)) return errno;
  char reply[8192];
  while (true) {
    ssize_t n = recv(fd, reply, sizeof reply, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    for (auto* h = reinterpret_cast<nlmsghdr*>(reply); NLMSG_OK(h, static_cast<std::uint32_t>(n));
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_ERROR) return -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
    }
  }
}

struct Held {
  std::uint32_t id;
  std::int64_t arrival_ns;
  std::int64_t release_ns;
};

}  // namespace

int main(int argc, char** argv) {
  int queue = 0;
  double delay_ms = 0;
  double loss_percent = 0;
  unsigned seed = static_cast<unsigned>(NowNs());
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      const std::string prefix = std::string(name) + "=";
      return arg.rfind(prefix, 0) == 0 ? argv[i] + prefix.size() : nullptr;
    };
    if (const char* v = value("--queue")) {
      queue = atoi(v);
    } else if (const char* v2 = value("--delay_ms")) {
      delay_ms = atof(v2);
    } else if (const char* v3 = value("--loss_percent")) {
      loss_percent = atof(v3);
    } else if (const char* v4 = value("--seed")) {
      seed = static_cast<unsigned>(strtoul(v4, nullptr, 10));
    } else {
      fprintf(stderr, "usage: bridge_impair --queue=N [--delay_ms=D] [--loss_percent=P] [--seed=S]\n");
      return 2;
    }
  }
  if (queue < 0 || queue > 65535 || delay_ms < 0 || loss_percent < 0 || loss_percent > 100) {
    fprintf(stderr, "bridge_impair: --queue must be 0..65535, --delay_ms >= 0, --loss_percent 0..100\n");
    return 2;
  }
  const auto q = static_cast<std::uint16_t>(queue);
  const auto delay_ns = static_cast<std::int64_t>(delay_ms * 1e6);

  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) {
    perror("bridge_impair: netlink socket");
    return 1;
  }
  // Room for many notifications: one lost to a full buffer costs that packet its delay (see above).
  const int rcvbuf = 8 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  }
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
    perror("bridge_impair: bind");
    return 1;
  }
  {
    Request bind_queue(q, NFQNL_MSG_CONFIG, NLM_F_ACK);
    bind_queue.Attribute(NFQA_CFG_CMD, nfqnl_msg_config_cmd{NFQNL_CFG_CMD_BIND, 0, htons(AF_INET)});
    if (const int error = Configure(fd, bind_queue); error != 0) {
      fprintf(stderr, "bridge_impair: cannot bind NFQUEUE %d: %s\n", queue, strerror(error));
      return 1;
    }
    // Metadata only (the packet id is all a verdict needs), and a queue long enough for the delay.
    Request params(q, NFQNL_MSG_CONFIG, NLM_F_ACK);
    nfqnl_msg_config_params copy{};
    copy.copy_range = htonl(0);
    copy.copy_mode = NFQNL_COPY_META;
    params.Attribute(NFQA_CFG_PARAMS, copy);
    params.Attribute(NFQA_CFG_QUEUE_MAXLEN, htonl(65536u));
    if (const int error = Configure(fd, params); error != 0) {
      fprintf(stderr, "bridge_impair: cannot configure NFQUEUE %d: %s\n", queue, strerror(error));
      return 1;
    }
  }
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  fprintf(stderr, "bridge_impair: queue %d, delay %.3f ms, loss %.3f %%\n", queue, delay_ms, loss_percent);

  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> percent(0.0, 100.0);
  std::deque<Held> held;
  std::uint64_t packets = 0, dropped = 0, released = 0, overruns = 0, max_held = 0;
  // How long released packets were actually held (from their notification to their verdict).
  std::int64_t hold_sum_ns = 0, hold_min_ns = INT64_MAX, hold_max_ns = 0;
  std::vector<char> buffer(1 << 16);
  auto verdict = [&](std::uint8_t message, std::uint32_t id, std::uint32_t what) {
    Request request(q, message, 0);
    request.Attribute(NFQA_VERDICT_HDR, nfqnl_msg_verdict_hdr{htonl(what), htonl(id)});
    if (!SendRequest(fd, request)) perror("bridge_impair: verdict");
  };
  while (!g_stop) {
    // Release every packet whose time has come, as one batch up to the newest of them.
    const std::int64_t now = NowNs();
    std::uint32_t last_due = 0;
    bool any_due = false;
    while (!held.empty() && held.front().release_ns <= now) {
      last_due = held.front().id;
      const std::int64_t hold = now - held.front().arrival_ns;
      hold_sum_ns += hold;
      hold_min_ns = std::min(hold_min_ns, hold);
      hold_max_ns = std::max(hold_max_ns, hold);
      any_due = true;
      held.pop_front();
      ++released;
    }
    if (any_due) verdict(NFQNL_MSG_VERDICT_BATCH, last_due, NF_ACCEPT);
    int timeout_ms = -1;
    if (!held.empty()) timeout_ms = static_cast<int>((held.front().release_ns - now + 999'999) / 1'000'000);
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) continue;
    const ssize_t n = recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == ENOBUFS) ++overruns;  // notifications lost; their packets go with the next batch
      continue;
    }
    ssize_t left = n;
    for (auto* h = reinterpret_cast<nlmsghdr*>(buffer.data()); NLMSG_OK(h, static_cast<std::uint32_t>(left));
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) continue;
      const char* attrs = static_cast<const char*>(NLMSG_DATA(h)) + NLMSG_ALIGN(sizeof(nfgenmsg));
      const char* end = reinterpret_cast<const char*>(h) + h->nlmsg_len;
      bool found = false;
      std::uint32_t id = 0;
      while (attrs + NLA_HDRLEN <= end) {
        nlattr a;
        memcpy(&a, attrs, sizeof a);
        if (a.nla_len < NLA_HDRLEN || attrs + a.nla_len > end) break;
        if ((a.nla_type & NLA_TYPE_MASK) == NFQA_PACKET_HDR && a.nla_len >= NLA_HDRLEN + sizeof(nfqnl_msg_packet_hdr)) {
          nfqnl_msg_packet_hdr packet;
          memcpy(&packet, attrs + NLA_HDRLEN, sizeof packet);
          id = ntohl(packet.packet_id);
          found = true;
        }
        attrs += NLA_ALIGN(a.nla_len);
      }
      if (!found) continue;
      ++packets;
      if (loss_percent > 0 && percent(rng) < loss_percent) {
        ++dropped;
        verdict(NFQNL_MSG_VERDICT, id, NF_DROP);
        continue;
      }
      const std::int64_t arrival = NowNs();
      held.push_back(Held{id, arrival, arrival + delay_ns});
      if (held.size() > max_held) max_held = held.size();
    }
  }
  // Let everything still held go, and leave the queue (the rule's `bypass` then passes packets untouched).
  if (!held.empty()) verdict(NFQNL_MSG_VERDICT_BATCH, held.back().id, NF_ACCEPT);
  Request unbind(q, NFQNL_MSG_CONFIG, 0);
  unbind.Attribute(NFQA_CFG_CMD, nfqnl_msg_config_cmd{NFQNL_CFG_CMD_UNBIND, 0, htons(AF_INET)});
  SendRequest(fd, unbind);
  printf("bridge_impair: queue %d: packets=%llu dropped=%llu released=%llu overruns=%llu max_held=%llu "
         "hold_ms min=%.3f mean=%.3f max=%.3f\n",
         queue, static_cast<unsigned long long>(packets), static_cast<unsigned long long>(dropped),
         static_cast<unsigned long long>(released), static_cast<unsigned long long>(overruns),
         static_cast<unsigned long long>(max_held), released > 0 ? hold_min_ns / 1e6 : 0.0,
         released > 0 ? static_cast<double>(hold_sum_ns) / static_cast<double>(released) / 1e6 : 0.0, hold_max_ns / 1e6);
  fflush(stdout);
  close(fd);
  return 0;
}
