//! Outbox clears grouped: the deliveries that finish publishing while the
//! store is busy clearing have their outbox entries cleared together, in
//! one store call, the way a database groups commits; and firings' clears
//! give way to the claims under way.
//!
//! Every delivery ends with a clear of what it published (see
//! [`super::delivery`]). A firing batch clears its whole batch in one call,
//! but each CreateJob, UpdateJob or DeleteJob clears its one job, so on
//! PostgreSQL a creation cost two commits (the insert, then the clear), and
//! the commits were what limited CreateJob (BENCHMARKS.md, "Outbox clears
//! grouped"). Here a clear asked while [`CLEARS_AT_ONCE`] are already in
//! the store waits for a turn, and the turn clears every job queued by
//! then, for all their callers: under load one statement clears for many
//! calls; a lone clear goes to the store at once.
//!
//! A group never holds one job twice (two deliveries of one job at two
//! versions): the later waits for the next turn, so that each caller
//! learns whether its own version was cleared. A group's store call runs
//! in a task of its own, so that a caller that gives up (a client that
//! disconnects) does not cancel the others' clears.
//!
//! A firing's clear ([`ClearTurn::AfterClaims`]) waits, before it is
//! queued, until no firing claim behind its due times
//! ([`CLAIMS_BEHIND_MS`]) is in the store, at most [`GIVE_WAY_AT_MOST`]
//! (half the shard lease if that is shorter).
//! In a burst the claims are what a consumer waits for and the clears are
//! bookkeeping (the event is already published), yet they cost the store
//! as much: on PostgreSQL the clear was ~40 % of the server's CPU in a
//! burst of 30,000 firings. Given way to, the clears of a burst go
//! together once its claims pause or catch up, in a few large calls;
//! under a steady load that the claims keep up with, clears go after the
//! quiet period ([`CLAIMS_QUIET`]).
//! 30,000 firings due within one second on PostgreSQL reached a consumer
//! with p99 97 to 263 ms against 363 to 848 ms before, in turn with it
//! (BENCHMARKS.md, "Clears give way to claims"). Places in the firing
//! bound are given back when the events are published, not cleared, so
//! waiting clears do not hold up the claims. A clear that is itself a
//! delivery ([`JobDB::clear_delivers`]: the embedded store's event log
//! feeds live subscribers) never waits, nor does a caller's.
//! A crash while a clear waits leaves its events owed: the relay publishes
//! them again (at least once, as after any crash between a publish and its
//! clear).

use std::{
    collections::HashSet,
    mem,
    sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError},
    time::Duration,
};

use tokio::{
    sync::{Semaphore, oneshot, watch},
    time::{Instant, sleep_until, timeout_at},
};

use crate::{domain::JobId, store::JobDB};

/// Store calls that clear at once: more than one, so that a firing batch's
/// large clear does not hold up the calls' small ones.
const CLEARS_AT_ONCE: usize = 2;

/// The longest a firing's clear gives way to the claims under way: well
/// inside the time after which the relay publishes an owed event again
/// (the shard lease, 5 s by default, for the shard's owner; the relay
/// grace, 11 s, for the others; this replica's relay leaves a delivery
/// under way alone). With a shorter lease, half of it
/// ([`OutboxClears::lease_is`]).
const GIVE_WAY_AT_MOST: Duration = Duration::from_secs(1);

/// How late a firing claim's oldest firing must be for the clears to give
/// way to it: where the claims keep up with the due times (a steady
/// load) clears do not wait for them (only for the quiet period), so that
/// a crash leaves few events published and not cleared (each published
/// again by the relay).
const CLAIMS_BEHIND_MS: i64 = 20;

/// How long no firing claim must have been asked for the claims to count
/// as paused: far longer than the gap between two claims of one burst
/// (under a millisecond at 10,000 firings a second), far shorter than a
/// clear may wait.
const CLAIMS_QUIET: Duration = Duration::from_millis(10);

/// The clears waiting for a turn, the turns, and the firing claims that
/// firings' clears give way to.
pub(super) struct OutboxClears {
    queued: Mutex<Vec<Queued>>,
    turns: Arc<Semaphore>,
    claims: watch::Sender<Claims>,
    /// Held by the one waiting clear that watches the claims for a pause;
    /// the others wait for its [`OutboxClears::released`].
    watching: tokio::sync::Mutex<()>,
    /// Counts the times the waiting clears were let go.
    released: watch::Sender<u64>,
    /// The longest a firing's clear gives way ([`GIVE_WAY_AT_MOST`], or
    /// half the shard lease if that is shorter).
    give_way_at_most: OnceLock<Duration>,
}

