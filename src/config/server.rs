//! The servers' address: `SERVER_HOST`, `SERVER_PORT` (gRPC) and
//! `HTTP_PORT` (the HTTP/JSON API).

use std::net::IpAddr;

use serde::Deserialize;

use super::value;

/// The servers' address.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Bind address (of both servers).
    pub host: IpAddr,
    /// The gRPC server's port; 0 picks a free one (tests).
    pub port: u16,
    /// The HTTP/JSON API's port; 0 picks a free one (tests).
    pub http_port: u16,
}

/// The server's variables.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct ServerVars {
    server_host: IpAddr,
    #[serde(deserialize_with = "value::whole")]
    server_port: u16,
    #[serde(deserialize_with = "value::whole")]
    http_port: u16,
}

impl Default for ServerVars {
    fn default() -> Self {
        ServerVars {
            server_host: IpAddr::from([0, 0, 0, 0]),
            server_port: 9001,
            http_port: 9080,
        }
    }
}

impl ServerVars {
    /// The server's settings (every rule is the field's own).
    pub(super) fn into_settings(self) -> ServerSettings {
        ServerSettings {
            host: self.server_host,
            port: self.server_port,
            http_port: self.http_port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tests::settings, vars};

    #[test]
    fn the_address_parses_and_a_bad_host_names_the_variable() {
        let s = settings(&[(vars::SERVER_HOST, "127.0.0.1"), (vars::SERVER_PORT, "0")]).unwrap();
        assert_eq!(s.server.host.to_string(), "127.0.0.1");
        assert_eq!((s.server.port, s.server.http_port), (0, 9080));
        let s = settings(&[(vars::HTTP_PORT, "0")]).unwrap();
        assert_eq!(s.server.http_port, 0);
        let err = settings(&[(vars::HTTP_PORT, "http")]).unwrap_err();
        assert_eq!(err.name, vars::HTTP_PORT, "{err}");
        let err = settings(&[(vars::SERVER_HOST, "localhost")]).unwrap_err();
        assert_eq!(err.name, vars::SERVER_HOST, "{err}");
    }
}
