#include "rewind/ship/s3_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <pugixml.hpp>

namespace rwd {

namespace {

bool bucket_name_ok(std::string_view b) {
  if (b.size() < 3 || b.size() > 63) return false;
  for (char c : b)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  return b.front() != '-' && b.front() != '.' && b.back() != '-' && b.back() != '.';
}

// A prefix's characters: those that need no encoding in a URL path or query, and '/'.
bool prefix_ok(std::string_view p) {
  for (char c : p)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '.' || c == '_' || c == '/'))
      return false;
  return p.find("//") == std::string_view::npos;
}

// RFC 3986 encoding of a query value or a key (with '/' kept when `keep_slash`), as
// SigV4 wants it.
std::string uri_encode(std::string_view s, bool keep_slash) {
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~' || (keep_slash && c == '/'))
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return std::string(s);
}

std::string unquote(std::string s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

}  // namespace

std::string S3Location::uri() const {
  return prefix.empty() ? "s3://" + bucket : "s3://" + bucket + "/" + prefix;
}

std::string S3Location::key(std::string_view name) const {
  return prefix.empty() ? std::string(name) : prefix + "/" + std::string(name);
}

bool is_s3_uri(std::string_view text) {
  return text.starts_with("s3://");
}

Status parse_s3_uri(std::string_view text, S3Location* out) {
  if (!is_s3_uri(text)) return Status::invalid(fmt::format("'{}' is not an s3:// URI", text));
  std::string_view rest = text.substr(5);
  const size_t slash = rest.find('/');
  const std::string_view bucket = rest.substr(0, slash);
  std::string_view prefix = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  while (prefix.ends_with('/')) prefix.remove_suffix(1);
  if (bucket.empty())
    return Status::invalid(fmt::format("{}: no bucket; give s3://BUCKET/PREFIX", text));
  if (!bucket_name_ok(bucket))
    return Status::invalid(fmt::format(
        "{}: bad bucket name '{}' (3-63 of a-z, 0-9, '-', '.'; starting and ending with a letter "
        "or digit)",
        text, bucket));
  if (!prefix_ok(prefix) || prefix.starts_with('/'))
    return Status::invalid(fmt::format(
        "{}: bad prefix '{}' (letters, digits, '-', '.', '_' and single '/' only)", text, prefix));
  out->bucket = std::string(bucket);
  out->prefix = std::string(prefix);
  return Status::ok();
}

std::vector<std::pair<std::string, std::string>> ini_section(std::string_view text,
                                                             std::string_view section) {
  std::vector<std::pair<std::string, std::string>> out;
  bool in = false;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find('\n', i);
    if (j == std::string_view::npos) j = text.size();
    std::string line = trim(text.substr(i, j - i));
    i = j + 1;
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[') {
      in = line.back() == ']' && trim(std::string_view(line).substr(1, line.size() - 2)) == section;
      continue;
    }
    if (!in) continue;
    const size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string k = trim(std::string_view(line).substr(0, eq));
    std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return std::tolower(c); });
    out.emplace_back(std::move(k), trim(std::string_view(line).substr(eq + 1)));
  }
  return out;
}

