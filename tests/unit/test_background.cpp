#include <catch2/catch.hpp>

#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <thread>

#include "rewind/base/file.h"
#include "test_util.h"

using namespace rwd;

TEST_CASE("a background task runs on its own thread and wait returns its outcome after done",
          "[background]") {
  BackgroundTask task("test-task");
  CHECK(task.done());  // nothing started
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> callback_ran{false};
  std::thread::id ran_on;
  task.start(
      [&] {
        ran_on = std::this_thread::get_id();
        released.wait();
        return Status::io_error("the task's own error", EIO);
      },
      [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // wait() must wait for it
        callback_ran = true;
      });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK_FALSE(task.done());  // still blocked in the task
  release.set_value();
  Status st = task.wait();
  CHECK(callback_ran);
  CHECK(task.done());
  CHECK(st.errno_value() == EIO);
  CHECK(st.message().find("the task's own error") != std::string::npos);
  CHECK(ran_on != std::this_thread::get_id());

  // The same thread takes the next task; its outcome replaces the last one.
  task.start([] { return Status::ok(); });
  CHECK(task.wait().is_ok());
}

TEST_CASE("a background sync reports the file's fdatasync outcome", "[background]") {
  test::TempDir dir;
  auto f = File::open(dir / "data", O_RDWR | O_CREAT, 0644);
  REQUIRE(f.is_ok());
  auto bytes = test::pattern(8192, 1);
  REQUIRE(f->pwrite_full(bytes, 0).is_ok());
  BackgroundTask sync("test-sync");
  std::atomic<int> calls{0};
  sync.start_sync(&*f, [&] { ++calls; });
  CHECK(sync.wait().is_ok());
  CHECK(calls == 1);

  // A descriptor that cannot be synced: the error names the file.
  File bad(-1, dir / "not-open");
  sync.start_sync(&bad);
  Status st = sync.wait();
  CHECK(st.errno_value() == EBADF);
  CHECK(st.message().find("not-open") != std::string::npos);
}

TEST_CASE("a file map copies what the file holds and survives the file cut short under it",
          "[filemap]") {
  test::TempDir dir;
  const std::string path = dir / "data";
  const auto data = test::pattern(64 * 1024, 5);
  test::write_file(path, data);
  auto f = File::open(path, O_RDWR);
  REQUIRE(f.is_ok());
  auto map = FileMap::map(*f, data.size());
  REQUIRE(map.is_ok());
  REQUIRE(map->is_mapped());
  std::vector<uint8_t> got(8192);
  REQUIRE(map->copy(got, 40960));
  CHECK(std::equal(got.begin(), got.end(), data.begin() + 40960));
  CHECK_FALSE(map->copy(got, data.size() - 4096));  // beyond the mapping
  // Cut short, the pages past the end cannot be read: a SIGBUS that copy() turns into
  // false, twice (the handler stays in place and the signal unblocked), while the
  // pages still in the file read as before.
  REQUIRE(f->truncate(16384).is_ok());
  CHECK_FALSE(map->copy(got, 32768));
  CHECK_FALSE(map->copy(got, 49152));
  REQUIRE(map->copy(got, 4096));
  CHECK(std::equal(got.begin(), got.end(), data.begin() + 4096));
  // A moved map unmaps once.
  FileMap moved = std::move(*map);
  CHECK_FALSE(map->is_mapped());
  REQUIRE(moved.copy(got, 0));
  CHECK(std::equal(got.begin(), got.end(), data.begin()));
}
