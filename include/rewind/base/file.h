// Thin RAII wrappers over POSIX file I/O that loop on short reads and writes and
// report failures as Status values naming the file.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <fcntl.h>
#include <condition_variable>

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "rewind/base/status.h"

namespace rwd {

// The system calls through which every journal, manifest and image byte is written
// and synced. Each has the system call's contract: -1 (or a negative count) with
// errno set on failure. The default passes straight to the kernel; tests install a
// fault-injecting one (tests/support/fault_fs.h) to simulate power cuts and I/O
// errors at this seam, which is why File and the helpers below never call the kernel
// directly for these.
class FileSystem {
 public:
  virtual ~FileSystem() = default;
  virtual int open(const char* path, int flags, mode_t mode);
  virtual int close(int fd);
  virtual ssize_t pread(int fd, void* buf, size_t n, off_t offset);
  // Reads only what is in the page cache, without waiting for the disk
  // (preadv2 with RWF_NOWAIT): fewer bytes than asked, or -1 with EAGAIN, if not all
  // of it is there.
  virtual ssize_t pread_cached(int fd, void* buf, size_t n, off_t offset);
  virtual ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset);
  virtual ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset);
  virtual int fsync(int fd);
  virtual int fdatasync(int fd);
  virtual int ftruncate(int fd, off_t size);
  virtual int fallocate(int fd, int mode, off_t offset, off_t len);
  // ioctl(FICLONE): makes `dst` a copy-on-write clone of `src`.
  virtual int clone(int dst, int src);
  virtual ssize_t copy_file_range(int in, off_t* in_off, int out, off_t* out_off, size_t n);
  virtual int rename(const char* from, const char* to);
  virtual int unlink(const char* path);
  virtual int mkdir(const char* path, mode_t mode);
};

// The file system in use (the kernel's unless a test installed another).
FileSystem& file_system();
// Installs `fs` (nullptr: the kernel's again) and returns the previous one. For tests;
// not thread-safe against I/O in flight.
FileSystem* set_file_system(FileSystem* fs);

