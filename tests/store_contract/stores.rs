//! The stores the contract runs on, each opened fresh for every case and
//! removed after it: the in-memory store; the embedded store in a fresh
//! temporary directory; PostgreSQL in a fresh schema (dropped at the end);
//! MongoDB in a fresh collection, on polodb (the MongoDB-protocol test
//! server) or on a real MongoDB.
//!
//! Servers: `TEST_POSTGRES_URI` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`), `TEST_MONGODB_URI`
//! for polodb (default `mongodb://127.0.0.1:27017/`), and `MONGODB_URI` for a
//! real MongoDB.

use std::{sync::Arc, time::Duration};

use bson::Document;
use scheduler_service::store::{
    embedded::EmbeddedJobDB,
    memory::MemoryJobDB,
    mongo::MongoJobDB,
    postgres::{DEFAULT_POOL_SIZE, PgJobDB},
};
use tokio_postgres::NoTls;

use super::support::{Job, JobDB, JobId};

/// How long a store waits for its server: it bounds a hang, nothing more.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The MongoDB database of the real MongoDB runs (polodb ignores the name).
const MONGO_DATABASE: &str = "store_contract";

/// A kind of store the contract runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`MemoryJobDB`].
    Memory,
    /// [`EmbeddedJobDB`] in a temporary directory.
    Embedded,
    /// [`PgJobDB`] on the PostgreSQL test server.
    Postgres,
    /// [`MongoJobDB`] on polodb, the MongoDB-protocol test server.
    Polodb,
    /// [`MongoJobDB`] on the real MongoDB that `MONGODB_URI` names.
    Mongodb,
}

/// One case's store, fresh, and where it lives.
pub struct Store {
    /// The store under test.
    db: Arc<dyn JobDB>,
    kind: Kind,
    place: Place,
}

/// Where a store's jobs live, to reach them again or remove them.
enum Place {
    /// In the store itself (memory), gone with it.
    Process,
    /// The embedded store's temporary directory.
    Dir(tempfile::TempDir),
    /// A PostgreSQL schema of its own.
    Schema(String),
    /// A MongoDB collection of its own on the server at `uri`.
    Collection { uri: String, name: String },
}

/// The value of the environment variable `name`, or `default`.
fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn postgres_uri() -> String {
    env_or(
        "TEST_POSTGRES_URI",
        "postgres://postgres:postgres@127.0.0.1:5432/postgres",
    )
}

impl Kind {
    /// Runs one case on a fresh store of this kind, and removes the store
    /// after it. The case's name goes to the test's output first, so that a
    /// failure says which case it was.
    pub async fn run(self, case: &str, body: impl AsyncFnOnce(&Store)) {
        eprintln!("{self:?}: {case}");
        let store = self.open().await;
        body(&store).await;
        store.remove().await;
    }

    /// A fresh, empty store with its indexes.
    async fn open(self) -> Store {
        let (db, place): (Arc<dyn JobDB>, Place) = match self {
            Kind::Memory => (Arc::new(MemoryJobDB::new()), Place::Process),
            Kind::Embedded => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let db = EmbeddedJobDB::open(dir.path()).expect("open the embedded store");
                (Arc::new(db), Place::Dir(dir))
            }
            Kind::Postgres => {
                Place::Schema(format!("contract_{}", JobId::new().to_hex()))
                    .connected()
                    .await
            }
            Kind::Polodb | Kind::Mongodb => {
                let uri = if self == Kind::Polodb {
                    env_or("TEST_MONGODB_URI", "mongodb://127.0.0.1:27017/")
                } else {
                    std::env::var("MONGODB_URI")
                        .expect("MONGODB_URI names the real MongoDB these cases run on")
                };
                let name = format!("contract_{}", JobId::new().to_hex());
                Place::Collection { uri, name }.connected().await
            }
        };
        if self == Kind::Polodb {
            // polodb has no createIndexes: the store reports the refusal, as
            // the trait says, and the service goes on without the indexes.
            assert!(db.ensure_indexes().await.is_err(), "polodb made indexes");
        } else {
            // Every start of every replica runs it again.
            db.ensure_indexes().await.expect("ensure_indexes");
            db.ensure_indexes().await.expect("ensure_indexes again");
        }
        Store {
            db,
            kind: self,
            place,
        }
    }
}

impl Place {
    /// A store on this place's server, with at most `connections`
    /// connections; `None` for a store that lives in the process.
    async fn connect(&self, connections: usize) -> Option<Arc<dyn JobDB>> {
        Some(match self {
            Place::Process | Place::Dir(_) => return None,
            Place::Schema(schema) => Arc::new(
                PgJobDB::connect_with(&postgres_uri(), schema, TIMEOUT, connections, NoTls)
                    .await
                    .expect("connect to PostgreSQL"),
            ),
            Place::Collection { uri, name } => Arc::new(
                MongoJobDB::connect(
                    uri,
                    MONGO_DATABASE,
                    name,
                    TIMEOUT,
                    Some(u32::try_from(connections).expect("a small pool")),
                )
                .await
                .expect("connect to MongoDB"),
            ),
        })
    }

    /// This server place and a store on it, with the default pool.
    async fn connected(self) -> (Arc<dyn JobDB>, Place) {
        let db = self
            .connect(DEFAULT_POOL_SIZE)
            .await
            .expect("a place on a server");
        (db, self)
    }
}

/// A store is used as the [`JobDB`] it holds.
impl std::ops::Deref for Store {
    type Target = dyn JobDB;

    fn deref(&self) -> &Self::Target {
        &*self.db
    }
}

impl Store {
    /// Stores each of `jobs`.
    pub async fn insert_all(&self, jobs: &[Job]) {
        for job in jobs {
            self.insert(job).await.expect("insert");
        }
    }

    /// The store as another replica of the service would have it: on a
    /// server, its own client with at most `connections` connections; in
    /// one process (memory, embedded), the same store.
    pub async fn replica(&self, connections: usize) -> Arc<dyn JobDB> {
        match self.place.connect(connections).await {
            Some(db) => db,
            None => Arc::clone(&self.db),
        }
    }

    /// Removes what the store left on its server.
    async fn remove(self) {
        let Store { db, kind, place } = self;
        drop(db);
        match place {
            Place::Process => {}
            Place::Dir(dir) => dir.close().expect("remove the embedded store's directory"),
            Place::Schema(schema) => {
                let (client, connection) = tokio_postgres::connect(&postgres_uri(), NoTls)
                    .await
                    .expect("connect to PostgreSQL");
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                    .await
                    .expect("drop schema");
            }
            Place::Collection { uri, name } => {
                let collection = mongodb::Client::with_uri_str(&uri)
                    .await
                    .expect("connect to MongoDB")
                    .database(MONGO_DATABASE)
                    .collection::<Document>(&name);
                if kind == Kind::Polodb {
                    // polodb cannot drop a collection: it is emptied instead.
                    collection
                        .delete_many(bson::doc! {})
                        .await
                        .expect("empty collection");
                } else {
                    collection.drop().await.expect("drop collection");
                }
            }
        }
    }
}
