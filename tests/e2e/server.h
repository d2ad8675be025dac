// Starts the real nbdkit with the built rewind plugin on a UNIX socket, for the
// end-to-end tests, and connects libnbd handles to it.
#pragma once

#include <fcntl.h>
#include <libnbd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace rwd::test {

class Server {
 public:
  // `args` are the plugin's key=value parameters.
  Server(const std::string& sock, const std::vector<std::string>& args) : sock_(sock) {
    ::unlink(sock.c_str());
    std::vector<std::string> argv = {"nbdkit",          "-f", "-U", sock, "--exit-with-parent",
                                     REWIND_PLUGIN_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      // A sanitizer build: nbdkit needs the runtime the plugin was built with, in the
      // order CMakeLists.txt explains, and reports go to files that the test checks
      // (sanitizer_reports). Leaks are checked in rewind's programs only.
      const char* preload = ::getenv("REWIND_PRELOAD");
      if (preload != nullptr && *preload != '\0') {
        const std::string log = "log_path=" + reports_prefix();
        ::setenv("LD_PRELOAD", preload, 1);
        ::setenv("ASAN_OPTIONS", (log + ":detect_leaks=0:verify_asan_link_order=0").c_str(), 1);
        ::setenv("UBSAN_OPTIONS", log.c_str(), 1);
        ::setenv("TSAN_OPTIONS", log.c_str(), 1);
      }
      ::execvp("nbdkit", cargv.data());
      ::_exit(127);
    }
  }
  ~Server() { stop(SIGKILL); }
  Server(const Server&) = delete;

  // A connected handle, or null if the server did not come up within 20 s.
  struct nbd_handle* connect(bool block_status = false) const {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      struct nbd_handle* h = nbd_create();
      if (block_status) nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
      if (nbd_connect_unix(h, sock_.c_str()) == 0) return h;
      nbd_close(h);
      if (!running()) return nullptr;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return nullptr;
  }

  bool running() const {
    if (pid_ <= 0) return false;
    int status;
    return ::waitpid(pid_, &status, WNOHANG) == 0;
  }

  // What a sanitizer build reported in the server (empty: nothing, or no sanitizer).
  std::string sanitizer_reports() const {
    std::string all;
    const std::filesystem::path prefix = reports_prefix();
    for (const auto& e : std::filesystem::directory_iterator(prefix.parent_path())) {
      if (!e.path().filename().string().starts_with(prefix.filename().string())) continue;
      std::ifstream in(e.path());
      all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    return all;
  }

  // Signals the server and waits; returns its wait status (or -1 if not running).
  int stop(int sig = SIGTERM) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  std::string reports_prefix() const { return sock_ + ".sanitizer"; }

  std::string sock_;
  pid_t pid_ = -1;
};

}  // namespace rwd::test
