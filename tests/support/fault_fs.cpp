#include "fault_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <cerrno>
#include <random>
#include <set>
#include <stdexcept>

namespace rwd::test {

namespace {

std::string read_whole(const std::string& path) {
  std::string s;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("fault fs: cannot read " + path);
  char buf[1 << 16];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return s;
}

void write_whole(const std::string& path, const std::string& content, bool truncate_existing) {
  int flags = O_WRONLY | O_CLOEXEC | (truncate_existing ? O_TRUNC : (O_CREAT | O_EXCL));
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) throw std::runtime_error("fault fs: cannot write " + path);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n <= 0) throw std::runtime_error("fault fs: short write to " + path);
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

void remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    if (DIR* d = ::opendir(path.c_str())) {
      std::vector<std::string> names;
      while (struct dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(n);
      }
      ::closedir(d);
      for (const auto& n : names) remove_tree(path + "/" + n);
    }
    ::rmdir(path.c_str());
  } else {
    ::unlink(path.c_str());
  }
}

void put(std::string* s, uint64_t offset, const char* data, size_t n) {
  if (s->size() < offset + n) s->resize(offset + n, '\0');
  s->replace(offset, n, data, n);
}

}  // namespace

FaultInjectionFs::FaultInjectionFs(std::string root) : root_(std::move(root)) {
  std::lock_guard lk(mu_);
  snapshot_locked();
}

void FaultInjectionFs::cut_power_after(uint64_t n) {
  std::lock_guard lk(mu_);
  power_budget_ = changes_ + n;
}

bool FaultInjectionFs::power_cut() const {
  std::lock_guard lk(mu_);
  return power_cut_;
}

uint64_t FaultInjectionFs::changes() const {
  std::lock_guard lk(mu_);
  return changes_;
}

void FaultInjectionFs::inject(Rule rule) {
  std::lock_guard lk(mu_);
  rule_ = std::move(rule);
}

bool FaultInjectionFs::tracked(const std::string& path) const {
  return path == root_ || (path.size() > root_.size() &&
                           path.compare(0, root_.size(), root_) == 0 && path[root_.size()] == '/');
}

std::map<std::string, FaultInjectionFs::Entry> FaultInjectionFs::list(
    const std::string& dir) const {
  std::map<std::string, Entry> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    struct stat st;
    if (::lstat((dir + "/" + n).c_str(), &st) != 0) continue;
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) continue;  // sockets and the like
    out[n] = Entry{const_cast<FaultInjectionFs*>(this)->id_of(st), S_ISDIR(st.st_mode)};
  }
  ::closedir(d);
  return out;
}

void FaultInjectionFs::snapshot_dir(const std::string& dir) {
  auto entries = list(dir);
  for (const auto& [name, e] : entries) {
    std::string path = dir + "/" + name;
    if (e.is_dir) {
      snapshot_dir(path);
    } else {
      inodes_[e.id] = Inode{read_whole(path), {}};
    }
  }
  dirs_[dir] = std::move(entries);
}

uint64_t FaultInjectionFs::id_of(const struct stat& st) {
  auto [it, inserted] = live_.try_emplace(InodeKey{st.st_dev, st.st_ino}, next_id_);
  if (inserted) ++next_id_;
  return it->second;
}

uint64_t FaultInjectionFs::new_id(const struct stat& st) {
  live_[InodeKey{st.st_dev, st.st_ino}] = next_id_;
  return next_id_++;
}

void FaultInjectionFs::snapshot_locked() {
  inodes_.clear();
  live_.clear();
  dirs_.clear();
  snapshot_dir(root_);
}

int FaultInjectionFs::admit(Op op, const std::string& path) {
  if (power_cut_) return EIO;
  if (op != Op::kRead && ++changes_ > power_budget_) {
    power_cut_ = true;
    return EIO;
  }
  if (rule_) return rule_(op, path);
  return 0;
}

int FaultInjectionFs::admit_fd(Op op, int fd, const OpenFile** file) {
  auto it = open_.find(fd);
  *file = it == open_.end() ? nullptr : &it->second;
  if (*file == nullptr) return 0;
  return admit(op, (*file)->path);
}

void FaultInjectionFs::record_write(const OpenFile& f, uint64_t offset, const void* data,
                                    size_t n) {
  inodes_[f.id].unsynced.push_back(
      Change{false, offset, std::string(static_cast<const char*>(data), n)});
}

void FaultInjectionFs::record_range(const OpenFile& f, int fd, uint64_t offset, uint64_t len) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return;
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (offset >= size) return;
  len = std::min(len, size - offset);
  std::string data(len, '\0');
  if (::pread(fd, data.data(), len, static_cast<off_t>(offset)) != static_cast<ssize_t>(len))
    return;
  inodes_[f.id].unsynced.push_back(Change{false, offset, std::move(data)});
}

