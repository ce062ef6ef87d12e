//! [`JobDB`] on PostgreSQL: each change is one statement (see the docs of
//! [`super`]).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::timeout_at;
use tokio_postgres::{IsolationLevel, error::SqlState, types::ToSql};

use super::{
    DDL_LOCK_CLASS, PgJobDB,
    codec::{
        IdArrays, JobColumns, JobParams, column, id_from_row, job_from_row, jobs_from_rows, ms,
        scan_rows,
    },
    errors::map_err,
    runs::{self, run_from_row},
    sql::CLIENT_KEY_INDEX,
};
use crate::{
    domain::{
        Job, JobFilter, JobId, JobTally, PageRequest, PendingEvents, ScheduleKind,
        history::{self, Run},
        report::{ResultOutcome, RunReport},
        shard::Shards,
    },
    store::{
        ClaimManyError, DueJob, JobDB, JobsPage, RECURRING_ATTEMPTS, RunRetention, RunsPage, Scan,
        ShardLeases, StoreError, claim_read, result_read, stored_time,
    },
};

#[async_trait]
impl JobDB for PgJobDB {
    fn leases(&self) -> Option<Arc<dyn ShardLeases>> {
        Some(Arc::new(self.clone()))
    }

    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let (mut client, deadline) = self.begin().await?;
        let outcome = timeout_at(deadline, async {
            let tx = client.transaction().await.map_err(map_err)?;
            // Every start meets the table and indexes already made; the
            // server's "already exists, skipping" notices are no news.
            tx.batch_execute("SET LOCAL client_min_messages = warning")
                .await
                .map_err(map_err)?;
            // Two replicas starting together would otherwise race on the
            // catalogs, and one of them could fail a CREATE ... IF NOT EXISTS.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&DDL_LOCK_CLASS, &self.sql.schema],
            )
            .await
            .map_err(map_err)?;
            // Checked first, so that a user without CREATE on the database can
            // use a schema an administrator made.
            let exists: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                    &[&self.sql.schema],
                )
                .await
                .map_err(map_err)?
                .try_get(0)
                .map_err(map_err)?;
            if !exists {
                tx.batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{}\"",
                    self.sql.schema
                ))
                .await
                .map_err(map_err)?;
            }
            tx.batch_execute(&self.sql.create).await.map_err(map_err)?;
            tx.commit().await.map_err(map_err)
        })
        .await;
        self.finish(client, outcome)
    }

    async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        let values = JobParams::new(job);
        let (client, deadline) = self.begin().await?;
        let outcome = timeout_at(deadline, async {
            let statement = client
                .prepare_cached(&self.sql.insert)
                .await
                .map_err(map_err)?;
            match client.execute(&statement, &values.as_params()).await {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    let constraint = e.as_db_error().and_then(|db| db.constraint());
                    match &job.client_key {
                        Some(key) if constraint == Some(CLIENT_KEY_INDEX) => {
                            Err(StoreError::ClientKeyTaken(key.clone()))
                        }
                        _ => Err(StoreError::Other(format!("duplicate id {}", job.id))),
                    }
                }
                Err(e) => Err(map_err(e)),
            }
        })
        .await;
        self.finish(client, outcome)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let row = self
            .query_opt(&self.sql.get, &[&id.bytes().as_slice()])
            .await?;
        Ok(row.as_ref().map(job_from_row).transpose()?)
    }

    async fn tally(&self) -> Result<JobTally, StoreError> {
        let row = self.query_opt(&self.sql.tally, &[]).await?;
        let row = row.ok_or_else(|| StoreError::Other("the tally returned no row".into()))?;
        let count = |i: usize| -> Result<u64, StoreError> {
            let n: i64 = row.try_get(i).map_err(map_err)?;
            Ok(n.unsigned_abs())
        };
        Ok(JobTally {
            total: count(0)?,
            pending: count(1)?,
            scheduled: count(2)?,
            running: count(3)?,
            succeeded: count(4)?,
            failed: count(5)?,
            email: count(6)?,
            sms: count(7)?,
            recurring: count(8)?,
            paused: count(9)?,
        })
    }

    async fn get_by_client_key(&self, key: &str) -> Result<Option<Job>, StoreError> {
        let row = self.query_opt(&self.sql.by_client_key, &[&key]).await?;
        Ok(row.as_ref().map(job_from_row).transpose()?)
    }

    async fn list(&self, page: PageRequest, filter: &JobFilter) -> Result<JobsPage, StoreError> {
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        let limit = i64::try_from(page.size).unwrap_or(i64::MAX);
        let status = filter.status.map(|s| s as i16);
        let job_type = filter.job_type.map(|t| t as i16);
        let recurring = filter.kind.map(|kind| kind == ScheduleKind::Recurring);
        let name = filter.name();
        let filtered: [&(dyn ToSql + Sync); 5] =
            [&status, &job_type, &recurring, &name, &filter.paused];
        let (count_sql, page_sql, params) = if filter.is_empty() {
            (&self.sql.count, &self.sql.page, &[][..])
        } else {
            (&self.sql.count_where, &self.sql.page_where, &filtered[..])
        };
        let (mut client, deadline) = self.begin().await?;
        let outcome = timeout_at(deadline, async {
            // One snapshot for both reads, so that the total and the page agree.
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(map_err)?;
            let count = tx.prepare_cached(count_sql).await.map_err(map_err)?;
            let total: i64 = tx
                .query_one(&count, params)
                .await
                .map_err(map_err)?
                .try_get(0)
                .map_err(map_err)?;
            let rows = if offset >= total {
                Vec::new()
            } else {
                let page = tx.prepare_cached(page_sql).await.map_err(map_err)?;
                let paged: [&(dyn ToSql + Sync); 2] = [&offset, &limit];
                let all: Vec<&(dyn ToSql + Sync)> = params.iter().chain(&paged).copied().collect();
                tx.query(&page, &all).await.map_err(map_err)?
            };
            tx.commit().await.map_err(map_err)?;
            Ok((total, rows))
        })
        .await;
        let (total, rows) = self.finish(client, outcome)?;
        let page = scan_rows(&rows);
        Ok(JobsPage {
            jobs: page.found,
            unreadable: page.unreadable,
            total: u64::try_from(total)
                .map_err(|_| StoreError::Other(format!("negative count {total}")))?,
        })
    }

    async fn replace_if(
        &self,
        job: &Job,
        expected_version: i64,
        ended: &[Run],
    ) -> Result<bool, StoreError> {
        let values = JobParams::new(job);
        let mut params: Vec<&(dyn ToSql + Sync)> = values.as_params().to_vec();
        params.push(&expected_version);
        if ended.is_empty() {
            return Ok(self.execute(&self.sql.replace_if, &params).await? == 1);
        }
        self.in_transaction(async |tx| {
            let statement = tx
                .prepare_cached(&self.sql.replace_if)
                .await
                .map_err(map_err)?;
            if tx.execute(&statement, &params).await.map_err(map_err)? != 1 {
                return Ok(false);
            }
            runs::record(tx, &self.sql.runs, ended).await?;
            Ok(true)
        })
        .await
    }

    /// Its runs go with it (the foreign key cascades).
    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        let deleted = self
            .execute(&self.sql.delete, &[&id.bytes().as_slice()])
            .await?;
        Ok(deleted == 1)
    }

    async fn runs(&self, id: JobId, offset: u64, limit: u64) -> Result<RunsPage, StoreError> {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let bytes = id.bytes();
        let job = &bytes.as_slice();
        let (total, rows) = self
            .in_transaction(async |tx| {
                let count = tx
                    .prepare_cached(&self.sql.runs.count)
                    .await
                    .map_err(map_err)?;
                let total: i64 = tx
                    .query_one(&count, &[job])
                    .await
                    .and_then(|row| row.try_get(0))
                    .map_err(map_err)?;
                let page = tx
                    .prepare_cached(&self.sql.runs.page)
                    .await
                    .map_err(map_err)?;
                let rows = tx
                    .query(&page, &[job, &offset, &limit])
                    .await
                    .map_err(map_err)?;
                Ok((total, rows))
            })
            .await?;
        Ok(RunsPage {
            runs: rows
                .iter()
                .map(|row| run_from_row(id, row))
                .collect::<Result<_, _>>()?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn prune_runs(&self, retention: RunRetention) -> Result<u64, StoreError> {
        let per_job = i64::from(retention.per_job);
        let limit = i64::try_from(retention.limit).unwrap_or(i64::MAX);
        self.execute(
            &self.sql.runs.prune,
            &[&per_job, &retention.fired_before, &limit],
        )
        .await
    }

    async fn claim(
        &self,
        id: JobId,
        fire_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        let row = self
            .query_opt(
                &self.sql.claim,
                &[&id.bytes().as_slice(), &fire_token, &ms(now)],
            )
            .await?;
        if let Some(row) = row {
            return Ok(Some(job_from_row(&row)?));
        }
        // Left out by the one-shot statement: a recurring job is claimed by
        // a read and a conditional write.
        match self.get(id).await? {
            Some(job) if job.recurrence.is_some() => claim_read(self, job, fire_token, now).await,
            _ => Ok(None),
        }
    }

    async fn claim_many(
        &self,
        firings: &[(JobId, i64)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, ClaimManyError> {
        if firings.is_empty() {
            return Ok(Vec::new());
        }
        let arrays = IdArrays::new(firings);
        let (ids, keys) = (arrays.ids(), &arrays.numbers);
        // One statement: it claims all of the batch's one-shot jobs or none.
        let claimed = self
            .query(&self.sql.claim_many, &[&ids, keys, &ms(now)])
            .await
            .and_then(|rows| jobs_from_rows(&rows))
            .map_err(|err| ClaimManyError::whole(firings, err))?;
        if claimed.len() == firings.len() {
            return Ok(claimed);
        }
        // The rest: recurring jobs (one more read finds them), or lost.
        let recurring = self
            .recurring_of(firings)
            .await
            .map_err(|error| ClaimManyError {
                claimed: claimed.clone(),
                failed: firings.to_vec(),
                error,
            })?;
        self.claim_each_recurring(claimed, recurring, firings, now)
            .await
    }

    /// A read and a conditional write of what the domain decides, which
    /// records the run it ends in the same transaction (see `replace_if`).
    async fn store_result(
        &self,
        id: JobId,
        report: &RunReport,
        now: DateTime<Utc>,
    ) -> Result<ResultOutcome, StoreError> {
        match self.get(id).await? {
            Some(job) => result_read(self, job, report, now).await,
            None => Ok(ResultOutcome::UnknownJob),
        }
    }

    async fn scheduled_before(&self, until: DateTime<Utc>) -> Result<Scan<DueJob>, StoreError> {
        // Whole rows, not only the three columns a due job needs: a row that
        // is not a job is reported here rather than armed, and its claim
        // would fail to read it (with the whole batch it was claimed in).
        let rows = self.query(&self.sql.scheduled_before, &[&until]).await?;
        Ok(scan_rows(&rows).map(|job| DueJob::from(&job)))
    }

    async fn scheduled_in(
        &self,
        until: DateTime<Utc>,
        shards: &Shards,
    ) -> Result<Scan<DueJob>, StoreError> {
        if shards.is_all() {
            return self.scheduled_before(until).await;
        }
        let count = i32::from(shards.count().get());
        let owned: Vec<i32> = shards.iter().map(i32::from).collect();
        let rows = self
            .query(&self.sql.scheduled_in, &[&until, &count, &owned])
            .await?;
        Ok(scan_rows(&rows).map(|job| DueJob::from(&job)))
    }

    async fn armable_of(&self, ids: &[JobId]) -> Result<Vec<DueJob>, StoreError> {
        let bytes: Vec<[u8; 12]> = ids.iter().map(JobId::bytes).collect();
        let ids: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
        let rows = self.query(&self.sql.armable_of, &[&ids]).await?;
        rows.iter()
            .map(|row| {
                let id = id_from_row(row)?;
                Ok(DueJob {
                    id,
                    schedule_time: column(row, id, "schedule_time")?,
                    fire_token: column(row, id, "scheduled_key")?,
                })
            })
            .collect()
    }

    async fn with_pending_events(&self, limit: usize) -> Result<Scan<Job>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(&self.sql.with_pending_events, &[&limit]).await?;
        Ok(scan_rows(&rows))
    }

    async fn set_pending_if(
        &self,
        id: JobId,
        version: i64,
        remaining: PendingEvents,
    ) -> Result<bool, StoreError> {
        let set = self
            .execute(
                &self.sql.set_pending_if,
                &[
                    &id.bytes().as_slice(),
                    &version,
                    &remaining.create,
                    &remaining.update,
                    &remaining.run,
                    &remaining.dead_letter,
                    &remaining.delete,
                ],
            )
            .await?;
        Ok(set == 1)
    }

    async fn clear_pending_many(&self, jobs: &[(JobId, i64)]) -> Result<Vec<JobId>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let arrays = IdArrays::new(jobs);
        let (ids, versions) = (arrays.ids(), &arrays.numbers);
        let rows = self
            .query(&self.sql.clear_pending_many, &[&ids, versions])
            .await?;
        Ok(rows.iter().map(id_from_row).collect::<Result<_, _>>()?)
    }

    async fn finished_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Scan<Job>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(&self.sql.finished_before, &[&cutoff, &limit])
            .await?;
        Ok(scan_rows(&rows))
    }

    /// Its runs go with it (the foreign key cascades).
    async fn delete_if(&self, id: JobId, version: i64) -> Result<bool, StoreError> {
        let deleted = self
            .execute(&self.sql.delete_if, &[&id.bytes().as_slice(), &version])
            .await?;
        Ok(deleted == 1)
    }

    async fn running_before(&self, cutoff: DateTime<Utc>) -> Result<Scan<Job>, StoreError> {
        let rows = self.query(&self.sql.running_before, &[&cutoff]).await?;
        Ok(scan_rows(&rows))
    }
}

impl PgJobDB {
    /// The recurring jobs among `firings` still under their firing's token.
    async fn recurring_of(&self, firings: &[(JobId, i64)]) -> Result<Vec<Job>, StoreError> {
        let arrays = IdArrays::new(firings);
        let (ids, keys) = (arrays.ids(), &arrays.numbers);
        let rows = self.query(&self.sql.recurring_of, &[&ids, keys]).await?;
        jobs_from_rows(&rows)
    }

    /// Writes each job of `jobs` whose row is still at the version given
    /// with it, in one statement, and the runs those written end (`ended`,
    /// by job) in the same transaction; the ids written.
    async fn replace_many_if(
        &self,
        jobs: &[(Job, i64)],
        ended: &HashMap<JobId, Vec<Run>>,
    ) -> Result<HashSet<JobId>, StoreError> {
        let columns = JobColumns::new(jobs);
        self.in_transaction(async |tx| {
            let statement = tx
                .prepare_cached(&self.sql.replace_many_if)
                .await
                .map_err(map_err)?;
            let rows = tx
                .query(&statement, &columns.as_params())
                .await
                .map_err(map_err)?;
            let written: HashSet<JobId> = rows.iter().map(id_from_row).collect::<Result<_, _>>()?;
            let recorded: Vec<Run> = written
                .iter()
                .filter_map(|id| ended.get(id))
                .flatten()
                .cloned()
                .collect();
            runs::record(tx, &self.sql.runs, &recorded).await?;
            Ok(written)
        })
        .await
    }

    /// Claims the recurring jobs of a batch (`recurring`, read under their
    /// firing's token) after the batch statement claimed `claimed`: what
    /// [`Job::claimed`] decides for each, written in one statement, each
    /// row only if still at the version read. Those that changed meanwhile
    /// are read again and tried again, as [`claim_read`] does for one
    /// job; those whose token changed were claimed by another replica.
    pub(super) async fn claim_each_recurring(
        &self,
        mut claimed: Vec<Job>,
        recurring: Vec<Job>,
        firings: &[(JobId, i64)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, ClaimManyError> {
        let mut asked: HashSet<(JobId, i64)> = firings.iter().copied().collect();
        // A firing named twice (a stale re-arm beside the arming) is read
        // twice, and must be claimed once.
        let mut read: Vec<Job> = recurring
            .into_iter()
            .filter(|job| asked.remove(&(job.id, job.fire_token)))
            .collect();
        for _ in 0..RECURRING_ATTEMPTS {
            let tokens: HashMap<JobId, i64> =
                read.iter().map(|job| (job.id, job.fire_token)).collect();
            let now = stored_time(now);
            let mut changes = HashMap::new();
            let decided: Vec<(Job, i64)> = read
                .iter()
                .filter_map(|job| {
                    let next = job.claimed(job.fire_token, now)?;
                    changes.insert(job.id, history::changes(job, &next, None, now));
                    Some((next, job.version))
                })
                .collect();
            if decided.is_empty() {
                return Ok(claimed);
            }
            let written = match self.replace_many_if(&decided, &changes).await {
                Ok(written) => written,
                Err(error) => {
                    let failed = read.iter().map(|job| (job.id, job.fire_token)).collect();
                    return Err(ClaimManyError {
                        claimed,
                        failed,
                        error,
                    });
                }
            };
            let (won, changed): (Vec<Job>, Vec<Job>) = decided
                .into_iter()
                .map(|(job, _)| job)
                .partition(|job| written.contains(&job.id));
            claimed.extend(won);
            if changed.is_empty() {
                return Ok(claimed);
            }
            let again: Vec<(JobId, i64)> = changed
                .iter()
                .map(|job| (job.id, tokens[&job.id]))
                .collect();
            read = match self.recurring_of(&again).await {
                Ok(read) => read,
                Err(error) => {
                    return Err(ClaimManyError {
                        claimed,
                        failed: again,
                        error,
                    });
                }
            };
        }
        let failed: Vec<(JobId, i64)> = read.iter().map(|job| (job.id, job.fire_token)).collect();
        Err(ClaimManyError {
            error: StoreError::Unavailable(format!(
                "{} recurring jobs changed under their claims {RECURRING_ATTEMPTS} times in a row",
                failed.len()
            )),
            claimed,
            failed,
        })
    }
}