/// The firing claims: how many are in the store, and how many were ever
/// asked (so that a waiting clear sees one that came and went).
#[derive(Debug, Default, Clone, Copy)]
struct Claims {
    under_way: usize,
    asked: u64,
}

/// When a clear goes to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClearTurn {
    /// At once: a caller waits for it (an API call, the relay, a sweep).
    AtOnce,
    /// A firing's: once the firing claims behind their due times pause,
    /// or after [`GIVE_WAY_AT_MOST`].
    AfterClaims,
}

/// A firing claim in the store, counted until dropped.
pub(super) struct ClaimUnderWay<'a>(&'a watch::Sender<Claims>);

impl Drop for ClaimUnderWay<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|claims| claims.under_way -= 1);
    }
}

/// One caller's clear: its jobs (id, version published) and where the ids
/// cleared go (`None`: the store failed).
struct Queued {
    jobs: Vec<(JobId, i64)>,
    answer: oneshot::Sender<Option<Vec<JobId>>>,
}

impl Default for OutboxClears {
    fn default() -> Self {
        OutboxClears {
            queued: Mutex::new(Vec::new()),
            turns: Arc::new(Semaphore::new(CLEARS_AT_ONCE)),
            claims: watch::Sender::new(Claims::default()),
            watching: tokio::sync::Mutex::new(()),
            released: watch::Sender::new(0),
            give_way_at_most: OnceLock::new(),
        }
    }
}

impl OutboxClears {
    /// Tells the clears this replica's shard lease, once: a firing's clear
    /// then gives way at most half of it, so that a replica that takes the
    /// shard over (and relays what its jobs owe a lease period after their
    /// claims) finds the clears of this one's last burst done.
    pub(super) fn lease_is(&self, lease: Duration) {
        let _ = self.give_way_at_most.set(GIVE_WAY_AT_MOST.min(lease / 2));
    }

    /// The longest a firing's clear gives way.
    pub(super) fn give_way_at_most(&self) -> Duration {
        self.give_way_at_most
            .get()
            .copied()
            .unwrap_or(GIVE_WAY_AT_MOST)
    }

