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
fn localhost_cert_valid(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> (String, String) {
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
    let (_d5, not_x509) = file(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let (_d6, not_base64) = file(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
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
