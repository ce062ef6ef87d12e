//! Part 7, the web console's pages on a large store. On each of
//! `--console-stores` (PostgreSQL and the embedded store), `--console-jobs`
//! jobs go into a fresh schema or folder through the store API (owing no
//! event), a mix that the console's filters tell apart: one-shot jobs, most
//! of them email, most due over the next six hours, some SUCCEEDED, FAILED
//! or RUNNING; a tenth recurring (daily cron or every six hours, each next
//! due 30 minutes ahead or later, so that nothing fires while measured), a
//! few hundred of them paused; one name in 97 contains [`NAME_TEXT`]. The
//! service binary then starts on it, and each console page's HTTP requests
//! are made as `console/app.js` makes them: those a page awaits together are
//! issued at once, and the page's wait is the time until the last answer
//! (a job's page reads the job, then its schedule preview and its runs
//! together). Each page once as a warm-up, then [`REPEATS`] times (smoke
//! [`SMOKE_REPEATS`]), page after page: p50 and max of the wait. Every
//! answer must be 200 and agree with the set: its counts are what the
//! domain's `JobFilter` admits of the inserted jobs.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Timelike, Utc};
use reqwest::StatusCode;
use scheduler_service::{
    config::vars,
    domain::{
        Job, JobFilter, JobId, JobSpec, JobStatus, JobTally, JobType, PendingEvents, ScheduleKind,
        now,
        recurrence::{CatchUp, Overlap, RecurrenceSpec},
    },
    http::model,
};
use test_support::{free_port, unique};

use crate::{
    args::{Options, Store},
    load::JOB_DATA,
    service::{Service, drop_namespace, fill_store, service_env, set},
    support::stats::{Latencies, median},
};

/// Timed visits of each page, after its warm-up.
const REPEATS: usize = 10;
/// The same in the smoke run.
const SMOKE_REPEATS: usize = 2;
/// What the name search looks for: in the names of one job in 97.
const NAME_TEXT: &str = "audit";
/// The job whose page is visited: a daily cron job, not paused.
const PICKED: usize = 5;
/// The other names, each followed by the job's number.
const NAMES: [&str; 8] = [
    "welcome email",
    "invoice reminder",
    "password reset",
    "weekly digest",
    "order shipped",
    "trial ending",
    "payment receipt",
    "renewal notice",
];
/// Items on a page of the jobs list (the console's default).
const LIST_SIZE: u64 = 20;

const HEADER: &str = "| page | requests | warm-up (ms) | p50 (ms) | max (ms) | slowest request (its p50, ms) |\n\
|---|---|---:|---:|---:|---|";

/// Runs the part on each store and prints its tables; false if a job was
/// not stored, or an answer was not 200 or disagreed with the set.
pub async fn console_part(o: &Options) -> bool {
    let mut ok = true;
    for &store in &o.console_stores {
        ok &= console_of(o, store).await;
    }
    ok
}

/// The jobs inserted: job `i` of `jobs` is [`ConsoleSet::job`]`(i)`.
struct ConsoleSet {
    jobs: usize,
    now: DateTime<Utc>,
    picked: JobId,
}

/// Where `i` falls in `span`: spread over it, not in order.
fn offset(i: usize, span: TimeDelta) -> TimeDelta {
    let span_ms = span.num_milliseconds().max(1);
    TimeDelta::milliseconds((i as i64).wrapping_mul(7_919_003).rem_euclid(span_ms))
}

