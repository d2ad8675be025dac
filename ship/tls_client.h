// The client side of TLS to a rewind-server, one way for the plugin's shipper and the
// blocking client (`rewind` reading from a server): trust only the CA given, verify
// the server's chain and that its certificate carries the expected name, and send
// that name (SNI).
#pragma once

#include <openssl/ssl.h>

#include <string>

#include <boost/asio/ssl.hpp>

#include "rewind/ship/ship_client.h"

namespace rwd {

// The name the server's certificate must carry: server_name, else the host.
inline const std::string& expected_server_name(const ShipOptions& o) {
  return o.server_name.empty() ? o.host : o.server_name;
}

// A client context that trusts the CA certificates in o.ca_file (PEM) only; *ec says
// why the file cannot be used.
inline void trust_only(boost::asio::ssl::context& ctx, const ShipOptions& o,
                       boost::system::error_code& ec) {
  ctx.load_verify_file(o.ca_file, ec);
}

// Makes the handshake of `s` check the server's chain and name.
template <class Socket>
void verify_server(boost::asio::ssl::stream<Socket>& s, const ShipOptions& o) {
  const std::string& name = expected_server_name(o);
  s.set_verify_mode(boost::asio::ssl::verify_peer);
  s.set_verify_callback(boost::asio::ssl::host_name_verification(name));
  SSL_set_tlsext_host_name(s.native_handle(), name.c_str());
}

}  // namespace rwd
