//! Transport security to the broker and the databases, against the servers
//! that `scripts/services.sh up` starts and a private broker:
//!
//! - PostgreSQL: Debian's cluster has `ssl = on` with its own certificate
//!   (the "snakeoil" one, made for `localhost`), so every `sslmode` is shown
//!   against it: whether the connection really is TLS (`pg_stat_ssl`), and
//!   which certificate checks pass and fail. The server's certificate is read
//!   from the file `SHOW ssl_cert_file` names and used as the CA.
//! - MongoDB: the driver's TLS, as the URI asks, against a TLS server made
//!   in the test (a certificate of an unknown CA is refused, `tlsCAFile`
//!   makes it trusted); polodb has no TLS, so there `tls=true` fails where
//!   plaintext works.
//! - Kafka: tansu 0.6 has no TLS listener (it accepts `--cert` and `--key`
//!   but serves every connection in plaintext), so TLS is shown reaching
//!   librdkafka against a TLS server made in the test: the CA location and
//!   the host name check decide whether OpenSSL accepts its certificate. SASL is real: a private tansu that requires
//!   SCRAM-SHA-512 (tansu 0.6 offers no PLAIN) serves the whole service,
//!   and refuses a client without SASL, a wrong password, an unknown user
//!   and the other SCRAM mechanism.
//! - A bad setting stops the binary at start-up with one line naming it.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{create_request, postgres_uri, spawn_app, test_settings, unique, wait_for_status};
use rdkafka::{
    ClientContext,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    producer::{
        BaseProducer, DeliveryResult, FutureProducer, FutureRecord, Producer, ProducerContext,
    },
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use scheduler_service::{
    broker::kafka::client_config,
    config::{KafkaSettings, vars},
    domain::JobId,
    grpc::proto::JobStatus,
    store::{JobDB, mongo::MongoJobDB, postgres::PgJobDB},
};
use test_support::ServerProcess;
use tokio_postgres::NoTls;

const TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds a wait that only a hang would reach.
const HANG: Duration = Duration::from_secs(90);

/// A plain connection to the test server, for looking behind the store.
async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres_uri(), NoTls)
        .await
        .expect("the PostgreSQL test server answers");
    tokio::spawn(connection);
    client
}

/// The certificate the test server presents, and the file it is in.
async fn server_certificate() -> (Vec<CertificateDer<'static>>, String) {
    let admin = admin().await;
    let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(ssl, "on", "the PostgreSQL test server must have ssl = on");
    let file: String = admin
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .unwrap()
        .get(0);
    let pem = std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM");
    (certificates, file)
}

/// The test server's URI with `host` for its host and these options.
fn pg_uri(host: &str, options: &str) -> String {
    let uri = postgres_uri().replace("@127.0.0.1:", &format!("@{host}:"));
    format!("{uri}?{options}")
}

/// Whether the connections of `application` are TLS, as the server sees
/// them (`None`: it has none open).
async fn connections_are_tls(application: &str) -> Option<bool> {
    let rows = admin()
        .await
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1",
            &[&application],
        )
        .await
        .unwrap();
    let tls: Vec<bool> = rows.iter().map(|row| row.get(0)).collect();
    (!tls.is_empty()).then(|| tls.iter().all(|&tls| tls))
}

