//! What the scheduler does with the database secrets compose gives it: the
//! user and password files become the login of its database URI
//! (percent-encoded), the database-name file the database its jobs go to.
//!
//! The test servers cannot show this with compose's MongoDB as it is:
//! polodb has no users (the driver's login handshake fails, so `run` leaves
//! the credentials out) and ignores database names. So:
//! - the URI and database the settings resolve to are read with the
//!   service's own code from compose's environment and secrets, and the
//!   URI is parsed back by the MongoDB driver (which must find the same
//!   user, password, `authSource` and host), also with secrets that need
//!   percent-encoding and a database name that is not the default;
//! - the real login runs on PostgreSQL here, which checks passwords and
//!   keeps each service's jobs in the schema its database name gives: the
//!   compose environment pointed at it (`DATABASE_SCHEMA=postgresql` and
//!   its host and port: the code builds that URI from the same three
//!   secret files);
//! - and on a real MongoDB, when `MONGODB_URI` names one (ignored
//!   otherwise), with nothing of compose's environment changed but the
//!   host-side addresses and the secrets' values.

use std::{collections::BTreeMap, fs, path::Path};

use mongodb::options::{ClientOptions, ServerAddress};
use scheduler_service::{
    config::{DatabaseKind, database::DEFAULT_COLLECTION, vars},
    store::postgres::TABLE,
};
use test_support::{postgres_uri, unique};
use tokio_postgres::NoTls;

use crate::{
    compose_files::{BASE, read, resolved_config},
    run::{Service, host_environment, on_own_runtime},
    settings::{code_settings, compose_settings, container_environment, secret_file},
};

/// Appended to a user name, and a password: characters that a URI's user
/// information must percent-encode.
const RESERVED_IN_USER: &str = "@:/%";
const RESERVED_PASSWORD: &str = "p@ss:w/rd?#[]%";

/// The database the MongoDB root user that the database container creates
/// (`MONGO_INITDB_ROOT_USERNAME_FILE`) lives in.
const ROOT_USERS_DATABASE: &str = "admin";

#[tokio::test]
async fn the_compose_secrets_resolve_to_the_mongodb_login_and_database_the_service_uses() {
    let config = resolved_config(&[BASE]);
    let service = &config["services"]["scheduler-service"];
    let secret = |name: &str| read(&secret_file(&config, service, name)).trim().to_owned();

    let settings = compose_settings(&config).database;
    assert_eq!(
        settings.kind,
        DatabaseKind::MongoDb,
        "compose's scheduler would not use MongoDB"
    );
    assert_eq!(
        settings.db_name,
        secret("scheduler-db-dbname"),
        "the service would not use the database its name secret gives"
    );
    assert_mongodb_login(
        &settings.uri,
        &secret("scheduler-db-user"),
        &secret("scheduler-db-pass"),
        ("scheduler-db-service", 27017),
    )
    .await;

    // The same environment with secrets that need encoding, and a database
    // name that is not the code's default.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let user = format!("admin{RESERVED_IN_USER}");
    let db_name = format!("compose_{}", unique());
    let mut env = container_environment(&config, service);
    replace_secrets(&mut env, dir.path(), &user, RESERVED_PASSWORD, &db_name);
    let settings = code_settings(&env).database;
    assert_eq!(
        settings.db_name, db_name,
        "the service would not use the database its name secret gives"
    );
    assert_mongodb_login(
        &settings.uri,
        &user,
        RESERVED_PASSWORD,
        ("scheduler-db-service", 27017),
    )
    .await;
}

/// The MongoDB driver reads `uri` as a login of `user` with `password`
/// against the root users' database, on `host:port` alone.
async fn assert_mongodb_login(uri: &str, user: &str, password: &str, (host, port): (&str, u16)) {
    let options = ClientOptions::parse(uri)
        .await
        .unwrap_or_else(|e| panic!("the MongoDB driver cannot read the URI the code built: {e}"));
    let credential = options
        .credential
        .expect("the URI carries no credentials: the service would not log in");
    assert_eq!(
        credential.username.as_deref(),
        Some(user),
        "the service would log in as another user than its user secret gives"
    );
    assert_eq!(
        credential.password.as_deref(),
        Some(password),
        "the service would log in with another password than its secret gives"
    );
    assert_eq!(
        credential.source.as_deref(),
        Some(ROOT_USERS_DATABASE),
        "the database container creates the root user in {ROOT_USERS_DATABASE}"
    );
    assert_eq!(
        options.hosts,
        [ServerAddress::Tcp {
            host: host.to_owned(),
            port: Some(port),
        }]
    );
}

