// The options of every subcommand (setup_* of commands.h), in one file: CLI11 is
// header-only and costs seconds of compile time in each file that includes it.
#include <CLI/CLI.hpp>

#include "commands.h"

namespace rwd::cli {

void setup_compact(CLI::App& app, CompactOptions& o) {
  app.add_option("journal", o.journal, "Journal directory")->required();
  app.add_option("--before", o.before,
                 "Compact the segments that end at or before this point: a time, seq:N or "
                 "mark:NAME")
      ->required();
  app.add_option("--granularity", o.granularity,
                 "Keep one exact state per window of this length (and every mark)")
      ->capture_default_str();
}

namespace {

// A journal directory, or a copy of one on a log server or in a bucket.
constexpr const char* kJournalAnywhere =
    "Journal directory, rewind://HOST:PORT/VOLUME or s3://BUCKET/PREFIX";

// The JOURNAL argument (`help` says where it may be), and the options that reach a
// remote copy.
void add_journal_argument(CLI::App& app, std::string& journal, RemoteCliOptions& remote,
                          const char* help) {
  app.add_option("journal", journal, help)->required();
  add_remote_options(app, remote);
}

}  // namespace

void setup_diff(CLI::App& app, DiffOptions& o) {
  add_journal_argument(app, o.journal, o.remote, "Journal directory, or s3://BUCKET/PREFIX");
  app.add_option("--from", o.from, "Start point: a time, seq:N or mark:NAME")->required();
  app.add_option("--to", o.to, "End point: a time, seq:N or mark:NAME (default: newest)");
  app.add_flag("--json", o.json, "Print JSON instead of text");
}

void setup_info(CLI::App& app, InfoOptions& o) {
  add_journal_argument(app, o.journal, o.remote, kJournalAnywhere);
  app.add_flag("--json", o.json, "Print JSON instead of text");
  app.add_option("--journal-max", o.journal_max,
                 "Forecast how long the recent write rate takes to fill this journal-max");
}

void setup_init(CLI::App& app, InitOptions& o) {
  app.add_option("--image", o.image, "Disk image (created sparse if missing and --size is given)")
      ->required();
  app.add_option("--journal", o.journal, "Journal directory to create")->required();
  app.add_option("--size", o.size, "Size of a new image (e.g. 1G); a multiple of 512");
}

void setup_keygen(CLI::App& app, KeygenOptions& o) {
  app.add_option("FILE", o.file,
                 "The key file to create (must not exist); private to you (mode 0600)")
      ->required();
}

void setup_log(CLI::App& app, LogOptions& o) {
  add_journal_argument(app, o.journal, o.remote, kJournalAnywhere);
  app.add_flag("--json", o.json, "Print JSON instead of text");
}

void setup_mark(CLI::App& app, MarkOptions& o) {
  app.add_option("journal", o.journal, "Journal directory of the running volume")->required();
  app.add_option("name", o.name, "Mark name (unique per volume, no whitespace)")->required();
  app.add_option("--socket", o.socket, "Control socket (default: JOURNAL/control.sock)");
  app.add_option("--with", o.with,
                 "Another running volume's journal directory: one mark across all of them at "
                 "one consistent cut (repeat for more; its control socket must be the default)");
  app.add_option("--hold-max", o.hold_max,
                 "With --with: the longest new writes may wait while the marks are queued; the "
                 "group mark fails beyond it (default 2s, at most 30s)");
  app.add_option("--freeze", o.freeze,
                 "qga:SOCKET: freeze the guest's file systems through the QEMU guest agent on "
                 "this socket for the mark, and thaw them after (always)");
  app.add_option("--freeze-timeout", o.freeze_timeout,
                 "The longest the guest agent may take to answer each step (default 10s)");
  app.add_option("--thaw-wait", o.thaw_wait,
                 "After a freeze the agent did not answer in time: how long to wait for it to "
                 "finish that freeze and answer the thaw (default 60s); beyond it the guest "
                 "may be left frozen");
  app.add_option("--pre", o.pre,
                 "A command (/bin/sh -c) run before the mark (and the freeze); if it fails, "
                 "nothing is marked");
  app.add_option("--post", o.post,
                 "A command run after the mark (and the thaw), always once --pre succeeded");
}

void setup_rebase(CLI::App& app, RebaseOptions& o) {
  app.add_option("journal", o.journal, "Journal directory")->required();
  app.add_option("--before", o.before,
                 "Fold the records at or before this point: a time, seq:N or mark:NAME")
      ->required();
}

void setup_restore(CLI::App& app, RestoreCmdOptions& o) {
  add_journal_argument(app, o.journal, o.remote, kJournalAnywhere);
  add_target_options(app, o.target);
  auto* out = app.add_option("-o,--output", o.out, "Write the image to this file");
  auto* to =
      app.add_option("--to", o.to, "Write into a live NBD export (nbd://... or nbd+unix://...)");
  out->excludes(to);
  app.add_flag("--force", o.force, "Replace OUT if it exists");
  app.add_flag("--no-image-reads", o.no_image_reads,
               "Read everything from the journal, nothing from the volume's image (which is "
               "otherwise read where it still holds the target's data, checked against the "
               "journal's checksums)");
}

void setup_retain(CLI::App& app, RetainOptions& o) {
  add_journal_argument(app, o.journal, o.remote,
                       "Journal directory, or s3://BUCKET/PREFIX (a stopped volume's copy)");
  app.add_option("--retain", o.retain, "Keep every write at least this long");
  app.add_option("--retain-coarse", o.retain_coarse,
                 "After --retain, one state per GRAN up to AGE: AGE:GRAN,... e.g. 1d:1m,30d:1h");
  app.add_option("--journal-max", o.journal_max,
                 "Fold the oldest segments until the journal is under 3/4 of this size");
}

void setup_serve(CLI::App& app, ServeOptions& o) {
  add_journal_argument(
      app, o.journal, o.remote,
      "Journal directory, s3://BUCKET/PREFIX, or rewind://HOST:PORT/VOLUME (fetched "
      "whole into $TMPDIR first, removed at stop)");
  app.add_option("--cache-size", o.cache_size,
                 "For s3://: the local cache of what was fetched, in $TMPDIR (default 1G)");
  add_target_options(app, o.target);
  app.add_option("--socket", o.socket,
                 "UNIX socket to serve on (default: /tmp/rewind-VOLUME-seqN.sock)");
  app.add_flag("--writable", o.writable,
               "Serve read-write: writes go to a throwaway overlay (nbdkit's cow filter, in "
               "$TMPDIR), removed at stop; the history is never changed");
  app.add_option("--overlay", o.overlay,
                 "With --writable: keep the overlay in FILE (qcow2, served by qemu-nbd), made "
                 "if missing; an existing one, made over the same point, goes on from what it "
                 "holds");
}

void setup_bisect(CLI::App& app, BisectOptions& o) {
  add_journal_argument(app, o.journal, o.remote, kJournalAnywhere);
  app.add_option("--cache-size", o.cache_size,
                 "For s3://: the local cache of what was fetched, in $TMPDIR (default 1G)");
  app.add_option("--good", o.good, "A point the check passes: a time, seq:N or mark:NAME")
      ->required();
  app.add_option("--bad", o.bad,
                 "A later point the check fails: a time, seq:N or mark:NAME (default: newest)");
  app.add_option("--run", o.run,
                 "The check, run by /bin/sh -c for each point with REWIND_URI (the point served "
                 "writable into a throwaway overlay), REWIND_SEQ and REWIND_TIME set: exit 0 "
                 "good, 125 skip, 1-127 bad, anything else (or a signal) stops the bisection")
      ->required();
  app.add_flag("--json", o.json,
               "Print the result as JSON (steps go to stderr, and so does the check's output)");
}

void setup_verify(CLI::App& app, VerifyOptions& o) {
  add_journal_argument(app, o.journal, o.remote,
                       "Journal directory, s3://BUCKET/PREFIX, or rewind://HOST:PORT/VOLUME of a "
                       "sealed copy (with --key)");
  app.add_option("--image", o.image, "Also check that replaying to the end reproduces this image");
}

}  // namespace rwd::cli
