#include "rewind/base/file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <csetjmp>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace rwd {

int FileSystem::open(const char* path, int flags, mode_t mode) {
  return ::open(path, flags, mode);
}
int FileSystem::close(int fd) {
  return ::close(fd);
}
ssize_t FileSystem::pread(int fd, void* buf, size_t n, off_t offset) {
  return ::pread(fd, buf, n, offset);
}
ssize_t FileSystem::pread_cached(int fd, void* buf, size_t n, off_t offset) {
  struct iovec iov = {buf, n};
  return ::preadv2(fd, &iov, 1, offset, RWF_NOWAIT);
}
ssize_t FileSystem::pwrite(int fd, const void* buf, size_t n, off_t offset) {
  return ::pwrite(fd, buf, n, offset);
}
ssize_t FileSystem::pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
  return ::pwritev(fd, iov, iovcnt, offset);
}
int FileSystem::fsync(int fd) {
  return ::fsync(fd);
}
int FileSystem::fdatasync(int fd) {
  return ::fdatasync(fd);
}
int FileSystem::ftruncate(int fd, off_t size) {
  return ::ftruncate(fd, size);
}
int FileSystem::fallocate(int fd, int mode, off_t offset, off_t len) {
  return ::fallocate(fd, mode, offset, len);
}
int FileSystem::clone(int dst, int src) {
  return ::ioctl(dst, FICLONE, src);
}
ssize_t FileSystem::copy_file_range(int in, off_t* in_off, int out, off_t* out_off, size_t n) {
  return ::copy_file_range(in, in_off, out, out_off, n, 0);
}
int FileSystem::rename(const char* from, const char* to) {
  return ::rename(from, to);
}
int FileSystem::unlink(const char* path) {
  return ::unlink(path);
}
int FileSystem::mkdir(const char* path, mode_t mode) {
  return ::mkdir(path, mode);
}

namespace {
FileSystem kernel_fs;
std::atomic<FileSystem*> current_fs{&kernel_fs};
}  // namespace

FileSystem& file_system() {
  return *current_fs.load(std::memory_order_acquire);
}

FileSystem* set_file_system(FileSystem* fs) {
  return current_fs.exchange(fs != nullptr ? fs : &kernel_fs, std::memory_order_acq_rel);
}

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) file_system().close(fd_);
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

File::~File() {
  if (fd_ >= 0) file_system().close(fd_);
}

Result<File> File::open(const std::string& path, int flags, int mode) {
  int fd = file_system().open(path.c_str(), flags | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) return Status::io_error(fmt::format("cannot open {}", path), errno);
  return File(fd, path);
}

bool File::pread_cached(std::span<uint8_t> buf, uint64_t offset) const {
  ssize_t n = file_system().pread_cached(fd_, buf.data(), buf.size(), static_cast<off_t>(offset));
  return n >= 0 && static_cast<size_t>(n) == buf.size();
}

Status File::pread_full(std::span<uint8_t> buf, uint64_t offset, size_t* got) const {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = file_system().pread(fd_, buf.data() + done, buf.size() - done,
                                    static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::io_error(fmt::format("read of {} at offset {} failed", path_, offset + done),
                              errno);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  if (got != nullptr) {
    *got = done;
  } else if (done < buf.size()) {
    return Status::corruption(
        fmt::format("{} ends at offset {}, before the {} bytes expected at {}", path_,
                    offset + done, buf.size(), offset));
  }
  return Status::ok();
}

Status File::pwrite_full(std::span<const uint8_t> buf, uint64_t offset) const {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = file_system().pwrite(fd_, buf.data() + done, buf.size() - done,
                                     static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::io_error(fmt::format("write to {} at offset {} failed", path_, offset + done),
                              errno);
    }
    done += static_cast<size_t>(n);
  }
  return Status::ok();
}

Status File::pwritev_full(struct iovec* iov, int iovcnt, uint64_t offset) const {
  while (iovcnt > 0) {
    // Skip exhausted entries (after a short write, or empty payloads).
    if (iov->iov_len == 0) {
      ++iov;
      --iovcnt;
      continue;
    }
    int chunk = std::min(iovcnt, IOV_MAX);
    ssize_t n = file_system().pwritev(fd_, iov, chunk, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::io_error(fmt::format("write to {} at offset {} failed", path_, offset), errno);
    }
    offset += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (left > 0 && iovcnt > 0) {
      if (left >= iov->iov_len) {
        left -= iov->iov_len;
        ++iov;
        --iovcnt;
      } else {
        iov->iov_base = static_cast<uint8_t*>(iov->iov_base) + left;
        iov->iov_len -= left;
        left = 0;
      }
    }
  }
  return Status::ok();
}

