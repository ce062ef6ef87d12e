//! libpq's `sslmode`, read from a PostgreSQL URI: checked with the other
//! settings at start-up, and carried out by the store's TLS connector
//! (`store::pg_tls`).

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, without checking its certificate.
    Prefer,
    /// TLS, without checking the certificate (unless CAs are given).
    Require,
    /// TLS, the certificate chained to the CAs.
    VerifyCa,
    /// TLS, the certificate chained to the CAs and naming the host.
    VerifyFull,
}

impl SslMode {
    /// The mode of `uri`'s `sslmode` query parameter, if it has one (the
    /// last, if several); an unknown mode is an error saying what is known.
    pub fn of_uri(uri: &str) -> Result<Option<SslMode>, String> {
        let Some(text) = query(uri)
            .filter_map(|parameter| parameter.strip_prefix("sslmode="))
            .last()
        else {
            return Ok(None);
        };
        match text {
            "disable" => Ok(Some(SslMode::Disable)),
            "prefer" => Ok(Some(SslMode::Prefer)),
            "require" => Ok(Some(SslMode::Require)),
            "verify-ca" => Ok(Some(SslMode::VerifyCa)),
            "verify-full" => Ok(Some(SslMode::VerifyFull)),
            other => Err(format!(
                "sslmode must be disable, prefer, require, verify-ca or verify-full, got {other:?}"
            )),
        }
    }

    /// Whether the server's certificate is checked against CAs in this
    /// mode (`require` only when CAs are given).
    pub fn checks_certificates(self, cas_given: bool) -> bool {
        match self {
            SslMode::Disable | SslMode::Prefer => false,
            SslMode::Require => cas_given,
            SslMode::VerifyCa | SslMode::VerifyFull => true,
        }
    }
}

/// The parameters of `uri`'s query string.
pub fn query(uri: &str) -> impl Iterator<Item = &str> {
    uri.split_once('?')
        .map_or("", |(_, query)| query)
        .split('&')
        .filter(|parameter| !parameter.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_comes_from_the_query_string() {
        assert_eq!(SslMode::of_uri("postgres://u:p@h/db"), Ok(None));
        assert_eq!(
            SslMode::of_uri("postgres://h/db?application_name=x&sslmode=verify-full"),
            Ok(Some(SslMode::VerifyFull))
        );
        assert_eq!(
            SslMode::of_uri("postgres://h/db?sslmode=require&sslmode=verify-ca"),
            Ok(Some(SslMode::VerifyCa))
        );
        let err = SslMode::of_uri("postgres://h/db?sslmode=verify_full").unwrap_err();
        assert!(
            err.contains("verify_full") && err.contains("verify-full"),
            "{err}"
        );
    }
}
