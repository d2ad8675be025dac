// FaultInjectionFs: a rwd::FileSystem for tests that models what a disk keeps when
// the power goes, in the manner of LevelDB's fault-injection test env.
//
// Every file and directory under `root` is tracked:
//   - a file's durable content is what it held at its last fsync/fdatasync (or when
//     tracking began); the writes, truncations and allocations since are kept as a
//     list of unsynced changes;
//   - a directory's durable entries are those it had at its last fsync (or when
//     tracking began): creating, renaming or removing a name is not durable until
//     the directory itself is synced.
// cut_power_after(n) lets n more changing operations through, then fails every call
// with EIO, as a machine that lost power does nothing more. lose_unsynced() then
// rewrites the files under `root` to what the disk would hold after the cut: unsynced
// changes dropped, or torn (each 512-byte sector of each unsynced write kept or lost
// at random, in any order, which is all a disk promises), and unsynced directory
// entries undone. inject() makes chosen calls fail with a chosen errno, for ENOSPC
// and EIO tests. Files outside `root` pass straight to the kernel.
#pragma once

#include <sys/stat.h>

#include <cerrno>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "rewind/base/file.h"

namespace rwd::test {

class FaultInjectionFs : public FileSystem {
 public:
  // The operations a fault rule sees.
  enum class Op { kCreate, kWrite, kSync, kTruncate, kAllocate, kRename, kUnlink, kMkdir, kRead };
  // Returns the errno the call should fail with, or 0 to let it through.
  using Rule = std::function<int(Op op, const std::string& path)>;
  enum class Loss { kDrop, kTear };

  // Starts tracking `root` (absolute, existing): what is there now counts as durable.
  explicit FaultInjectionFs(std::string root);

  // Lets `n` more changing calls (create, write, sync, truncate, allocate, rename,
  // unlink, mkdir) through, then fails every call with EIO.
  void cut_power_after(uint64_t n);
  bool power_cut() const;
  // Changing calls made so far.
  uint64_t changes() const;
  void inject(Rule rule);

  // After the power cut (or at any moment no file is being written): rewrites `root`
  // to what the disk would hold, restores power and starts tracking afresh. Every
  // descriptor opened through this object must be closed first.
  void lose_unsynced(Loss loss, uint64_t seed);

  int open(const char* path, int flags, mode_t mode) override;
  int close(int fd) override;
  ssize_t pread(int fd, void* buf, size_t n, off_t offset) override;
  // Never from the cache: every read goes through pread() and its fault rules.
  ssize_t pread_cached(int, void*, size_t, off_t) override {
    errno = EAGAIN;
    return -1;
  }
  ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) override;
  ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) override;
  int fsync(int fd) override;
  int fdatasync(int fd) override;
  int ftruncate(int fd, off_t size) override;
  int fallocate(int fd, int mode, off_t offset, off_t len) override;
  int clone(int dst, int src) override;
  ssize_t copy_file_range(int in, off_t* in_off, int out, off_t* out_off, size_t n) override;
  int rename(const char* from, const char* to) override;
  int unlink(const char* path) override;
  int mkdir(const char* path, mode_t mode) override;

 private:
  struct InodeKey {
    dev_t dev;
    ino_t ino;
    auto operator<=>(const InodeKey&) const = default;
  };
  struct Change {
    bool resize;  // a truncation or allocation to `offset` bytes; else a write
    uint64_t offset;
    std::string data;
  };
  struct Inode {
    std::string durable;
    std::vector<Change> unsynced;
  };
  // Files are known by an id of this model, not by inode number: the kernel reuses
  // the number of a removed file while the model may still need its durable content
  // (the removal is not durable until its directory is synced).
  struct Entry {
    uint64_t id;
    bool is_dir;
  };
  struct OpenFile {
    std::string path;
    uint64_t id;
    bool is_dir;
  };

  bool tracked(const std::string& path) const;
  // Counts a changing call; returns the errno to fail it with (EIO once the power is cut).
  int admit(Op op, const std::string& path);
  int admit_fd(Op op, int fd, const OpenFile** file);
  void snapshot_locked();
  void snapshot_dir(const std::string& dir);
  std::map<std::string, Entry> list(const std::string& dir) const;
  void record_write(const OpenFile& f, uint64_t offset, const void* data, size_t n);
  void record_range(const OpenFile& f, int fd, uint64_t offset, uint64_t len);

  const std::string root_;
  mutable std::mutex mu_;  // guards every member below
  uint64_t id_of(const struct stat& st);
  uint64_t new_id(const struct stat& st);

  std::map<int, OpenFile> open_;
  std::map<InodeKey, uint64_t> live_;  // inodes that exist now -> model id
  uint64_t next_id_ = 1;
  std::map<uint64_t, Inode> inodes_;
  std::map<std::string, std::map<std::string, Entry>> dirs_;  // durable entries
  uint64_t changes_ = 0;
  uint64_t power_budget_ = UINT64_MAX;
  bool power_cut_ = false;
  Rule rule_;
};

// Installs a file system for the life of the object.
class ScopedFileSystem {
 public:
  explicit ScopedFileSystem(FileSystem* fs) : prev_(set_file_system(fs)) {}
  ~ScopedFileSystem() { set_file_system(prev_); }
  ScopedFileSystem(const ScopedFileSystem&) = delete;
  ScopedFileSystem& operator=(const ScopedFileSystem&) = delete;

 private:
  FileSystem* prev_;
};

}  // namespace rwd::test