Status resolve_s3_options(S3Options* o, const EnvLookup& lookup) {
  const auto env = [&](const char* name) -> std::string {
    std::optional<std::string> v;
    if (lookup) {
      v = lookup(name);
    } else if (const char* p = std::getenv(name)) {
      v = p;
    }
    return v.value_or("");
  };
  const auto fill = [](std::string& field, const std::string& value) {
    if (field.empty()) field = value;
  };
  fill(o->profile, env("AWS_PROFILE"));
  fill(o->profile, "default");
  // Keys from the environment go together: a secret from one place and an id from
  // another would sign as nobody.
  if (o->access_key.empty() && o->secret_key.empty()) {
    o->access_key = env("AWS_ACCESS_KEY_ID");
    o->secret_key = env("AWS_SECRET_ACCESS_KEY");
    if (!o->access_key.empty()) fill(o->session_token, env("AWS_SESSION_TOKEN"));
  }
  fill(o->region, env("AWS_REGION"));
  fill(o->region, env("AWS_DEFAULT_REGION"));
  fill(o->endpoint, env("AWS_ENDPOINT_URL_S3"));
  fill(o->endpoint, env("AWS_ENDPOINT_URL"));
  fill(o->ca_file, env("AWS_CA_BUNDLE"));

  const std::string home = env("HOME");
  const auto read_ini = [&](const char* var, const char* default_name,
                            std::string* path) -> std::string {
    *path = env(var);
    if (path->empty()) {
      if (home.empty()) return "";
      *path = home + "/.aws/" + default_name;
    }
    auto text = read_small_file(*path);
    return text ? *text : "";
  };
  std::string cred_path, config_path;
  const std::string creds = read_ini("AWS_SHARED_CREDENTIALS_FILE", "credentials", &cred_path);
  const std::string config = read_ini("AWS_CONFIG_FILE", "config", &config_path);
  if (o->access_key.empty() && o->secret_key.empty()) {
    for (const auto& [k, v] : ini_section(creds, o->profile)) {
      if (k == "aws_access_key_id") o->access_key = v;
      if (k == "aws_secret_access_key") o->secret_key = v;
      if (k == "aws_session_token") o->session_token = v;
    }
  }
  const std::string section = o->profile == "default" ? "default" : "profile " + o->profile;
  for (const auto& [k, v] : ini_section(config, section)) {
    if (k == "region") fill(o->region, v);
    if (k == "endpoint_url") fill(o->endpoint, v);
    if (k == "ca_bundle") fill(o->ca_file, v);
    if (o->access_key.empty() && o->secret_key.empty()) {
      // Keys may live in the config file too.
      if (k == "aws_access_key_id") o->access_key = v;
      if (k == "aws_secret_access_key") o->secret_key = v;
    }
  }
  fill(o->region, "us-east-1");
  fill(o->endpoint, fmt::format("https://s3.{}.amazonaws.com", o->region));
  while (o->endpoint.ends_with('/')) o->endpoint.pop_back();

  if (!(o->endpoint.starts_with("https://") || o->endpoint.starts_with("http://")) ||
      o->endpoint.find('/', o->endpoint.find("//") + 2) != std::string::npos)
    return Status::invalid(fmt::format(
        "S3 endpoint '{}' is not a URL of the form https://HOST[:PORT] (from the endpoint option, "
        "AWS_ENDPOINT_URL or the profile's endpoint_url)",
        o->endpoint));
  if (o->access_key.empty() || o->secret_key.empty())
    return Status::invalid(fmt::format(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give profile "
        "'{}' aws_access_key_id and aws_secret_access_key in {}",
        o->profile, cred_path.empty() ? "~/.aws/credentials" : cred_path));
  for (const std::string* field : {&o->access_key, &o->secret_key, &o->region})
    if (field->find_first_of(": \n\r\t") != std::string::npos)
      return Status::invalid("S3 credentials or region hold a space, ':' or a line break");
  return Status::ok();
}

// ---- requests ------------------------------------------------------------------------

class S3Client::Request {
 public:
  std::string method = "GET";
  std::string what;  // "GET s3://bucket/key", for messages
  std::string url;
  std::vector<std::string> headers;
  // The body sent: bytes in memory, or a range of a file.
  std::span<const uint8_t> send;
  const File* send_file = nullptr;
  uint64_t send_offset = 0;
  uint64_t send_length = 0;
  uint64_t sent = 0;
  // The body received: into a fixed span (ranged reads), else into `body`.
  std::span<uint8_t> into;
  bool short_ok = false;  // fewer bytes than into.size() are fine
  uint64_t received = 0;
  bool overflow = false;
  std::string body;
  std::string etag;
  long http = 0;
  CURLcode result = CURLE_OK;
  char curl_error[CURL_ERROR_SIZE] = {};
  Status io;  // a failure reading the file being sent
  curl_slist* header_list = nullptr;
  // Stall detection: when bytes last moved either way, and how many had.
  std::chrono::steady_clock::time_point last_progress;
  curl_off_t moved = -1;
  std::chrono::milliseconds stall_limit{0};
  bool stalled = false;

  ~Request() { curl_slist_free_all(header_list); }