/// A store in a fresh schema (never created), at `uri` plus a fresh
/// application name, and a call that connects: the store (keep it, to keep
/// its connection open), the call's error, and the application name.
async fn pg_call(uri: &str, cas: Option<&[CertificateDer<'static>]>) -> (PgJobDB, String, String) {
    let application = format!("tls-{}", unique());
    let uri = format!("{uri}&application_name={application}");
    let schema = format!("test_{}", unique());
    let db = PgJobDB::connect_tls(&uri, &schema, TIMEOUT, 1, cas)
        .await
        .expect("the URI is valid");
    let err = db
        .get(JobId::new())
        .await
        .expect_err("the schema does not exist")
        .to_string();
    (db, err, application)
}

#[tokio::test]
async fn postgres_is_encrypted_as_sslmode_asks_and_not_without_it() {
    for (options, tls) in [
        ("connect_timeout=5", false),
        ("sslmode=disable", false),
        ("sslmode=prefer", true),
        ("sslmode=require", true),
    ] {
        let (_db, err, application) = pg_call(&pg_uri("127.0.0.1", options), None).await;
        // The server answered the query.
        assert!(err.contains("does not exist"), "{options}: {err}");
        assert_eq!(
            connections_are_tls(&application).await,
            Some(tls),
            "{options}"
        );
    }
}

#[tokio::test]
async fn postgres_certificates_are_checked_as_sslmode_asks() {
    let (server, _) = server_certificate().await;
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let stranger = vec![stranger.cert.der().clone()];
    let accepted: [(&str, &str, Option<&[CertificateDer<'static>]>); 3] = [
        ("localhost", "sslmode=verify-full", Some(&server)),
        // verify-ca checks the chain, not the name.
        ("127.0.0.1", "sslmode=verify-ca", Some(&server)),
        ("127.0.0.1", "sslmode=require", None),
    ];
    for (host, options, cas) in accepted {
        let (_db, err, application) = pg_call(&pg_uri(host, options), cas).await;
        assert!(err.contains("does not exist"), "{host} {options}: {err}");
        assert_eq!(connections_are_tls(&application).await, Some(true));
    }
    let refused: [(&str, &str, Option<&[CertificateDer<'static>]>, &str); 4] = [
        (
            "localhost",
            "sslmode=verify-full",
            Some(&stranger),
            "UnknownIssuer",
        ),
        // Mozilla's roots did not sign it either.
        ("localhost", "sslmode=verify-full", None, "UnknownIssuer"),
        // With CAs, require checks the chain, as libpq does.
        (
            "localhost",
            "sslmode=require",
            Some(&stranger),
            "UnknownIssuer",
        ),
        (
            "127.0.0.1",
            "sslmode=verify-full",
            Some(&server),
            "not valid for name",
        ),
    ];
    for (host, options, cas, cause) in refused {
        let (_db, err, application) = pg_call(&pg_uri(host, options), cas).await;
        assert!(
            err.contains("invalid peer certificate") && err.contains(cause),
            "{host} {options}: {err}"
        );
        assert_eq!(connections_are_tls(&application).await, None);
    }
}

#[tokio::test]
async fn the_service_verifies_postgres_with_the_ca_file_setting() {
    let (_, ca_file) = server_certificate().await;
    let application = format!("tls-{}", unique());
    let uri = pg_uri(
        "localhost",
        &format!("sslmode=verify-full&application_name={application}"),
    );
    let mut app = spawn_app(&[
        (vars::DATABASE_URI, &uri),
        (vars::DATABASE_TLS_CA_FILE, &ca_file),
    ])
    .await;
    app.client
        .create_job(create_request("over TLS", 60_000))
        .await
        .expect("stored over verified TLS");
    assert_eq!(connections_are_tls(&application).await, Some(true));
    let schema = app.settings.database.db_name.clone();
    app.stop().await;
    admin()
        .await
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .expect("drop schema");
}

/// A TLS server on loopback whose certificate (for `localhost`) a CA made
/// now signed: it completes handshakes, then hangs up. Its port and the
/// CA's PEM file in `dir`.
async fn tls_server(dir: &std::path::Path) -> (u16, String, tokio::task::JoinHandle<()>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Names of their own: OpenSSL takes a certificate whose subject is its
    // issuer's for self-signed.
    ca.distinguished_name
        .push(DnType::CommonName, "transport test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let ca_file = dir.join("mongo-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move { drop(acceptor.accept(stream).await) });
        }
    });
    (port, ca_file.to_string_lossy().into_owned(), server)
}

/// The error of a MongoDB call through `uri`.
async fn mongo_error(uri: &str) -> String {
    let db = MongoJobDB::connect(uri, "tls", "jobs", TIMEOUT, None)
        .await
        .expect("connecting is lazy");
    db.get(JobId::new())
        .await
        .expect_err("no MongoDB there")
        .to_string()
}

#[tokio::test]
async fn the_mongodb_driver_speaks_tls_as_the_uri_asks() {
    let dir = tempfile::tempdir().unwrap();
    let (port, ca_file, server) = tls_server(dir.path()).await;
    let uri = format!("mongodb://localhost:{port}/?directConnection=true&tls=true");
    // The driver's TLS checks the certificate: Mozilla's roots did not sign it.
    let unknown = mongo_error(&uri).await;
    assert!(
        unknown.contains("invalid peer certificate") && unknown.contains("UnknownIssuer"),
        "{unknown}"
    );
    // With tlsCAFile the handshake passes; the server then hangs up.
    let trusted = mongo_error(&format!("{uri}&tlsCAFile={ca_file}")).await;
    assert!(!trusted.contains("certificate"), "{trusted}");
    // polodb has no TLS: the same option there fails, where plaintext works.
    let polodb = test_support::mongodb_uri();
    let collection = format!("tls_{}", unique());
    let plain = MongoJobDB::connect(&polodb, "tls", &collection, TIMEOUT, None)
        .await
        .expect("connects");
    assert!(plain.get(JobId::new()).await.expect("answers").is_none());
    let separator = if polodb.contains('?') { '&' } else { '?' };
    let refused = mongo_error(&format!("{polodb}{separator}tls=true")).await;
    // The driver reports the failed handshake as an I/O error, unless its
    // server selection is still retrying when the call's timeout ends it
    // (as on a loaded machine); either way the call fails, and never for a
    // certificate.
    assert!(
        refused.contains("I/O error") || refused.contains("did not answer within"),
        "{refused}"
    );
    server.abort();
}

/// A librdkafka context that keeps every error and log line.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

impl ClientContext for Recorder {
    fn log(&self, _level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{facility}: {message}"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().unwrap().push(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Asks for the cluster's metadata with the service's client settings; what
/// librdkafka said on the way.
async fn metadata(kafka: &KafkaSettings) -> (Result<usize, KafkaError>, String) {
    let recorder = Recorder::default();
    let producer: BaseProducer<Recorder> = client_config(kafka)
        .set_log_level(RDKafkaLogLevel::Info)
        .create_with_context(recorder.clone())
        .expect("a client");
    let brokers = tokio::task::spawn_blocking(move || {
        let brokers = producer
            .client()
            .fetch_metadata(None, Duration::from_secs(3))
            .map(|metadata| metadata.brokers().len());
        // librdkafka's logs and errors come through its main queue.
        for _ in 0..10 {
            producer.poll(Duration::from_millis(100));
        }
        brokers
    })
    .await
    .unwrap();
    (brokers, recorder.text())
}

#[tokio::test]
async fn kafka_tls_settings_reach_librdkafka() {
    let dir = tempfile::tempdir().unwrap();
    // A TLS server stands in for a TLS broker: tansu has no TLS listener.
    let (port, ca, server) = tls_server(dir.path()).await;
    let stranger = dir.path().join("stranger.pem");
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(&stranger, made.cert.pem()).unwrap();
    let stranger = stranger.to_string_lossy().into_owned();
    let verify_failed = "certificate verify failed";
    for (host, ca, algorithm, verified) in [
        ("localhost", stranger.as_str(), "https", false),
        ("localhost", ca.as_str(), "https", true),
        // The certificate names localhost, not 127.0.0.1.
        ("127.0.0.1", ca.as_str(), "https", false),
        ("127.0.0.1", ca.as_str(), "none", true),
    ] {
        let brokers = format!("{host}:{port}");
        let kafka = test_settings(&[
            (vars::KAFKA_BROKERS, &brokers),
            (vars::KAFKA_SECURITY_PROTOCOL, "ssl"),
            (vars::KAFKA_SSL_CA_LOCATION, ca),
            (vars::KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM, algorithm),
        ])
        .kafka
        .expect("brokers");
        let (metadata, said) = metadata(&kafka).await;
        // It is no broker: after the handshake it hangs up.
        assert!(metadata.is_err(), "{metadata:?}");
        assert!(said.contains("SSL"), "no TLS in:\n{said}");
        assert_eq!(
            !said.contains(verify_failed),
            verified,
            "{host} {ca} {algorithm}:\n{said}"
        );
    }
    server.abort();
}

#[tokio::test]
async fn the_service_runs_over_sasl_and_the_broker_refuses_other_clients() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ServerProcess::kafka_requiring_sasl(dir.path(), &[("scheduler", "s3cret")]).await;
    let brokers = format!("127.0.0.1:{}", broker.port);
    let sasl = |mechanism: &str, user: &str, password: &str| {
        [
            (vars::KAFKA_BROKERS, brokers.clone()),
            (vars::KAFKA_SECURITY_PROTOCOL, "sasl_plaintext".to_owned()),
            (vars::KAFKA_SASL_MECHANISM, mechanism.to_owned()),
            (vars::KAFKA_SASL_USERNAME, user.to_owned()),
            (vars::KAFKA_SASL_PASSWORD, password.to_owned()),
        ]
    };
    let kafka = |pairs: &[(&str, String)]| {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        test_settings(&pairs).kafka.expect("brokers")
    };
    let (no_sasl, _) = metadata(&kafka(&[(vars::KAFKA_BROKERS, brokers.clone())])).await;
    assert!(no_sasl.is_err(), "no SASL: {no_sasl:?}");
    for (mechanism, user, password) in [
        ("SCRAM-SHA-512", "scheduler", "wrong"),
        ("SCRAM-SHA-512", "nobody", "s3cret"),
        ("SCRAM-SHA-256", "scheduler", "s3cret"),
    ] {
        let (refused, said) = metadata(&kafka(&sasl(mechanism, user, password))).await;
        assert!(
            refused.is_err(),
            "{mechanism} {user} {password}: {refused:?}"
        );
        assert!(
            said.contains("SASL authentication error"),
            "{mechanism} {user} {password}: no SASL error in:\n{said}"
        );
    }
    let (accepted, _) = metadata(&kafka(&sasl("SCRAM-SHA-512", "scheduler", "s3cret"))).await;
    assert_eq!(accepted.expect("the right credentials"), 1);

    // The whole service: topics created, an event produced, read back.
    let vars = sasl("SCRAM-SHA-512", "scheduler", "s3cret");
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut app = spawn_app(&pairs).await;
    let kafka = app.settings.kafka.clone().expect("brokers");
    let topic = app.settings.topics.job_create.name.clone();
    let id = app
        .client
        .create_job(create_request("over SASL", 60_000))
        .await
        .expect("created")
        .into_inner()
        .id;
    let reader: BaseConsumer = client_config(&kafka)
        .set("group.id", format!("sasl-{}", unique()))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a consumer");
    reader.subscribe(&[&topic]).expect("subscribed");
    let key = tokio::task::spawn_blocking(move || {
        use rdkafka::Message;
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while std::time::Instant::now() < deadline {
            if let Some(Ok(message)) = reader.poll(Duration::from_millis(500)) {
                return message
                    .key()
                    .map(|key| String::from_utf8_lossy(key).into_owned());
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(
        key.as_deref(),
        Some(id.as_str()),
        "the create event over SASL"
    );

    // A run result over SASL: the service's result consumer reads it.
    let due = app
        .client
        .create_job(create_request("a result over SASL", 0))
        .await
        .expect("created")
        .into_inner()
        .id;
    let running = wait_for_status(&mut app.client, &due, JobStatus::Running, HANG).await;
    assert_eq!(running, JobStatus::Running, "fired");
    let producer: FutureProducer = client_config(&kafka).create().expect("a producer");
    let result = format!(r#"{{"Id": "{due}", "Status": 4}}"#);
    let record = FutureRecord::to(&app.settings.topics.job_run_result)
        .key(&due)
        .payload(&result);
    producer
        .send(record, Duration::from_secs(30))
        .await
        .expect("the result produced over SASL");
    let done = wait_for_status(&mut app.client, &due, JobStatus::Succeeded, HANG).await;
    assert_eq!(done, JobStatus::Succeeded, "the result consumed over SASL");
    app.stop().await;
    drop(broker);
}

#[test]
fn a_bad_kafka_setting_stops_the_binary_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_ca = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_a_ca, "not a certificate\n").unwrap();
    let not_a_ca = not_a_ca.to_string_lossy().into_owned();
    for (name, value) in [
        (vars::KAFKA_SECURITY_PROTOCOL, "tls"),
        (vars::KAFKA_SSL_CA_LOCATION, not_a_ca.as_str()),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_scheduler-service"))
            .env_clear()
            .current_dir(dir.path())
            .env(vars::KAFKA_BROKERS, "127.0.0.1:9092")
            .env(vars::KAFKA_SECURITY_PROTOCOL, "ssl")
            .env(name, value)
            .output()
            .expect("the binary runs");
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("configuration error in {name}")),
            "{stderr}"
        );
    }
}
