// The plugin's keys, parsed and cross-checked without nbdkit (serve/serve_config.h).
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <fstream>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "rewind/serve/serve_config.h"
#include "test_util.h"

using namespace rwd;
using namespace std::chrono_literals;

namespace {

using Keys = std::initializer_list<std::pair<const char*, std::string>>;

// Applies `keys` in order; the first error, if any.
Status apply(ServeConfig& c, Keys keys) {
  for (const auto& [k, v] : keys) REWIND_RETURN_IF_ERROR(set_serve_key(c, k, v));
  return Status::ok();
}

// Applies `keys` and completes the configuration; the warnings go to `warnings`.
Status configure(ServeConfig& c, Keys keys, std::vector<std::string>* warnings = nullptr) {
  REWIND_RETURN_IF_ERROR(apply(c, keys));
  return complete_serve_config(c, [&](LogLevel, const std::string& m) {
    if (warnings != nullptr) warnings->push_back(m);
  });
}

std::string error_of(Keys keys) {
  ServeConfig c;
  Status st = configure(c, keys);
  return st ? "" : st.message();
}

}  // namespace

TEST_CASE("serve config: each key reaches its option, with units", "[serve]") {
  test::TempDir dir;
  const std::string img = dir / "disk.img";
  std::ofstream(img) << "x";
  ServeConfig c;
  REQUIRE(configure(c, {{"image", img},
                        {"journal", dir / "j"},
                        {"flush-interval", "50ms"},
                        {"queue-max", "128M"},
                        {"segment-size", "2M"},
                        {"segment-age", "1m"},
                        {"retain", "1h"},
                        {"retain-coarse", "1d:1m,30d:1h"},
                        {"journal-max", "1G"},
                        {"coalesce", "on"},
                        {"start-check", "quick"}}));
  CHECK(c.volume.image_path == img);
  CHECK(c.volume.journal_dir == dir / "j");
  CHECK(c.volume.flush_interval == 50ms);
  CHECK(c.volume.queue_max == 128ull << 20);
  CHECK(c.volume.journal.segment_size == 2ull << 20);
  CHECK(c.volume.journal.segment_age == 60s);
  CHECK(c.retention.retain == 1h);
  REQUIRE(c.retention.coarse.size() == 2);
  CHECK(c.retention.coarse[1].granularity == 1h);
  CHECK(c.retention.journal_max == 1ull << 30);
  CHECK(c.volume.coalesce);
  CHECK_FALSE(c.volume.full_check);
  CHECK_FALSE(c.volume.shipped);
  CHECK_FALSE(c.view());
  // The control socket defaults to the journal directory.
  CHECK(c.control == dir / "j/control.sock");
}

TEST_CASE("serve config: relative paths are taken from the current directory", "[serve]") {
  test::TempDir dir;
  std::ofstream(dir / "disk.img") << "x";
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  ServeConfig c;
  Status st = apply(c, {{"image", "./disk.img"}, {"journal", "j"}, {"control", "c.sock"}});
  std::filesystem::current_path(cwd);
  REQUIRE(st);
  CHECK(c.volume.image_path == std::filesystem::canonical(dir / "disk.img").string());
  CHECK(c.volume.journal_dir == dir / "j");
  CHECK(c.control == dir / "c.sock");
}

TEST_CASE("serve config: a bad value names the key and changes nothing", "[serve]") {
  ServeConfig c;
  REQUIRE(set_serve_key(c, "queue-max", "2M"));
  struct Case {
    const char* key;
    const char* value;
    const char* message;
  };
  for (const Case& t : std::initializer_list<Case>{
           {"queue-max", "1K", "queue-max=1K: must be between 1.0 MiB and 64.0 GiB"},
           {"flush-interval", "soon", "flush-interval=soon: 'soon' is not a duration"},
           {"segment-age", "0s", "segment-age=0s: must be between"},
           {"coalesce", "yes", "coalesce=yes: must be on or off"},
           {"start-check", "fast", "start-check=fast: must be full or quick"},
           {"image", "/nonexistent/disk.img", "image=/nonexistent/disk.img: No such file"},
           {"ship", "logs", "ship=logs: give the log server as HOST:PORT"},
           {"ship", "logs:0", "ship=logs:0: give the log server as HOST:PORT"},
           {"ship", ":7420", "ship=:7420: give the log server as HOST:PORT"},
           {"ship-volume", "../v", "ship-volume=../v: "},
           {"ship-token", "@/nonexistent/token", "ship-token=@/nonexistent/token: "},
           {"retain-coarse", "1d", "retain-coarse=1d: tier '1d' has no ':'"},
           {"at", "", "at=: needs a value"},
           {"journal", "", "journal=: needs a value"},
           {"control", "", "control=: needs a value"},
           {"colour", "blue", "unknown parameter 'colour'"},
       }) {
    CAPTURE(t.key, t.value);
    Status st = set_serve_key(c, t.key, t.value);
    REQUIRE_FALSE(st);
    CHECK_THAT(st.message(), Catch::StartsWith(t.message));
  }
  CHECK(c.volume.queue_max == 2ull << 20);
  CHECK(c.volume.image_path.empty());
  CHECK(c.volume.journal_dir.empty());
  CHECK(c.control.empty());
  CHECK(c.ship.link.host.empty());
}