  static size_t on_write(char* p, size_t size, size_t n, void* self) {
    auto* r = static_cast<Request*>(self);
    const size_t len = size * n;
    if (r->http >= 200 && r->http < 300 && !r->into.empty()) {
      if (r->received + len > r->into.size()) {
        r->overflow = true;
        return 0;
      }
      std::memcpy(r->into.data() + r->received, p, len);
    } else {
      r->body.append(p, len);
    }
    r->received += len;
    return len;
  }
  static size_t on_read(char* p, size_t size, size_t n, void* self) {
    auto* r = static_cast<Request*>(self);
    const uint64_t total = r->send_file ? r->send_length : r->send.size();
    const size_t len = static_cast<size_t>(std::min<uint64_t>(size * n, total - r->sent));
    if (len == 0) return 0;
    if (r->send_file) {
      Status st = r->send_file->pread_full(std::span<uint8_t>(reinterpret_cast<uint8_t*>(p), len),
                                           r->send_offset + r->sent);
      if (!st) {
        r->io = st;
        return CURL_READFUNC_ABORT;
      }
    } else {
      std::memcpy(p, r->send.data() + r->sent, len);
    }
    r->sent += len;
    return len;
  }
  // Aborts a request that moved no byte for stall_limit (a server that stopped
  // answering, a dead link): libcurl's own low-speed check averages over seconds.
  static int on_progress(void* self, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t ulnow) {
    auto* r = static_cast<Request*>(self);
    const auto now = std::chrono::steady_clock::now();
    if (dlnow + ulnow != r->moved) {
      r->moved = dlnow + ulnow;
      r->last_progress = now;
      return 0;
    }
    if (now - r->last_progress < r->stall_limit) return 0;
    r->stalled = true;
    return 1;
  }
  static int on_seek(void* self, curl_off_t offset, int origin) {
    auto* r = static_cast<Request*>(self);
    if (origin != SEEK_SET) return CURL_SEEKFUNC_CANTSEEK;
    r->sent = static_cast<uint64_t>(offset);
    return CURL_SEEKFUNC_OK;
  }
  static size_t on_header(char* p, size_t size, size_t n, void* self) {
    auto* r = static_cast<Request*>(self);
    const size_t len = size * n;
    std::string_view line(p, len);
    if (line.starts_with("HTTP/")) {
      // A new response (after a 100 Continue, say): forget the last one's headers.
      r->etag.clear();
      const size_t sp = line.find(' ');
      if (sp != std::string_view::npos)
        r->http = std::atol(std::string(line.substr(sp + 1, 3)).c_str());
    }
    const size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      std::string name(line.substr(0, colon));
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      if (name == "etag") r->etag = unquote(trim(line.substr(colon + 1)));
    }
    return len;
  }

  // Sets the request up on the easy handle `h`.
  void prepare(CURL* h, const S3Options& o) {
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_error);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout.count()));
    // A request that moves no byte for the timeout fails; a long transfer that moves
    // does not.
    stall_limit = o.timeout;
    stalled = false;
    moved = -1;
    last_progress = std::chrono::steady_clock::now();
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &Request::on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, this);
    if (!o.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, o.ca_file.c_str());
    curl_easy_setopt(h, CURLOPT_USERNAME, o.access_key.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, o.secret_key.c_str());
    const std::string sigv4 = "aws:amz:" + o.region + ":s3";
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4.c_str());
    curl_slist_free_all(header_list);
    header_list = nullptr;
    // libcurl 7.88 does not hash the payload itself: say it is not signed (TLS
    // protects it in transit, and every byte rewind stores carries its own checksum).
    header_list = curl_slist_append(header_list, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    if (!o.session_token.empty())
      header_list =
          curl_slist_append(header_list, ("x-amz-security-token: " + o.session_token).c_str());
    for (const std::string& hd : headers) header_list = curl_slist_append(header_list, hd.c_str());
    // (No "Expect:" header to suppress 100-continue: libcurl 7.88 signs the header it
    // then leaves out, and the signature does not match.)
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, header_list);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &Request::on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &Request::on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, this);
    if (method == "PUT") {
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_READFUNCTION, &Request::on_read);
      curl_easy_setopt(h, CURLOPT_READDATA, this);
      curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, &Request::on_seek);
      curl_easy_setopt(h, CURLOPT_SEEKDATA, this);
      curl_easy_setopt(
          h, CURLOPT_INFILESIZE_LARGE,
          static_cast<curl_off_t>(send_file ? send_length : static_cast<uint64_t>(send.size())));
    } else if (method != "GET") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
    }
    sent = received = 0;
    overflow = false;
    body.clear();
    etag.clear();
    http = 0;
    curl_error[0] = '\0';
  }

  // The answer as a Status.
  Status status() const {
    if (!io) return io.with_context(what);
    if (result != CURLE_OK) {
      const std::string detail = curl_error[0] ? curl_error : curl_easy_strerror(result);
      if (overflow) return Status::corruption(what + ": the server sent more bytes than asked for");
      if (stalled)
        return Status::remote(fmt::format("{}: timed out: no byte moved for {:.1f}s", what,
                                          static_cast<double>(stall_limit.count()) / 1000));
      return Status::remote(fmt::format("{}: {}", what, detail));
    }
    if (http >= 200 && http < 300) {
      if (!into.empty() && received != into.size() && !(short_ok && received < into.size()))
        return Status::corruption(fmt::format("{}: the server sent {} bytes of the {} asked for",
                                              what, received, into.size()));
      return Status::ok();
    }
    std::string code, message;
    pugi::xml_document doc;
    if (!body.empty() && doc.load_buffer(body.data(), body.size())) {
      code = doc.child("Error").child_value("Code");
      message = doc.child("Error").child_value("Message");
    }
    std::string text = fmt::format("{}: {}{}{}", what, http, code.empty() ? "" : " " + code,
                                   message.empty() ? "" : ": " + message);
    if (http == 404 && code == "NoSuchBucket")
      return Status::invalid(text + " (create the bucket first, or check its name)");
    if (http == 404) return Status::not_found(text);
    if (http == 412) return Status::busy(text);
    if (http == 403 || http == 401)
      return Status::invalid(
          text + " (check the access key, secret and region, and the bucket's permissions)");
    if (http >= 500 || http == 429 || http == 408 || http == 409) return Status::remote(text);
    return Status::invalid(text);
  }
  bool retryable() const {
    return io && (result != CURLE_OK ? !overflow : (http >= 500 || http == 429 || http == 408));
  }
};

