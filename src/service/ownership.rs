//! Ownership: which shards this replica owns, and so which jobs it arms
//! and claims (see [`crate::domain::shard`]). Replicas sharing a store
//! agree through its shard leases ([`ShardLeases`]); a replica alone on
//! its store (embedded) owns every shard and runs none of this.
//!
//! [`JobService::run_shard_leases`] renews this replica's leases ten times
//! a lease period and takes or gives up leases towards a fair share: with
//! `n` live replicas, at most `ceil(shards / n)` each. A replica that
//! joins finds the others above the new share at their next renewal; they
//! give up the excess, and it takes the freed leases at its own next
//! renewal. A replica that dies stops renewing: its leases and membership
//! expire together after one lease period, the survivors' share grows, and
//! they take them. A replica that stops gracefully gives its leases up at
//! once. So shards move within a lease period and a renewal interval.
//!
//! Whatever a replica believes, a claim stays conditional on the job's
//! fire token, so two replicas that both arm a job during a move fire it
//! once: a move makes jobs late, never doubled. Every change of ownership
//! takes effect in the timer at once: the jobs of a lost shard are
//! disarmed, those of a gained one loaded from the store
//! ([`JobService::load_shards`]).
//!
//! One exception keeps changes on time: a job this replica itself changed
//! (created, updated, retried) in a shard it does not own is *borrowed*
//! when it falls due before the owner's window loader certainly sees it
//! (one loader period, half the look-ahead): it is armed here until then.
//! So such a job may be claimed by two replicas, and fires once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{JobService, log_unreadable};
use crate::clock::span;
use crate::{
    config::ShardingSettings,
    domain::{
        Error, Job, JobId,
        shard::{ShardCount, Shards},
    },
    store::ShardLeases,
    store::StoreError,
};

/// Renewals per lease period: a lease survives nine lost renewals in a row.
const RENEWALS_PER_LEASE: u32 = 10;

/// The shards this replica owns and the jobs it borrowed.
pub(super) struct Ownership {
    owned: watch::Sender<Shards>,
    /// The lease period, once this replica shares its store's shards.
    lease: std::sync::OnceLock<Duration>,
    /// Jobs of other shards armed here after this replica changed them, and
    /// until when.
    borrowed: Mutex<HashMap<JobId, DateTime<Utc>>>,
}

impl Default for Ownership {
    /// Every shard: a replica alone, until leases say otherwise.
    fn default() -> Self {
        let one = ShardCount::new(1).unwrap_or_else(|| unreachable!());
        Ownership {
            owned: watch::Sender::new(Shards::all(one)),
            lease: std::sync::OnceLock::new(),
            borrowed: Mutex::default(),
        }
    }
}

impl Ownership {
    fn borrowed(&self) -> MutexGuard<'_, HashMap<JobId, DateTime<Utc>>> {
        // A few map operations per hold: a poisoned lock is still usable.
        self.borrowed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The shards owned and the jobs borrowed, as of one moment.
struct Holding<'a> {
    owned: Shards,
    borrowed: MutexGuard<'a, HashMap<JobId, DateTime<Utc>>>,
    now: DateTime<Utc>,
}

impl Holding<'_> {
    /// Whether job `id` is in an owned shard or borrowed until after now.
    fn holds(&self, id: &JobId) -> bool {
        self.owned.holds(id) || self.borrowed.get(id).is_some_and(|&until| until > self.now)
    }
}

/// What one renewal round decided.
struct Round {
    owned: Shards,
    /// Shards held before that the store no longer gave: lost.
    lost: usize,
}

impl JobService {
    /// The shards this replica owns now.
    pub fn owned_shards(&self) -> Shards {
        self.inner.ownership.owned.borrow().clone()
    }

    /// How long the outbox relay leaves `job`'s owed events to whoever may
    /// be delivering them, given `grace` for any job: no longer than a
    /// lease period for a job of a shard this replica owns. Only its owner
    /// fires such a job (its own deliveries are left alone by the relay
    /// anyway) or a replica that borrowed it; a previous owner lost the
    /// shard at least a lease period ago, so what it claimed and did not
    /// deliver before it died is relayed a lease period after, not a whole
    /// `grace` (a borrower's publish slower than a lease may then be
    /// doubled: delivery is at least once).
    pub(super) fn relay_grace_of(&self, job: &Job, grace: Duration) -> Duration {
        match self.inner.ownership.lease.get() {
            Some(&lease) if self.inner.ownership.owned.borrow().holds(&job.id) => grace.min(lease),
            _ => grace,
        }
    }