int FaultInjectionFs::open(const char* path, int flags, mode_t mode) {
  if (!tracked(path)) return ::open(path, flags, mode);
  std::lock_guard lk(mu_);
  struct stat st;
  const bool exists = ::lstat(path, &st) == 0;
  const bool writable = (flags & O_ACCMODE) != O_RDONLY;
  const bool changes = ((flags & O_CREAT) && !exists) || (exists && writable && (flags & O_TRUNC));
  if (int err = admit(changes ? Op::kCreate : Op::kRead, path); err != 0) {
    errno = err;
    return -1;
  }
  int fd = ::open(path, flags, mode);
  if (fd < 0) return fd;
  ::fstat(fd, &st);
  OpenFile f{path, exists ? id_of(st) : new_id(st), S_ISDIR(st.st_mode)};
  if (!f.is_dir) {
    inodes_.try_emplace(f.id);  // new files have no durable content yet
    if (exists && writable && (flags & O_TRUNC))
      inodes_[f.id].unsynced.push_back(Change{true, 0, {}});
  }
  open_[fd] = std::move(f);
  return fd;
}

int FaultInjectionFs::close(int fd) {
  {
    std::lock_guard lk(mu_);
    open_.erase(fd);
  }
  return ::close(fd);
}

ssize_t FaultInjectionFs::pread(int fd, void* buf, size_t n, off_t offset) {
  std::lock_guard lk(mu_);
  const OpenFile* f;
  if (int err = admit_fd(Op::kRead, fd, &f); err != 0) {
    errno = err;
    return -1;
  }
  return ::pread(fd, buf, n, offset);
}

ssize_t FaultInjectionFs::pwrite(int fd, const void* buf, size_t n, off_t offset) {
  std::lock_guard lk(mu_);
  const OpenFile* f;
  if (int err = admit_fd(Op::kWrite, fd, &f); err != 0) {
    errno = err;
    return -1;
  }
  ssize_t done = ::pwrite(fd, buf, n, offset);
  if (done > 0 && f != nullptr)
    record_write(*f, static_cast<uint64_t>(offset), buf, static_cast<size_t>(done));
  return done;
}

ssize_t FaultInjectionFs::pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
  std::lock_guard lk(mu_);
  const OpenFile* f;
  if (int err = admit_fd(Op::kWrite, fd, &f); err != 0) {
    errno = err;
    return -1;
  }
  ssize_t done = ::pwritev(fd, iov, iovcnt, offset);
  if (done > 0 && f != nullptr) {
    auto left = static_cast<size_t>(done);
    auto pos = static_cast<uint64_t>(offset);
    for (int i = 0; i < iovcnt && left > 0; ++i) {
      size_t n = std::min(left, iov[i].iov_len);
      record_write(*f, pos, iov[i].iov_base, n);
      pos += n;
      left -= n;
    }
  }
  return done;
}

int FaultInjectionFs::fsync(int fd) {
  std::lock_guard lk(mu_);
  const OpenFile* f;
  if (int err = admit_fd(Op::kSync, fd, &f); err != 0) {
    errno = err;
    return -1;
  }
  int rc = ::fsync(fd);
  if (rc != 0 || f == nullptr) return rc;
  if (f->is_dir) {
    dirs_[f->path] = list(f->path);
  } else {
    Inode& inode = inodes_[f->id];
    for (const Change& c : inode.unsynced) {
      if (c.resize) {
        inode.durable.resize(c.offset, '\0');
      } else {
        put(&inode.durable, c.offset, c.data.data(), c.data.size());
      }
    }
    inode.unsynced.clear();
  }
  return 0;
}

int FaultInjectionFs::fdatasync(int fd) {
  return fsync(fd);
}

int FaultInjectionFs::ftruncate(int fd, off_t size) {
  std::lock_guard lk(mu_);
  const OpenFile* f;
  if (int err = admit_fd(Op::kTruncate, fd, &f); err != 0) {
    errno = err;
    return -1;
  }
  int rc = ::ftruncate(fd, size);
  if (rc == 0 && f != nullptr)
    inodes_[f->id].unsynced.push_back(Change{true, static_cast<uint64_t>(size), {}});
  return rc;
}

int FaultInjectionFs::fallocate(int fd, int mode, off_t offset, off_t len) {
  std::lock_guard lk(mu_);
  const OpenFile* f;
  if (int err = admit_fd(Op::kAllocate, fd, &f); err != 0) {
    errno = err;
    return -1;
  }
  int rc = ::fallocate(fd, mode, offset, len);
  if (rc != 0 || f == nullptr) return rc;
  if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
    // The range now reads as zeroes: recorded as a write of what it reads as.
    record_range(*f, fd, static_cast<uint64_t>(offset), static_cast<uint64_t>(len));
  } else if (!(mode & FALLOC_FL_KEEP_SIZE)) {
    struct stat st;
    if (::fstat(fd, &st) == 0)
      inodes_[f->id].unsynced.push_back(Change{true, static_cast<uint64_t>(st.st_size), {}});
  }
  return 0;
}

int FaultInjectionFs::clone(int dst, int src) {
  {
    std::lock_guard lk(mu_);
    if (open_.count(dst) == 0) return FileSystem::clone(dst, src);
  }
  errno = EOPNOTSUPP;  // tracked files are copied, so that every byte is modelled
  return -1;
}