TEST_CASE("serve config: ship= takes HOST:PORT and [IPv6]:PORT", "[serve]") {
  ServeConfig c;
  REQUIRE(set_serve_key(c, "ship", "logs.example:7421"));
  CHECK(c.ship.link.host == "logs.example");
  CHECK(c.ship.link.port == 7421);
  REQUIRE(set_serve_key(c, "ship", "[::1]:9"));
  CHECK(c.ship.link.host == "::1");
  CHECK(c.ship.link.port == 9);
}

TEST_CASE("serve config: ship-token=@FILE reads the token without its line end", "[serve]") {
  test::TempDir dir;
  std::ofstream(dir / "token") << "s3cret-token\r\n";
  ServeConfig c;
  // A token file others may read is refused, naming the file and the fix.
  ::chmod((dir / "token").c_str(), 0640);
  Status open = set_serve_key(c, "ship-token", "@" + dir / "token");
  CHECK(open.message().find("token holds secrets but its group may read it (mode 0640): make it "
                            "private (chmod 600 ") != std::string::npos);
  CHECK(c.ship.link.token.empty());
  ::chmod((dir / "token").c_str(), 0600);
  REQUIRE(set_serve_key(c, "ship-token", "@" + dir / "token"));
  CHECK(c.ship.link.token == "s3cret-token");
}

TEST_CASE("serve config: the keys are cross-checked once all are given", "[serve]") {
  test::TempDir dir;
  const std::string img = dir / "disk.img";
  std::ofstream(img) << "x";
  const std::string j = dir / "j";
  CHECK_THAT(error_of({{"journal", j}}), Catch::StartsWith("missing parameter: image="));
  CHECK_THAT(error_of({{"image", img}}), Catch::StartsWith("missing parameter: journal="));
  CHECK_THAT(error_of({{"image", img}, {"journal", img}}), Catch::Contains("is the image itself"));
  CHECK_THAT(error_of({{"image", img}, {"journal", j}, {"image-reads", "off"}}),
             Catch::StartsWith("image-reads= applies to a point-in-time view only"));
  CHECK_THAT(error_of({{"image", img}, {"journal", j}, {"at", "now"}}),
             Catch::StartsWith("image= and a point in time (at=/seq=/mark=) exclude each other"));
  CHECK_THAT(error_of({{"journal", j}, {"seq", "1"}, {"mark", "x"}}),
             Catch::Contains("give only one of"));
  CHECK_THAT(
      error_of({{"image", img}, {"journal", j}, {"segment-size", "2M"}, {"journal-max", "3M"}}),
      Catch::StartsWith("journal-max=3.0 MiB is less than twice segment-size=2.0 MiB"));
  CHECK_THAT(
      error_of({{"image", img}, {"journal", j}, {"retain", "2d"}, {"retain-coarse", "1d:1m"}}),
      Catch::StartsWith("retain=, retain-coarse=: "));
  CHECK_THAT(error_of({{"image", img}, {"journal", j}, {"ship-token", "t"}}),
             Catch::StartsWith("ship-token= without ship=HOST:PORT"));
  CHECK_THAT(error_of({{"image", img}, {"journal", j}, {"ship", "l:1"}, {"ship-volume", "v"}}),
             Catch::StartsWith("ship= needs ship-token=TOKEN"));
  CHECK_THAT(error_of({{"image", img}, {"journal", j}, {"ship", "l:1"}, {"ship-token", "t"}}),
             Catch::StartsWith("ship= needs ship-volume=NAME"));
  CHECK_THAT(error_of({{"image", img},
                       {"journal", j},
                       {"ship", "l:1"},
                       {"ship-token", "a b"},
                       {"ship-volume", "v"}}),
             Catch::StartsWith("ship-token=: a token is printable ASCII"));
  CHECK_THAT(error_of({{"image", img}, {"journal", j}, {"control", dir / std::string(120, 'x')}}),
             Catch::Contains("the limit for a UNIX socket"));
}

TEST_CASE("serve config: a shipped volume keeps its shipped position", "[serve]") {
  test::TempDir dir;
  std::ofstream(dir / "disk.img") << "x";
  ServeConfig c;
  REQUIRE(configure(c, {{"image", dir / "disk.img"},
                        {"journal", dir / "j"},
                        {"ship", "127.0.0.1:7420"},
                        {"ship-token", "t"},
                        {"ship-volume", "v"},
                        {"ship-rate", "1M"}}));
  CHECK(c.volume.shipped);
  CHECK(c.ship.rate == 1ull << 20);
}

TEST_CASE("serve config: a view needs journal= alone and a valid point", "[serve]") {
  test::TempDir dir;
  ServeConfig c;
  REQUIRE(
      configure(c, {{"journal", dir / "j"}, {"mark", "before-upgrade"}, {"image-reads", "off"}}));
  CHECK(c.view());
  CHECK(c.mark == "before-upgrade");
  CHECK(c.target.mark == "before-upgrade");
  CHECK_FALSE(c.image_reads);
  CHECK_THAT(error_of({{"journal", dir / "j"}, {"at", "yesterday"}}),
             Catch::Contains("'yesterday' is not a time"));
}

TEST_CASE(
    "serve config: a default control socket too long for a socket is dropped, with a "
    "warning",
    "[serve]") {
  test::TempDir dir;
  std::ofstream(dir / "disk.img") << "x";
  ServeConfig c;
  std::vector<std::string> warnings;
  REQUIRE(configure(c, {{"image", dir / "disk.img"}, {"journal", dir / std::string(110, 'j')}},
                    &warnings));
  CHECK(c.control.empty());
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains("this volume takes no marks; give control=PATH"));
}
