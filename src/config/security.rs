//! Security of the gRPC server: the auth service's public key (parsed and
//! checked here), the request limits, the bounds on streams and connections
//! (so that subscribers and idle or dead clients cannot exhaust the server),
//! and TLS, whose certificate must be valid when the service starts.

use std::{fmt, time::Duration};

use chrono::{DateTime, Utc};
use rsa::{
    RsaPublicKey, pkcs1::DecodeRsaPublicKey, pkcs8::DecodePublicKey, traits::PublicKeyParts,
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use serde::Deserialize;
use x509_cert::der::Decode;

use super::{ConfigError, Environment, value, vars};

/// The smallest RSA key accepted, in bits (the largest is 4096).
pub const MIN_KEY_BITS: usize = 2048;

/// The auth service's RSA public key, parsed and checked.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthPublicKey {
    key: RsaPublicKey,
}

impl AuthPublicKey {
    /// Parses a PEM public key: `BEGIN PUBLIC KEY` (SubjectPublicKeyInfo, what
    /// `openssl rsa -pubout` writes) or `BEGIN RSA PUBLIC KEY` (PKCS#1), of
    /// 2048 to 4096 bits. The error says what is wrong, for a `ConfigError`.
    pub fn from_pem(pem: &str) -> Result<AuthPublicKey, String> {
        let pem = pem.trim();
        if pem.contains("PRIVATE KEY-----") {
            return Err("holds a private key; give the auth service's public key \
                        (`openssl rsa -in private.pem -pubout`)"
                .to_owned());
        }
        if pem.contains("BEGIN CERTIFICATE-----") {
            return Err("holds a certificate; give the public key it contains \
                        (`openssl x509 -in cert.pem -pubkey -noout`)"
                .to_owned());
        }
        let key = if pem.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
            RsaPublicKey::from_pkcs1_pem(pem).map_err(|e| format!("not a PKCS#1 RSA key: {e}"))?
        } else if pem.starts_with("-----BEGIN PUBLIC KEY-----") {
            RsaPublicKey::from_public_key_pem(pem)
                .map_err(|e| format!("not an RSA public key: {e}"))?
        } else {
            return Err("not a PEM public key (expected -----BEGIN PUBLIC KEY----- \
                 or -----BEGIN RSA PUBLIC KEY-----)"
                .to_owned());
        };
        let bits = key.n().bits();
        if bits < MIN_KEY_BITS {
            return Err(format!(
                "the RSA key has {bits} bits; at least {MIN_KEY_BITS} are required"
            ));
        }
        Ok(AuthPublicKey { key })
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.n().bits()
    }

    /// The RSA key itself, for the token verifier.
    pub fn rsa_key(&self) -> &RsaPublicKey {
        &self.key
    }
}

impl fmt::Debug for AuthPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthPublicKey(RSA, {} bits)", self.bits())
    }
}

/// Authentication, request limits and TLS of the gRPC server.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// The auth service's public key; `None` turns authentication off
    /// (refused in production).
    pub auth_public_key: Option<AuthPublicKey>,
    /// Largest request message, in bytes.
    pub max_message_bytes: usize,
    /// Longest a call may take.
    pub request_timeout: Duration,
    /// Most JobsService calls in flight at once.
    pub max_concurrent_calls: usize,
    /// Event subscribers, HTTP/2 streams and connection keepalive.
    pub streams: StreamSettings,
    /// The server's certificate and key; `None` serves plaintext.
    pub tls: Option<TlsSettings>,
}

/// The bounds on long-lived streams and connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// Most `JobEvents.Subscribe` streams open at once; one more is refused
    /// with RESOURCE_EXHAUSTED.
    pub max_subscribers: usize,
    /// How long a subscriber may take no event while events wait for it;
    /// then its stream ends (ABORTED) and its place is freed.
    pub subscriber_stall: Duration,
    /// Most HTTP/2 streams (calls) open at once on one connection
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_streams_per_connection: u32,
    /// How often the server pings each connection.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
}

