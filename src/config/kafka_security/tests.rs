use super::super::tests::settings;
use super::*;

/// The settings of these variables with a broker set.
fn kafka(pairs: &[(&str, &str)]) -> Result<KafkaSecurity, ConfigError> {
    let mut all = vec![(vars::KAFKA_BROKERS, "k:9093")];
    all.extend_from_slice(pairs);
    settings(&all).map(|s| s.kafka.expect("brokers set").security)
}

fn property<'a>(properties: &'a [KafkaProperty], name: &str) -> Option<&'a str> {
    properties
        .iter()
        .find(|property| property.name == name)
        .map(|property| property.value.as_str())
}

/// A PEM certificate and key in `dir`: their paths.
fn pem_files(dir: &Path) -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["kafka".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

#[test]
fn plaintext_is_the_default_and_sets_only_the_protocol() {
    let security = kafka(&[]).unwrap();
    assert_eq!(security.protocol, SecurityProtocol::Plaintext);
    let properties = security.properties();
    assert_eq!(properties.len(), 1);
    assert_eq!(
        property(&properties, "security.protocol"),
        Some("plaintext")
    );
}

#[test]
fn sasl_over_tls_reaches_every_property_and_secrets_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pem_files(dir.path());
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "from-file\n").unwrap();
    let security = kafka(&[
        (vars::KAFKA_SECURITY_PROTOCOL, "SASL_SSL"),
        (vars::KAFKA_SASL_MECHANISM, "scram-sha-512"),
        (vars::KAFKA_SASL_USERNAME, "scheduler"),
        (vars::KAFKA_SASL_PASSWORD, "plain-password"),
        (
            vars::KAFKA_SASL_PASSWORD_FILE,
            &password_file.to_string_lossy(),
        ),
        (vars::KAFKA_SSL_CA_LOCATION, &cert),
        (vars::KAFKA_SSL_CERTIFICATE_LOCATION, &cert),
        (vars::KAFKA_SSL_KEY_LOCATION, &key),
        (vars::KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM, "None"),
    ])
    .unwrap();
    let properties = security.properties();
    for (name, value) in [
        ("security.protocol", "sasl_ssl"),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", "scheduler"),
        ("sasl.password", "from-file"),
        ("ssl.ca.location", cert.as_str()),
        ("ssl.certificate.location", cert.as_str()),
        ("ssl.key.location", key.as_str()),
        ("ssl.endpoint.identification.algorithm", "none"),
    ] {
        assert_eq!(property(&properties, name), Some(value), "{name}");
    }
    let shown = format!("{security:?}");
    assert!(!shown.contains("from-file"), "{shown}");
}

#[test]
fn bad_values_stop_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pem_files(dir.path());
    let sasl = [
        (vars::KAFKA_SECURITY_PROTOCOL, "sasl_plaintext"),
        (vars::KAFKA_SASL_MECHANISM, "PLAIN"),
        (vars::KAFKA_SASL_USERNAME, "u"),
        (vars::KAFKA_SASL_PASSWORD, "p"),
    ];
    let ssl = (vars::KAFKA_SECURITY_PROTOCOL, "ssl");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            vars::KAFKA_SECURITY_PROTOCOL,
            vec![(vars::KAFKA_SECURITY_PROTOCOL, "tls")],
        ),
        (vars::KAFKA_SASL_MECHANISM, vec![sasl[0]]),
        (
            vars::KAFKA_SASL_MECHANISM,
            vec![
                sasl[0],
                (vars::KAFKA_SASL_MECHANISM, "GSSAPI"),
                sasl[2],
                sasl[3],
            ],
        ),
        (vars::KAFKA_SASL_USERNAME, vec![sasl[0], sasl[1], sasl[3]]),
        (vars::KAFKA_SASL_PASSWORD, vec![sasl[0], sasl[1], sasl[2]]),
        (
            vars::KAFKA_SASL_PASSWORD_FILE,
            vec![
                sasl[0],
                sasl[1],
                sasl[2],
                (vars::KAFKA_SASL_PASSWORD_FILE, "/nonexistent/password"),
            ],
        ),
        // Settings the protocol would ignore.
        (vars::KAFKA_SASL_USERNAME, vec![sasl[2]]),
        (
            vars::KAFKA_SSL_CA_LOCATION,
            vec![(vars::KAFKA_SSL_CA_LOCATION, &cert)],
        ),
        (
            vars::KAFKA_SSL_CA_LOCATION,
            vec![ssl, (vars::KAFKA_SSL_CA_LOCATION, "/nonexistent/ca.pem")],
        ),
        (
            vars::KAFKA_SSL_KEY_LOCATION,
            vec![ssl, (vars::KAFKA_SSL_CERTIFICATE_LOCATION, &cert)],
        ),
        (
            vars::KAFKA_SSL_KEY_PASSWORD,
            vec![ssl, (vars::KAFKA_SSL_KEY_PASSWORD, "k")],
        ),
        (
            vars::KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM,
            vec![
                ssl,
                (vars::KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM, "dns"),
            ],
        ),
        // Readable files that librdkafka refuses: the key is no
        // certificate, the certificate no key.
        (
            vars::KAFKA_SSL_CA_LOCATION,
            vec![ssl, (vars::KAFKA_SSL_CA_LOCATION, &key)],
        ),
        (
            vars::KAFKA_SSL_CERTIFICATE_LOCATION,
            vec![
                ssl,
                (vars::KAFKA_SSL_CERTIFICATE_LOCATION, &key),
                (vars::KAFKA_SSL_KEY_LOCATION, &key),
            ],
        ),
    ];
    for (name, pairs) in cases {
        let err = kafka(&pairs).expect_err(name);
        assert_eq!(err.name, name, "{pairs:?}: {err}");
        assert!(!err.to_string().contains('\n'), "{err}");
    }
}

#[test]
fn the_security_variables_are_checked_without_brokers_too() {
    let err = settings(&[(vars::KAFKA_SECURITY_PROTOCOL, "tls")]).unwrap_err();
    assert_eq!(err.name, vars::KAFKA_SECURITY_PROTOCOL);
    assert!(settings(&[(vars::KAFKA_SECURITY_PROTOCOL, "ssl")]).is_ok());
}

#[test]
fn the_linked_librdkafka_has_tls_and_sasl() {
    let native = ClientConfig::new().create_native_config().unwrap();
    let features = native.get("builtin.features").unwrap();
    for feature in ["ssl", "sasl_plain", "sasl_scram"] {
        assert!(
            features.split(',').any(|f| f == feature),
            "librdkafka lacks {feature}: {features}"
        );
    }
}