impl ConsoleSet {
    /// Job `i`: recurring when `i % 10 == 5` (daily cron when `i % 20 == 5`,
    /// every six hours otherwise; paused when `i % 330 == 15`); otherwise
    /// SUCCEEDED when `i % 100 < 5`, FAILED when `i % 100 == 7`, RUNNING
    /// when `i % 1000` is 8, 18 or 28 (each due in the last six hours),
    /// else SCHEDULED, due 30 minutes to 6.5 hours ahead. SMS when
    /// `i % 7 == 3`.
    fn job(&self, i: usize) -> Job {
        let (now, minutes, hours) = (self.now, TimeDelta::minutes, TimeDelta::hours);
        let name = if i % 97 == 42 {
            format!("quarterly {NAME_TEXT} {i}")
        } else {
            format!("{} {i}", NAMES[i % NAMES.len()])
        };
        let spec = JobSpec {
            name,
            description: "console benchmark".into(),
            schedule_time: now,
            job_type: if i % 7 == 3 {
                JobType::Sms
            } else {
                JobType::Email
            },
            job_data: JOB_DATA.into(),
        };
        let new = Job {
            id: if i == PICKED {
                self.picked
            } else {
                JobId::new()
            },
            ..Job::new_scheduled(spec, now)
        };
        let past = now - minutes(1) - offset(i, hours(6));
        let job = if i % 10 == 5 {
            let timing = if i % 20 == 5 {
                let at = now + minutes(30) + offset(i, hours(23));
                format!("cron expr={} {} * * *", at.minute(), at.hour())
            } else {
                let next = now + minutes(30) + offset(i, hours(6) - minutes(30));
                let anchor = (next - hours(6)).to_rfc3339_opts(SecondsFormat::Secs, true);
                format!("interval every=21600s anchor={anchor}")
            };
            let recurrence = RecurrenceSpec {
                timing: timing.parse().expect("a valid timing"),
                catch_up: CatchUp::default(),
                overlap: Overlap::Skip,
            };
            let job = new
                .with_recurrence(recurrence, now)
                .expect("a schedule with occurrences");
            if i % 330 == 15 {
                job.with_paused(true, now).expect("a recurring job")
            } else {
                job
            }
        } else if i % 100 < 5 || i % 100 == 7 || [8, 18, 28].contains(&(i % 1000)) {
            let status = match i % 100 {
                0..5 => JobStatus::Succeeded,
                7 => JobStatus::Failed,
                _ => JobStatus::Running,
            };
            Job {
                status,
                spec: JobSpec {
                    schedule_time: past,
                    ..new.spec
                },
                ..new
            }
        } else {
            let due = now + minutes(30) + offset(i, hours(6));
            Job {
                spec: JobSpec {
                    schedule_time: due,
                    ..new.spec
                },
                ..new
            }
        };
        // As a job whose events were delivered long ago.
        Job {
            pending: PendingEvents::NONE,
            ..job
        }
    }

    /// The jobs counted by facet, as `GET /v1/stats/jobs` must count them.
    fn tally(&self) -> JobTally {
        let mut tally = JobTally::default();
        for i in 0..self.jobs {
            tally.add(&self.job(i));
        }
        tally
    }

    /// How many of the jobs each filter admits.
    fn counts(&self, filters: &[JobFilter]) -> Vec<u64> {
        let mut counts = vec![0; filters.len()];
        for i in 0..self.jobs {
            let job = self.job(i);
            for (count, filter) in counts.iter_mut().zip(filters) {
                *count += u64::from(filter.admits(&job));
            }
        }
        counts
    }
}

/// A request of `GET /v1/jobs`: its filters, size and page, its query in
/// the order the console writes it.
#[derive(Debug, Clone, Default)]
struct Listing {
    status: Option<JobStatus>,
    job_type: Option<JobType>,
    kind: Option<ScheduleKind>,
    paused: Option<bool>,
    name: Option<&'static str>,
    size: u64,
    page: Option<u64>,
}

impl Listing {
    fn sized(size: u64) -> Listing {
        Listing {
            size,
            ..Listing::default()
        }
    }

    fn path(&self) -> String {
        let mut query = Vec::new();
        if let Some(status) = self.status {
            let word = model::JobStatus::of(status.as_i32()).word();
            query.push(format!("status={word}"));
        }
        if let Some(job_type) = self.job_type {
            let word = model::JobType::of(job_type.as_i32()).word();
            query.push(format!("job_type={word}"));
        }
        if let Some(kind) = self.kind {
            let word = match kind {
                ScheduleKind::Once => "once",
                ScheduleKind::Recurring => "recurring",
            };
            query.push(format!("schedule_kind={word}"));
        }
        if let Some(paused) = self.paused {
            query.push(format!("paused={paused}"));
        }
        if let Some(name) = self.name {
            query.push(format!("name_contains={name}"));
        }
        query.push(format!("size={}", self.size));
        if let Some(page) = self.page {
            query.push(format!("page={page}"));
        }
        format!("/v1/jobs?{}", query.join("&"))
    }

