//! Where the jobs live: the store the settings select (embedded, MongoDB or
//! PostgreSQL), its URI (whole, or built from parts and Docker secrets),
//! names, bounds and pool, and the CAs of PostgreSQL's TLS (its `sslmode`
//! is the URI's, checked here; MongoDB's TLS options are all in its URI).

use std::{fmt, path::PathBuf, time::Duration};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use serde::Deserialize;

use super::sslmode::SslMode;
use super::{ConfigError, value, vars};

/// The MongoDB collection of the jobs when `DATABASE_COLLECTION` is not set.
pub const DEFAULT_COLLECTION: &str = "jobs";

/// The database name (or PostgreSQL schema) when `DATABASE_DB_NAME` is not set.
const DEFAULT_DB_NAME: &str = "jobs_db";

/// Which store implementation the settings select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// No database configured: the embedded store in `data_dir`.
    Embedded,
    /// `mongodb://` or `mongodb+srv://`.
    MongoDb,
    /// `postgres://` or `postgresql://`.
    Postgres,
}

/// Where the jobs live.
#[derive(Clone)]
pub struct DatabaseSettings {
    /// The store implementation: from the URI's scheme, or embedded when no
    /// database is configured.
    pub kind: DatabaseKind,
    /// Connection URI, credentials included (empty when embedded).
    pub uri: String,
    /// Folder of the embedded store.
    pub data_dir: PathBuf,
    /// Bound on the embedded store's page cache, in bytes.
    pub data_cache_bytes: usize,
    /// The namespace of the jobs: the MongoDB database, or the PostgreSQL
    /// schema (inside the database the URI names).
    pub db_name: String,
    /// The MongoDB collection of the jobs.
    pub collection: String,
    /// Bound on every call and on connecting.
    pub timeout: Duration,
    /// Most connections open at once (MongoDB and PostgreSQL); `None`: the
    /// store's default.
    pub pool_size: Option<u32>,
    /// The CAs that PostgreSQL's certificate must chain to, when the URI's
    /// `sslmode` checks it; `None`: Mozilla's roots.
    pub tls_ca: Option<Vec<CertificateDer<'static>>>,
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("kind", &self.kind)
            .field("data_dir", &self.data_dir)
            .field("data_cache_bytes", &self.data_cache_bytes)
            .field("uri", &redact_uri(&self.uri))
            .field("db_name", &self.db_name)
            .field("collection", &self.collection)
            .field("timeout", &self.timeout)
            .field("pool_size", &self.pool_size)
            .field("tls_ca_certificates", &self.tls_ca.as_ref().map(Vec::len))
            .finish()
    }
}

/// Query-string options whose values are secrets, in lower case (the
/// drivers read option names in any case): libpq's and MongoDB's password
/// options, and MongoDB's mechanism properties (AWS session tokens, ...).
const SECRET_OPTIONS: [&str; 4] = [
    "password",
    "sslpassword",
    "authmechanismproperties",
    "tlscertificatekeyfilepassword",
];

/// The URI with any `user:password@` replaced, and the values of the
/// secret query options ([`SECRET_OPTIONS`]), for logs.
pub fn redact_uri(uri: &str) -> String {
    // The last `@` ends the credentials even when an unencoded `?` or `/`
    // is in the password; options come after it.
    let (head, rest) = match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            (format!("{}://***", &uri[..scheme_end]), &uri[at..])
        }
        _ => (String::new(), uri),
    };
    let Some((address, options)) = rest.split_once('?') else {
        return format!("{head}{rest}");
    };
    let mut redacted = format!("{head}{address}?");
    let mut position = 0;
    for option in options.split(['&', ';']) {
        if position > 0 {
            // The separator before this option, `&` or `;`.
            redacted.push_str(&options[position - 1..position]);
        }
        position += option.len() + 1;
        match option.split_once('=') {
            Some((name, _)) if SECRET_OPTIONS.contains(&name.to_ascii_lowercase().as_str()) => {
                redacted.push_str(name);
                redacted.push_str("=***");
            }
            _ => redacted.push_str(option),
        }
    }
    redacted
}