    /// Counts a firing claim whose oldest firing is `late_ms` late in the
    /// store until the guard is dropped, if it is behind enough for the
    /// clears to give way ([`CLAIMS_BEHIND_MS`]).
    pub(super) fn claiming_late(&self, late_ms: i64) -> Option<ClaimUnderWay<'_>> {
        (late_ms >= CLAIMS_BEHIND_MS).then(|| self.claiming())
    }

    /// Counts a firing claim in the store until the guard is dropped.
    fn claiming(&self) -> ClaimUnderWay<'_> {
        self.claims.send_modify(|claims| {
            claims.under_way += 1;
            claims.asked += 1;
        });
        ClaimUnderWay(&self.claims)
    }

    /// Clears the outbox entries of `jobs` still at their version, when
    /// `turn` says, in one store call with the clears queued meanwhile; the
    /// ids cleared, or `None` if the store failed (the events stay owed).
    pub(super) async fn clear(
        &self,
        db: &Arc<dyn JobDB>,
        jobs: &[(JobId, i64)],
        turn: ClearTurn,
    ) -> Option<Vec<JobId>> {
        if turn == ClearTurn::AfterClaims {
            self.give_way().await;
        }
        let (answer, mut cleared) = oneshot::channel();
        self.lock().push(Queued {
            jobs: jobs.to_vec(),
            answer,
        });
        loop {
            tokio::select! {
                biased;
                // (Dropped unanswered only if its group's task panicked.)
                done = &mut cleared => return done.ok().flatten(),
                turn = self.turns.clone().acquire_owned() => {
                    let turn = turn.ok()?;
                    let group = self.next_group();
                    if group.is_empty() {
                        // Another turn holds this clear: its answer comes.
                        drop(turn);
                        return cleared.await.ok().flatten();
                    }
                    let db = db.clone();
                    // Joined here; the store call goes on if this caller goes.
                    let _ = tokio::spawn(async move {
                        clear_group(db.as_ref(), group).await;
                        drop(turn);
                    })
                    .await;
                }
            }
        }
    }

    /// Waits until the firing claims pause, at most
    /// [`OutboxClears::give_way_at_most`]. One waiting clear watches the
    /// claims and then lets every other go with it: a burst's many clears
    /// do not each poll the claims.
    /// (Waiting before it is queued, a firing's clear is not taken along by
    /// an API call's meanwhile.)
    async fn give_way(&self) {
        let mut released = self.released.subscribe();
        match self.watching.try_lock() {
            Ok(_watching) => {
                self.until_claims_pause().await;
                self.released.send_modify(|times| *times += 1);
            }
            // (The watcher began earlier, so it lets go in time; a
            // watcher whose caller gave up lets go of nobody.)
            Err(_) => {
                let at_most = self.give_way_at_most();
                let _ = tokio::time::timeout(at_most, released.changed()).await;
            }
        }
    }

    /// Waits until the firing claims pause (none in the store, none asked
    /// for [`CLAIMS_QUIET`]), at most [`OutboxClears::give_way_at_most`].
    async fn until_claims_pause(&self) {
        let deadline = Instant::now() + self.give_way_at_most();
        let mut claims = self.claims.subscribe();
        loop {
            let none_in_store = timeout_at(deadline, claims.wait_for(|c| c.under_way == 0))
                .await
                .is_ok_and(|seen| seen.is_ok());
            if !none_in_store {
                return;
            }
            let asked = claims.borrow().asked;
            sleep_until(deadline.min(Instant::now() + CLAIMS_QUIET)).await;
            if claims.borrow().asked == asked || Instant::now() >= deadline {
                return;
            }
        }
    }

    /// The clears queued, in order, but for any that holds a job an earlier
    /// one holds (they stay queued for the next turn).
    fn next_group(&self) -> Vec<Queued> {
        let mut queued = self.lock();
        let mut held = HashSet::new();
        let (group, later): (Vec<Queued>, Vec<Queued>) =
            mem::take(&mut *queued).into_iter().partition(|clear| {
                let free = clear.jobs.iter().all(|(id, _)| !held.contains(id));
                if free {
                    held.extend(clear.jobs.iter().map(|(id, _)| *id));
                }
                free
            });
        *queued = later;
        group
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Queued>> {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Clears the jobs of `group` in one store call and answers each caller
/// with those of its jobs cleared.
async fn clear_group(db: &dyn JobDB, group: Vec<Queued>) {
    let jobs: Vec<(JobId, i64)> = group.iter().flat_map(|c| c.jobs.iter().copied()).collect();
    let cleared: Option<HashSet<JobId>> = match db.clear_pending_many(&jobs).await {
        // A job not cleared changed after it was read (a result, a run
        // timeout): its newer state owes its own events, which stay.
        Ok(cleared) => {
            tracing::debug!(
                published = jobs.len(),
                cleared = cleared.len(),
                deliveries = group.len(),
                "outbox entries cleared"
            );
            Some(cleared.into_iter().collect())
        }
        Err(err) => {
            tracing::warn!(jobs = jobs.len(), error = %err,
                "published, but the outbox entries stay; they will be published again");
            None
        }
    };
    for clear in group {
        let answer = cleared.as_ref().map(|cleared| {
            clear
                .jobs
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| cleared.contains(id))
                .collect()
        });
        // A caller that gave up no longer listens.
        let _ = clear.answer.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::{
        domain::{Job, JobSpec, JobType, PendingEvents},
        store::memory::MemoryJobDB,
    };

    /// A new job (owing its create event), stored in `db`.
    async fn owing(db: &dyn JobDB) -> Job {
        let spec = JobSpec {
            name: "n".into(),
            description: String::new(),
            schedule_time: Utc::now(),
            job_type: JobType::Email,
            job_data: "{}".into(),
        };
        let job = Job::new_scheduled(spec, Utc::now());
        db.insert(&job).await.unwrap();
        job
    }

    /// Waits until `ready` holds (a bound for a loaded machine).
    async fn until(ready: impl Fn() -> bool) {
        for _ in 0..500 {
            if ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("not reached");
    }

    /// Starts a clear of `jobs` for `turn` in a task of its own.
    fn start(
        clears: &Arc<OutboxClears>,
        db: &Arc<dyn JobDB>,
        jobs: Vec<(JobId, i64)>,
        turn: ClearTurn,
    ) -> tokio::task::JoinHandle<Option<Vec<JobId>>> {
        let (clears, db) = (clears.clone(), db.clone());
        tokio::spawn(async move { clears.clear(&db, &jobs, turn).await })
    }

    /// A store whose clears are held, with [`CLEARS_AT_ONCE`] clears of a
    /// job each already in it (every turn taken); those clears' tasks.
    async fn busy_store() -> (
        Arc<MemoryJobDB>,
        Arc<dyn JobDB>,
        Arc<OutboxClears>,
        Vec<tokio::task::JoinHandle<Option<Vec<JobId>>>>,
    ) {
        let memory = Arc::new(MemoryJobDB::new());
        let db: Arc<dyn JobDB> = memory.clone();
        let clears = Arc::new(OutboxClears::default());
        memory.hold_clears(true);
        let mut busy = Vec::new();
        for _ in 0..CLEARS_AT_ONCE {
            let job = owing(memory.as_ref()).await;
            busy.push(start(
                &clears,
                &db,
                vec![(job.id, job.version)],
                ClearTurn::AtOnce,
            ));
        }
        until(|| memory.clears_made() == CLEARS_AT_ONCE).await;
        (memory, db, clears, busy)
    }

    #[tokio::test]
    async fn clears_asked_while_the_store_is_busy_go_in_one_call() {
        let (memory, db, clears, busy) = busy_store().await;
        let mut jobs = Vec::new();
        let mut waiting = Vec::new();
        for _ in 0..10 {
            let job = owing(memory.as_ref()).await;
            waiting.push(start(
                &clears,
                &db,
                vec![(job.id, job.version)],
                ClearTurn::AtOnce,
            ));
            jobs.push(job);
        }
        until(|| clears.lock().len() == 10).await;
        memory.hold_clears(false);
        for (clear, job) in waiting.into_iter().zip(&jobs) {
            assert_eq!(clear.await.unwrap(), Some(vec![job.id]));
        }
        for clear in busy {
            assert_eq!(clear.await.unwrap().map(|c| c.len()), Some(1));
        }
        assert_eq!(memory.clears_made(), CLEARS_AT_ONCE + 1, "the ten in one");
        for job in &jobs {
            let stored = memory.get(job.id).await.unwrap().unwrap();
            assert_eq!(stored.pending, PendingEvents::NONE);
        }
    }

    #[tokio::test]
    async fn one_job_at_two_versions_is_cleared_in_two_calls_each_answered_for_its_own() {
        let (memory, db, clears, _busy) = busy_store().await;
        let job = owing(memory.as_ref()).await;
        let stale = start(
            &clears,
            &db,
            vec![(job.id, job.version - 1)],
            ClearTurn::AtOnce,
        );
        let current = start(&clears, &db, vec![(job.id, job.version)], ClearTurn::AtOnce);
        until(|| clears.lock().len() == 2).await;
        memory.hold_clears(false);
        assert_eq!(stale.await.unwrap(), Some(vec![]), "not its version");
        assert_eq!(current.await.unwrap(), Some(vec![job.id]));
        assert_eq!(memory.clears_made(), CLEARS_AT_ONCE + 2);
    }

    /// A memory store with one job owing its event, and clears over it.
    async fn one_owing() -> (Arc<MemoryJobDB>, Arc<dyn JobDB>, Arc<OutboxClears>, Job) {
        let memory = Arc::new(MemoryJobDB::new());
        let job = owing(memory.as_ref()).await;
        let db: Arc<dyn JobDB> = memory.clone();
        (memory, db, Arc::new(OutboxClears::default()), job)
    }

    /// Asserts that a clear of `job` for `turn`, asked now, clears it after
    /// `waited` exactly (on the paused clock).
    async fn cleared_after(
        clears: &Arc<OutboxClears>,
        db: &Arc<dyn JobDB>,
        job: &Job,
        turn: ClearTurn,
        waited: Duration,
    ) {
        let asked = tokio::time::Instant::now();
        let clear = start(clears, db, vec![(job.id, job.version)], turn);
        assert_eq!(clear.await.unwrap(), Some(vec![job.id]));
        assert_eq!(asked.elapsed(), waited, "(the paused clock)");
    }

    #[tokio::test(start_paused = true)]
    async fn a_firings_clear_waits_for_the_claims_under_way() {
        let (memory, db, clears, job) = one_owing().await;
        let claim = clears.claiming();
        let clear = start(
            &clears,
            &db,
            vec![(job.id, job.version)],
            ClearTurn::AfterClaims,
        );
        tokio::time::sleep(GIVE_WAY_AT_MOST / 2).await;
        assert_eq!(memory.clears_made(), 0, "waits while the claim is asked");
        drop(claim);
        assert_eq!(clear.await.unwrap(), Some(vec![job.id]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_firings_clear_waits_for_claims_only_so_long() {
        let (_, db, clears, job) = one_owing().await;
        let _claims_without_end = clears.claiming();
        cleared_after(&clears, &db, &job, ClearTurn::AfterClaims, GIVE_WAY_AT_MOST).await;
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_short_shard_lease_a_firings_clear_waits_half_of_it() {
        let (_, db, clears, job) = one_owing().await;
        let lease = Duration::from_millis(600);
        clears.lease_is(lease);
        clears.lease_is(Duration::from_secs(60));
        let _claims_without_end = clears.claiming();
        cleared_after(&clears, &db, &job, ClearTurn::AfterClaims, lease / 2).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_shard_lease_leaves_the_wait_as_it_is() {
        let (_, db, clears, job) = one_owing().await;
        clears.lease_is(Duration::from_secs(5));
        let _claims_without_end = clears.claiming();
        cleared_after(&clears, &db, &job, ClearTurn::AfterClaims, GIVE_WAY_AT_MOST).await;
    }

    #[tokio::test(start_paused = true)]
    async fn clears_that_wait_behind_the_watching_one_go_with_it() {
        let (memory, db, clears, first) = one_owing().await;
        let second = owing(memory.as_ref()).await;
        let _claims_without_end = clears.claiming();
        let watching = start(
            &clears,
            &db,
            vec![(first.id, first.version)],
            ClearTurn::AfterClaims,
        );
        tokio::time::sleep(GIVE_WAY_AT_MOST / 2).await;
        // Let go with the first, half its wait later.
        let half = GIVE_WAY_AT_MOST / 2;
        cleared_after(&clears, &db, &second, ClearTurn::AfterClaims, half).await;
        assert_eq!(watching.await.unwrap(), Some(vec![first.id]));
    }

    #[tokio::test(start_paused = true)]
    async fn claims_that_keep_coming_keep_a_firings_clear_waiting() {
        let (_, db, clears, job) = one_owing().await;
        let claimer = clears.clone();
        // A claim of 1 ms, then a gap shorter than the quiet period, again.
        let burst = tokio::spawn(async move {
            loop {
                let claim = claimer.claiming();
                tokio::time::sleep(Duration::from_millis(1)).await;
                drop(claim);
                tokio::time::sleep(CLAIMS_QUIET / 2).await;
            }
        });
        cleared_after(&clears, &db, &job, ClearTurn::AfterClaims, GIVE_WAY_AT_MOST).await;
        burst.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_on_time_does_not_hold_up_clears() {
        let (_, db, clears, job) = one_owing().await;
        assert!(clears.claiming_late(CLAIMS_BEHIND_MS).is_some());
        let _on_time = clears.claiming_late(CLAIMS_BEHIND_MS - 1);
        cleared_after(&clears, &db, &job, ClearTurn::AfterClaims, CLAIMS_QUIET).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_callers_clear_does_not_wait_for_claims() {
        let (_, db, clears, job) = one_owing().await;
        let _claims_without_end = clears.claiming();
        cleared_after(&clears, &db, &job, ClearTurn::AtOnce, Duration::ZERO).await;
    }

    #[tokio::test]
    async fn a_lone_clear_goes_to_the_store_at_once() {
        let memory = Arc::new(MemoryJobDB::new());
        let db: Arc<dyn JobDB> = memory.clone();
        let clears = OutboxClears::default();
        let job = owing(memory.as_ref()).await;
        let cleared = clears
            .clear(&db, &[(job.id, job.version)], ClearTurn::AtOnce)
            .await;
        assert_eq!(cleared, Some(vec![job.id]));
        assert_eq!(memory.clears_made(), 1);
    }
}