    /// Whether this replica arms job `id` (its shard is owned, or it
    /// borrowed it until after `now`).
    pub(super) fn holds(&self, id: &JobId, now: DateTime<Utc>) -> bool {
        self.holding(now).holds(id)
    }

    /// What this replica holds at `now`, read once for many jobs (the
    /// borrowings stay locked while it lives, before any lock of the
    /// timer's).
    fn holding(&self, now: DateTime<Utc>) -> Holding<'_> {
        Holding {
            owned: self.owned_shards(),
            borrowed: self.inner.ownership.borrowed(),
            now,
        }
    }

    /// Borrows `job` if this replica changed it, it is not in an owned
    /// shard and it falls due before the owner's loader certainly sees it.
    pub(super) fn borrow_if_foreign(&self, job: &Job) {
        if self.inner.ownership.owned.borrow().holds(&job.id) {
            return;
        }
        let now = self.clock().now();
        let seen_by = now + span(self.loader_period());
        if job.is_armable() && job.spec.schedule_time < seen_by {
            self.inner.ownership.borrowed().insert(job.id, seen_by);
        }
    }

    /// Forgets the borrowings that ended before `now`.
    pub(super) fn end_borrowings(&self, now: DateTime<Utc>) {
        self.inner
            .ownership
            .borrowed()
            .retain(|_, until| *until > now);
    }

    /// Makes `owned` this replica's shards: disarms the jobs of the shards
    /// it no longer owns (unless borrowed), and counts the change.
    fn set_owned(&self, owned: Shards, lost: usize) {
        let changed = *self.inner.ownership.owned.borrow() != owned;
        self.inner.metrics.shards_moved(owned.len(), lost, changed);
        if !changed {
            return;
        }
        tracing::info!(owned = owned.len(), lost, "shards moved");
        self.inner.ownership.owned.send_replace(owned);
        let holding = self.holding(self.clock().now());
        self.inner.timer.retain(|id| holding.holds(id));
    }

    /// Arms the jobs of `shards` due within the look-ahead window (shards
    /// just taken). Returns how many the store listed.
    pub async fn load_shards(&self, shards: &Shards) -> Result<usize, Error> {
        let due = self.inner.db.scheduled_in(self.horizon(), shards).await?;
        log_unreadable("shard loader", &due.unreadable);
        let count = due.found.len();
        let holding = self.holding(self.clock().now());
        for job in due.found {
            // Owned when the query started, perhaps not now.
            if holding.holds(&job.id) {
                self.inner
                    .timer
                    .arm_if_vacant(job.id, job.schedule_time, job.fire_token);
            }
        }
        Ok(count)
    }

    /// Keeps this replica's share of the shard leases until shutdown, then
    /// gives them up: `keeper` comes from [`JobService::join_shards`].
    pub async fn run_shard_leases(self, mut keeper: ShardKeeper, shutdown: CancellationToken) {
        let period = keeper.settings.lease / RENEWALS_PER_LEASE;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(period) => {}
            }
            keeper.round(&self).await;
        }
        keeper.leave(&self).await;
    }

    /// Joins the replicas sharing the store as `me`: prepares the store's
    /// leases and takes this replica's first share. Start-up runs it before
    /// loading the window, and hands the keeper to
    /// [`JobService::run_shard_leases`]. A store whose leases are for
    /// another shard count stops start-up; one that cannot be reached
    /// leaves the replica without shards until a round reaches it.
    pub async fn join_shards(
        &self,
        leases: Arc<dyn ShardLeases>,
        settings: ShardingSettings,
        me: String,
    ) -> Result<ShardKeeper, StoreError> {
        self.set_owned(Shards::none(settings.shards), 0);
        let _ = self.inner.ownership.lease.set(settings.lease);
        self.inner.outbox_clears.lease_is(settings.lease);
        let mut keeper = ShardKeeper {
            leases,
            settings,
            me,
            prepared: false,
            valid_until: None,
            unloaded: None,
            relay_again: false,
        };
        keeper.prepare(self).await?;
        keeper.round(self).await;
        Ok(keeper)
    }
}

