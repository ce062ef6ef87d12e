//! TLS to PostgreSQL: libpq's `sslmode`, read from the URI, and the rustls
//! connector that carries it out for [`super::postgres::PgJobDB`].
//!
//! tokio-postgres knows only `disable`, `prefer` and `require`, checks no
//! certificate itself, and defaults to `prefer`. The service honours libpq's
//! five modes and keeps its own default, no TLS, for a URI without
//! `sslmode` (as it always connected): [`driver_uri`] hands tokio-postgres
//! the mode it knows, and [`connector`] checks the server's certificate as
//! the URI's mode asks.
//!
//! | `sslmode` | TLS | certificate checked |
//! |---|---|---|
//! | none, `disable` | no | - |
//! | `prefer` | if the server offers it | no |
//! | `require` | yes | no; with a CA file, its chain (as libpq does) |
//! | `verify-ca` | yes | chain to the CAs |
//! | `verify-full` | yes | chain, and the host name (or IP) of the URI |
//!
//! The CAs are those given (`DATABASE_TLS_CA_FILE`), else Mozilla's roots.
//! rustls speaks TLS 1.2 and 1.3 only.

use std::{fmt, sync::Arc};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::StoreError;
use crate::config::sslmode::{SslMode, query};

/// `uri` with the `sslmode` tokio-postgres is to use for `mode`: `require`
/// for the verifying modes (the connector checks the certificate).
pub fn driver_uri(uri: &str, mode: SslMode) -> String {
    let driver_mode = match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
    };
    let base = uri.split_once('?').map_or(uri, |(base, _)| base);
    let mut parameters: Vec<String> = query(uri)
        .filter(|parameter| !parameter.starts_with("sslmode="))
        .map(str::to_owned)
        .collect();
    parameters.push(format!("sslmode={driver_mode}"));
    format!("{base}?{}", parameters.join("&"))
}

/// The rustls connector of `mode`, checking certificates against `cas`
/// (PEM-decoded), or Mozilla's roots when none are given.
pub fn connector(
    mode: SslMode,
    cas: Option<&[CertificateDer<'static>]>,
) -> Result<MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let algorithms = provider.signature_verification_algorithms;
    let config = if !mode.checks_certificates(cas.is_some()) {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Lenient {
                chain: None,
                algorithms,
            }))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match cas {
            Some(cas) => {
                for ca in cas {
                    roots.add(ca.clone()).map_err(tls_error)?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(tls_error)?;
        if mode == SslMode::VerifyFull {
            builder.with_webpki_verifier(webpki).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    chain: Some(webpki),
                    algorithms,
                }))
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn tls_error(err: impl fmt::Display) -> StoreError {
    StoreError::Other(format!("database TLS: {err}"))
}

/// The checks below `verify-full`. Without `chain` (`prefer`, and `require`
/// without CAs) any certificate is accepted, as libpq does; with it
/// (`verify-ca`, and `require` with CAs) the chain is checked as by
/// `verify-full` but not the name: webpki checks the name last, after the
/// chain, so a name error alone means that the chain is good. Either way the
/// handshake's signatures are checked, so the server must hold the key of
/// the certificate it shows.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            checked => checked,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_gets_a_mode_it_knows_and_no_tls_by_default() {
        let uri = "postgres://u:p@h:5432/db?application_name=x&sslmode=verify-full";
        assert_eq!(
            driver_uri(uri, SslMode::VerifyFull),
            "postgres://u:p@h:5432/db?application_name=x&sslmode=require"
        );
        assert_eq!(
            driver_uri("postgres://h/db", SslMode::Disable),
            "postgres://h/db?sslmode=disable"
        );
        assert_eq!(
            driver_uri("postgres://h/db?sslmode=prefer", SslMode::Prefer),
            "postgres://h/db?sslmode=prefer"
        );
        for mode in [SslMode::Require, SslMode::VerifyCa] {
            let parsed: tokio_postgres::Config = driver_uri(uri, mode).parse().unwrap();
            assert_eq!(
                parsed.get_ssl_mode(),
                tokio_postgres::config::SslMode::Require
            );
        }
    }

    #[test]
    fn certificates_are_checked_as_libpq_does() {
        assert!(!SslMode::Prefer.checks_certificates(true));
        assert!(!SslMode::Require.checks_certificates(false));
        assert!(SslMode::Require.checks_certificates(true));
        assert!(SslMode::VerifyCa.checks_certificates(false));
        for mode in [SslMode::Disable, SslMode::Require, SslMode::VerifyFull] {
            assert!(connector(mode, None).is_ok(), "{mode:?}");
        }
    }
}
