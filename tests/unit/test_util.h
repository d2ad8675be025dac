// Helpers shared by the unit tests: a temporary directory, file corruption helpers.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace rwd::test {

class TempDir {
 public:
  TempDir() : TempDir(std::filesystem::temp_directory_path().string()) {}
  // In `parent`: /dev/shm where a test syncs thousands of times and only the order of
  // its I/O matters, not the disk under it.
  explicit TempDir(const std::string& parent) {
    std::string tmpl = parent + "/rewind-test-XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::vector<uint8_t> read_file(const std::string& path) {
  std::vector<uint8_t> out;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return out;
  uint8_t buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
  ::close(fd);
  return out;
}

inline void write_file(const std::string& path, const std::vector<uint8_t>& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

inline void flip_bit(const std::string& path, uint64_t offset, int bit) {
  int fd = ::open(path.c_str(), O_RDWR);
  uint8_t b = 0;
  if (::pread(fd, &b, 1, static_cast<off_t>(offset)) == 1) {
    b ^= static_cast<uint8_t>(1u << bit);
    (void)::pwrite(fd, &b, 1, static_cast<off_t>(offset));
  }
  ::close(fd);
}

inline void truncate_file(const std::string& path, uint64_t size) {
  (void)::truncate(path.c_str(), static_cast<off_t>(size));
}

inline std::vector<uint8_t> pattern(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Bytes that compress (about 4:1 with zstd): runs of a few words chosen at random,
// with a random byte now and then.
inline std::vector<uint8_t> compressible(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(seed);
  uint64_t words[4] = {rng(), rng(), rng(), rng()};
  for (size_t i = 0; i < n;) {
    const uint64_t w = words[rng() % 4];
    for (size_t k = 0; k < 8 * (1 + rng() % 4) && i < n; ++k, ++i)
      v[i] = static_cast<uint8_t>(w >> (8 * (k % 8)));
    if (i < n && rng() % 4 == 0) v[i++] = static_cast<uint8_t>(rng());
  }
  return v;
}

// Creates a sparse file of `size` bytes.
inline void make_image(const std::string& path, uint64_t size) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  (void)::ftruncate(fd, static_cast<off_t>(size));
  ::close(fd);
}

}  // namespace rwd::test