Status File::datasync() const {
  if (file_system().fdatasync(fd_) != 0)
    return Status::io_error(fmt::format("fdatasync of {} failed", path_), errno);
  return Status::ok();
}

Status File::sync() const {
  if (file_system().fsync(fd_) != 0)
    return Status::io_error(fmt::format("fsync of {} failed", path_), errno);
  return Status::ok();
}

Status File::truncate(uint64_t size) const {
  if (file_system().ftruncate(fd_, static_cast<off_t>(size)) != 0)
    return Status::io_error(fmt::format("cannot truncate {} to {} bytes", path_, size), errno);
  return Status::ok();
}

Result<uint64_t> File::size() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::io_error(fmt::format("cannot stat {}", path_), errno);
  return static_cast<uint64_t>(st.st_size);
}

Status File::close() {
  if (fd_ < 0) return Status::ok();
  int rc = file_system().close(fd_);
  fd_ = -1;
  if (rc != 0) return Status::io_error(fmt::format("close of {} failed", path_), errno);
  return Status::ok();
}

Status sync_dir(const std::string& dir) {
  auto f = File::open(dir, O_RDONLY | O_DIRECTORY);
  if (!f) return f.status();
  return f->sync();
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

std::string absolute_path(const std::string& path) {
  if (path.starts_with("/")) return path;
  std::error_code ec;
  const std::filesystem::path cwd = std::filesystem::current_path(ec);
  if (ec) return path;  // no current directory: the name is all there is
  return path.empty() ? cwd.string() : join_path(cwd.string(), path);
}

Result<std::string> real_path(const std::string& path) {
  char* p = ::realpath(path.c_str(), nullptr);
  if (p == nullptr) return Status::io_error(path, errno);
  std::string out = p;
  free(p);
  return out;
}

std::string parent_dir(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

Result<File> create_new_file(const std::string& path, int flags) {
  return File::open(path, flags | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
}

Result<File> create_temp_file(const std::string& path, int flags) {
  // unlink removes a planted link itself, never what it points at.
  if (file_system().unlink(path.c_str()) != 0 && errno != ENOENT)
    return Status::io_error(fmt::format("cannot remove the old temporary {}", path), errno);
  return create_new_file(path, flags);
}

Status check_private_dir(const std::string& dir, const char* what,
                         std::optional<mode_t>* tightened) {
  if (tightened != nullptr) tightened->reset();
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    return Status::io_error(fmt::format("cannot reach {} {}", what, dir), errno);
  if (!S_ISDIR(st.st_mode))
    return Status::invalid(
        fmt::format("{} {} is not a directory: give a directory's path", what, dir));
  const mode_t mode = st.st_mode & 07777;
  if (st.st_uid != ::geteuid())
    return Status::invalid(fmt::format(
        "{} {} belongs to uid {}, not to this user (uid {}); what another user created may hold "
        "links or files they planted: give a directory of this user, or a path that does not "
        "exist yet",
        what, dir, st.st_uid, ::geteuid()));
  if ((mode & 022) != 0)
    return Status::invalid(fmt::format(
        "{} {} can be written by {} (mode {:04o}), who could plant files in it: make it private "
        "(chmod 700 {}) or give another directory",
        what, dir, (mode & 002) != 0 ? "every user" : "its group", mode, dir));
  if ((mode & 077) != 0) {
    if (::chmod(dir.c_str(), 0700) != 0)
      return Status::io_error(fmt::format("cannot make {} {} private (chmod 700)", what, dir),
                              errno);
    if (tightened != nullptr) *tightened = mode;
  }
  return Status::ok();
}

Status make_private_dir(const std::string& dir, const char* what, bool* created,
                        std::optional<mode_t>* tightened) {
  if (created != nullptr) *created = false;
  if (tightened != nullptr) tightened->reset();
  if (file_system().mkdir(dir.c_str(), 0700) == 0) {
    if (created != nullptr) *created = true;
    return Status::ok();
  }
  if (errno != EEXIST)
    return Status::io_error(fmt::format("cannot create {} {}", what, dir), errno);
  return check_private_dir(dir, what, tightened);
}

Status check_secret_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return Status::io_error(fmt::format("cannot read {}", path), errno);
  const mode_t mode = st.st_mode & 07777;
  if ((mode & 077) != 0)
    return Status::invalid(fmt::format(
        "{} holds secrets but {} may read it (mode {:04o}): make it private (chmod 600 {})", path,
        (mode & 007) != 0 ? "every user" : "its group", mode, path));
  return Status::ok();
}

Status write_file_atomic(const std::string& path, std::string_view content) {
  std::string tmp = path + ".tmp";
  auto f = create_temp_file(tmp, O_WRONLY);
  if (!f) return f.status();
  REWIND_RETURN_IF_ERROR(f->pwrite_full(
      std::span(reinterpret_cast<const uint8_t*>(content.data()), content.size()), 0));
  REWIND_RETURN_IF_ERROR(f->sync());
  REWIND_RETURN_IF_ERROR(f->close());
  if (file_system().rename(tmp.c_str(), path.c_str()) != 0)
    return Status::io_error(fmt::format("cannot rename {} to {}", tmp, path), errno);
  return sync_dir(parent_dir(path));
}

Result<std::string> read_small_file(const std::string& path, size_t limit) {
  auto f = File::open(path, O_RDONLY);
  if (!f) return f.status();
  auto size = f->size();
  if (!size) return size.status();
  if (*size > limit)
    return Status::corruption(
        fmt::format("{} is {} bytes, larger than the {} expected", path, *size, limit));
  std::string s(*size, '\0');
  size_t got = 0;
  REWIND_RETURN_IF_ERROR(
      f->pread_full(std::span(reinterpret_cast<uint8_t*>(s.data()), s.size()), 0, &got));
  s.resize(got);
  return s;
}

Status clone_or_sparse_copy(const File& src, uint64_t size, const File& dst, bool* reflinked) {
  *reflinked = false;
  if (file_system().clone(dst.fd(), src.fd()) == 0) {
    *reflinked = true;
    return dst.sync();
  }
  REWIND_RETURN_IF_ERROR(dst.truncate(size));
  // Copy only the data regions; holes stay holes in the copy.
  off_t pos = 0;
  const off_t end = static_cast<off_t>(size);
  while (pos < end) {
    off_t data = ::lseek(src.fd(), pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // no data after pos
      return Status::io_error(fmt::format("SEEK_DATA on {} failed", src.path()), errno);
    }
    off_t hole = ::lseek(src.fd(), data, SEEK_HOLE);
    if (hole < 0) return Status::io_error(fmt::format("SEEK_HOLE on {} failed", src.path()), errno);
    hole = std::min(hole, end);
    off_t in = data, out = data;
    while (in < hole) {
      ssize_t n = file_system().copy_file_range(src.fd(), &in, dst.fd(), &out,
                                                static_cast<size_t>(hole - in));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::io_error(
            fmt::format("copy of {} to {} at offset {} failed", src.path(), dst.path(), in), errno);
      }
      if (n == 0)
        return Status::corruption(fmt::format("{} shrank while being copied", src.path()));
    }
    pos = hole;
  }
  return dst.sync();
}

Status zero_range(const File& f, uint64_t offset, uint64_t len, bool may_punch) {
  if (len == 0) return Status::ok();
  auto off = static_cast<off_t>(offset);
  auto n = static_cast<off_t>(len);
  if (may_punch &&
      file_system().fallocate(f.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, n) == 0)
    return Status::ok();
  if (file_system().fallocate(f.fd(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, n) == 0)
    return Status::ok();
  if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
    return Status::io_error(
        fmt::format("cannot zero {} bytes of {} at offset {}", len, f.path(), offset), errno);
  static const std::vector<uint8_t> zeroes(1u << 20, 0);
  while (len > 0) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(len, zeroes.size()));
    REWIND_RETURN_IF_ERROR(f.pwrite_full(std::span(zeroes.data(), chunk), offset));
    offset += chunk;
    len -= chunk;
  }
  return Status::ok();
}

