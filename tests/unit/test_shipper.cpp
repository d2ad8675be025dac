// The plugin's shipper against a real rewind-server over loopback TCP: a served
// volume's records reach the server's store as they become durable; with the server
// gone the lag grows and the journal keeps what the server lacks; a new server on the
// same store catches up; every point then restores from the store as from the volume.
// Retention never folds segments the server has not acknowledged.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <chrono>
#include <thread>

#include "rewind/history/compact.h"
#include "rewind/history/rebase.h"
#include "rewind/history/retention.h"
#include "rewind/replay/target.h"
#include "rewind/replay/view.h"
#include "rewind/ship/server.h"
#include "rewind/ship/shipper.h"
#include "rewind/volume/volume.h"
#include "test_util.h"

using namespace rwd;
using namespace std::chrono_literals;

namespace {

Logger quiet() {
  return [](LogLevel, const std::string&) {};
}

// rewind-server in a thread of its own.
class RunningServer {
 public:
  RunningServer(const std::string& store, const std::string& tokens, uint16_t port) {
    ServerOptions o;
    o.listen_port = port;
    o.store_dir = store;
    o.tokens_file = tokens;
    o.insecure_loopback = true;
    o.threads = 2;
    auto s = Server::create(o, quiet());
    INFO(s.status().message());
    REQUIRE(s.is_ok());
    server_ = std::move(*s);
    thread_ = std::thread([this] { server_->run(); });
  }
  ~RunningServer() {
    server_->stop();
    thread_.join();
  }
  uint16_t port() const { return server_->port(); }