/// One replica's side of the leases: what it holds and until when.
pub struct ShardKeeper {
    leases: Arc<dyn ShardLeases>,
    settings: ShardingSettings,
    me: String,
    /// Whether the store's leases were made or checked for the count.
    prepared: bool,
    /// Until when the leases held are certainly this replica's, by its clock.
    valid_until: Option<DateTime<Utc>>,
    /// Shards taken whose jobs are not loaded yet (the load failed).
    unloaded: Option<Shards>,
    /// Whether the last round took shards (see [`ShardKeeper::relay_owed`]).
    relay_again: bool,
}

impl ShardKeeper {
    /// Makes or checks the store's leases, once. Only a count that differs
    /// is an error. A store that cannot be reached is tried again next
    /// round, the replica owning nothing meanwhile; one that refuses the
    /// leases otherwise (a user without the right to create their table)
    /// leaves the replica owning every shard, racing the others for every
    /// job as without sharding (claims stay conditional), until it takes
    /// them.
    async fn prepare(&mut self, service: &JobService) -> Result<(), StoreError> {
        match self
            .leases
            .prepare(self.settings.shards, service.clock().now())
            .await
        {
            Ok(()) => self.prepared = true,
            Err(err @ StoreError::ShardCount { .. }) => return Err(err),
            Err(err @ StoreError::Unavailable(_)) => {
                tracing::warn!(error = %err, "cannot reach the shard leases yet; owning no shard until then");
            }
            Err(err) => {
                tracing::error!(error = %err, "the store refuses the shard leases: this replica arms every job, racing the others");
                service.set_owned(Shards::all(self.settings.shards), 0);
            }
        }
        Ok(())
    }

    /// Renews, takes or gives up leases towards the fair share, and applies
    /// the result; a store that fails keeps the shards until their leases
    /// may have expired, and then none.
    async fn round(&mut self, service: &JobService) {
        if !self.prepared {
            if let Err(err) = self.prepare(service).await {
                tracing::error!(error = %err, "the shard count changed under a running replica; owning no shard");
                service.set_owned(Shards::none(self.settings.shards), 0);
            }
            if !self.prepared {
                return;
            }
        }
        let before = service.owned_shards();
        let sent = service.clock().now();
        match self.renew_in_time(&before, sent).await {
            Ok(round) => {
                self.valid_until = Some(sent + span(self.settings.lease));
                let gained = round.owned.without(&before);
                service.set_owned(round.owned, round.lost);
                let taken = !gained.is_empty();
                self.load(service, gained).await;
                self.relay_owed(service, taken);
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot renew the shard leases");
                let now = service.clock().now();
                if self.valid_until.is_some_and(|until| until <= now) {
                    service.set_owned(Shards::none(self.settings.shards), before.len());
                    self.valid_until = None;
                }
            }
        }
    }

