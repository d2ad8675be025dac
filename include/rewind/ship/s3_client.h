// A client of S3-compatible object storage (AWS S3, Ceph RADOS Gateway, ...), for the
// off-site copy of a volume in a bucket (docs/FORMAT.md, "A volume in a bucket").
//
// Requests go through libcurl, which signs them (AWS Signature Version 4); the few XML
// answers (ListObjectsV2, errors) are read with pugixml. Addressing is path-style
// (ENDPOINT/BUCKET/KEY), which every S3-compatible server accepts; TLS certificates
// are verified (the system's trust store, or ca_file).
//
// Every failure is a Status whose message names the request, the object and what the
// server said ("PUT s3://b/p/MANIFEST: 403 SignatureDoesNotMatch: ..."): kNotFound for
// a missing object (404 NoSuchKey), kBusy for a failed precondition (412: the object
// exists, or changed since it was read), kInvalidArgument for what retrying cannot cure
// (credentials, a missing bucket, access denied), kIoError for the rest (5xx, network,
// a stalled request), which a caller may retry.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rewind/base/file.h"
#include "rewind/base/status.h"

namespace rwd {

// s3://BUCKET/PREFIX: where a volume's objects live (every key starts with PREFIX/).
struct S3Location {
  std::string bucket;
  std::string prefix;  // no leading or trailing '/'; may be empty
  std::string uri() const;
  // PREFIX/NAME (NAME alone when the prefix is empty).
  std::string key(std::string_view name) const;
};
bool is_s3_uri(std::string_view text);
// An error says what is wrong with the URI ("no bucket", "bad bucket name ...").
Status parse_s3_uri(std::string_view text, S3Location* out);

// Where and as whom. Empty fields are filled by resolve_s3_options from the AWS
// conventions; what is given explicitly (plugin keys, CLI options) wins.
struct S3Options {
  std::string endpoint;  // "https://HOST[:PORT]" or "http://..."; default AWS's for region
  std::string region;
  std::string profile;  // of the shared files; default $AWS_PROFILE, else "default"
  std::string access_key;
  std::string secret_key;
  std::string session_token;
  std::string ca_file;  // a CA bundle (PEM) to verify the endpoint's certificate by
  std::chrono::milliseconds timeout{30000};  // a request that makes no progress this long fails
  std::chrono::milliseconds connect_timeout{10000};
};

// Fills what is unset, in order: environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN, AWS_REGION or AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3 or
// AWS_ENDPOINT_URL, AWS_CA_BUNDLE, AWS_PROFILE), then the profile's section of the
// shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials)
// and of the config file (AWS_CONFIG_FILE, default ~/.aws/config: region,
// endpoint_url, ca_bundle), then region "us-east-1" and AWS's endpoint for it.
// `env` looks a variable up (getenv by default; tests give their own). An error says
// which setting is missing or malformed, and where it came from.
using EnvLookup = std::function<std::optional<std::string>(const char*)>;
Status resolve_s3_options(S3Options* o, const EnvLookup& env = {});

// Parses the INI text of a shared credentials or config file: the keys of section
// `section` ("default", "profile NAME", ...), lower-cased, values trimmed.
std::vector<std::pair<std::string, std::string>> ini_section(std::string_view text,
                                                             std::string_view section);

// A precondition on a PUT: none, create-once (If-None-Match: *), or replace only the
// version with this ETag (If-Match).
struct PutCondition {
  enum class Kind { kNone, kAbsent, kMatch } kind = Kind::kNone;
  std::string etag;
  static PutCondition none() { return {}; }
  static PutCondition absent() { return {Kind::kAbsent, {}}; }
  static PutCondition match(std::string etag) { return {Kind::kMatch, std::move(etag)}; }
};

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
  std::string etag;  // without quotes
};

// One ranged read of many, for get_ranges.
struct RangeRead {
  std::string key;
  uint64_t offset = 0;
  std::span<uint8_t> into;  // filled with exactly into.size() bytes
  // An object that ends before into.size() bytes is not an error: the rest reads as
  // zeroes (a sealed base's slot, stored without the zeroes it ends in).
  bool zero_fill = false;
};

class S3Client {
 public:
  // Checks the options (endpoint URL, credentials present).
  static Result<std::unique_ptr<S3Client>> open(const S3Options& o, const S3Location& where);
  ~S3Client();
  S3Client(const S3Client&) = delete;
  S3Client& operator=(const S3Client&) = delete;

  const S3Location& location() const { return where_; }
  const S3Options& options() const { return opts_; }
  // Requests sent since open (each retry counts), for the cost figures.
  uint64_t requests() const { return requests_; }

  // Keys are full keys (location().key(...)).
  // The whole object; *etag (without quotes) if given.
  Result<std::string> get(const std::string& key, std::string* etag = nullptr);
  // Bytes [offset, offset + into.size()) of the object; fewer is an error, unless
  // `zero_fill` (see RangeRead).
  Status get_range(const std::string& key, uint64_t offset, std::span<uint8_t> into,
                   bool zero_fill = false);
  // Many ranged reads, up to `parallel` at a time on separate connections. The first
  // failure is returned (the others are finished or abandoned).
  Status get_ranges(std::span<const RangeRead> reads, unsigned parallel = 8);
  // Stores `data` under `key`; returns the new ETag (without quotes).
  Result<std::string> put(const std::string& key, std::span<const uint8_t> data,
                          const PutCondition& cond = PutCondition::none());
  // Stores bytes [offset, offset + length) of `file` under `key`, read as they are sent.
  Result<std::string> put_file(const std::string& key, const File& file, uint64_t offset,
                               uint64_t length);
  // Deleting an object that is not there succeeds (as S3 answers).
  Status remove(const std::string& key);
  // Every object whose key starts with `prefix`, in key order (ListObjectsV2, page by
  // page).
  Result<std::vector<ObjectInfo>> list(const std::string& prefix);

  class Request;  // one request's state (s3_client.cpp)

 private:
  S3Client(S3Options o, S3Location where) : opts_(std::move(o)), where_(std::move(where)) {}
  std::string url(const std::string& key, const std::string& query) const;
  // Runs `r` on the client's connection; maps the answer to a Status.
  Status perform(Request& r);

  S3Options opts_;
  S3Location where_;
  void* curl_ = nullptr;  // CURL*, reused: one connection kept alive
  uint64_t requests_ = 0;
};

}  // namespace rwd