ssize_t FaultInjectionFs::copy_file_range(int in, off_t* in_off, int out, off_t* out_off,
                                          size_t n) {
  std::lock_guard lk(mu_);
  const OpenFile* f;
  if (int err = admit_fd(Op::kWrite, out, &f); err != 0) {
    errno = err;
    return -1;
  }
  const off_t start = *out_off;
  ssize_t done = ::copy_file_range(in, in_off, out, out_off, n, 0);
  if (done > 0 && f != nullptr)
    record_range(*f, out, static_cast<uint64_t>(start), static_cast<uint64_t>(done));
  return done;
}

int FaultInjectionFs::rename(const char* from, const char* to) {
  if (!tracked(from) && !tracked(to)) return ::rename(from, to);
  std::lock_guard lk(mu_);
  if (int err = admit(Op::kRename, to); err != 0) {
    errno = err;
    return -1;
  }
  struct stat a, b;
  const bool replaces = ::lstat(from, &a) == 0 && ::lstat(to, &b) == 0 &&
                        (a.st_dev != b.st_dev || a.st_ino != b.st_ino);
  if (replaces && S_ISREG(b.st_mode) && b.st_nlink == 1) {
    int rc = ::rename(from, to);
    if (rc == 0) live_.erase(InodeKey{b.st_dev, b.st_ino});
    return rc;
  }
  return ::rename(from, to);
}

int FaultInjectionFs::unlink(const char* path) {
  if (!tracked(path)) return ::unlink(path);
  std::lock_guard lk(mu_);
  if (int err = admit(Op::kUnlink, path); err != 0) {
    errno = err;
    return -1;
  }
  struct stat st;
  const bool last_link = ::lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1;
  int rc = ::unlink(path);
  if (rc == 0 && last_link) live_.erase(InodeKey{st.st_dev, st.st_ino});
  return rc;
}

int FaultInjectionFs::mkdir(const char* path, mode_t mode) {
  if (!tracked(path)) return ::mkdir(path, mode);
  std::lock_guard lk(mu_);
  if (int err = admit(Op::kMkdir, path); err != 0) {
    errno = err;
    return -1;
  }
  int rc = ::mkdir(path, mode);
  struct stat st;
  if (rc == 0 && ::lstat(path, &st) == 0) new_id(st);
  return rc;
}

void FaultInjectionFs::lose_unsynced(Loss loss, uint64_t seed) {
  std::lock_guard lk(mu_);
  if (!open_.empty()) throw std::logic_error("fault fs: files still open at the power cut");
  std::mt19937_64 rng(seed);

  // What the disk holds: the durable entries of each durable directory, each file
  // with its durable content and (torn) what survived of its unsynced changes.
  struct Item {
    bool is_dir;
    uint64_t id;
    std::string content;
  };
  std::map<std::string, Item> want;
  std::function<void(const std::string&)> build = [&](const std::string& dir) {
    auto it = dirs_.find(dir);
    if (it == dirs_.end()) return;  // a directory never synced holds nothing
    for (const auto& [name, e] : it->second) {
      std::string path = dir + "/" + name;
      if (e.is_dir) {
        want[path] = Item{true, e.id, {}};
        build(path);
        continue;
      }
      const Inode& inode = inodes_[e.id];
      std::string s = inode.durable;
      if (loss == Loss::kTear) {
        for (const Change& c : inode.unsynced) {
          if (c.resize) {
            if (rng() & 1) s.resize(c.offset, '\0');
            continue;
          }
          // Each 512-byte sector of the write survives or not, independently.
          uint64_t pos = c.offset;
          const uint64_t end = c.offset + c.data.size();
          while (pos < end) {
            uint64_t next = std::min(end, (pos / 512 + 1) * 512);
            if (rng() & 1) put(&s, pos, c.data.data() + (pos - c.offset), next - pos);
            pos = next;
          }
        }
      }
      want[path] = Item{false, e.id, std::move(s)};
    }
  };
  build(root_);

  // Remove what the disk would not hold, then write what it would.
  std::function<void(const std::string&)> prune = [&](const std::string& dir) {
    for (const auto& [name, e] : list(dir)) {
      std::string path = dir + "/" + name;
      auto it = want.find(path);
      if (it == want.end() || it->second.is_dir != e.is_dir ||
          (e.is_dir && it->second.id != e.id)) {
        remove_tree(path);
      } else if (e.is_dir) {
        prune(path);
      }
    }
  };
  prune(root_);
  for (const auto& [path, item] : want) {  // a map: parents come before children
    struct stat st;
    const bool exists = ::lstat(path.c_str(), &st) == 0;
    if (item.is_dir) {
      if (!exists) ::mkdir(path.c_str(), 0755);
      continue;
    }
    const bool same = exists && id_of(st) == item.id;
    if (exists && !same) ::unlink(path.c_str());
    write_whole(path, item.content, same);  // in place keeps the inode and its xattrs
  }
  power_cut_ = false;
  power_budget_ = UINT64_MAX;
  snapshot_locked();
}

}  // namespace rwd::test
