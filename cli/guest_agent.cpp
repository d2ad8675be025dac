#include "guest_agent.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace rwd::cli {

Result<std::unique_ptr<GuestAgent>> GuestAgent::connect(const std::string& path,
                                                        std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return Status::invalid(fmt::format("guest agent socket path '{}' is empty or too long", path));
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::io_error("cannot create a socket", errno);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::io_error(
        fmt::format("cannot connect to the guest agent's socket {} (QEMU's chardev for "
                    "org.qemu.guest_agent.0)",
                    path),
        err);
  }
  std::unique_ptr<GuestAgent> a(new GuestAgent(fd, path, timeout));
  REWIND_RETURN_IF_ERROR(a->sync());
  return a;
}

GuestAgent::~GuestAgent() {
  ::close(fd_);
}

Status GuestAgent::send_line(const std::string& line) {
  const std::string text = line + "\n";
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::send(fd_, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return Status::io_error(fmt::format("cannot write to the guest agent {}", path_), errno);
    done += static_cast<size_t>(n);
  }
  return Status::ok();
}

Result<std::string> GuestAgent::read_line(std::chrono::steady_clock::time_point deadline,
                                          std::chrono::milliseconds bound, std::string_view hint) {
  for (;;) {
    const size_t nl = buffered_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return Status::remote(fmt::format("the guest agent {} did not answer within {} ms{}", path_,
                                        bound.count(), hint));
    pollfd p{fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::io_error("poll", errno);
    if (r == 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return Status::io_error(fmt::format("cannot read from the guest agent {}", path_), errno);
    if (n == 0)
      return Status::remote(fmt::format("the guest agent {} closed the connection", path_));
    buffered_.append(buf, static_cast<size_t>(n));
  }
}

Status GuestAgent::sync() {
  // guest-sync-delimited: the answer follows a 0xff byte, so anything an earlier
  // session left in the channel is skipped up to it.
  std::random_device rd;
  const int64_t id = static_cast<int64_t>(rd() & 0x7fffffff);
  REWIND_RETURN_IF_ERROR(send_line(
      nlohmann::json{{"execute", "guest-sync-delimited"}, {"arguments", {{"id", id}}}}.dump()));
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (;;) {
    auto line = read_line(deadline, timeout_, " (is qemu-ga running in the guest?)");
    if (!line) return line.status();
    const size_t ff = line->rfind('\xff');
    const std::string text = ff == std::string::npos ? *line : line->substr(ff + 1);
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_object() && j.contains("return") && j["return"] == id) return Status::ok();
  }
}

Result<std::string> GuestAgent::execute(const std::string& command, const std::string& arguments) {
  REWIND_RETURN_IF_ERROR(send_request(command, arguments));
  return answer(command, std::chrono::steady_clock::now() + timeout_, timeout_);
}

Status GuestAgent::send_request(const std::string& command, const std::string& arguments) {
  nlohmann::json req = {{"execute", command}};
  if (!arguments.empty()) req["arguments"] = nlohmann::json::parse(arguments);
  return send_line(req.dump());
}

Result<std::string> GuestAgent::answer(const std::string& command,
                                       std::chrono::steady_clock::time_point deadline,
                                       std::chrono::milliseconds bound) {
  for (;;) {
    auto line = read_line(deadline, bound);
    if (!line) return line.status().with_context(command);
    auto j = nlohmann::json::parse(*line, nullptr, false);
    if (!j.is_object()) continue;  // an event, or noise
    if (j.contains("return")) return j["return"].dump();
    if (j.contains("error")) {
      const auto& e = j["error"];
      return Status::invalid(
          fmt::format("the guest agent refused {}: {}", command, e.value("desc", e.dump())));
    }
  }
}

Result<int> GuestAgent::freeze() {
  auto r = execute("guest-fsfreeze-freeze");
  if (!r) return r.status();
  return std::atoi(r->c_str());
}

Result<int> GuestAgent::thaw() {
  auto r = execute("guest-fsfreeze-thaw");
  if (!r) return r.status();
  return std::atoi(r->c_str());
}

Result<int> GuestAgent::thaw_after_unanswered_freeze(std::chrono::milliseconds wait) {
  REWIND_RETURN_IF_ERROR(send_request("guest-fsfreeze-thaw"));
  const auto deadline = std::chrono::steady_clock::now() + wait;
  // A refused freeze is an answer too; the thaw is awaited all the same.
  auto late = answer("guest-fsfreeze-freeze", deadline, wait);
  if (!late && late.status().code() != Status::Code::kInvalidArgument) return late.status();
  auto r = answer("guest-fsfreeze-thaw", deadline, wait);
  if (!r) return r.status();
  return std::atoi(r->c_str());
}

}  // namespace rwd::cli