 private:
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

// Waits up to 30 s for `done`.
template <class F>
bool eventually(F&& done) {
  for (int i = 0; i < 3000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return done();
}

std::vector<uint8_t> state(const std::string& dir, uint64_t seq) {
  auto v = JournalView::open(dir, Target::at_seq(seq), quiet());
  INFO(v.status().message());
  REQUIRE(v.is_ok());
  std::vector<uint8_t> buf((*v)->size());
  REQUIRE((*v)->read(buf, 0).is_ok());
  return buf;
}

void write_some(Volume& v, uint64_t seed, int n) {
  std::mt19937_64 rng(seed);
  for (int i = 0; i < n; ++i) {
    auto data = test::pattern(4096 * (1 + rng() % 16), rng());
    const uint64_t off = (rng() % 200) * 4096;
    REQUIRE(v.write(data, off, false).is_ok());
    if (i % 5 == 4) REQUIRE(v.flush().is_ok());
  }
  REQUIRE(v.flush().is_ok());
}

}  // namespace

TEST_CASE("the shipper keeps a log server a few records behind through a server restart",
          "[ship][shipper]") {
  test::TempDir dir;
  test::make_image(dir / "disk.img", 1 << 20);
  test::write_file(dir / "tokens", {'t', ' ', 'v', '\n'});
  ::chmod((dir / "tokens").c_str(), 0600);
  std::filesystem::create_directory(dir / "store");
  VolumeOptions vo;
  vo.image_path = dir / "disk.img";
  vo.journal_dir = dir / "j";
  vo.flush_interval = 5ms;
  vo.checkpoint_interval = 50ms;
  vo.journal.segment_size = 1 << 20;
  vo.shipped = true;
  auto opened = Volume::open(vo, quiet());
  REQUIRE(opened.is_ok());
  Volume& vol = **opened;
  vol.start();

  auto server = std::make_unique<RunningServer>(dir / "store", dir / "tokens", 0);
  const uint16_t port = server->port();
  ShipperOptions so;
  so.link.host = "127.0.0.1";
  so.link.port = port;
  so.link.volume = "v";
  so.link.token = "t";
  so.link.timeout = 5s;
  so.frame_bytes = 64 << 10;  // many frames in flight
  so.poll = 2ms;
  so.retry_min = 20ms;
  so.retry_max = 100ms;
  Shipper shipper(vol, vo.journal_dir, so, quiet());

  write_some(vol, 1, 60);
  auto caught_up = [&] {
    const ShipperStatus s = shipper.status();
    return s.connected && s.acked_seq == vol.queue().durable_seq() && s.lag_bytes == 0;
  };
  REQUIRE(eventually(caught_up));
  CHECK(vol.shipped_seq() == vol.queue().durable_seq());
  CHECK(shipper.status().record_bytes > 0);
  // Bytes on the wire: the records and the frames' headers; the base snapshot, all
  // zeroes, went as its length only.
  CHECK(shipper.status().wire_bytes > shipper.status().record_bytes);
  CHECK(shipper.status().wire_bytes < shipper.status().record_bytes + (64u << 10));

  // The server goes away: writes go on, the lag grows, nothing is lost.
  server.reset();
  const uint64_t acked_before = shipper.status().acked_seq;
  write_some(vol, 2, 60);
  REQUIRE(eventually([&] {
    const ShipperStatus s = shipper.status();
    return !s.connected && s.lag_bytes > 0 && s.lag_seconds > 0;
  }));
  CHECK(shipper.status().acked_seq == acked_before);
  CHECK_FALSE(shipper.status().error.empty());
  // The manifest keeps the shipped position at the next checkpoint.
  REQUIRE(eventually([&] { return vol.snapshot()->shipped_seq == acked_before; }));

  // A new server on the same store and port: the shipper resends from what it holds.
  server = std::make_unique<RunningServer>(dir / "store", dir / "tokens", port);
  REQUIRE(eventually(caught_up));
  CHECK(shipper.status().reconnects >= 1);
  shipper.stop();
  server.reset();
  const uint64_t last = vol.queue().durable_seq();
  REQUIRE(vol.close().is_ok());
  CHECK(Manifest::load(vo.journal_dir)->shipped_seq == last);

  for (uint64_t seq = 0; seq <= last; seq += 7) {
    INFO("seq " << seq);
    CHECK(state(dir / "store/v", seq) == state(vo.journal_dir, seq));
  }
  CHECK(state(dir / "store/v", last) == state(vo.journal_dir, last));
}

TEST_CASE("retention keeps the segments a log server has not acknowledged", "[ship][retention]") {
  test::TempDir dir;
  test::make_image(dir / "disk.img", 1 << 20);
  VolumeOptions vo;
  vo.image_path = dir / "disk.img";
  vo.journal_dir = dir / "j";
  vo.flush_interval = 5ms;
  vo.journal.segment_size = 1 << 20;
  vo.shipped = true;
  {
    auto v = Volume::open(vo, quiet());
    REQUIRE(v.is_ok());
    (*v)->start();
    write_some(**v, 3, 400);  // several 1 MiB segments
    REQUIRE((*v)->close().is_ok());
  }
  auto m = Manifest::load(vo.journal_dir);
  REQUIRE(m.is_ok());
  REQUIRE(m->segments.size() >= 4);
  // The server holds the first two segments only.
  const uint64_t shipped = m->segments[1].last_seq;
  m->shipped_seq = shipped;
  REQUIRE(m->store(vo.journal_dir).is_ok());
  RetentionPolicy policy;
  policy.retain = 1min;
  // An hour later, retain=1m gives up every write.
  const uint64_t later = wall_clock_ns() + 3600ull * 1000000000;
  auto changed = apply_retention(vo.journal_dir, policy, later, quiet());
  INFO(changed.status().message());
  REQUIRE(changed.is_ok());
  auto after = Manifest::load(vo.journal_dir);
  REQUIRE(after.is_ok());
  CHECK(after->base_seq == shipped);
  CHECK(after->segments.size() == m->segments.size() - 2);
  // `rewind rebase` and `rewind compact` stop there too, and say why.
  after->shipped_seq = shipped;
  REQUIRE(after->store(vo.journal_dir).is_ok());
  auto r = rebase(vo.journal_dir, Target::newest(), quiet());
  INFO(r.status().message());
  REQUIRE(r.is_ok());
  CHECK(r->new_base_seq == shipped);
  CHECK(r->note.find("the log server holds records up to seq") != std::string::npos);
  auto c = compact(vo.journal_dir, Target::newest(), 1000000000, quiet());
  REQUIRE(c.is_ok());
  CHECK(c->note.find("the log server holds records up to seq") != std::string::npos);
  CHECK(Manifest::load(vo.journal_dir)->segments.size() == after->segments.size());
  // Once the server has it all, all of it may go.
  after->shipped_seq = after->segments.back().last_seq;
  REQUIRE(after->store(vo.journal_dir).is_ok());
  REQUIRE(apply_retention(vo.journal_dir, policy, later, quiet()).is_ok());
  CHECK(Manifest::load(vo.journal_dir)->segments.empty());
}

TEST_CASE("a copy's welcome decides between base, records and a refusal", "[ship]") {
  Manifest m;
  m.volume_id.fill(7);
  m.image_size = 1 << 20;
  m.base_seq = 40;
  proto::Welcome w;  // an empty copy
  auto plan = plan_copy(w, m, 90, false, "copy", "elsewhere");
  REQUIRE(plan.is_ok());
  CHECK(plan->send_base);
  CHECK(plan->after_seq == 40);

  std::copy(m.volume_id.begin(), m.volume_id.end(), w.volume_id.begin());
  w.image_size = m.image_size;
  w.base_bytes = m.image_size / 2;  // part of a base: send it again from there
  w.durable_seq = 40;
  plan = plan_copy(w, m, 90, false, "copy", "elsewhere");
  REQUIRE(plan.is_ok());
  CHECK(plan->send_base);

  w.base_bytes = m.image_size;  // the whole base and records up to 60
  w.durable_seq = 60;
  plan = plan_copy(w, m, 90, false, "copy", "elsewhere");
  REQUIRE(plan.is_ok());
  CHECK_FALSE(plan->send_base);
  CHECK(plan->after_seq == 60);
  CHECK(plan->warning.empty());

  plan = plan_copy(w, m, 90, true, "copy", "elsewhere");  // records go sealed now
  REQUIRE(plan.is_ok());
  CHECK(plan->after_seq == 60);
  CHECK_THAT(plan->warning, Catch::Contains("copy holds this volume's base snapshot in the clear"));

  plan = plan_copy(w, m, 59, false, "copy", "elsewhere");  // the copy is ahead
  REQUIRE_FALSE(plan.is_ok());
  CHECK_THAT(plan.status().message(),
             Catch::Contains("beyond this journal's newest durable seq 59"));

  m.base_seq = 61;  // the copy stops before what the journal still holds
  plan = plan_copy(w, m, 90, false, "copy", "elsewhere");
  REQUIRE_FALSE(plan.is_ok());
  CHECK_THAT(plan.status().message(), Catch::Contains("starts after seq 61"));
  m.base_seq = 40;

  w.volume_id[0] ^= 1;  // another volume's whole copy
  plan = plan_copy(w, m, 90, false, "copy", "elsewhere");
  REQUIRE_FALSE(plan.is_ok());
  CHECK_THAT(plan.status().message(),
             Catch::Contains("copy is the copy of another volume") && Catch::EndsWith("elsewhere"));
}