/// The database's variables. `DATABASE_SCHEME` and `DATABASE_DOMAIN` are
/// aliases of `DATABASE_SCHEMA` and `DATABASE_HOST_NAME`.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct DatabaseVars {
    database_uri: Option<String>,
    database_user_file: Option<String>,
    database_user: Option<String>,
    database_pass_file: Option<String>,
    database_pass: Option<String>,
    database_db_name_file: Option<String>,
    database_db_name: Option<String>,
    #[serde(alias = "database_scheme")]
    database_schema: Option<String>,
    #[serde(alias = "database_domain")]
    database_host_name: Option<String>,
    /// Read only when the URI is built from parts with a `host:port`
    /// address (a whole `DATABASE_URI` or a `mongodb+srv` scheme ignores it).
    database_port: Option<String>,
    data_dir: PathBuf,
    #[serde(deserialize_with = "value::positive")]
    data_cache_mb: u64,
    database_collection: String,
    #[serde(deserialize_with = "value::millis")]
    database_timeout_ms: Duration,
    #[serde(deserialize_with = "value::some_positive")]
    database_pool_size: Option<u32>,
    database_tls_ca_file: Option<String>,
}

impl Default for DatabaseVars {
    fn default() -> Self {
        DatabaseVars {
            database_uri: None,
            database_user_file: None,
            database_user: None,
            database_pass_file: None,
            database_pass: None,
            database_db_name_file: None,
            database_db_name: None,
            database_schema: None,
            database_host_name: None,
            database_port: None,
            data_dir: PathBuf::from("data"),
            data_cache_mb: 64,
            database_collection: DEFAULT_COLLECTION.to_owned(),
            database_timeout_ms: Duration::from_millis(5000),
            database_pool_size: None,
            database_tls_ca_file: None,
        }
    }
}