// ---- FileMap ------------------------------------------------------------------------
// A copy from a mapping runs with a jump buffer set for its thread; the SIGBUS handler
// jumps back to it, so a page that cannot be read ends the copy instead of the
// process. A SIGBUS outside such a copy goes to whatever handled it before.
namespace {

thread_local sigjmp_buf* t_copy_guard = nullptr;
struct sigaction g_previous_sigbus;

void on_sigbus(int sig, siginfo_t* info, void* context) {
  if (sigjmp_buf* guard = t_copy_guard) {
    t_copy_guard = nullptr;
    siglongjmp(*guard, 1);
  }
  const struct sigaction& prev = g_previous_sigbus;
  if ((prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction != nullptr) {
    prev.sa_sigaction(sig, info, context);
  } else if (!(prev.sa_flags & SA_SIGINFO) && prev.sa_handler != SIG_DFL &&
             prev.sa_handler != SIG_IGN) {
    prev.sa_handler(sig);
  } else {
    // The default: returning re-runs the faulting access, which then ends the process.
    ::sigaction(SIGBUS, &prev, nullptr);
  }
}

// Installs on_sigbus unless it is in place already. Checked at every mapping, not
// once: whoever replaced it since (a test framework between its test cases, say) gets
// the signals that are not from a copy.
void install_sigbus_handler() {
  static std::mutex mu;
  std::lock_guard lk(mu);
  struct sigaction current {};
  ::sigaction(SIGBUS, nullptr, &current);
  if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_sigbus) return;
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sigemptyset(&sa.sa_mask);
  // SA_NODEFER: leaving the handler by a jump must not leave SIGBUS blocked.
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  ::sigaction(SIGBUS, &sa, &g_previous_sigbus);
}

}  // namespace