    /// [`ShardKeeper::renew_and_balance`], given up when the leases held may
    /// expire: a store that does not answer must not keep the replica
    /// arming past their end.
    async fn renew_in_time(
        &self,
        before: &Shards,
        now: DateTime<Utc>,
    ) -> Result<Round, StoreError> {
        let bound = self.valid_until.map_or(self.settings.lease, |until| {
            (until - now).to_std().unwrap_or(Duration::ZERO)
        });
        tokio::time::timeout(bound, self.renew_and_balance(before, now))
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "no answer within {bound:?}, when the leases may expire"
                )))
            })
    }

    /// One exchange with the store: renew, then take or give up.
    async fn renew_and_balance(
        &self,
        before: &Shards,
        now: DateTime<Utc>,
    ) -> Result<Round, StoreError> {
        let until = now + span(self.settings.lease);
        let renewal = self.leases.renew(&self.me, until, now).await?;
        let count = self.settings.shards;
        let share = fair_share(count, renewal.replicas);
        let mut held = renewal.held;
        let lost = before
            .without(&Shards::of(count, held.iter().copied()))
            .len();
        if held.len() > share {
            let excess = held.split_off(share);
            self.leases.release(&self.me, &excess).await?;
        } else if held.len() < share {
            let taken = (self.leases)
                .acquire(&self.me, share - held.len(), until, now)
                .await?;
            held.extend(taken);
        }
        Ok(Round {
            owned: Shards::of(count, held),
            lost,
        })
    }

    /// Wakes the relay in the round that took shards and in the next. What
    /// a dead owner claimed and never delivered is relayed a lease period
    /// after its claim (see [`JobService::relay_grace_of`]); it died within
    /// a renewal interval of its last renewal, so a lease period after each
    /// of its claims is at most a renewal interval after its leases
    /// expired, and the second wake relays every such event, rather than
    /// the relay's next poll, up to `outbox_poll` later.
    fn relay_owed(&mut self, service: &JobService, taken: bool) {
        if taken || self.relay_again {
            service.inner.relay_now.notify_one();
        }
        self.relay_again = taken;
    }

    /// Loads the jobs of the shards gained, and of any whose load failed.
    async fn load(&mut self, service: &JobService, gained: Shards) {
        let mut todo = gained;
        if let Some(unloaded) = self.unloaded.take() {
            todo = Shards::of(todo.count(), todo.iter().chain(unloaded.iter()));
        }
        let owned = service.owned_shards();
        let todo = Shards::of(todo.count(), todo.iter().filter(|&s| owned.contains(s)));
        if todo.is_empty() {
            return;
        }
        match service.load_shards(&todo).await {
            Ok(count) => tracing::debug!(shards = todo.len(), count, "shards loaded"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot load the jobs of shards taken; retrying");
                self.unloaded = Some(todo);
            }
        }
    }

    /// Gives up every lease (at shutdown).
    async fn leave(&self, service: &JobService) {
        if let Err(err) = self.leases.leave(&self.me).await {
            tracing::warn!(error = %err, "cannot give up the shard leases; they expire by themselves");
        }
        service.set_owned(Shards::none(self.settings.shards), 0);
    }
}

