// The QEMU guest agent (qemu-ga) over its UNIX socket on the host (a virtio-serial
// chardev, org.qemu.guest_agent.0 in the guest), for `rewind mark --freeze qga:PATH`:
// freezes the guest's file systems before a mark and thaws them after. Every exchange
// is bounded by a timeout; the agent's protocol is JSON, one command per line, after a
// guest-sync-delimited handshake that skips what an earlier session left unread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "rewind/base/status.h"

namespace rwd::cli {

class GuestAgent {
 public:
  static Result<std::unique_ptr<GuestAgent>> connect(const std::string& path,
                                                     std::chrono::milliseconds timeout);
  ~GuestAgent();
  // guest-fsfreeze-freeze: the number of file systems frozen.
  Result<int> freeze();
  // guest-fsfreeze-thaw: the number thawed.
  Result<int> thaw();
  // The thaw after a freeze that went unanswered. The agent may still be running that
  // freeze (its fsfreeze hook, say) and freeze the guest after the timeout, and it
  // answers in order, so the thaw is sent at once and the answers to both are awaited
  // for up to `wait`: only the thaw's answer shows that the guest is thawed. The number
  // thawed.
  Result<int> thaw_after_unanswered_freeze(std::chrono::milliseconds wait);

 private:
  GuestAgent(int fd, std::string path, std::chrono::milliseconds timeout)
      : fd_(fd), path_(std::move(path)), timeout_(timeout) {}
  // Sends one command and returns its "return" value as JSON text, or the agent's
  // error.
  Result<std::string> execute(const std::string& command, const std::string& arguments = {});
  Status send_request(const std::string& command, const std::string& arguments = {});
  // The agent's next answer, taken as the answer to `command`: its "return" value as
  // JSON text, or the agent's refusal (an invalid-argument status). `bound` is what the
  // deadline was set from, for the message when it passes.
  Result<std::string> answer(const std::string& command,
                             std::chrono::steady_clock::time_point deadline,
                             std::chrono::milliseconds bound);
  Status send_line(const std::string& line);
  // The next line from the agent, within the deadline; `hint` ends the message when
  // it passes.
  Result<std::string> read_line(std::chrono::steady_clock::time_point deadline,
                                std::chrono::milliseconds bound, std::string_view hint = {});
  Status sync();

  int fd_;
  std::string path_;
  std::chrono::milliseconds timeout_;
  std::string buffered_;
};

}  // namespace rwd::cli
