//! The gRPC server's address: `SERVER_HOST` and `SERVER_PORT`.

use std::net::IpAddr;

use serde::Deserialize;

use super::value;

/// The gRPC server's address.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Bind address.
    pub host: IpAddr,
    /// Bind port; 0 picks a free one (tests).
    pub port: u16,
}

/// The server's variables.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct ServerVars {
    server_host: IpAddr,
    #[serde(deserialize_with = "value::whole")]
    server_port: u16,
}

impl Default for ServerVars {
    fn default() -> Self {
        ServerVars {
            server_host: IpAddr::from([0, 0, 0, 0]),
            server_port: 9001,
        }
    }
}

impl ServerVars {
    /// The server's settings (every rule is the field's own).
    pub(super) fn into_settings(self) -> ServerSettings {
        ServerSettings {
            host: self.server_host,
            port: self.server_port,
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
        assert_eq!(s.server.port, 0);
        let err = settings(&[(vars::SERVER_HOST, "localhost")]).unwrap_err();
        assert_eq!(err.name, vars::SERVER_HOST, "{err}");
    }
}