// An open file descriptor and the path it was opened as (for error messages).
// Move-only; closes on destruction.
class File {
 public:
  File() = default;
  File(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  File(File&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  File& operator=(File&& o) noexcept;
  ~File();

  // Files rewind creates hold a disk's data: private to the user (0600) unless the
  // caller says otherwise. The mode is explicit, never left to the umask (nbdkit sets
  // its own).
  static Result<File> open(const std::string& path, int flags, int mode = 0600);

  int fd() const { return fd_; }
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

  // Reads exactly buf.size() bytes at `offset`; fewer only at end of file, in which
  // case *got says how many (an error if `got` is null).
  Status pread_full(std::span<uint8_t> buf, uint64_t offset, size_t* got = nullptr) const;
  // Whether all of buf could be read from the page cache alone (then it is filled).
  bool pread_cached(std::span<uint8_t> buf, uint64_t offset) const;
  Status pwrite_full(std::span<const uint8_t> buf, uint64_t offset) const;
  // Writes every iovec in order starting at `offset`, in as few system calls as
  // IOV_MAX allows. `iov` is modified.
  Status pwritev_full(struct iovec* iov, int iovcnt, uint64_t offset) const;
  Status datasync() const;
  Status sync() const;
  Status truncate(uint64_t size) const;
  Result<uint64_t> size() const;
  Status close();

 private:
  int fd_ = -1;
  std::string path_;
};

// A read-only shared mapping of a whole file, to copy out data that the page cache
// most likely holds without a system call per copy (a point-in-time export reads a
// journal in thousands of small pieces per request). Reads through it bypass
// FileSystem. A fault the kernel cannot serve (an I/O error, or the file cut short
// under the mapping), which would otherwise kill the process with SIGBUS, makes copy()
// return false; the caller then reads with File::pread_full, which reports the error.
// Move-only; unmaps on destruction.
class FileMap {
 public:
  FileMap() = default;
  FileMap(const FileMap&) = delete;
  FileMap& operator=(const FileMap&) = delete;
  FileMap(FileMap&& o) noexcept;
  FileMap& operator=(FileMap&& o) noexcept;
  ~FileMap();

  // Maps the first `length` bytes of `file` (which stays open meanwhile).
  static Result<FileMap> map(const File& file, uint64_t length);

  bool is_mapped() const { return base_ != nullptr; }
  // Copies length bytes at `offset` into dst: false if they lie outside the mapping or
  // a page of them could not be read.
  bool copy(std::span<uint8_t> dst, uint64_t offset) const;

 private:
  void unmap();
  const uint8_t* base_ = nullptr;
  uint64_t length_ = 0;
};

// Runs one task at a time on a thread of its own, so that the caller can go on with
// other work meanwhile (a sync of the journal or the image, the apply of a batch).
// The thread starts on first use and is named `name` (for top, perf, gdb).
class BackgroundTask {
 public:
  // `batch`: the thread runs under SCHED_BATCH, for throughput work that must not
  // preempt latency-bound threads when it wakes (the volume's image writes and syncs,
  // beside the request threads).
  explicit BackgroundTask(std::string name, bool batch = false)
      : name_(std::move(name)), batch_(batch) {}
  BackgroundTask(const BackgroundTask&) = delete;
  BackgroundTask& operator=(const BackgroundTask&) = delete;
  ~BackgroundTask();

  // Starts `task`; `done`, if set, is called on the task's thread after it. None may
  // be running (wait() for it first).
  void start(std::function<Status()> task, std::function<void()> done = {});
  // Starts file->datasync(): what was written to `file` before this call is durable
  // once wait() returns OK. `file` must stay open until then.
  void start_sync(const File* file, std::function<void()> done = {});
  // Whether the started task has ended (wait() would not block on it).
  bool done() const;
  // Waits for the started task, and for its `done`; returns the task's outcome.
  Status wait();

 private:
  void run();

  std::string name_;
  bool batch_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::function<Status()> task_;  // to run next
  std::function<void()> done_cb_;
  bool done_ = true;
  bool calling_ = false;  // done_cb_ is running
  bool stop_ = false;
  Status result_;
  std::thread thread_;
};

// fsyncs a directory so that entries created, renamed or removed in it are durable.
Status sync_dir(const std::string& dir);

// Replaces `path` atomically with `content`: write `path.tmp`, fsync, rename, fsync dir.
Status write_file_atomic(const std::string& path, std::string_view content);

// Creates `path`, which must not exist (O_EXCL), private to this user (0600), without
// following a symbolic link planted there (O_NOFOLLOW). `flags` adds O_RDWR or
// O_WRONLY.
Result<File> create_new_file(const std::string& path, int flags = O_RDWR);

// A temporary file at `path`, private and new: whatever is at `path` already (a
// leftover of an interrupted run, or a file or link someone planted) is removed
// first, never opened or followed. Another process that creates `path` in between
// makes this fail (EEXIST) rather than be written through.
Result<File> create_temp_file(const std::string& path, int flags = O_RDWR);

// Checks an existing directory for a journal or a store: a directory owned by this
// user that no group or other user may write into (one another user created, even
// empty, may hold links or files they planted). One that others may read or enter is
// made private (chmod 0700), and *tightened says so with its old mode. `what` names it
// in errors ("journal", "store").
Status check_private_dir(const std::string& dir, const char* what,
                         std::optional<mode_t>* tightened = nullptr);

// A directory for a journal or a store: created private to this user (0700), or, if
// it exists, checked by check_private_dir.
Status make_private_dir(const std::string& dir, const char* what, bool* created = nullptr,
                        std::optional<mode_t>* tightened = nullptr);

// Checks a secret (a token or key file) that only its owner may read: refused if its
// mode lets the group or others read or write it.
Status check_secret_file(const std::string& path);

// Reads a whole (small) file.
Result<std::string> read_small_file(const std::string& path, size_t limit = 16u << 20);

// Copies `src` to a new file `dst` of the same size: a reflink (FICLONE) where the
// file system supports it, else a sparse copy that skips holes. fsyncs `dst`.
// *reflinked says which was used.
Status clone_or_sparse_copy(const File& src, uint64_t size, const File& dst, bool* reflinked);

// Makes `len` bytes at `offset` read as zeroes: punches a hole (keeping the size)
// where `may_punch` and the file system allow, else zeroes the range in place, else
// writes zero bytes.
Status zero_range(const File& f, uint64_t offset, uint64_t len, bool may_punch);

std::string join_path(const std::string& dir, const std::string& name);
// `path` made absolute against the current directory, as given otherwise ("a/../b"
// stays so): for a file that need not exist yet.
std::string absolute_path(const std::string& path);
// The absolute path of an existing file, with symbolic links, "." and ".." resolved.
Result<std::string> real_path(const std::string& path);
// The directory that holds `path`: "." for a bare name, "/" for a name under the
// root; trailing slashes of `path` are ignored ("a/b/" is in "a").
std::string parent_dir(std::string path);

}  // namespace rwd