    fn filter(&self) -> JobFilter {
        let name = self.name.map(str::to_owned);
        JobFilter::new(self.status, self.job_type, self.kind, self.paused, name)
            .expect("a valid filter")
    }
}

/// What an answer must say.
#[derive(Debug)]
enum Expect {
    /// A page of jobs: its number, and `total` jobs in all, `size` a page.
    Jobs { total: u64, page: u64, size: u64 },
    /// The last hour's firings, by minute.
    Firings,
    /// The jobs counted by facet.
    Counts(JobTally),
    /// The job of this id.
    Job(String),
    /// This many occurrences.
    Preview(usize),
    /// The first page of a job that has not run.
    NoRuns,
}

impl Expect {
    fn check(&self, body: &[u8]) -> Result<(), String> {
        fn parse<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
            serde_json::from_slice(body).map_err(|e| format!("unexpected answer: {e}"))
        }
        let agrees = match self {
            Expect::Jobs { total, page, size } => {
                let listed: model::JobsPage = parse(body)?;
                let len = total.saturating_sub((page - 1) * size).min(*size);
                let agrees = u64::try_from(listed.total_count) == Ok(*total)
                    && u64::try_from(listed.page) == Ok(*page)
                    && listed.jobs.len() as u64 == len
                    && listed.has_more == (page * size < *total);
                if !agrees {
                    return Err(format!(
                        "{} jobs listed of {} on page {}, expected {len} of {total} on page {page}",
                        listed.jobs.len(),
                        listed.total_count,
                        listed.page
                    ));
                }
                true
            }
            Expect::Firings => parse::<model::Firings>(body)?.minutes.len() == 60,
            Expect::Counts(tally) => {
                let counts: model::JobCounts = parse(body)?;
                let n = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
                let (status, kind) = (&counts.by_status, &counts.by_type);
                [
                    counts.total,
                    status.scheduled,
                    status.running,
                    status.succeeded,
                ] == [
                    n(tally.total),
                    n(tally.scheduled),
                    n(tally.running),
                    n(tally.succeeded),
                ] && [
                    status.failed,
                    kind.email,
                    kind.sms,
                    counts.recurring,
                    counts.paused,
                ] == [
                    n(tally.failed),
                    n(tally.email),
                    n(tally.sms),
                    n(tally.recurring),
                    n(tally.paused),
                ]
            }
            Expect::Job(id) => {
                let job: model::Job = parse(body)?;
                job.id == *id && job.recurrence.is_some() && !job.paused
            }
            Expect::Preview(count) => parse::<model::Preview>(body)?.occurrences.len() == *count,
            Expect::NoRuns => {
                let runs: model::RunsPage = parse(body)?;
                runs.total_count == 0 && runs.page == 1 && runs.runs.is_empty()
            }
        };
        if agrees {
            Ok(())
        } else {
            Err(format!("expected {self:?}, got {}", excerpt(body)))
        }
    }
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
}

/// One request of a page and what its answer must say.
struct Call {
    /// The body of a POST; a GET without.
    body: Option<serde_json::Value>,
    path: String,
    expect: Expect,
}

impl Call {
    fn get(path: String, expect: Expect) -> Call {
        Call {
            body: None,
            path,
            expect,
        }
    }

    fn list(listing: Listing, total: u64) -> Call {
        let expect = Expect::Jobs {
            total,
            page: listing.page.unwrap_or(1),
            size: listing.size,
        };
        Call::get(listing.path(), expect)
    }

    fn label(&self) -> String {
        let method = if self.body.is_some() { "POST" } else { "GET" };
        format!("{method} {}", self.path)
    }
}

/// A console page: its requests, in steps; a step's requests go at once,
/// the next step once they have all answered.
struct Page {
    name: String,
    steps: Vec<Vec<Call>>,
}

impl Page {
    fn requests(&self) -> String {
        let sizes: Vec<String> = self.steps.iter().map(|s| s.len().to_string()).collect();
        sizes.join(" then ")
    }
}