Result<std::unique_ptr<S3Client>> S3Client::open(const S3Options& o, const S3Location& where) {
  if (o.access_key.empty() || o.secret_key.empty() || o.region.empty() || o.endpoint.empty())
    return Status::invalid("S3 options not resolved (resolve_s3_options)");
  curl_init_once();
  std::unique_ptr<S3Client> c(new S3Client(o, where));
  c->curl_ = curl_easy_init();
  if (!c->curl_) return Status::io_error("curl_easy_init failed", ENOMEM);
  return c;
}

S3Client::~S3Client() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

std::string S3Client::url(const std::string& key, const std::string& query) const {
  std::string u = opts_.endpoint + "/" + where_.bucket;
  if (!key.empty()) u += "/" + uri_encode(key, true);
  if (!query.empty()) u += "?" + query;
  return u;
}

Status S3Client::perform(Request& r) {
  // Requests that change nothing (or set an object to what it would be anyway) are
  // tried again after a server error or a broken connection, up to three times.
  const bool idempotent = r.method != "PUT" || r.headers.empty();
  for (int attempt = 0;; ++attempt) {
    auto* h = static_cast<CURL*>(curl_);
    r.prepare(h, opts_);
    ++requests_;
    r.result = curl_easy_perform(h);
    if (r.result == CURLE_OK) {
      long code = 0;
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
      r.http = code;
    }
    if (attempt >= 2 || !idempotent || !r.retryable()) return r.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));
  }
}

Result<std::string> S3Client::get(const std::string& key, std::string* etag) {
  Request r;
  r.what = "GET s3://" + where_.bucket + "/" + key;
  r.url = url(key, "");
  REWIND_RETURN_IF_ERROR(perform(r));
  if (etag) *etag = r.etag;
  return std::move(r.body);
}

Status S3Client::get_range(const std::string& key, uint64_t offset, std::span<uint8_t> into,
                           bool zero_fill) {
  if (into.empty()) return Status::ok();
  Request r;
  r.what = fmt::format("GET s3://{}/{} bytes {}+{}", where_.bucket, key, offset, into.size());
  r.url = url(key, "");
  r.headers.push_back(fmt::format("Range: bytes={}-{}", offset, offset + into.size() - 1));
  r.into = into;
  r.short_ok = zero_fill;
  REWIND_RETURN_IF_ERROR(perform(r));
  if (r.received < into.size())
    std::fill(into.begin() + static_cast<long>(r.received), into.end(), 0);
  return Status::ok();
}