/// Writes the user, password and database-name secrets into `dir` and
/// points the environment's secret files at them, as a deployment with
/// other secret values would.
fn replace_secrets(
    env: &mut BTreeMap<String, String>,
    dir: &Path,
    user: &str,
    password: &str,
    db_name: &str,
) {
    for (name, value, file) in [
        (vars::DATABASE_USER_FILE, user, "user.txt"),
        (vars::DATABASE_PASS_FILE, password, "pass.txt"),
        (vars::DATABASE_DB_NAME_FILE, db_name, "db_name.txt"),
    ] {
        let path = dir.join(file);
        fs::write(&path, format!("{value}\n")).expect("writes a secret");
        let previous = env.insert(name.to_owned(), path.to_string_lossy().into_owned());
        assert!(previous.is_some(), "compose sets no {name}");
    }
}

/// Replaces the database address compose gives (asserting that it gives
/// one) by `host:port`.
fn point_at(env: &mut BTreeMap<String, String>, host: &str, port: u16) {
    for (name, value) in [
        (vars::DATABASE_HOST_NAME, host.to_owned()),
        (vars::DATABASE_PORT, port.to_string()),
    ] {
        let previous = env.insert(name.to_owned(), value);
        assert!(previous.is_some(), "compose sets no {name}");
    }
}

/// An SQL identifier, quoted.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A connection as the test server's administrator.
async fn postgres_admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres_uri(), NoTls)
        .await
        .expect("connects to PostgreSQL: run scripts/services.sh up first");
    tokio::spawn(connection);
    client
}

/// Logging in with the compose secrets, on PostgreSQL: a fresh role with a
/// password that needs encoding, and a fresh schema as the database name.
/// The job must land in that schema, which the service creates as the
/// role it logged in as. The role and all it owns are dropped at the end,
/// whether the test passed or not.
#[tokio::test(flavor = "multi_thread")]
async fn the_compose_secrets_log_in_and_choose_the_schema_on_postgresql() {
    let admin = postgres_admin().await;
    let suffix = unique();
    let role = PgRole::create(&admin, format!("compose_{suffix}{RESERVED_IN_USER}")).await;
    let schema = format!("compose_{suffix}");

    let config = resolved_config(&[BASE]);
    let mut env = host_environment(&config);
    let dir = tempfile::tempdir().expect("a temporary folder");
    replace_secrets(&mut env, dir.path(), &role.name, RESERVED_PASSWORD, &schema);
    let server: tokio_postgres::Config = postgres_uri().parse().expect("a PostgreSQL URI");
    let host = match &server.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("the PostgreSQL test server is not on TCP: {other:?}"),
    };
    point_at(&mut env, &host, server.get_ports()[0]);
    let compose_scheme = env.insert(vars::DATABASE_SCHEMA.to_owned(), "postgresql".to_owned());
    assert_eq!(compose_scheme.as_deref(), Some("mongodb"));

    let service = Service::start(&env).await;
    let channel = service.channel().await;
    let (id, request) = service.create_job(&channel).await;
    let oid = bson::oid::ObjectId::parse_str(&id).expect("the id is an ObjectId");
    let row = admin
        .query_opt(
            &format!("SELECT name FROM {}.{TABLE} WHERE id = $1", ident(&schema)),
            &[&oid.bytes().as_slice()],
        )
        .await
        .unwrap_or_else(|e| service.fail(&format!("no jobs table in schema {schema}: {e}")))
        .unwrap_or_else(|| service.fail(&format!("the job is not in schema {schema}")));
    assert_eq!(row.get::<_, String>(0), request.name);
    let owner: String = admin
        .query_one(
            "SELECT r.rolname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner \
             WHERE n.nspname = $1",
            &[&schema],
        )
        .await
        .expect("the schema's owner")
        .get(0);
    assert_eq!(
        owner, role.name,
        "the service did not log in as the user its secret names"
    );
    service.assert_sigterm_stops_it().await;
}

/// A fresh PostgreSQL role that logs in with [`RESERVED_PASSWORD`] and may
/// create schemas; dropped with everything it owns when this is dropped,
/// whether the test passed or not (after the service, declared later, has
/// been stopped).
struct PgRole {
    name: String,
}