impl Default for StreamSettings {
    /// 256 subscribers, each dropped after 30 s without reading; 200
    /// streams a connection (hyper's own default, which tonic turns off);
    /// a ping every 60 s, answered within 20 s (tonic's default timeout).
    fn default() -> Self {
        StreamSettings {
            max_subscribers: 256,
            subscriber_stall: Duration::from_secs(30),
            max_streams_per_connection: 200,
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

impl SecuritySettings {
    /// Default largest request message: 256 KiB, room for the largest valid
    /// job (64 KiB job data, 4 KiB description) several times over.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;
    /// Smallest accepted largest message: 72 KiB, so that every valid job fits.
    pub const MIN_MAX_MESSAGE_BYTES: usize = 72 * 1024;
    /// Largest accepted largest message: 16 MiB (tonic reserves a message's
    /// announced size before reading it).
    pub const MAX_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings {
            auth_public_key: None,
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            request_timeout: Duration::from_secs(30),
            max_concurrent_calls: 512,
            streams: StreamSettings::default(),
            tls: None,
        }
    }
}

/// How long before its certificate expires the server warns when it starts:
/// a week, time to renew it before clients refuse it (the files are read
/// only at start-up, so a renewed certificate needs a restart).
pub const CERT_EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

/// The gRPC server's TLS identity, read from its PEM files.
#[derive(Clone)]
pub struct TlsSettings {
    /// The certificate chain (PEM), the server's own certificate first.
    pub cert_pem: Vec<u8>,
    /// Its private key (PEM).
    pub key_pem: Vec<u8>,
    /// When the server's own certificate is valid.
    pub validity: CertValidity,
}

impl TlsSettings {
    /// The tonic server TLS configuration of this identity, taken once when
    /// the server starts (after logging is set up): so this is where a
    /// certificate that expires within [`CERT_EXPIRY_WARNING`] is warned of.
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        if let Some(left) = self
            .validity
            .expires_within(CERT_EXPIRY_WARNING, Utc::now())
        {
            tracing::warn!(
                variable = vars::GRPC_TLS_CERT_FILE,
                not_after = %self.validity.not_after,
                hours_left = left.num_hours(),
                "the gRPC server's certificate expires within a week: renew it and restart \
                 the service (the certificate is read at start-up only)"
            );
        }
        self.identity_config()
    }

    /// The tonic server TLS configuration of this identity, without the
    /// start-up warning.
    fn identity_config(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(
            &self.cert_pem,
            &self.key_pem,
        ))
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"***")
            .field("validity", &self.validity)
            .finish()
    }
}

/// The validity period of the server's own certificate (the first of the
/// chain), both ends included as in RFC 5280.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertValidity {
    /// The first instant it is valid.
    pub not_before: DateTime<Utc>,
    /// The last instant it is valid.
    pub not_after: DateTime<Utc>,
}

/// Why the server's certificate cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The first certificate of the file is not an X.509 certificate.
    #[error("the first certificate cannot be read: {0}")]
    Unreadable(String),
    /// It has expired: every client would refuse it.
    #[error("the server certificate (the first in the file) expired on {0}: renew it")]
    Expired(DateTime<Utc>),
    /// It is not valid yet: every client whose clock agrees would refuse it.
    #[error(
        "the server certificate (the first in the file) is not valid before {0}: \
         check this machine's clock, or wait for a certificate that is valid now"
    )]
    NotYetValid(DateTime<Utc>),
}

impl CertValidity {
    /// The validity of the first certificate in `cert_pem`: the server's own,
    /// which tonic serves first. The rest of the chain is not checked: a
    /// chain may carry an expired cross-signed certificate on purpose, for
    /// old clients, while current clients build a path around it.
    pub fn of_first(cert_pem: &[u8]) -> Result<CertValidity, CertificateError> {
        let unreadable = |e: &dyn fmt::Display| CertificateError::Unreadable(e.to_string());
        let first = CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .ok_or_else(|| unreadable(&"no PEM certificate"))?
            .map_err(|e| unreadable(&e))?;
        let cert = x509_cert::Certificate::from_der(&first).map_err(|e| unreadable(&e))?;
        let validity = cert.tbs_certificate.validity;
        Ok(CertValidity {
            not_before: validity.not_before.to_system_time().into(),
            not_after: validity.not_after.to_system_time().into(),
        })
    }

