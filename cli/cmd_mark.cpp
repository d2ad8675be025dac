// rewind mark: a durable mark in a running volume; with --with one mark across several
// volumes at one consistent cut (a group mark); with --freeze the guest's file systems
// frozen through its agent around it; with --pre/--post hooks around all of it.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <set>

#include <fmt/format.h>

#include "commands.h"
#include "guest_agent.h"
#include "rewind/base/file.h"
#include "rewind/base/units.h"
#include "rewind/format/format.h"
#include "rewind/format/manifest.h"
#include "rewind/format/segment.h"
#include "rewind/replay/inspect.h"
#include "rewind/volume/control.h"

namespace rwd::cli {

namespace {

constexpr auto kControlTimeout = std::chrono::seconds(60);

// Runs a hook by /bin/sh -c with REWIND_MARK set; an error unless it exits 0.
Status run_hook(const char* which, const std::string& cmd, const std::string& mark) {
  const pid_t pid = ::fork();
  if (pid < 0) return Status::io_error(fmt::format("cannot start {}", which), errno);
  if (pid == 0) {
    ::setenv("REWIND_MARK", mark.c_str(), 1);
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::ok();
  return Status::invalid(WIFSIGNALED(status)
                             ? fmt::format("{} was killed by signal {}", which, WTERMSIG(status))
                             : fmt::format("{} exited {}", which, WEXITSTATUS(status)));
}

struct Stamp {
  uint64_t seq = 0, time_ns = 0;
};

Result<Stamp> parse_stamp(const std::string& sock, const std::string& answer) {
  Stamp s;
  if (std::sscanf(answer.c_str(), "OK %lu %lu", &s.seq, &s.time_ns) != 2)
    return Status::corruption(fmt::format("unexpected answer from {}: {}", sock, answer));
  return s;
}

// One request to a volume's control socket: the answer after "OK", or its error.
Result<std::string> ask(const std::string& sock, const std::string& request) {
  auto answer = control_request(sock, request, kControlTimeout);
  if (!answer) return answer.status();
  if (answer->starts_with("ERR ")) return Status::invalid(answer->substr(4));
  return *answer;
}

// A plain mark: one volume.
Result<Stamp> plain_mark(const std::string& sock, const std::string& name) {
  auto answer = ask(sock, "MARK " + name);
  if (!answer) return answer.status();
  return parse_stamp(sock, *answer);
}

struct Member {
  std::string dir, sock, volume;  // volume: the volume id in hex
  Stamp stamp;
  bool held = false;
};

// A group mark: hold new writes on every member, queue each one's mark while all hold,
// release them, then wait until every mark is durable. *held_for: how long the first
// hold lasted until the last release.
Status group_mark(std::vector<Member>& members, const std::string& name,
                  std::chrono::milliseconds hold_max, std::string* group, double* held_ms) {
  std::random_device rd;
  const uint64_t token = (static_cast<uint64_t>(rd()) << 32 | rd()) | 1;
  *group = fmt::format("{:08x}{:08x}", rd(), rd());
  std::vector<std::string> volumes;
  for (const Member& m : members) volumes.push_back(m.volume);
  const std::string vols = fmt::format("{}", fmt::join(volumes, ","));
  auto release_all = [&] {
    for (Member& m : members)
      if (m.held) {
        (void)ask(m.sock, fmt::format("RELEASE {:x}", token));
        m.held = false;
      }
  };
  const auto started = std::chrono::steady_clock::now();
  for (Member& m : members) {
    auto a = ask(m.sock, fmt::format("HOLD {:x} {} {}", token, hold_max.count(), name));
    if (!a) {
      release_all();
      return a.status().with_context(m.dir);
    }
    m.held = true;
  }
  std::vector<std::string> marked;
  for (Member& m : members) {
    auto a = ask(m.sock, fmt::format("GMARK {:x} {} {} {}", token, name, *group, vols));
    auto s = a ? parse_stamp(m.sock, *a) : Result<Stamp>(a.status());
    if (!s) {
      release_all();
      return Status::invalid(
          fmt::format("{}: {}; the group mark failed{}", m.dir, s.status().message(),
                      marked.empty() ? ", nothing was marked"
                                     : fmt::format(" (its mark stays in {}, not a consistent cut)",
                                                   fmt::join(marked, ", "))));
    }
    m.stamp = *s;
    marked.push_back(m.dir);
  }
  for (Member& m : members) {
    auto a = ask(m.sock, fmt::format("RELEASE {:x}", token));
    m.held = false;
    if (!a)
      fmt::print(stderr, "rewind mark: warning: {}: {} (its mark was queued under the hold)\n",
                 m.dir, a.status().message());
  }
  *held_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  for (Member& m : members) {
    auto a = ask(m.sock, fmt::format("DURABLE {}", m.stamp.seq));
    if (!a) return a.status().with_context(m.dir);
  }
  return Status::ok();
}

}  // namespace

int run_mark(const MarkOptions& o) {
  Status name_ok = check_mark_name(o.name);
  if (!name_ok) return report("mark", name_ok, {}, kExitUsage);
  auto hold_max = parse_duration(o.hold_max);
  if (!hold_max || *hold_max < std::chrono::milliseconds(1) || *hold_max > std::chrono::seconds(30))
    return report("mark",
                  Status::invalid(fmt::format("--hold-max {}: give 1ms to 30s", o.hold_max)), {},
                  kExitUsage);
  auto freeze_timeout = parse_duration(o.freeze_timeout);
  if (!freeze_timeout || *freeze_timeout < std::chrono::milliseconds(1))
    return report("mark",
                  Status::invalid(fmt::format("--freeze-timeout {}: give a duration such as 10s",
                                              o.freeze_timeout)),
                  {}, kExitUsage);
  auto thaw_wait = parse_duration(o.thaw_wait);
  if (!thaw_wait || *thaw_wait < std::chrono::milliseconds(1))
    return report(
        "mark",
        Status::invalid(fmt::format("--thaw-wait {}: give a duration such as 60s", o.thaw_wait)),
        {}, kExitUsage);
  if (!o.freeze.empty() && !o.freeze.starts_with("qga:"))
    return report("mark",
                  Status::invalid(fmt::format("--freeze {}: give qga:SOCKET, the host side of "
                                              "the guest agent's channel",
                                              o.freeze)),
                  {}, kExitUsage);
  if (!o.with.empty() && o.with.size() > 15)
    return report("mark", Status::invalid("a group mark takes at most 16 volumes"), {}, kExitUsage);
  // The members: this volume and every --with, each once.
  std::vector<Member> members;
  std::set<std::string> ids;
  members.push_back({o.journal, {}, {}, {}, false});
  for (const std::string& dir : o.with) members.push_back({dir, {}, {}, {}, false});
  for (size_t i = 0; i < members.size(); ++i) {
    Member& m = members[i];
    m.sock = i == 0 && !o.socket.empty() ? o.socket : join_path(m.dir, format::kControlSocketName);
    if (members.size() == 1) break;
    auto manifest = Manifest::load(m.dir);
    if (!manifest) return report("mark", manifest.status(), journal_hint(manifest.status()));
    m.volume = volume_id_hex(manifest->volume_id);
    if (!ids.insert(m.volume).second)
      return report("mark",
                    Status::invalid(fmt::format("{} is a volume the group already has", m.dir)), {},
                    kExitUsage);
  }

  if (!o.pre.empty()) {
    Status st = run_hook("--pre", o.pre, o.name);
    if (!st) return report("mark", st, "nothing was marked");
  }
  Status result = Status::ok();
  std::string group;
  double held_ms = 0;
  {
    std::unique_ptr<GuestAgent> agent;
    if (!o.freeze.empty()) {
      const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*freeze_timeout);
      auto a = GuestAgent::connect(o.freeze.substr(4), timeout);
      Result<int> frozen = a ? Result<int>(0) : Result<int>(a.status());
      if (a) {
        agent = std::move(*a);
        frozen = agent->freeze();
      }
      if (!frozen) {
        result = frozen.status().with_context("--freeze");
        if (agent && frozen.status().code() != Status::Code::kInvalidArgument) {
          // Unanswered: the agent may freeze the guest after the timeout. Nothing is
          // marked, but rewind stays until the thaw is known to have run.
          auto thawed = agent->thaw_after_unanswered_freeze(
              std::chrono::duration_cast<std::chrono::milliseconds>(*thaw_wait));
          if (thawed)
            fmt::print("thawed {} file system(s) of the guest after the unanswered freeze\n",
                       *thawed);
          else
            result = Status::remote(fmt::format(
                "{}; then thawing: {}: the guest may be left frozen; thaw it by hand: virsh "
                "domfsthaw, or the agent's guest-fsfreeze-thaw",
                result.message(), thawed.status().message()));
        } else if (agent) {
          // Refused: the agent may have frozen some file systems before it failed.
          (void)agent->thaw();
        }
      } else {
        fmt::print("froze {} file system(s) of the guest\n", *frozen);
      }
    }
    if (result) {
      if (members.size() == 1) {
        auto s = plain_mark(members[0].sock, o.name);
        if (s)
          members[0].stamp = *s;
        else
          result = s.status();
      } else {
        result = group_mark(members, o.name,
                            std::chrono::duration_cast<std::chrono::milliseconds>(*hold_max),
                            &group, &held_ms);
      }
      if (agent) {
        auto thawed = agent->thaw();
        if (!thawed) {
          const Status st = thawed.status().with_context("thawing the guest");
          result = result ? st : result;
          fmt::print(stderr,
                     "rewind mark: {}; thaw it by hand: virsh domfsthaw, or the agent's "
                     "guest-fsfreeze-thaw\n",
                     st.message());
        } else {
          fmt::print("thawed {} file system(s) of the guest\n", *thawed);
        }
      }
    }
  }
  if (result) {
    if (members.size() == 1) {
      fmt::print("mark {} at seq {} ({})\n", o.name, members[0].stamp.seq,
                 format_time(members[0].stamp.time_ns));
    } else {
      fmt::print(
          "group mark {} (group {}) across {} volumes at one cut; new writes held for {:.1f} ms\n",
          o.name, group, members.size(), held_ms);
      for (const Member& m : members)
        fmt::print("  {} seq {} ({})\n", m.dir, m.stamp.seq, format_time(m.stamp.time_ns));
    }
  }
  if (!o.post.empty()) {
    Status st = run_hook("--post", o.post, o.name);
    if (!st && result)
      result = st;
    else if (!st)
      fmt::print(stderr, "rewind mark: {}\n", st.message());
  }
  if (!result)
    return report("mark", result,
                  result.code() == Status::Code::kIoError && o.freeze.empty()
                      ? "is the volume being served? marks go to a running server"
                      : "");
  return kExitOk;
}

}  // namespace rwd::cli