impl DatabaseVars {
    /// The database's settings: the store the URI selects, and the checks
    /// across its parts.
    pub(super) fn into_settings(self) -> Result<DatabaseSettings, ConfigError> {
        let db_name = value::secret(
            vars::DATABASE_DB_NAME_FILE,
            self.database_db_name_file.as_deref(),
            self.database_db_name.clone(),
        )?
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| DEFAULT_DB_NAME.to_owned());
        let (kind, uri) = match &self.database_uri {
            _ if !self.configured() => (DatabaseKind::Embedded, String::new()),
            Some(uri) => (kind_of(uri)?, uri.clone()),
            None => {
                let uri = self.uri_from_parts()?;
                (kind_of(&uri)?, uri)
            }
        };
        if kind == DatabaseKind::Postgres
            && !db_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::new(
                vars::DATABASE_DB_NAME,
                format!("a PostgreSQL schema name must be letters, digits and _, got {db_name:?}"),
            ));
        }
        let tls_ca = self.tls_ca(kind, &uri)?;
        let data_cache_bytes = usize::try_from(self.data_cache_mb)
            .ok()
            .and_then(|mb| mb.checked_mul(1 << 20))
            .ok_or_else(|| ConfigError::new(vars::DATA_CACHE_MB, "is too large"))?;
        Ok(DatabaseSettings {
            kind,
            uri,
            data_dir: self.data_dir,
            data_cache_bytes,
            db_name,
            collection: self.database_collection,
            timeout: self.database_timeout_ms,
            pool_size: self.database_pool_size,
            tls_ca,
        })
    }

    /// Checks a PostgreSQL URI's `sslmode`, and reads the CAs of
    /// `DATABASE_TLS_CA_FILE`, which only a mode that checks certificates uses.
    fn tls_ca(
        &self,
        kind: DatabaseKind,
        uri: &str,
    ) -> Result<Option<Vec<CertificateDer<'static>>>, ConfigError> {
        let mode = match kind {
            DatabaseKind::Postgres => SslMode::of_uri(uri)
                .map_err(|reason| ConfigError::new(vars::DATABASE_URI, reason))?,
            DatabaseKind::Embedded | DatabaseKind::MongoDb => None,
        };
        let Some(path) = &self.database_tls_ca_file else {
            return Ok(None);
        };
        let name = vars::DATABASE_TLS_CA_FILE;
        if !mode.is_some_and(|mode| mode.checks_certificates(true)) {
            return Err(ConfigError::new(
                name,
                "needs a postgres:// DATABASE_URI with sslmode=require, verify-ca or \
                 verify-full (MongoDB takes tlsCAFile in its URI)",
            ));
        }
        let pem = value::read_file(name, path)?;
        let cas = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::new(name, format!("{path} is not PEM: {e}")))?;
        if cas.is_empty() {
            return Err(ConfigError::new(
                name,
                format!("{path} holds no PEM certificate"),
            ));
        }
        Ok(Some(cas))
    }

    /// Whether a database is configured, by a URI or by any of its
    /// connection parts; with none, the jobs live in the embedded store.
    fn configured(&self) -> bool {
        [
            &self.database_uri,
            &self.database_schema,
            &self.database_host_name,
            &self.database_port,
            &self.database_user,
            &self.database_user_file,
            &self.database_pass,
            &self.database_pass_file,
        ]
        .iter()
        .any(|part| part.is_some())
    }

    /// The URI from the scheme, host, port and credentials.
    fn uri_from_parts(&self) -> Result<String, ConfigError> {
        let scheme = self.database_schema.as_deref().unwrap_or("mongodb");
        let postgres = match scheme {
            "mongodb" | "mongodb+srv" => false,
            "postgres" | "postgresql" => true,
            _ => {
                return Err(ConfigError::new(
                    vars::DATABASE_SCHEMA,
                    format!(
                        "expected mongodb, mongodb+srv, postgres or postgresql, got {scheme:?}"
                    ),
                ));
            }
        };
        let host = self.database_host_name.as_deref().unwrap_or("127.0.0.1");
        let address = if scheme == "mongodb+srv" {
            host.to_owned()
        } else {
            let port = match &self.database_port {
                None if postgres => 5432,
                None => 27017,
                Some(port) => value::parse_whole::<u16>(port)
                    .map_err(|reason| ConfigError::new(vars::DATABASE_PORT, reason))?,
            };
            format!("{host}:{port}")
        };
        let user = value::secret(
            vars::DATABASE_USER_FILE,
            self.database_user_file.as_deref(),
            self.database_user.clone(),
        )?;
        let pass = value::secret(
            vars::DATABASE_PASS_FILE,
            self.database_pass_file.as_deref(),
            self.database_pass.clone(),
        )?;
        let path = match (user, pass) {
            (Some(user), Some(pass)) => {
                let credentials = format!(
                    "{}:{}@",
                    utf8_percent_encode(&user, NON_ALPHANUMERIC),
                    utf8_percent_encode(&pass, NON_ALPHANUMERIC)
                );
                if postgres {
                    format!("{credentials}{address}/postgres")
                } else {
                    format!("{credentials}{address}/?authSource=admin")
                }
            }
            (None, None) if postgres => format!("{address}/postgres"),
            (None, None) => format!("{address}/"),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    vars::DATABASE_PASS_FILE,
                    "a user is set but no password",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    vars::DATABASE_USER_FILE,
                    "a password is set but no user",
                ));
            }
        };
        Ok(format!("{scheme}://{path}"))
    }
}