    /// Whether the certificate is valid at `now`.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), CertificateError> {
        if now < self.not_before {
            return Err(CertificateError::NotYetValid(self.not_before));
        }
        if now > self.not_after {
            return Err(CertificateError::Expired(self.not_after));
        }
        Ok(())
    }

    /// How long the certificate has left at `now`, if it expires within
    /// `window` of it.
    pub fn expires_within(&self, window: Duration, now: DateTime<Utc>) -> Option<chrono::Duration> {
        let left = self.not_after - now;
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        (left <= window).then_some(left)
    }
}

/// The security variables.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct SecurityVars {
    auth_public_key_file: Option<String>,
    #[serde(deserialize_with = "value::whole")]
    grpc_max_message_bytes: usize,
    #[serde(deserialize_with = "value::millis")]
    grpc_request_timeout_ms: Duration,
    #[serde(deserialize_with = "value::positive")]
    grpc_max_concurrent_calls: usize,
    #[serde(deserialize_with = "value::positive")]
    grpc_max_subscribers: usize,
    #[serde(deserialize_with = "value::seconds")]
    grpc_subscriber_stall_secs: Duration,
    #[serde(deserialize_with = "value::positive")]
    grpc_max_streams_per_connection: u32,
    #[serde(deserialize_with = "value::seconds")]
    grpc_keepalive_interval_secs: Duration,
    #[serde(deserialize_with = "value::seconds")]
    grpc_keepalive_timeout_secs: Duration,
    grpc_tls_cert_file: Option<String>,
    grpc_tls_key_file: Option<String>,
}

impl Default for SecurityVars {
    fn default() -> Self {
        let defaults = SecuritySettings::default();
        let streams = defaults.streams;
        SecurityVars {
            auth_public_key_file: None,
            grpc_max_message_bytes: defaults.max_message_bytes,
            grpc_request_timeout_ms: defaults.request_timeout,
            grpc_max_concurrent_calls: defaults.max_concurrent_calls,
            grpc_max_subscribers: streams.max_subscribers,
            grpc_subscriber_stall_secs: streams.subscriber_stall,
            grpc_max_streams_per_connection: streams.max_streams_per_connection,
            grpc_keepalive_interval_secs: streams.keepalive_interval,
            grpc_keepalive_timeout_secs: streams.keepalive_timeout,
            grpc_tls_cert_file: None,
            grpc_tls_key_file: None,
        }
    }
}

impl SecurityVars {
    /// The security settings: the key (required in production), the bounds
    /// of the limits, and the TLS pair.
    pub(super) fn into_settings(
        self,
        environment: Environment,
    ) -> Result<SecuritySettings, ConfigError> {
        let auth_public_key = match self.auth_public_key_file.as_deref() {
            Some(path) => Some(auth_public_key(path)?),
            None if environment == Environment::Production => {
                return Err(ConfigError::new(
                    vars::AUTH_PUBLIC_KEY_FILE,
                    "required when ENVIRONMENT=production: the PEM file of the auth \
                     service's RSA public key (without it JobsService calls are not authenticated)",
                ));
            }
            None => None,
        };
        let max_message_bytes = self.grpc_max_message_bytes;
        if !(SecuritySettings::MIN_MAX_MESSAGE_BYTES..=SecuritySettings::MAX_MAX_MESSAGE_BYTES)
            .contains(&max_message_bytes)
        {
            return Err(ConfigError::new(
                vars::GRPC_MAX_MESSAGE_BYTES,
                format!(
                    "must be {} to {} bytes, got {max_message_bytes}",
                    SecuritySettings::MIN_MAX_MESSAGE_BYTES,
                    SecuritySettings::MAX_MAX_MESSAGE_BYTES
                ),
            ));
        }
        for (name, permits) in [
            (
                vars::GRPC_MAX_CONCURRENT_CALLS,
                self.grpc_max_concurrent_calls,
            ),
            (vars::GRPC_MAX_SUBSCRIBERS, self.grpc_max_subscribers),
        ] {
            if permits > tokio::sync::Semaphore::MAX_PERMITS {
                return Err(ConfigError::new(name, "is too large"));
            }
        }
        Ok(SecuritySettings {
            auth_public_key,
            max_message_bytes,
            request_timeout: self.grpc_request_timeout_ms,
            max_concurrent_calls: self.grpc_max_concurrent_calls,
            streams: StreamSettings {
                max_subscribers: self.grpc_max_subscribers,
                subscriber_stall: self.grpc_subscriber_stall_secs,
                max_streams_per_connection: self.grpc_max_streams_per_connection,
                keepalive_interval: self.grpc_keepalive_interval_secs,
                keepalive_timeout: self.grpc_keepalive_timeout_secs,
            },
            tls: tls(
                self.grpc_tls_cert_file.as_deref(),
                self.grpc_tls_key_file.as_deref(),
            )?,
        })
    }
}

