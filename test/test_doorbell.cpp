#include <doctest/doctest.h>

#include <poll.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "common/doorbell.hpp"

using namespace pymar::detail;

namespace {

// Doorbell names, not listening ports: ten per test process, so that test runs side by side
// (another build's, say) do not hear each other's bells.
std::uint16_t port(int n) {
  return static_cast<std::uint16_t>(10000 + getpid() % 5000 * 10 + n);
}

bool readable(int fd, int timeout_ms) {
  pollfd item{fd, POLLIN, 0};
  return ::poll(&item, 1, timeout_ms) == 1 && (item.revents & POLLIN);
}

bool listed(const std::string& name) {
  std::ifstream listing("/proc/net/unix");
  for (std::string line; std::getline(listing, line);) {
    if (line.ends_with(" @" + name)) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("a doorbell is named after its producer's port and this process") {
  Doorbell bell(port(0));
  CHECK(bell.fd() >= 0);
  CHECK(bell.name().starts_with(fmt::format("pymar-worker/{}/{}/", port(0), getpid())));
  CHECK(listed(bell.name()));
  Doorbell other(port(0));
  CHECK(other.name() != bell.name());
}

TEST_CASE("a doorbell's name vanishes when it is closed") {
  std::string name;
  {
    Doorbell bell(port(1));
    name = bell.name();
    REQUIRE(listed(name));
  }
  CHECK_FALSE(listed(name));
}

TEST_CASE("a rung doorbell becomes readable, and draining it reads each bell once") {
  Doorbell bell(port(2));
  CHECK_FALSE(readable(bell.fd(), 0));
  CHECK(bell.drain() == 0);  // nothing waiting: returns at once
  CHECK(ring_doorbell(bell.name()));
  CHECK(ring_doorbell(bell.name()));
  CHECK(readable(bell.fd(), 1000));
  CHECK(bell.drain() == 2);
  CHECK_FALSE(readable(bell.fd(), 0));
}

TEST_CASE("draining reads at most the bells it is allowed to") {
  Doorbell bell(port(3));
  for (int i = 0; i < 5; ++i) REQUIRE(ring_doorbell(bell.name()));
  CHECK(bell.drain(3) == 3);
  CHECK(readable(bell.fd(), 0));
  CHECK(bell.drain(3) == 2);
}

TEST_CASE("ringing the doorbells of a port reaches every worker of that port and no other") {
  Doorbell first(port(4));
  Doorbell second(port(4));
  Doorbell elsewhere(port(5));
  CHECK(ring_doorbells(port(4)) == 2);
  CHECK(readable(first.fd(), 1000));
  CHECK(readable(second.fd(), 1000));
  CHECK(first.drain() == 1);
  CHECK(second.drain() == 1);
  CHECK_FALSE(readable(elsewhere.fd(), 0));
  CHECK(ring_doorbells(port(6)) == 0);
}

TEST_CASE("a doorbell whose queue is full is skipped without blocking the ringer") {
  Doorbell bell(port(7));
  std::size_t sent = 0;
  while (sent < 100000 && ring_doorbell(bell.name())) ++sent;
  CHECK(sent < 100000);  // the queue filled up and ringing returned false instead of waiting
  CHECK(ring_doorbells(port(7)) == 0);
  CHECK(bell.drain(100000) == sent);
}

TEST_CASE("ringing a name nobody bound fails quietly") {
  CHECK_FALSE(ring_doorbell("pymar-worker/1/1/nobody"));
  CHECK_FALSE(ring_doorbell(""));
  CHECK_FALSE(ring_doorbell(std::string(200, 'x')));
}

TEST_CASE("doorbells are found in a /proc/net/unix listing by their port's prefix") {
  std::istringstream listing(
      "Num       RefCount Protocol Flags    Type St Inode Path\n"
      "0000000000000000: 00000002 00000000 00000000 0002 01 1001 @pymar-worker/7627/12/1\n"
      "0000000000000000: 00000002 00000000 00000000 0002 01 1002 @pymar-worker/76270/12/2\n"
      "0000000000000000: 00000002 00000000 00000000 0002 01 1003 @pymar-worker/7627/\n"
      "0000000000000000: 00000002 00000000 00000000 0002 01 1004 /tmp/pymar-worker/7627/1/1\n"
      "0000000000000000: 00000002 00000000 00010000 0001 01 1005\n"
      "garbage\n"
      "\n"
      "0000000000000000: 00000002 00000000 00000000 0002 01 1006 @pymar-worker/7627/13/1\n"
      "0000000000000000: 00000002 00000000 00000000 0002 01 1007 @pymar-worker/7627/14/1\n");
  SUBCASE("every one") {
    CHECK(doorbells_in(listing, 7627) == std::vector<std::string>{"pymar-worker/7627/12/1",
                                                                  "pymar-worker/7627/13/1",
                                                                  "pymar-worker/7627/14/1"});
  }
  SUBCASE("no more than asked for") {
    CHECK(doorbells_in(listing, 7627, 2).size() == 2);
  }
}

TEST_CASE("the port of an endpoint is read from tcp addresses only") {
  CHECK(endpoint_port("tcp://127.0.0.1:7627") == 7627);
  CHECK(endpoint_port("tcp://[::1]:1") == 1);
  CHECK(endpoint_port("tcp://host:0") == std::nullopt);
  CHECK(endpoint_port("tcp://host:65536") == std::nullopt);
  CHECK(endpoint_port("tcp://host:76x") == std::nullopt);
  CHECK(endpoint_port("tcp://host:") == std::nullopt);
  CHECK(endpoint_port("ipc:///tmp/x:5") == std::nullopt);
  CHECK(endpoint_port("tcp://host") == std::nullopt);
}