/// Most shards one of `replicas` live replicas may hold.
fn fair_share(count: ShardCount, replicas: usize) -> usize {
    usize::from(count.get()).div_ceil(replicas.max(1))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::{
        broker::NullProducer,
        clock::Clock,
        config::SchedulerSettings,
        service::testing::{RecordingProducer, TestService},
        store::{JobDB, memory::MemoryJobDB},
    };

    const LEASE: Duration = Duration::from_secs(5);

    /// A replica over the shared store `db`.
    fn replica(db: &Arc<MemoryJobDB>) -> TestService {
        TestService::on(
            db.clone(),
            SchedulerSettings::default(),
            Arc::new(NullProducer),
        )
    }

    /// `t` joins the replicas as `name`, with 4 shards.
    async fn join(t: &TestService, name: &str) -> ShardKeeper {
        join_for(t, name, LEASE).await
    }

    /// `t` joins the replicas as `name`, with 4 shards leased for `lease`.
    async fn join_for(t: &TestService, name: &str, lease: Duration) -> ShardKeeper {
        let settings = ShardingSettings {
            shards: ShardCount::new(4).unwrap(),
            lease,
            replica_id: None,
        };
        let leases = t.svc.leases().expect("the memory store has leases");
        t.svc
            .join_shards(leases, settings, name.to_owned())
            .await
            .unwrap()
    }

    /// `t` renews every fifth of a lease, as the duty does, for a lease
    /// period and a step more.
    async fn keep_renewing(t: &TestService, keeper: &mut ShardKeeper) {
        let step = LEASE.as_millis() as i64 / 5;
        for _ in 0..6 {
            t.advance_ms(step);
            keeper.round(&t.svc).await;
        }
    }

    fn owned(t: &TestService) -> Vec<u16> {
        t.svc.owned_shards().iter().collect()
    }

    /// Two replicas that split the 4 shards, A first.
    async fn two_replicas() -> ((TestService, ShardKeeper), (TestService, ShardKeeper)) {
        let db = Arc::new(MemoryJobDB::new());
        two_replicas_of(replica(&db), replica(&db)).await
    }

    /// Replicas `a` and `b` of one store, which split the 4 shards, A first.
    async fn two_replicas_of(
        a: TestService,
        b: TestService,
    ) -> ((TestService, ShardKeeper), (TestService, ShardKeeper)) {
        let mut ka = join(&a, "a").await;
        assert_eq!(owned(&a), [0, 1, 2, 3], "alone, A takes every shard");
        let mut kb = join(&b, "b").await;
        assert_eq!(owned(&b), [] as [u16; 0], "none free yet");
        ka.round(&a.svc).await;
        assert_eq!(owned(&a), [0, 1], "A gives up what exceeds its share");
        kb.round(&b.svc).await;
        assert_eq!(owned(&b), [2, 3], "B takes what A gave up");
        ((a, ka), (b, kb))
    }

    #[tokio::test]
    async fn replicas_split_the_shards_and_each_arms_only_its_jobs() {
        let ((a, _), (b, _)) = two_replicas().await;
        // Due beyond the loader period: the owner's loader arms them.
        let mut ids = HashSet::new();
        for _ in 0..40 {
            ids.insert(a.svc.create(a.spec(40_000)).await.unwrap().id);
        }
        b.svc.load_window().await.unwrap();
        a.svc.load_window().await.unwrap();
        let on_a: HashSet<_> = ids.iter().filter(|id| a.svc.timer().is_armed(id)).collect();
        let on_b: HashSet<_> = ids.iter().filter(|id| b.svc.timer().is_armed(id)).collect();
        assert_eq!(on_a.len() + on_b.len(), ids.len(), "each armed once");
        assert!(on_a.is_disjoint(&on_b));
        assert!(on_a.iter().all(|id| a.svc.owned_shards().holds(id)));
        assert!(on_b.iter().all(|id| b.svc.owned_shards().holds(id)));
        assert!(!on_a.is_empty() && !on_b.is_empty());
    }

    #[tokio::test]
    async fn a_replica_that_stops_renewing_loses_its_shards_and_their_jobs_move() {
        let ((a, mut ka), (b, _kb)) = two_replicas().await;
        let job = loop {
            let job = a.svc.create(a.spec(40_000)).await.unwrap();
            if b.svc.owned_shards().holds(&job.id) {
                break job;
            }
        };
        assert!(!a.svc.timer().is_armed(&job.id), "B's job");
        // B stops renewing; A renews on, and a lease period later counts
        // itself alone.
        keep_renewing(&a, &mut ka).await;
        assert_eq!(owned(&a), [0, 1, 2, 3]);
        assert!(a.svc.timer().is_armed(&job.id), "loaded when taken");
        assert!(
            a.svc
                .metrics()
                .render(0)
                .contains("scheduler_shards_owned 4")
        );
    }

    #[tokio::test]
    async fn a_replica_that_leaves_gives_its_shards_up_at_once() {
        let ((a, mut ka), (b, kb)) = two_replicas().await;
        let job = loop {
            let job = b.svc.create(b.spec(40_000)).await.unwrap();
            if b.svc.owned_shards().holds(&job.id) {
                break job;
            }
        };
        assert!(b.svc.timer().is_armed(&job.id));
        kb.leave(&b.svc).await;
        assert!(b.svc.owned_shards().is_empty());
        assert!(!b.svc.timer().is_armed(&job.id), "disarmed on leaving");
        ka.round(&a.svc).await;
        assert_eq!(owned(&a), [0, 1, 2, 3], "without waiting for expiry");
        assert!(a.svc.timer().is_armed(&job.id));
    }

    #[tokio::test]
    async fn a_shard_lost_to_another_replica_is_disarmed_and_counted() {
        let ((a, mut ka), (b, mut kb)) = two_replicas().await;
        let job = loop {
            let job = a.svc.create(a.spec(40_000)).await.unwrap();
            if a.svc.owned_shards().holds(&job.id) {
                break job;
            }
        };
        // A's leases expire in B's eyes (A paused); B takes them all.
        keep_renewing(&b, &mut kb).await;
        assert_eq!(owned(&b), [0, 1, 2, 3]);
        // A wakes: its renewal finds nothing held, and it stops arming.
        ka.round(&a.svc).await;
        assert!(a.svc.owned_shards().is_empty());
        assert!(!a.svc.timer().is_armed(&job.id));
        let metrics = a.svc.metrics().render(0);
        assert!(
            metrics.contains("scheduler_shard_lease_losses_total 2"),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn what_a_dead_replica_claimed_is_relayed_a_round_after_its_shards_are_taken() {
        let db = Arc::new(MemoryJobDB::new());
        let producer = Arc::new(RecordingProducer::default());
        // The relay's poll is out of reach: only a wake can relay.
        let settings = SchedulerSettings {
            outbox_poll: Duration::from_secs(3600),
            ..SchedulerSettings::default()
        };
        let a = TestService::on(db.clone(), settings, producer.clone());
        let ((a, mut ka), (b, mut kb)) = two_replicas_of(a, replica(&db)).await;
        let job = loop {
            let job = b.svc.create(b.spec(40_000)).await.unwrap();
            if b.svc.owned_shards().holds(&job.id) {
                break job;
            }
        };
        // B renews half a renewal interval after A (so that its leases
        // expire between two rounds of A's), claims the job just before its
        // next renewal, and dies before delivering it.
        let interval = (LEASE / RENEWALS_PER_LEASE).as_millis() as i64;
        b.advance_ms(interval / 2);
        kb.round(&b.svc).await;
        let claimed_at = b.clock.now_ms() + chrono::Duration::milliseconds(interval * 9 / 10);
        let claimed = db.claim(job.id, job.fire_token, claimed_at).await.unwrap();
        assert!(claimed.is_some_and(|job| job.pending.run));

        let shutdown = CancellationToken::new();
        let relay = tokio::spawn(a.svc.clone().run_relay(shutdown.clone()));
        let relayed = async || {
            // A pass takes microseconds; the bound is for a loaded machine.
            for _ in 0..500 {
                if producer.runs().contains(&job.id) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        };
        let mut taken_in = None;
        for round in 0..2 * RENEWALS_PER_LEASE {
            a.advance_ms(interval);
            ka.round(&a.svc).await;
            if taken_in.is_none() && owned(&a).len() == 4 {
                taken_in = Some(round);
                // The first wake's pass, on this clock: the claim is not a
                // lease old yet, and B may still be publishing it.
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert!(!producer.runs().contains(&job.id), "relayed too early");
            } else if taken_in.is_some() {
                break;
            }
        }
        let relayed = relayed().await;
        shutdown.cancel();
        relay.await.unwrap();
        assert!(taken_in.is_some(), "A takes B's shards");
        assert!(relayed, "relayed by the round after the shards were taken");
    }

    #[tokio::test]
    async fn the_relay_waits_a_lease_at_most_for_the_jobs_of_its_own_shards() {
        let ((a, _), (b, _)) = two_replicas().await;
        let job = a.svc.create(a.spec(40_000)).await.unwrap();
        let grace = Duration::from_secs(11);
        let (owner, other) = if a.svc.owned_shards().holds(&job.id) {
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert_eq!(owner.svc.relay_grace_of(&job, grace), LEASE);
        assert_eq!(other.svc.relay_grace_of(&job, grace), grace);
        let alone = TestService::with_look_ahead(Duration::from_secs(60));
        assert_eq!(alone.svc.relay_grace_of(&job, grace), grace, "no leases");
    }

    #[tokio::test]
    async fn a_replica_that_joins_with_a_short_lease_has_its_clears_give_way_half_of_it() {
        let t = replica(&Arc::new(MemoryJobDB::new()));
        join_for(&t, "a", Duration::from_millis(800)).await;
        let at_most = t.svc.inner.outbox_clears.give_way_at_most();
        assert_eq!(at_most, Duration::from_millis(400));
    }

    #[tokio::test]
    async fn a_job_changed_here_in_another_shard_is_armed_only_if_due_before_its_owner_looks() {
        let ((a, _), (b, _)) = two_replicas().await;
        let period = a.svc.loader_period().as_millis() as i64;
        let foreign = |t: &TestService, in_ms| {
            let spec = t.spec(in_ms);
            let svc = t.svc.clone();
            let theirs = b.svc.owned_shards();
            async move {
                loop {
                    let job = svc.create(spec.clone()).await.unwrap();
                    if theirs.holds(&job.id) {
                        return job;
                    }
                }
            }
        };
        let soon = foreign(&a, period / 2).await;
        let later = foreign(&a, period + 1_000).await;
        assert!(
            a.svc.timer().is_armed(&soon.id),
            "borrowed: B may not see it in time"
        );
        assert!(!a.svc.timer().is_armed(&later.id), "B's loader arms it");
    }
}