/// The auth service's public key from the PEM file at `path`.
fn auth_public_key(path: &str) -> Result<AuthPublicKey, ConfigError> {
    let pem =
        String::from_utf8(value::read_file(vars::AUTH_PUBLIC_KEY_FILE, path)?).map_err(|_| {
            ConfigError::new(vars::AUTH_PUBLIC_KEY_FILE, "the key file is not PEM text")
        })?;
    AuthPublicKey::from_pem(&pem)
        .map_err(|reason| ConfigError::new(vars::AUTH_PUBLIC_KEY_FILE, reason))
}

/// The TLS identity from the certificate and key files, both or neither.
fn tls(
    cert_file: Option<&str>,
    key_file: Option<&str>,
) -> Result<Option<TlsSettings>, ConfigError> {
    let read =
        |name: &str, path: Option<&str>| path.map(|path| value::read_file(name, path)).transpose();
    match (
        read(vars::GRPC_TLS_CERT_FILE, cert_file)?,
        read(vars::GRPC_TLS_KEY_FILE, key_file)?,
    ) {
        (None, None) => Ok(None),
        (Some(cert_pem), Some(key_pem)) => check_tls(cert_pem, key_pem).map(Some),
        (Some(_), None) => Err(ConfigError::new(
            vars::GRPC_TLS_KEY_FILE,
            "GRPC_TLS_CERT_FILE is set but not the key file: set both or neither",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            vars::GRPC_TLS_CERT_FILE,
            "GRPC_TLS_KEY_FILE is set but not the certificate file: set both or neither",
        )),
    }
}

/// The TLS identity of the certificate and key, checked: they make a TLS
/// identity, and the server's certificate is valid now (a server whose
/// every client refuses its certificate had better not start). Names the
/// file at fault when it can tell.
fn check_tls(cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<TlsSettings, ConfigError> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    if !text(&cert_pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(ConfigError::new(
            vars::GRPC_TLS_CERT_FILE,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
        ));
    }
    if !text(&key_pem).contains("PRIVATE KEY-----") {
        return Err(ConfigError::new(
            vars::GRPC_TLS_KEY_FILE,
            "no PEM private key (-----BEGIN ... PRIVATE KEY-----) in the file",
        ));
    }
    let cert_error =
        |e: CertificateError| ConfigError::new(vars::GRPC_TLS_CERT_FILE, e.to_string());
    let validity = CertValidity::of_first(&cert_pem).map_err(cert_error)?;
    let tls = TlsSettings {
        cert_pem,
        key_pem,
        validity,
    };
    tonic::transport::Server::builder()
        .tls_config(tls.identity_config())
        .map_err(|e| {
            let cause =
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
            ConfigError::new(
                vars::GRPC_TLS_CERT_FILE,
                format!(
                    "the certificate and GRPC_TLS_KEY_FILE do not make a TLS identity: {cause}"
                ),
            )
        })?;
    validity.check(Utc::now()).map_err(cert_error)?;
    Ok(tls)
}

#[cfg(test)]
pub(crate) mod tests;
