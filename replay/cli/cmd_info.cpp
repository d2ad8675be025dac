#include <fmt/format.h>

#include "commands.h"
#include "rewind/inspect.h"
#include "rewind/units.h"

namespace rwd::cli {

void setup_info(CLI::App& app, InfoOptions& o) {
  app.add_option("journal", o.journal, "Journal directory")->required();
  app.add_flag("--json", o.json, "Print JSON instead of text");
}

int run_info(const InfoOptions& o) {
  auto r = inspect_journal(o.journal, false);
  if (!r) return report("info", r.status(), journal_hint(r.status()));
  const Manifest& m = r->manifest;
  size_t open = 0;
  for (const SegmentReport& s : r->segments) open += s.sealed ? 0 : 1;
  if (o.json) {
    fmt::print(
        "{{\"volume_id\":\"{}\",\"image\":{},\"size\":{},\"created_ns\":{},"
        "\"base_seq\":{},\"first_seq\":{},\"last_seq\":{},\"first_time_ns\":{},"
        "\"last_time_ns\":{},\"records\":{},\"segments\":{},\"open_segments\":{},"
        "\"journal_bytes\":{},\"base_bytes\":{},\"base_allocated\":{},"
        "\"checkpoint_seq\":{},\"in_use\":{}}}\n",
        volume_id_hex(m.volume_id), json_string(m.image_path), m.image_size, m.created_ns,
        m.base_seq, r->first_seq(), r->last_seq(), m.base_time_ns, r->last_time_ns(), r->records(),
        r->segments.size(), open, r->journal_bytes(), r->base_bytes, r->base_allocated,
        m.checkpoint_seq, r->in_use ? "true" : "false");
    return kExitOk;
  }
  fmt::print("volume      {}\n", volume_id_hex(m.volume_id));
  fmt::print("image       {} ({}, {} bytes)\n", m.image_path, format_size(m.image_size),
             m.image_size);
  fmt::print("journal     {}{}\n", o.journal, r->in_use ? " (in use by a running server)" : "");
  fmt::print("created     {}\n", format_time(m.created_ns));
  fmt::print("restorable  seq {} ({}) .. seq {} ({})\n", r->first_seq(),
             format_time(m.base_time_ns), r->last_seq(), format_time(r->last_time_ns()));
  fmt::print("records     {} in {} segment{} ({} open)\n", r->records(), r->segments.size(),
             r->segments.size() == 1 ? "" : "s", open);
  fmt::print("bytes       journal {} ({} bytes), base snapshot {} ({} on disk)\n",
             format_size(r->journal_bytes()), r->journal_bytes(), format_size(r->base_bytes),
             format_size(r->base_allocated));
  fmt::print("checkpoint  image current to seq {}{}\n", m.checkpoint_seq,
             m.checkpoint_seq == r->last_seq() ? "" : " (the rest is redone at the next start)");
  for (const SegmentReport& s : r->segments)
    if (s.torn_tail) fmt::print("torn tail   segment {} at {}\n", s.file, *s.torn_tail);
  return kExitOk;
}

}  // namespace rwd::cli