/// The pages, their requests as `console/app.js` makes them, and the
/// answers the set makes right.
fn pages(stored: &ConsoleSet) -> Vec<Page> {
    use JobStatus::{Failed, Running, Scheduled};
    // viewOverview: showCounts, showFirings, showUpcoming and showAttention.
    let overview = [
        Listing {
            status: Some(Scheduled),
            paused: Some(false),
            ..Listing::sized(100)
        },
        Listing {
            status: Some(Failed),
            ..Listing::sized(10)
        },
        Listing {
            status: Some(Running),
            ..Listing::sized(100)
        },
    ];
    // viewJobs: the form's fields, then the page.
    let first = Listing {
        page: Some(1),
        ..Listing::sized(LIST_SIZE)
    };
    let last_page = (stored.jobs as u64).div_ceil(LIST_SIZE).max(1);
    let lists = [
        ("jobs list, first page".to_owned(), first.clone()),
        (
            format!("jobs list, last page ({last_page})"),
            Listing {
                page: Some(last_page),
                ..first.clone()
            },
        ),
        (
            format!("jobs list, name contains \"{NAME_TEXT}\""),
            Listing {
                name: Some(NAME_TEXT),
                ..first.clone()
            },
        ),
        (
            "jobs list, recurring and paused".to_owned(),
            Listing {
                kind: Some(ScheduleKind::Recurring),
                paused: Some(true),
                ..first
            },
        ),
    ];
    let filters: Vec<JobFilter> = overview
        .iter()
        .chain(lists.iter().map(|(_, l)| l))
        .map(Listing::filter)
        .collect();
    let mut totals = stored.counts(&filters).into_iter();
    let mut total = || totals.next().expect("a count per listing");
    let mut overview: Vec<Call> = overview
        .into_iter()
        .map(|l| Call::list(l, total()))
        .collect();
    overview.insert(
        0,
        Call::get("/v1/stats/jobs".into(), Expect::Counts(stored.tally())),
    );
    overview.insert(1, Call::get("/v1/stats/firings".into(), Expect::Firings));
    let mut pages = vec![Page {
        name: "overview".into(),
        steps: vec![overview],
    }];
    for (name, listing) in lists {
        pages.push(Page {
            name,
            steps: vec![vec![Call::list(listing, total())]],
        });
    }
    // viewJob: the job, then showSchedule and showRuns together.
    let id = stored.picked.to_hex();
    pages.push(Page {
        name: "job (daily cron)".into(),
        steps: vec![
            vec![Call::get(format!("/v1/jobs/{id}"), Expect::Job(id.clone()))],
            vec![
                Call {
                    body: Some(serde_json::json!({ "id": id, "count": 10 })),
                    path: "/v1/preview".into(),
                    expect: Expect::Preview(10),
                },
                Call::get(format!("/v1/jobs/{id}/runs?page=1&size=20"), Expect::NoRuns),
            ],
        ],
    });
    pages
}

/// A page's wait, and each of its requests' time (ms).
struct Visit {
    wait_ms: f64,
    calls_ms: Vec<f64>,
}

/// The console's client: keep-alive connections, as a browser keeps them.
struct Browser {
    client: reqwest::Client,
    base: String,
}

impl Browser {
    /// Of the service's HTTP port; an answer awaited a minute at most.
    fn on(port: u16) -> Result<Browser, String> {
        let base = format!("http://127.0.0.1:{port}");
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map(|client| Browser { client, base })
            .map_err(|e| e.to_string())
    }

    /// Makes a call, reads its answer and checks it; its time (ms).
    async fn call(&self, call: &Call) -> Result<f64, String> {
        let url = format!("{}{}", self.base, call.path);
        let request = match &call.body {
            Some(body) => self.client.post(url).json(body),
            None => self.client.get(url),
        };
        let start = Instant::now();
        let failed = |e: reqwest::Error| format!("{}: {e}", call.label());
        let answer = request.send().await.map_err(failed)?;
        let status = answer.status();
        let body = answer.bytes().await.map_err(failed)?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if status != StatusCode::OK {
            return Err(format!("{}: {status}: {}", call.label(), excerpt(&body)));
        }
        call.expect
            .check(&body)
            .map_err(|e| format!("{}: {e}", call.label()))?;
        Ok(ms)
    }

    /// Visits a page: each step's requests at once, step after step.
    async fn visit(&self, page: &Page) -> Result<Visit, String> {
        let start = Instant::now();
        let mut calls_ms = Vec::new();
        for step in &page.steps {
            let answers = futures::future::join_all(step.iter().map(|c| self.call(c))).await;
            for ms in answers {
                calls_ms.push(ms?);
            }
        }
        Ok(Visit {
            wait_ms: start.elapsed().as_secs_f64() * 1000.0,
            calls_ms,
        })
    }
}

