//! The stores the contract runs on, each opened fresh for every case and
//! removed after it: the in-memory store; the embedded store in a fresh
//! temporary directory; PostgreSQL in a fresh schema (dropped at the end);
//! MongoDB in a fresh collection, on polodb (the MongoDB-protocol test
//! server) or on a real MongoDB. Each but memory can also have one of its
//! jobs corrupted from outside the store's API ([`Store::corrupt`]).
//!
//! Servers: `TEST_POSTGRES_URI` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`), `TEST_MONGODB_URI`
//! for polodb (default `mongodb://127.0.0.1:27017/`), and `MONGODB_URI` for a
//! real MongoDB.

use std::{path::Path, sync::Arc, time::Duration};

use bson::{Document, doc};
use scheduler_service::store::{
    embedded::EmbeddedJobDB,
    memory::MemoryJobDB,
    mongo::{LEASES_SUFFIX, MongoJobDB, REPLICAS_SUFFIX},
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
    pub async fn run(self, case: &str, body: impl AsyncFnOnce(&mut Store)) {
        eprintln!("{self:?}: {case}");
        let mut store = self.open().await;
        body(&mut store).await;
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
            Place::Schema(schema) => raw_postgres()
                .await
                .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .await
                .expect("drop schema"),
            Place::Collection { uri, name } => {
                // The jobs, and the shard leases and replicas beside them.
                for suffix in ["", LEASES_SUFFIX, REPLICAS_SUFFIX] {
                    let collection = raw_collection(&uri, &format!("{name}{suffix}")).await;
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
}

/// A job type no job has: written over a job's own, it makes the job
/// unreadable while its status, times and owed events keep it where every
/// scan looks.
const NO_SUCH_JOB_TYPE: i16 = 42;

/// The embedded store's table of jobs, as the store defines it: the job's
/// id → the job's bytes.
const EMBEDDED_JOBS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("jobs");

/// A plain PostgreSQL connection, to reach the jobs behind the store's back.
async fn raw_postgres() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres_uri(), NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// The MongoDB collection `name` on `uri`, through the driver alone.
async fn raw_collection(uri: &str, name: &str) -> mongodb::Collection<Document> {
    mongodb::Client::with_uri_str(uri)
        .await
        .expect("connect to MongoDB")
        .database(MONGO_DATABASE)
        .collection(name)
}

/// Writes bytes that are not a job over the record of job `id` in the
/// embedded store's file in `dir`, with redb alone (the store is closed).
fn write_not_a_job(dir: &Path, id: JobId) {
    let file = redb::Database::open(dir.join("jobs.redb")).expect("open the store's file");
    let txn = file.begin_write().expect("a write transaction");
    {
        let mut jobs = txn.open_table(EMBEDDED_JOBS).expect("the jobs table");
        let old = jobs
            .insert(id.bytes().as_slice(), b"not a job".as_slice())
            .expect("overwrite the job");
        assert!(old.is_some(), "job {id} was stored");
    }
    txn.commit().expect("commit");
}

impl Store {
    /// Makes the stored job `id` unreadable from outside the store's API,
    /// as a bad write by another program or a damaged file would. PostgreSQL
    /// and MongoDB: its job type becomes [`NO_SUCH_JOB_TYPE`], by a raw
    /// `UPDATE` or driver write. Embedded: the store is closed, its record
    /// overwritten with bytes that are not a job (its index entries stay),
    /// and the store opened again. The memory store keeps jobs as values:
    /// it cannot hold a corrupt one.
    pub async fn corrupt(&mut self, id: JobId) {
        match &self.place {
            Place::Process => panic!("the memory store cannot hold a corrupt job"),
            Place::Dir(dir) => {
                let dir = dir.path().to_owned();
                // The file is for one process: the store must be closed, and
                // a placeholder holds its place meanwhile.
                let open = std::mem::replace(&mut self.db, Arc::new(MemoryJobDB::new()));
                assert_eq!(Arc::strong_count(&open), 1, "the store is still in use");
                drop(open);
                write_not_a_job(&dir, id);
                self.db = Arc::new(EmbeddedJobDB::open(&dir).expect("reopen the embedded store"));
            }
            Place::Schema(schema) => {
                let changed = raw_postgres()
                    .await
                    .execute(
                        &format!("UPDATE \"{schema}\".jobs SET job_type = $2 WHERE id = $1"),
                        &[&id.bytes().as_slice(), &NO_SUCH_JOB_TYPE],
                    )
                    .await
                    .expect("corrupt the row");
                assert_eq!(changed, 1, "job {id} was stored");
            }
            Place::Collection { uri, name } => {
                let set = doc! { "$set": { "jobType": i32::from(NO_SUCH_JOB_TYPE) } };
                let result = raw_collection(uri, name)
                    .await
                    .update_one(doc! { "_id": id }, set)
                    .await
                    .expect("corrupt the document");
                // (polodb reports only what it modified.)
                assert!(
                    result.matched_count == 1 || result.modified_count == 1,
                    "job {id} was stored"
                );
            }
        }
    }
}