Status S3Client::get_ranges(std::span<const RangeRead> reads, unsigned parallel) {
  if (reads.empty()) return Status::ok();
  if (reads.size() == 1 || parallel <= 1) {
    for (const RangeRead& rr : reads)
      REWIND_RETURN_IF_ERROR(get_range(rr.key, rr.offset, rr.into, rr.zero_fill));
    return Status::ok();
  }
  // One thread per connection, each with its own client; they take the reads in turn.
  const unsigned n = std::min<unsigned>(parallel, static_cast<unsigned>(reads.size()));
  std::mutex mu;
  size_t next = 0;
  Status first;
  uint64_t sent = 0;
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < n; ++t) {
    threads.emplace_back([&] {
      auto c = S3Client::open(opts_, where_);
      for (;;) {
        size_t i;
        {
          std::lock_guard lk(mu);
          if (next == reads.size() || !first.is_ok()) break;
          i = next++;
        }
        Status st =
            c ? (*c)->get_range(reads[i].key, reads[i].offset, reads[i].into, reads[i].zero_fill)
              : c.status();
        std::lock_guard lk(mu);
        if (!st && first.is_ok()) first = st;
      }
      std::lock_guard lk(mu);
      if (c) sent += (*c)->requests();
    });
  }
  for (auto& t : threads) t.join();
  requests_ += sent;
  return first;
}

namespace {
void add_condition(std::vector<std::string>* headers, const PutCondition& cond) {
  if (cond.kind == PutCondition::Kind::kAbsent) headers->push_back("If-None-Match: *");
  // Without quotes: RADOS Gateway compares the bare ETag (AWS takes either).
  if (cond.kind == PutCondition::Kind::kMatch) headers->push_back("If-Match: " + cond.etag);
}
}  // namespace

Result<std::string> S3Client::put(const std::string& key, std::span<const uint8_t> data,
                                  const PutCondition& cond) {
  Request r;
  r.method = "PUT";
  r.what = "PUT s3://" + where_.bucket + "/" + key;
  r.url = url(key, "");
  r.send = data;
  add_condition(&r.headers, cond);
  REWIND_RETURN_IF_ERROR(perform(r));
  return r.etag;
}

Result<std::string> S3Client::put_file(const std::string& key, const File& file, uint64_t offset,
                                       uint64_t length) {
  Request r;
  r.method = "PUT";
  r.what = "PUT s3://" + where_.bucket + "/" + key;
  r.url = url(key, "");
  r.send_file = &file;
  r.send_offset = offset;
  r.send_length = length;
  REWIND_RETURN_IF_ERROR(perform(r));
  return r.etag;
}

Status S3Client::remove(const std::string& key) {
  Request r;
  r.method = "DELETE";
  r.what = "DELETE s3://" + where_.bucket + "/" + key;
  r.url = url(key, "");
  Status st = perform(r);
  if (st.code() == Status::Code::kNotFound) return Status::ok();
  return st;
}

Result<std::vector<ObjectInfo>> S3Client::list(const std::string& prefix) {
  std::vector<ObjectInfo> out;
  std::string token;
  for (;;) {
    // The query's parameters sorted by name and encoded, as SigV4 in libcurl 7.88
    // needs them.
    std::string query;
    if (!token.empty()) query += "continuation-token=" + uri_encode(token, false) + "&";
    query += "list-type=2&prefix=" + uri_encode(prefix, false);
    Request r;
    r.what = "LIST s3://" + where_.bucket + "/" + prefix;
    r.url = url("", query);
    REWIND_RETURN_IF_ERROR(perform(r));
    pugi::xml_document doc;
    if (!doc.load_buffer(r.body.data(), r.body.size()))
      return Status::corruption(r.what + ": the answer is not XML");
    const pugi::xml_node res = doc.child("ListBucketResult");
    if (!res) return Status::corruption(r.what + ": the answer is no ListBucketResult");
    for (pugi::xml_node c : res.children("Contents")) {
      ObjectInfo oi;
      oi.key = c.child_value("Key");
      oi.size = std::strtoull(c.child_value("Size"), nullptr, 10);
      oi.etag = unquote(c.child_value("ETag"));
      out.push_back(std::move(oi));
    }
    if (std::string_view(res.child_value("IsTruncated")) != "true") break;
    token = res.child_value("NextContinuationToken");
    if (token.empty())
      return Status::corruption(r.what + ": truncated without a continuation token");
  }
  return out;
}

}  // namespace rwd