impl PgRole {
    async fn create(admin: &tokio_postgres::Client, name: String) -> PgRole {
        admin
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN PASSWORD '{RESERVED_PASSWORD}';
                 GRANT CREATE ON DATABASE postgres TO {role};",
                role = ident(&name)
            ))
            .await
            .expect("creates the role");
        PgRole { name }
    }
}

impl Drop for PgRole {
    fn drop(&mut self) {
        let sql = format!(
            "DROP OWNED BY {role} CASCADE; DROP ROLE {role};",
            role = ident(&self.name)
        );
        on_own_runtime(async move { postgres_admin().await.batch_execute(&sql).await });
    }
}

/// Logging in with the compose secrets on a real MongoDB (`MONGODB_URI`, a
/// single host whose user may create users): a fresh user with a password
/// that needs encoding, allowed to write only a fresh database that the
/// database-name secret names. The job must land in that database, and the
/// same environment with a wrong password must not be able to store one.
/// The user and the database are removed at the end, whether the test
/// passed or not. Not run here: the test servers have no real MongoDB.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real MongoDB: set MONGODB_URI"]
async fn the_compose_secrets_log_in_and_choose_the_database_on_a_real_mongodb() {
    let uri = std::env::var("MONGODB_URI").expect("MONGODB_URI names a real MongoDB");
    let admin = mongodb::Client::with_uri_str(&uri)
        .await
        .expect("a client of MONGODB_URI");
    let (host, port) = match ClientOptions::parse(&uri)
        .await
        .expect("MONGODB_URI parses")
        .hosts
        .as_slice()
    {
        [ServerAddress::Tcp { host, port }] => (host.clone(), port.unwrap_or(27017)),
        hosts => panic!("MONGODB_URI must name one host: {hosts:?}"),
    };
    let suffix = unique();
    let user = MongoUser {
        uri: uri.clone(),
        name: format!("compose_{suffix}{RESERVED_IN_USER}"),
        db_name: format!("compose_{suffix}"),
    };
    admin
        .database(ROOT_USERS_DATABASE)
        .run_command(bson::doc! {
            "createUser": &user.name,
            "pwd": RESERVED_PASSWORD,
            "roles": [{ "role": "readWrite", "db": &user.db_name }],
        })
        .await
        .expect("creates the user (MONGODB_URI's user must be allowed to)");
    let db_name = user.db_name.clone();

    let config = resolved_config(&[BASE]);
    let mut env = host_environment(&config);
    assert_eq!(env[vars::DATABASE_SCHEMA], "mongodb");
    point_at(&mut env, &host, port);
    let dir = tempfile::tempdir().expect("a temporary folder");
    replace_secrets(
        &mut env,
        dir.path(),
        &user.name,
        RESERVED_PASSWORD,
        &db_name,
    );

    let service = Service::start(&env).await;
    let (id, request) = service.create_job(&service.channel().await).await;
    let oid = bson::oid::ObjectId::parse_str(&id).expect("the id is an ObjectId");
    let stored = admin
        .database(&db_name)
        .collection::<bson::Document>(DEFAULT_COLLECTION)
        .find_one(bson::doc! { "_id": oid })
        .await
        .expect("reads the job")
        .unwrap_or_else(|| service.fail(&format!("the job is not in database {db_name}")));
    assert_eq!(stored.get_str("name"), Ok(request.name.as_str()));
    service.assert_sigterm_stops_it().await;

    // The login is checked: a wrong password stores nothing.
    fs::write(&env[vars::DATABASE_PASS_FILE], "not-the-password\n").expect("writes a secret");
    let service = Service::start(&env).await;
    let channel = service.channel().await;
    let refused =
        scheduler_service::grpc::proto::jobs_service_client::JobsServiceClient::new(channel)
            .create_job(request)
            .await;
    assert!(
        refused.is_err(),
        "a job was stored with a wrong password: the server checks no login"
    );
    service.assert_sigterm_stops_it().await;
}

/// A user of the real MongoDB and the one database it may write; both
/// removed when this is dropped, whether the test passed or not.
struct MongoUser {
    uri: String,
    name: String,
    db_name: String,
}

impl Drop for MongoUser {
    fn drop(&mut self) {
        let (uri, name, db_name) = (self.uri.clone(), self.name.clone(), self.db_name.clone());
        on_own_runtime(async move {
            let admin = mongodb::Client::with_uri_str(&uri).await?;
            admin
                .database(ROOT_USERS_DATABASE)
                .run_command(bson::doc! { "dropUser": &name })
                .await?;
            admin.database(&db_name).drop().await
        });
    }
}
