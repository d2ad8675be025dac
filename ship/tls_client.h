// The client side of the link to a rewind-server, one way for the plugin's shipper and
// the blocking client (`rewind` reading from a server): plain TCP only to a loopback
// address when no CA is given; otherwise TLS that trusts the CA given (or, without one,
// the system's trust store), verifies the server's chain and that its certificate
// carries the expected name, and sends that name (SNI).
#pragma once

#include <openssl/ssl.h>

#include <string>

#include <fmt/format.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>

#include "rewind/ship/ship_client.h"

namespace rwd {

// Whether `a` is a loopback address (IPv4 127/8, ::1, or 127/8 mapped into IPv6).
inline bool is_loopback(const boost::asio::ip::address& a) {
  return a.is_loopback() ||
         (a.is_v6() && a.to_v6().is_v4_mapped() &&
          boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6()).is_loopback());
}

// Whether the link may be plain TCP: no CA was given and every address the host
// resolved to is a loopback one (a server with --insecure-loopback on this machine).
// To any other host the token and the disk's data go over verified TLS only.
template <class Endpoints>
bool plain_link_allowed(const ShipOptions& o, const Endpoints& endpoints) {
  if (!o.ca_file.empty()) return false;
  for (const auto& e : endpoints)
    if (!is_loopback(e.endpoint().address())) return false;
  return true;
}

// Why a TLS link failed, with what to do: the CA pinned, or the system's trust store.
inline std::string tls_advice(const ShipOptions& o) {
  return o.ca_file.empty()
             ? fmt::format(
                   "{} is not a loopback address, so the link is TLS, verified against the "
                   "system's trust store; give the CA of the server's certificate "
                   "(ship-ca= or --ca) if it is not there",
                   o.host)
             : fmt::format(
                   "the server's certificate must chain to the CA in {} and carry the "
                   "name {}",
                   o.ca_file, o.server_name.empty() ? o.host : o.server_name);
}

// The name the server's certificate must carry: server_name, else the host.
inline const std::string& expected_server_name(const ShipOptions& o) {
  return o.server_name.empty() ? o.host : o.server_name;
}

// A client context that trusts the CA certificates in o.ca_file (PEM) only, or the
// system's trust store when none is given; *ec says why they cannot be used.
inline void trust_only(boost::asio::ssl::context& ctx, const ShipOptions& o,
                       boost::system::error_code& ec) {
  ctx.set_options(boost::asio::ssl::context::default_workarounds |
                  boost::asio::ssl::context::no_sslv2 | boost::asio::ssl::context::no_sslv3 |
                  boost::asio::ssl::context::no_tlsv1 | boost::asio::ssl::context::no_tlsv1_1);
  if (o.ca_file.empty())
    ctx.set_default_verify_paths(ec);
  else
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