FileMap::FileMap(FileMap&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)), length_(std::exchange(o.length_, 0)) {}

FileMap& FileMap::operator=(FileMap&& o) noexcept {
  if (this != &o) {
    unmap();
    base_ = std::exchange(o.base_, nullptr);
    length_ = std::exchange(o.length_, 0);
  }
  return *this;
}

FileMap::~FileMap() {
  unmap();
}

void FileMap::unmap() {
  if (base_ != nullptr) ::munmap(const_cast<uint8_t*>(base_), length_);
  base_ = nullptr;
  length_ = 0;
}

Result<FileMap> FileMap::map(const File& file, uint64_t length) {
  FileMap m;
  if (length == 0) return m;
  install_sigbus_handler();
  void* p = ::mmap(nullptr, length, PROT_READ, MAP_SHARED, file.fd(), 0);
  if (p == MAP_FAILED)
    return Status::io_error(fmt::format("cannot map {} ({} bytes)", file.path(), length), errno);
  m.base_ = static_cast<const uint8_t*>(p);
  m.length_ = length;
  return m;
}

bool FileMap::copy(std::span<uint8_t> dst, uint64_t offset) const {
  if (offset > length_ || dst.size() > length_ - offset) return false;
  sigjmp_buf guard;
  if (sigsetjmp(guard, 0) != 0) {
    // A SIGBUS during the copy below. SA_NODEFER keeps the signal unblocked, but a
    // wrapper around the handler (ThreadSanitizer's) may not: unblock it, or the next
    // one would end the process.
    sigset_t bus;
    sigemptyset(&bus);
    sigaddset(&bus, SIGBUS);
    ::pthread_sigmask(SIG_UNBLOCK, &bus, nullptr);
    return false;
  }
  t_copy_guard = &guard;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  std::memcpy(dst.data(), base_ + offset, dst.size());
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_copy_guard = nullptr;
  return true;
}

// ---- BackgroundTask -------------------------------------------------------------------

BackgroundTask::~BackgroundTask() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BackgroundTask::start(std::function<Status()> task, std::function<void()> done) {
  {
    std::lock_guard lk(mu_);
    task_ = std::move(task);
    done_cb_ = std::move(done);
    done_ = false;
  }
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  cv_.notify_all();
}

void BackgroundTask::start_sync(const File* file, std::function<void()> done) {
  start([file] { return file->datasync(); }, std::move(done));
}

bool BackgroundTask::done() const {
  std::lock_guard lk(mu_);
  return done_;
}

Status BackgroundTask::wait() {
  std::unique_lock lk(mu_);
  cv_.wait(lk, [&] { return done_ && !calling_; });
  return result_;
}

void BackgroundTask::run() {
  ::pthread_setname_np(::pthread_self(), name_.substr(0, 15).c_str());
  if (batch_) {
    const sched_param none{};
    (void)::pthread_setschedparam(::pthread_self(), SCHED_BATCH, &none);  // a hint only
  }
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stop_ || task_ != nullptr; });
    if (task_ == nullptr) return;
    std::function<Status()> task = std::exchange(task_, nullptr);
    lk.unlock();
    Status st = task();
    lk.lock();
    result_ = st;
    done_ = true;
    if (done_cb_) {
      calling_ = true;
      lk.unlock();
      done_cb_();
      lk.lock();
      calling_ = false;
    }
    cv_.notify_all();
  }
}

}  // namespace rwd