/// A page's row: its warm-up, p50 and max of the timed visits, and the
/// request with the highest median time.
fn row(page: &Page, warm_up: &Visit, visits: &[Visit]) -> String {
    let waits = Latencies::of_us(visits.iter().map(|v| (v.wait_ms * 1000.0) as i64))
        .map(|l| l.percentiles());
    let calls: Vec<&Call> = page.steps.iter().flatten().collect();
    let slowest = (0..calls.len())
        .map(|k| (k, median(visits.iter().map(|v| v.calls_ms[k]).collect())))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    format!(
        "| {} | {} | {:.1} | {:.1} | {:.1} | {} |",
        page.name,
        page.requests(),
        warm_up.wait_ms,
        waits.map_or(f64::NAN, |p| p.p50_ms),
        waits.map_or(f64::NAN, |p| p.max_ms),
        slowest.map_or_else(String::new, |(k, ms)| format!(
            "`{}` ({ms:.1})",
            calls[k].label()
        ))
    )
}

async fn console_of(o: &Options, store: Store) -> bool {
    let title = match store {
        Store::Embedded => "embedded store",
        Store::Postgres => "PostgreSQL",
        Store::MongoDb => "MongoDB-protocol server",
    };
    let schema = format!("e2e_console_{}", unique());
    let stored = ConsoleSet {
        jobs: o.console_jobs,
        now: now(),
        picked: JobId::new(),
    };
    let label = format!("console ({title})");
    let filled = fill_store(store, &schema, stored.jobs, &label, |i| stored.job(i)).await;
    let ok = match filled {
        Ok((inserted, elapsed)) => {
            println!(
                "\n## Console pages ({title}, {inserted} of {} jobs inserted in {:.1} s)\n",
                stored.jobs,
                elapsed.as_secs_f64()
            );
            inserted == stored.jobs && visit_pages(o, store, &schema, &stored).await
        }
        Err(err) => {
            println!("\n## Console pages ({title}): {err}");
            false
        }
    };
    drop_namespace(store, &schema).await;
    ok
}

/// Starts the service on the filled `schema` and visits each page; prints
/// the table.
async fn visit_pages(o: &Options, store: Store, schema: &str, stored: &ConsoleSet) -> bool {
    let pages = pages(stored);
    println!("The set's counts: {:?}.\n", stored.tally());
    let repeats = if o.smoke { SMOKE_REPEATS } else { REPEATS };
    let mut env = service_env(o, store, schema);
    let port = match free_port() {
        Ok(port) => port,
        Err(err) => {
            println!("(no free port: {err})");
            return false;
        }
    };
    set(&mut env, vars::HTTP_PORT, port);
    // The RUNNING jobs stay so while measured.
    set(&mut env, vars::SCHEDULER_RUN_TIMEOUT_SECS, 86_400);
    let started = Service::start(&o.service_bin, &env, "console").await;
    let browser = Browser::on(port);
    let (service, browser) = match (started, browser) {
        (Ok((service, _)), Ok(browser)) => (service, browser),
        (Err(err), _) | (_, Err(err)) => {
            println!("(the service did not start: {err})");
            return false;
        }
    };
    println!(
        "Each page once as a warm-up, then {repeats} times; its wait, until its last answer:\n\n{HEADER}"
    );
    let mut ok = true;
    for page in &pages {
        eprintln!("console ({}): {}", store.name(), page.name);
        let visited = async {
            let warm_up = browser.visit(page).await?;
            let mut visits = Vec::new();
            for _ in 0..repeats {
                visits.push(browser.visit(page).await?);
            }
            Ok::<_, String>((warm_up, visits))
        };
        match visited.await {
            Ok((warm_up, visits)) => println!("{}", row(page, &warm_up, &visits)),
            Err(err) => {
                ok = false;
                println!("| {} | {} | (failed: {err}) |", page.name, page.requests());
            }
        }
    }
    let (warnings, first) = service.warnings();
    if warnings > 0 {
        println!("\n{warnings} service warnings, first: {first:?}");
    }
    service.stop().await;
    ok
}
