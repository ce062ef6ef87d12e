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
pub(crate) mod tests {
    use std::sync::OnceLock;

    use chrono::{TimeDelta, TimeZone};
    use rsa::{
        RsaPrivateKey,
        pkcs1::EncodeRsaPublicKey,
        pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding},
        rand_core::OsRng,
    };

    use super::super::tests::settings;
    use super::*;

    /// A key pair made once per test process: its private key (PKCS#8 PEM)
    /// and public key (SubjectPublicKeyInfo PEM).
    pub(crate) struct Pair {
        pub(crate) private_pem: String,
        pub(crate) public_pem: String,
        pub(crate) key: RsaPrivateKey,
    }

    pub(crate) fn make_pair() -> Pair {
        let key = RsaPrivateKey::new(&mut OsRng, 2048).expect("RSA key");
        Pair {
            private_pem: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            public_pem: key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
            key,
        }
    }

    pub(crate) fn pair() -> &'static Pair {
        static PAIR: OnceLock<Pair> = OnceLock::new();
        PAIR.get_or_init(make_pair)
    }

    /// Writes `content` to a fresh file; returns the directory (keep it) and path.
    fn file(content: &[u8]) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file.pem");
        std::fs::write(&path, content).unwrap();
        (dir, path.to_string_lossy().into_owned())
    }

    /// A CA-signed certificate for localhost, valid from yesterday for a
    /// year, and its key, both PEM.
    fn localhost_cert() -> (String, String) {
        let now = Utc::now();
        localhost_cert_valid(now - chrono::Days::new(1), now + chrono::Days::new(365))
    }

    /// A CA-signed certificate for localhost valid from `not_before` to
    /// `not_after`, and its key, both PEM.
    fn localhost_cert_valid(
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> (String, String) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = std::time::SystemTime::from(not_before).into();
        params.not_after = std::time::SystemTime::from(not_after).into();
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn security_defaults_are_open_and_bounded() {
        let s = settings(&[]).unwrap().security;
        assert!(s.auth_public_key.is_none());
        assert_eq!(s.max_message_bytes, 256 * 1024);
        assert_eq!(s.request_timeout, Duration::from_secs(30));
        assert_eq!(s.max_concurrent_calls, 512);
        assert!(s.tls.is_none());
        let d = SecuritySettings::default();
        assert_eq!(
            (
                d.max_message_bytes,
                d.request_timeout,
                d.max_concurrent_calls
            ),
            (
                s.max_message_bytes,
                s.request_timeout,
                s.max_concurrent_calls
            )
        );
    }

    #[test]
    fn production_refuses_to_start_without_an_auth_key() {
        let err = settings(&[(vars::ENVIRONMENT, "production")]).unwrap_err();
        assert_eq!(err.name, vars::AUTH_PUBLIC_KEY_FILE);
        assert!(err.reason.contains("production"), "{err}");
        // Elsewhere, no key means no authentication.
        for env in ["development", "staging"] {
            let s = settings(&[(vars::ENVIRONMENT, env)]).unwrap();
            assert!(s.security.auth_public_key.is_none());
        }
        let (_dir, key) = file(pair().public_pem.as_bytes());
        let s = settings(&[
            (vars::ENVIRONMENT, "production"),
            (vars::AUTH_PUBLIC_KEY_FILE, &key),
        ])
        .unwrap();
        assert_eq!(s.security.auth_public_key.unwrap().bits(), 2048);
    }

    #[test]
    fn a_bad_auth_key_file_names_the_variable() {
        let pair = pair();
        let (_d1, private) = file(pair.private_pem.as_bytes());
        let (_d2, garbage) = file(b"not a key");
        let (_d3, binary) = file(&[0xff, 0xfe, 0x00]);
        for (path, needle) in [
            ("/nonexistent/auth.pem", "cannot read"),
            (private.as_str(), "private key"),
            (garbage.as_str(), "not a PEM"),
            (binary.as_str(), "not PEM text"),
        ] {
            let err = settings(&[(vars::AUTH_PUBLIC_KEY_FILE, path)]).unwrap_err();
            assert_eq!(err.name, vars::AUTH_PUBLIC_KEY_FILE, "{err}");
            assert!(err.reason.contains(needle), "{err}");
        }
    }

    #[test]
    fn request_limits_parse_and_are_bounded() {
        let s = settings(&[
            (vars::GRPC_MAX_MESSAGE_BYTES, "1048576"),
            (vars::GRPC_REQUEST_TIMEOUT_MS, "2500"),
            (vars::GRPC_MAX_CONCURRENT_CALLS, "8"),
        ])
        .unwrap()
        .security;
        assert_eq!(s.max_message_bytes, 1 << 20);
        assert_eq!(s.request_timeout, Duration::from_millis(2500));
        assert_eq!(s.max_concurrent_calls, 8);
        for (name, value) in [
            (vars::GRPC_MAX_MESSAGE_BYTES, "1024"),
            (vars::GRPC_MAX_MESSAGE_BYTES, "1000000000"),
            (vars::GRPC_MAX_MESSAGE_BYTES, "big"),
            (vars::GRPC_REQUEST_TIMEOUT_MS, "0"),
            (vars::GRPC_MAX_CONCURRENT_CALLS, "0"),
            (vars::GRPC_MAX_CONCURRENT_CALLS, "-3"),
        ] {
            let err = settings(&[(name, value)]).expect_err(value);
            assert_eq!(err.name, name, "{err}");
        }
    }

    #[test]
    fn stream_limits_default_safely_parse_and_name_the_variable() {
        let defaults = settings(&[]).unwrap().security.streams;
        assert_eq!(defaults, StreamSettings::default());
        assert_eq!(defaults.max_subscribers, 256);
        assert_eq!(defaults.subscriber_stall, Duration::from_secs(30));
        assert_eq!(defaults.max_streams_per_connection, 200);
        assert_eq!(defaults.keepalive_interval, Duration::from_secs(60));
        assert_eq!(defaults.keepalive_timeout, Duration::from_secs(20));
        let s = settings(&[
            (vars::GRPC_MAX_SUBSCRIBERS, "1000"),
            (vars::GRPC_SUBSCRIBER_STALL_SECS, "2"),
            (vars::GRPC_MAX_STREAMS_PER_CONNECTION, "50"),
            (vars::GRPC_KEEPALIVE_INTERVAL_SECS, "5"),
            (vars::GRPC_KEEPALIVE_TIMEOUT_SECS, "3"),
        ])
        .unwrap()
        .security
        .streams;
        assert_eq!(
            s,
            StreamSettings {
                max_subscribers: 1000,
                subscriber_stall: Duration::from_secs(2),
                max_streams_per_connection: 50,
                keepalive_interval: Duration::from_secs(5),
                keepalive_timeout: Duration::from_secs(3),
            }
        );
        for (name, value) in [
            (vars::GRPC_MAX_SUBSCRIBERS, "0"),
            (vars::GRPC_MAX_SUBSCRIBERS, "many"),
            (vars::GRPC_MAX_SUBSCRIBERS, "18446744073709551615"),
            (vars::GRPC_SUBSCRIBER_STALL_SECS, "0"),
            (vars::GRPC_SUBSCRIBER_STALL_SECS, "1.5"),
            (vars::GRPC_MAX_STREAMS_PER_CONNECTION, "0"),
            (vars::GRPC_MAX_STREAMS_PER_CONNECTION, "4294967296"),
            (vars::GRPC_KEEPALIVE_INTERVAL_SECS, "0"),
            (vars::GRPC_KEEPALIVE_TIMEOUT_SECS, "-1"),
        ] {
            let err = settings(&[(name, value)]).expect_err(value);
            assert_eq!(err.name, name, "{err}");
        }
    }

    #[test]
    fn tls_needs_both_files_and_a_matching_pair() {
        let (cert, key) = localhost_cert();
        let (_d1, cert_file) = file(cert.as_bytes());
        let (_d2, key_file) = file(key.as_bytes());
        let s = settings(&[
            (vars::GRPC_TLS_CERT_FILE, &cert_file),
            (vars::GRPC_TLS_KEY_FILE, &key_file),
        ])
        .unwrap();
        let tls = s.security.tls.expect("TLS on");
        assert_eq!(tls.cert_pem, cert.as_bytes());
        assert!(!format!("{tls:?}").contains("PRIVATE"), "{tls:?}");

        let only_cert = settings(&[(vars::GRPC_TLS_CERT_FILE, &cert_file)]).unwrap_err();
        assert_eq!(only_cert.name, vars::GRPC_TLS_KEY_FILE);
        let only_key = settings(&[(vars::GRPC_TLS_KEY_FILE, &key_file)]).unwrap_err();
        assert_eq!(only_key.name, vars::GRPC_TLS_CERT_FILE);

        let (_d3, other_key) = file(localhost_cert().1.as_bytes());
        let (_d4, garbage) = file(b"garbage");
        // A PEM block whose body is base64 of bytes that are not X.509.
        let (_d5, not_x509) =
            file(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let (_d6, not_base64) =
            file(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
        let cases = [
            (
                "/nonexistent/cert.pem",
                key_file.as_str(),
                vars::GRPC_TLS_CERT_FILE,
            ),
            (
                cert_file.as_str(),
                "/nonexistent/key.pem",
                vars::GRPC_TLS_KEY_FILE,
            ),
            (
                not_x509.as_str(),
                key_file.as_str(),
                vars::GRPC_TLS_CERT_FILE,
            ),
            (
                not_base64.as_str(),
                key_file.as_str(),
                vars::GRPC_TLS_CERT_FILE,
            ),
            (
                garbage.as_str(),
                key_file.as_str(),
                vars::GRPC_TLS_CERT_FILE,
            ),
            (
                cert_file.as_str(),
                garbage.as_str(),
                vars::GRPC_TLS_KEY_FILE,
            ),
            (
                key_file.as_str(),
                cert_file.as_str(),
                vars::GRPC_TLS_CERT_FILE,
            ),
            (
                cert_file.as_str(),
                other_key.as_str(),
                vars::GRPC_TLS_CERT_FILE,
            ),
        ];
        for (cert, key, name) in cases {
            let err = settings(&[
                (vars::GRPC_TLS_CERT_FILE, cert),
                (vars::GRPC_TLS_KEY_FILE, key),
            ])
            .expect_err(name);
            assert_eq!(err.name, name, "{err}");
        }
    }

    /// The TLS settings of this certificate and key, or the error naming
    /// the variable at fault.
    fn tls_of(cert: &str, key: &str) -> Result<TlsSettings, ConfigError> {
        let (_d1, cert_file) = file(cert.as_bytes());
        let (_d2, key_file) = file(key.as_bytes());
        settings(&[
            (vars::GRPC_TLS_CERT_FILE, &cert_file),
            (vars::GRPC_TLS_KEY_FILE, &key_file),
        ])
        .map(|s| s.security.tls.expect("TLS on"))
    }

    #[test]
    fn a_server_certificate_outside_its_validity_stops_start_up() {
        let at = |year| Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
        let expired = localhost_cert_valid(at(2019), at(2020));
        let err = tls_of(&expired.0, &expired.1).unwrap_err();
        assert_eq!(err.name, vars::GRPC_TLS_CERT_FILE, "{err}");
        assert!(
            err.reason.contains("expired on 2020-01-01 00:00:00 UTC"),
            "{err}"
        );
        let future = localhost_cert_valid(at(2099), at(2100));
        let err = tls_of(&future.0, &future.1).unwrap_err();
        assert_eq!(err.name, vars::GRPC_TLS_CERT_FILE, "{err}");
        assert!(
            err.reason
                .contains("not valid before 2099-01-01 00:00:00 UTC"),
            "{err}"
        );
        // Against this machine's clock, not a fixed year: a minute ago.
        let now = Utc::now();
        let just_expired =
            localhost_cert_valid(now - chrono::Days::new(1), now - TimeDelta::minutes(1));
        let err = tls_of(&just_expired.0, &just_expired.1).unwrap_err();
        assert!(err.reason.contains("expired on"), "{err}");

        // Only the server's own certificate, the first, counts: an expired
        // certificate after it (a cross-signed CA, say) is served.
        let (valid, valid_key) = localhost_cert();
        let tls = tls_of(&format!("{valid}{}", expired.0), &valid_key).unwrap();
        assert!(tls.validity.not_after > now, "{tls:?}");
        let err = tls_of(&format!("{}{valid}", expired.0), &expired.1).unwrap_err();
        assert!(err.reason.contains("expired on 2020-01-01"), "{err}");
    }

    #[test]
    fn the_validity_is_read_to_the_second_and_both_ends_are_valid() {
        let not_before = Utc.with_ymd_and_hms(2024, 2, 29, 12, 30, 15).unwrap();
        let not_after = Utc.with_ymd_and_hms(2051, 6, 1, 8, 0, 0).unwrap();
        let (cert, _) = localhost_cert_valid(not_before, not_after);
        let validity = CertValidity::of_first(cert.as_bytes()).unwrap();
        assert_eq!(
            validity,
            CertValidity {
                not_before,
                not_after
            }
        );
        let second = TimeDelta::seconds(1);
        assert_eq!(validity.check(not_before), Ok(()));
        assert_eq!(validity.check(not_after), Ok(()));
        assert_eq!(
            validity.check(not_before - second),
            Err(CertificateError::NotYetValid(not_before))
        );
        assert_eq!(
            validity.check(not_after + second),
            Err(CertificateError::Expired(not_after))
        );
        assert!(matches!(
            CertValidity::of_first(b"no certificate here"),
            Err(CertificateError::Unreadable(_))
        ));
    }

    #[test]
    fn a_certificate_that_expires_within_a_week_is_warned_of() {
        let not_after = Utc.with_ymd_and_hms(2030, 1, 8, 0, 0, 0).unwrap();
        let validity = CertValidity {
            not_before: Utc.with_ymd_and_hms(2029, 1, 1, 0, 0, 0).unwrap(),
            not_after,
        };
        let week = TimeDelta::days(7);
        let within = |now| validity.expires_within(CERT_EXPIRY_WARNING, now);
        assert_eq!(within(not_after - week - TimeDelta::seconds(1)), None);
        assert_eq!(within(not_after - week), Some(week));
        assert_eq!(
            within(not_after - TimeDelta::hours(2)),
            Some(TimeDelta::hours(2))
        );
    }

    #[test]
    fn public_keys_parse_in_both_pem_forms_and_bad_ones_say_why() {
        let pair = pair();
        let spki = AuthPublicKey::from_pem(&format!("\n{}\n\n", pair.public_pem)).unwrap();
        assert_eq!(spki.bits(), 2048);
        let pkcs1 = pair
            .key
            .to_public_key()
            .to_pkcs1_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(AuthPublicKey::from_pem(&pkcs1).unwrap(), spki);
        assert!(format!("{spki:?}").contains("2048 bits"));

        let err = AuthPublicKey::from_pem(&pair.private_pem).unwrap_err();
        assert!(err.contains("private key"), "{err}");
        let err = AuthPublicKey::from_pem("hello").unwrap_err();
        assert!(err.contains("not a PEM"), "{err}");
        let err =
            AuthPublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .unwrap_err();
        assert!(err.contains("not an RSA public key"), "{err}");
        let err =
            AuthPublicKey::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")
                .unwrap_err();
        assert!(err.contains("certificate"), "{err}");
        let small = RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
        let small = small
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let err = AuthPublicKey::from_pem(&small).unwrap_err();
        assert!(err.contains("1024 bits"), "{err}");
    }
}