/// The store a URI's scheme selects.
fn kind_of(uri: &str) -> Result<DatabaseKind, ConfigError> {
    match uri.split_once("://").map(|(scheme, _)| scheme) {
        Some("mongodb" | "mongodb+srv") => Ok(DatabaseKind::MongoDb),
        Some("postgres" | "postgresql") => Ok(DatabaseKind::Postgres),
        _ => Err(ConfigError::new(
            vars::DATABASE_URI,
            "expected a mongodb://, mongodb+srv://, postgres:// or postgresql:// URI",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::tests::settings;
    use super::*;

    #[test]
    fn database_uri_is_built_from_docker_secrets_with_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, content: &str| {
            let path = dir.path().join(name);
            std::fs::File::create(&path)
                .unwrap()
                .write_all(content.as_bytes())
                .unwrap();
            path.to_string_lossy().into_owned()
        };
        let (user, pass, db) = (
            write("user", "admin\n"),
            write("pass", "p@ss:w/rd\n"),
            write("db", "jobs_db\n"),
        );
        let s = settings(&[
            (vars::DATABASE_USER_FILE, &user),
            (vars::DATABASE_PASS_FILE, &pass),
            (vars::DATABASE_DB_NAME_FILE, &db),
            (vars::DATABASE_SCHEME, "mongodb"),
            (vars::DATABASE_DOMAIN, "scheduler-db-service"),
            (vars::DATABASE_PORT, "27018"),
        ])
        .unwrap();
        assert_eq!(
            s.database.uri,
            "mongodb://admin:p%40ss%3Aw%2Frd@scheduler-db-service:27018/?authSource=admin"
        );
        assert_eq!(s.database.db_name, "jobs_db");
        let shown = format!("{:?}", s.database);
        assert!(
            !shown.contains("p%40ss"),
            "password leaked into Debug: {shown}"
        );
    }

    #[test]
    fn with_no_database_or_broker_configured_everything_is_embedded() {
        let s = settings(&[(vars::DATA_DIR, "/var/lib/scheduler")]).unwrap();
        assert_eq!(s.database.kind, DatabaseKind::Embedded);
        assert_eq!(s.database.data_dir, PathBuf::from("/var/lib/scheduler"));
        assert!(s.kafka.is_none());
        let s = settings(&[(vars::KAFKA_BROKERS, "k:9092")]).unwrap();
        assert_eq!(s.kafka.map(|k| k.brokers).as_deref(), Some("k:9092"));
    }

    #[test]
    fn the_uri_scheme_selects_the_store() {
        let mongo = settings(&[(vars::DATABASE_SCHEMA, "mongodb")]).unwrap();
        assert_eq!(mongo.database.kind, DatabaseKind::MongoDb);
        let pg = settings(&[(vars::DATABASE_URI, "postgres://u:p@db:5432/jobs")]).unwrap();
        assert_eq!(pg.database.kind, DatabaseKind::Postgres);
        let parts = settings(&[
            (vars::DATABASE_SCHEMA, "postgresql"),
            (vars::DATABASE_USER, "u"),
            (vars::DATABASE_PASS, "p"),
        ])
        .unwrap();
        assert_eq!(parts.database.kind, DatabaseKind::Postgres);
        assert_eq!(
            parts.database.uri,
            "postgresql://u:p@127.0.0.1:5432/postgres"
        );
        let bad_schema = settings(&[
            (vars::DATABASE_URI, "postgres://db/x"),
            (vars::DATABASE_DB_NAME, "jobs-db"),
        ]);
        assert_eq!(bad_schema.unwrap_err().name, vars::DATABASE_DB_NAME);
    }

    #[test]
    fn a_whole_uri_wins_over_the_parts() {
        let s = settings(&[
            (vars::DATABASE_URI, "mongodb://db:1/"),
            (vars::DATABASE_HOST_NAME, "x"),
        ])
        .unwrap();
        assert_eq!(s.database.uri, "mongodb://db:1/");
    }

    #[test]
    fn the_embedded_cache_is_in_mib_and_positive() {
        let default = settings(&[]).unwrap().database.data_cache_bytes;
        assert_eq!(default, 64 << 20);
        let set = settings(&[(vars::DATA_CACHE_MB, "8")]).unwrap();
        assert_eq!(set.database.data_cache_bytes, 8 << 20);
        for value in ["0", "lots", "18446744073709551615"] {
            let err = settings(&[(vars::DATA_CACHE_MB, value)]).expect_err(value);
            assert_eq!(err.name, vars::DATA_CACHE_MB, "{err}");
        }
    }

    #[test]
    fn pool_size_is_optional_and_positive() {
        assert_eq!(settings(&[]).unwrap().database.pool_size, None);
        let set = settings(&[(vars::DATABASE_POOL_SIZE, "32")]).unwrap();
        assert_eq!(set.database.pool_size, Some(32));
        for value in ["0", "-1", "many", "4294967296"] {
            let err = settings(&[(vars::DATABASE_POOL_SIZE, value)]).expect_err(value);
            assert_eq!(err.name, vars::DATABASE_POOL_SIZE, "{err}");
        }
    }

    #[test]
    fn redaction_hides_credentials_only() {
        assert_eq!(
            redact_uri("mongodb://u:p@h:1/?x=y"),
            "mongodb://***@h:1/?x=y"
        );
        assert_eq!(redact_uri("mongodb://h:1/"), "mongodb://h:1/");
        // An unencoded `?` or `/` in the password does not expose it.
        assert_eq!(
            redact_uri("postgres://u:p?a/ss@h/db?sslmode=require"),
            "postgres://***@h/db?sslmode=require"
        );
    }

    #[test]
    fn redaction_hides_secret_query_options_in_any_case() {
        assert_eq!(
            redact_uri("postgres://h/db?user=u&password=s3cret&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(
            redact_uri("postgres://u:p@h/db?sslpassword=k3y;application_name=x"),
            "postgres://***@h/db?sslpassword=***;application_name=x"
        );
        let mongo = redact_uri(
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=\
             AWS_SESSION_TOKEN:t0ken&tls=true&TLSCertificateKeyFilePassword=pw&tlsCAFile=/ca.pem",
        );
        assert_eq!(
            mongo,
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=***&tls=true\
             &TLSCertificateKeyFilePassword=***&tlsCAFile=/ca.pem"
        );
        for secret in ["t0ken", "=pw"] {
            assert!(!mongo.contains(secret), "{mongo}");
        }
        // Options without a value, or empty, are kept as they are.
        assert_eq!(
            redact_uri("postgres://h/db?&password"),
            "postgres://h/db?&password"
        );
    }

    #[test]
    fn postgres_tls_settings_are_checked_here() {
        let err = settings(&[(vars::DATABASE_URI, "postgres://h/db?sslmode=verify")]).unwrap_err();
        assert_eq!(err.name, vars::DATABASE_URI, "{err}");
        assert!(err.reason.contains("verify-full"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let ca_pem = rcgen::generate_simple_self_signed(vec!["db".to_owned()])
            .unwrap()
            .cert
            .pem();
        std::fs::write(&ca, format!("{ca_pem}{ca_pem}")).unwrap();
        let ca = ca.to_string_lossy().into_owned();
        let verified = settings(&[
            (vars::DATABASE_URI, "postgres://h/db?sslmode=verify-full"),
            (vars::DATABASE_TLS_CA_FILE, &ca),
        ])
        .unwrap();
        assert_eq!(verified.database.tls_ca.map(|cas| cas.len()), Some(2));
        // A CA file that nothing would use is refused, not ignored.
        for uri in [
            "postgres://h/db",
            "postgres://h/db?sslmode=prefer",
            "mongodb://h/?tls=true",
        ] {
            let err = settings(&[(vars::DATABASE_URI, uri), (vars::DATABASE_TLS_CA_FILE, &ca)])
                .expect_err(uri);
            assert_eq!(err.name, vars::DATABASE_TLS_CA_FILE, "{err}");
        }
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        for file in [not_pem.to_string_lossy().as_ref(), "/nonexistent/ca.pem"] {
            let err = settings(&[
                (vars::DATABASE_URI, "postgres://h/db?sslmode=require"),
                (vars::DATABASE_TLS_CA_FILE, file),
            ])
            .expect_err(file);
            assert_eq!(err.name, vars::DATABASE_TLS_CA_FILE, "{err}");
        }
    }
}
