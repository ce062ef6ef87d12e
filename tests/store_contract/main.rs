//! The store contract: one suite that holds every [`JobDB`] to the rules the
//! trait documents (src/store/mod.rs), so that the service behaves the same
//! whichever store it runs on. Each area is a module whose `check` runs its
//! cases on a kind of store, each case on a fresh store (see `stores`).
//! There is a test per (store, area), named `store::area`, so that the
//! runner's summary shows what ran on which store.
//!
//! The areas: `crud` (insert, get, delete), `replace` (`replace_if`),
//! `times` (kept to the millisecond), `listing` (every order the trait
//! promises, pages and totals), `filters` (listing with filters: each
//! admits exactly its jobs, and the total counts them), `claims` (single and batch, stale tokens),
//! `results` (outcomes, duplicates, and results naming a firing that is
//! not the job's current one: stale), `outbox` (owed events and their
//! version check), `windows` (the due window and stuck runs),
//! `transitions` (misfires and run timeouts as the service makes them),
//! `concurrency` (replicas racing to claim), `races` (an update or a delete
//! racing a firing, forced into each interleaving, through the service),
//! `corrupt` (a job corrupted from outside the store's API: every scan
//! answers the others and reports it; `get` of it is `Corrupt`),
//! `recurring` (a recurring job's claim stores its next occurrence in the
//! same write; results, pause and resume), `recurring_races` (replicas
//! racing on the same occurrences, and on one client key) and
//! `client_keys` (idempotent creation's unique key), `history` (the run
//! history written with the claims and results, its listing, deletion
//! and pruning), `leases` (the shard leases of the stores replicas share:
//! taken only while free or expired, renewed and released by their owner,
//! the live replicas counted, a change of the shard count refused while a
//! lease is held).
//! `ensure_indexes` runs twice on every fresh store before its case (a
//! restart runs it again).
//!
//! Where they run:
//! - memory: every area but `corrupt`: it keeps jobs as values, so it
//!   cannot hold a corrupt one (its scans always report none).
//! - embedded: every area but `leases`: one process opens it, and its
//!   replica owns every shard (it has no leases).
//! - PostgreSQL: every area.
//! - polodb, the MongoDB-protocol test server: every area but three, which
//!   polodb cannot pass whatever the store does. `listing`: polodb ignores
//!   `sort`, so a query answers in storage order. `concurrency`: polodb
//!   does not make a conditional update atomic across connections, so
//!   racing claimers win the same job more than once (214 claims for 200
//!   jobs in one run). `races`: for the same reason; there the service's
//!   own firings race each other (a jump of the clock makes the window
//!   loader arm a job that just fell due again), and on polodb both
//!   claims can win. polodb also has no createIndexes (the fixture checks
//!   that the store reports the refusal), cannot drop a collection (each
//!   case's collection is emptied and stays), and ignores database names
//!   (each case has a collection of its own). `recurring_races` and
//!   `client_keys` are left out for the same reasons: racing conditional
//!   writes are not atomic there, and without createIndexes no unique
//!   index keeps client keys unique.
//! - a real MongoDB: every area, when `MONGODB_URI` names one:
//!   `MONGODB_URI=mongodb://… cargo test --test store_contract -- --ignored mongodb::`.
//!   Without it those tests are marked ignored, so that the summary shows
//!   them as not run rather than passed.
//!
//! Every new store feature gets its case in the area it belongs to, or a
//! new area listed for every store below. What is specific to one store
//! (PostgreSQL's row locks and timeouts, the embedded store's files and
//! index tables, MongoDB's documents) is tested next to that store.
//!
//! [`JobDB`]: scheduler_service::store::JobDB

/// An area's `check`: runs each case named, a fresh store each, on stores
/// of the kind given.
macro_rules! cases {
    ($($case:ident),+ $(,)?) => {
        /// Runs each case of this area on a fresh store of `kind`.
        pub async fn check(kind: Kind) {
            $(
                kind.run(stringify!($case), async |store: &mut crate::stores::Store| {
                    $case(store).await
                })
                .await;
            )+
        }
    };
}

mod interleave;
mod jobs;
mod stores;
mod support;

mod claims;
mod client_keys;
mod concurrency;
mod corrupt;
mod crud;
mod filters;
mod history;
mod leases;
mod listing;
mod outbox;
mod races;
mod recurring;
mod recurring_races;
mod replace;
mod results;
mod times;
mod transitions;
mod windows;

/// A module named `$store` with a test per area listed, each running that
/// area on stores of kind `$kind`, with the attributes given in brackets for
/// every area of the store and those written before an area for that area.
macro_rules! contract {
    ($store:ident = $kind:ident $attributes:tt: $($(#[$own:meta])* $area:ident),+ $(,)?) => {
        mod $store {
            $( contract!(@test $kind $attributes [$(#[$own])*] $area); )+
        }
    };
    (@test $kind:ident [$(#[$attribute:meta])*] [$(#[$own:meta])*] $area:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $(#[$attribute])*
        $(#[$own])*
        async fn $area() {
            crate::$area::check(crate::stores::Kind::$kind).await;
        }
    };
}

contract!(memory = Memory []:
    leases, crud, replace, history, times, listing, filters, claims, results, outbox, windows, transitions, concurrency, races,
    recurring, recurring_races, client_keys);
contract!(embedded = Embedded []:
    crud, replace, history, times, listing, filters, claims, results, outbox, windows, transitions, concurrency,
    races, corrupt, recurring, recurring_races, client_keys);
contract!(postgres = Postgres []:
    leases, crud, replace, history, times, listing, filters, claims, results, outbox, windows, transitions, concurrency,
    races, corrupt, recurring, recurring_races, client_keys);
contract!(polodb = Polodb []:
    leases, crud, replace, history, times, filters, claims, results, outbox, windows, transitions, corrupt, recurring);
contract!(mongodb = Mongodb [#[ignore = "needs a real MongoDB: set MONGODB_URI"]]:
    leases, crud, replace, history, times, listing, filters, claims, results, outbox, windows, transitions, concurrency,
    races, corrupt, recurring, recurring_races, client_keys);
