// The S3 client's parts that need no server: s3:// URIs and the AWS conventions for
// credentials, region and endpoint. The requests themselves are tested against a
// real RADOS Gateway (tests/e2e/test-s3*.sh).
#include <catch2/catch.hpp>

#include <map>

#include "rewind/ship/s3_client.h"
#include "test_util.h"

using namespace rwd;
using namespace rwd::test;

namespace {

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

}  // namespace

TEST_CASE("s3 URIs: bucket and prefix, and what is refused") {
  S3Location l;
  REQUIRE(parse_s3_uri("s3://backups/hosts/db1/", &l));
  CHECK(l.bucket == "backups");
  CHECK(l.prefix == "hosts/db1");
  CHECK(l.uri() == "s3://backups/hosts/db1");
  CHECK(l.key("MANIFEST") == "hosts/db1/MANIFEST");
  REQUIRE(parse_s3_uri("s3://backups", &l));
  CHECK(l.prefix.empty());
  CHECK(l.key("MANIFEST") == "MANIFEST");
  for (const char* bad : {"s3://", "s3:///p", "s3://Upper/p", "s3://ab/p", "s3://b_d/p",
                          "s3://bucket/a//b", "s3://bucket/a b", "s3://bucket/p?x", "http://b/p"}) {
    INFO(bad);
    Status st = parse_s3_uri(bad, &l);
    CHECK_FALSE(st);
    CHECK(st.code() == Status::Code::kInvalidArgument);
  }
  CHECK_THAT(parse_s3_uri("s3://Upper/p", &l).message(), Catch::Contains("bad bucket name"));
}

TEST_CASE("S3 settings: the environment, then the profile's shared files, then defaults") {
  TempDir dir;
  const std::string creds = dir.path() + "/credentials";
  const std::string config = dir.path() + "/config";
  write_file(creds, std::vector<uint8_t>{});
  {
    const std::string text =
        "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key=SKDEFAULT\n\n"
        "[backup]\n  aws_access_key_id = AKBACKUP \naws_secret_access_key = SKBACKUP\n"
        "aws_session_token = TOKEN\n";
    write_file(creds, std::vector<uint8_t>(text.begin(), text.end()));
    const std::string ctext =
        "[profile backup]\nregion = eu-west-3\nendpoint_url = https://s3.example:8443/\n"
        "[default]\nregion = us-west-2\n";
    write_file(config, std::vector<uint8_t>(ctext.begin(), ctext.end()));
  }
  SECTION("the environment's keys win over the files") {
    S3Options o;
    REQUIRE(resolve_s3_options(&o, env_of({{"AWS_ACCESS_KEY_ID", "AKENV"},
                                           {"AWS_SECRET_ACCESS_KEY", "SKENV"},
                                           {"AWS_SHARED_CREDENTIALS_FILE", creds},
                                           {"AWS_CONFIG_FILE", config},
                                           {"AWS_ENDPOINT_URL", "http://127.0.0.1:7480"}})));
    CHECK(o.access_key == "AKENV");
    CHECK(o.secret_key == "SKENV");
    CHECK(o.region == "us-west-2");  // the default profile's
    CHECK(o.endpoint == "http://127.0.0.1:7480");
  }
  SECTION("a profile's keys, region and endpoint") {
    S3Options o;
    REQUIRE(resolve_s3_options(&o, env_of({{"AWS_PROFILE", "backup"},
                                           {"AWS_SHARED_CREDENTIALS_FILE", creds},
                                           {"AWS_CONFIG_FILE", config}})));
    CHECK(o.access_key == "AKBACKUP");
    CHECK(o.secret_key == "SKBACKUP");
    CHECK(o.session_token == "TOKEN");
    CHECK(o.region == "eu-west-3");
    CHECK(o.endpoint == "https://s3.example:8443");
  }
  SECTION("what is given explicitly wins over everything") {
    S3Options o;
    o.region = "ap-south-1";
    o.profile = "backup";
    REQUIRE(resolve_s3_options(&o, env_of({{"AWS_REGION", "us-east-2"},
                                           {"AWS_SHARED_CREDENTIALS_FILE", creds},
                                           {"AWS_CONFIG_FILE", config}})));
    CHECK(o.region == "ap-south-1");
    CHECK(o.access_key == "AKBACKUP");
  }
  SECTION("defaults: us-east-1 and AWS's endpoint for the region") {
    S3Options o;
    REQUIRE(resolve_s3_options(&o, env_of({{"AWS_ACCESS_KEY_ID", "A"},
                                           {"AWS_SECRET_ACCESS_KEY", "S"},
                                           {"HOME", dir.path() + "/nowhere"}})));
    CHECK(o.region == "us-east-1");
    CHECK(o.endpoint == "https://s3.us-east-1.amazonaws.com");
  }
  SECTION("no credentials anywhere: one error saying where they are looked for") {
    S3Options o;
    Status st = resolve_s3_options(&o, env_of({{"HOME", dir.path() + "/nowhere"}}));
    REQUIRE_FALSE(st);
    CHECK_THAT(st.message(), Catch::Contains("no S3 credentials") &&
                                 Catch::Contains("AWS_ACCESS_KEY_ID") &&
                                 Catch::Contains("nowhere/.aws/credentials"));
  }
  SECTION("a malformed endpoint is refused, naming where it came from") {
    S3Options o;
    Status st = resolve_s3_options(&o, env_of({{"AWS_ACCESS_KEY_ID", "A"},
                                               {"AWS_SECRET_ACCESS_KEY", "S"},
                                               {"AWS_ENDPOINT_URL", "s3.example/path"}}));
    REQUIRE_FALSE(st);
    CHECK_THAT(st.message(),
               Catch::Contains("s3.example/path") && Catch::Contains("AWS_ENDPOINT_URL"));
  }
}
