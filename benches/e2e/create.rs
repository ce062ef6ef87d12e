//! Part 1, CreateJob load: `--requests` calls, `--concurrency` in flight over
//! `--connections` connections, jobs due a day later so that nothing fires,
//! on each of `--stores`. Reports calls per second, latency p50/p99/max, the
//! service's CPU time and peak RSS, and the create events on the topic;
//! with `--plot`, the chart of calls per second and p99 latency per store.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use scheduler_service::config::vars;
use test_support::unique;

use crate::{
    accounting::{CpuUse, cpu_by_group},
    args::{Options, Store},
    load::{DueMs, create_load, topic_events},
    report::{joined_notes, ms, print_cpu_table, store_color, write_chart},
    service::{Service, drop_namespace, service_env, var},
    support::{
        now_us,
        plot::{Bar, BarChart, Panel, count},
        proc::load_average,
        stats::{Latencies, median, median_of_some},
    },
};

#[derive(Debug, Clone)]
struct CreateOutcome {
    store: Store,
    ok: usize,
    errors: usize,
    secs: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    events: Option<i64>,
    cpu_s: f64,
    peak_rss_mb: f64,
    load: f64,
    note: String,
    run: usize,
    cpu_use: Option<CpuUse>,
}

impl CreateOutcome {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }
}

const CREATE_HEADER: &str = "| store | concurrency | calls ok | errors | time (s) | calls per s | p50 (ms) | p99 (ms) | max (ms) | create events | service CPU (s) | service peak RSS (MB) | load | note |\n\
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

fn create_row(c: &CreateOutcome, concurrency: usize, note: &str) -> String {
    format!(
        "| {} | {} | {} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {:.2} | {:.1} | {:.2} | {} |",
        c.store.name(),
        concurrency,
        c.ok,
        c.errors,
        c.secs,
        c.rate(),
        ms(c.p50_ms),
        ms(c.p99_ms),
        ms(c.max_ms),
        c.events.map_or_else(|| "–".into(), |e| e.to_string()),
        c.cpu_s,
        c.peak_rss_mb,
        c.load,
        joined_notes([note, &c.note])
    )
}

/// Runs the part and prints its tables; false if a call failed.
pub async fn create_part(o: &Options) -> bool {
    println!(
        "\n## CreateJob load ({} calls, {} in flight over {} connections, jobs due in a day)\n\n{CREATE_HEADER}",
        o.requests, o.concurrency, o.connections
    );
    let mut results: Vec<CreateOutcome> = Vec::new();
    let mut ok = true;
    for run in 0..o.runs {
        for &store in &o.stores {
            match create_run(o, store, run + 1).await {
                Ok(outcome) => {
                    println!(
                        "{}",
                        create_row(&outcome, o.concurrency, &format!("run {}", run + 1))
                    );
                    if outcome.errors > 0 || outcome.ok == 0 {
                        ok = false;
                    }
                    results.push(outcome);
                }
                Err(err) => {
                    ok = false;
                    println!("| {} | (run {} failed: {err}) |", store.name(), run + 1);
                }
            }
        }
    }
    println!("\n### Medians of {} run(s)\n\n{CREATE_HEADER}", o.runs);
    for &store in &o.stores {
        let runs: Vec<&CreateOutcome> = results.iter().filter(|r| r.store == store).collect();
        if !runs.is_empty() {
            let m = median_outcome(store, &runs);
            let note = format!("median of {}", runs.len());
            println!("{}", create_row(&m, o.concurrency, &note));
        }
    }
    print_cpu_table(
        "CPU time by process while the calls ran (s)",
        results
            .iter()
            .filter_map(|r| Some((r.store.name().to_owned(), r.run, r.cpu_use.as_ref()?))),
    );
    if let Some(dir) = &o.plot {
        ok &= write_chart(dir, "e2e-create-throughput.svg", |path| {
            chart(o, &results).write(path)
        });
    }
    ok
}

/// The chart of `--plot`: calls per second and p99 latency per store
/// (medians as bars, each run a dot).
fn chart(o: &Options, results: &[CreateOutcome]) -> BarChart {
    let bars = |figure: fn(&CreateOutcome) -> Option<f64>| -> Vec<Bar> {
        o.stores
            .iter()
            .filter_map(|&store| {
                let runs: Vec<f64> = results
                    .iter()
                    .filter(|r| r.store == store)
                    .filter_map(figure)
                    .collect();
                (!runs.is_empty()).then(|| Bar {
                    label: store.name().into(),
                    color: store_color(store),
                    value: median(runs.clone()),
                    runs,
                })
            })
            .collect()
    };
    BarChart {
        title: format!(
            "CreateJob, {} calls, {} in flight over {} connections",
            count(o.requests),
            o.concurrency,
            o.connections
        ),
        note: format!(
            "Bars: medians of {} run(s), dots: each run. Jobs due a day later: nothing fires.",
            o.runs
        ),
        panels: vec![
            Panel {
                title: "calls per second".into(),
                bars: bars(|r| Some(r.rate())),
            },
            Panel {
                title: "call latency p99 (ms)".into(),
                bars: bars(|r| r.p99_ms),
            },
        ],
    }
}

/// The median of each figure of `runs` on its own.
fn median_outcome(store: Store, runs: &[&CreateOutcome]) -> CreateOutcome {
    let f = |g: fn(&CreateOutcome) -> f64| median(runs.iter().map(|r| g(r)).collect());
    let u = |g: fn(&CreateOutcome) -> usize| median(runs.iter().map(|r| g(r)).collect());
    CreateOutcome {
        store,
        ok: u(|r| r.ok),
        errors: u(|r| r.errors),
        // The median rate, as a time for the median count.
        secs: u(|r| r.ok) as f64 / f(CreateOutcome::rate),
        p50_ms: median_of_some(runs.iter().map(|r| r.p50_ms).collect()),
        p99_ms: median_of_some(runs.iter().map(|r| r.p99_ms).collect()),
        max_ms: median_of_some(runs.iter().map(|r| r.max_ms).collect()),
        events: Some(median(
            runs.iter().map(|r| r.events.unwrap_or(-1)).collect(),
        ))
        .filter(|&e| e >= 0),
        cpu_s: f(|r| r.cpu_s),
        peak_rss_mb: f(|r| r.peak_rss_mb),
        load: f(|r| r.load),
        note: String::new(),
        run: 0,
        cpu_use: None,
    }
}

async fn create_run(o: &Options, store: Store, run: usize) -> Result<CreateOutcome, String> {
    let load_avg = load_average();
    let namespace = format!("e2e_{}", unique());
    let env = service_env(o, store, &namespace);
    let name = format!("create-{}", store.name());
    let (service, _) = Service::start(&o.service_bin, &env, &name).await?;
    let clients = service.clients(o.connections).await;
    let far = now_us() / 1000 + 24 * 3600 * 1000;
    let due: DueMs = Arc::new(move |_| far);
    // Warm-up: connections, prepared statements, the producer's connection.
    let warmup = (o.requests / 10).clamp(1, 100);
    let w = create_load(&clients, warmup, o.concurrency, None, due.clone()).await;
    if w.errors > 0 {
        eprintln!(
            "create {}: {} warm-up errors: {:?}",
            store.name(),
            w.errors,
            w.first_error
        );
    }
    let cpu_before = service.cpu_seconds();
    let groups_before = cpu_by_group();
    let deadline = Instant::now() + Duration::from_secs_f64(o.max_secs);
    let load = create_load(&clients, o.requests, o.concurrency, Some(deadline), due).await;
    let cpu = service.cpu_seconds() - cpu_before;
    let cpu_use = CpuUse::between(&groups_before, &cpu_by_group(), load.elapsed);
    let peak_rss_mb = service.peak_rss_mb();
    let events = topic_events(var(&env, vars::TOPIC_JOB_CREATE));
    let (warnings, first) = service.warnings();
    service.stop().await;
    drop_namespace(store, &namespace).await;
    let ok = load.latencies_us.len();
    let mut notes = Vec::new();
    if ok + load.errors < o.requests {
        notes.push(format!(
            "stopped after {} s: {} of {} calls",
            o.max_secs,
            ok + load.errors,
            o.requests
        ));
    }
    if let Some(err) = &load.first_error {
        notes.push(format!("first error: {err}"));
    }
    if let Some((events, jobs)) = events
        && events != jobs
    {
        notes.push(format!("{} duplicate create events", events - jobs));
    }
    if warnings > 0 {
        notes.push(format!("{warnings} service warnings, first: {first:?}"));
    }
    let latency = Latencies::of_us(load.latencies_us.iter().copied()).map(|l| l.percentiles());
    Ok(CreateOutcome {
        store,
        ok,
        errors: load.errors,
        secs: load.elapsed.as_secs_f64(),
        p50_ms: latency.map(|p| p.p50_ms),
        p99_ms: latency.map(|p| p.p99_ms),
        max_ms: latency.map(|p| p.max_ms),
        // Warm-up calls published create events too.
        events: events.map(|(e, _)| e as i64 - (warmup - w.errors) as i64),
        cpu_s: cpu,
        peak_rss_mb,
        load: load_avg,
        note: notes.join("; "),
        run,
        cpu_use: Some(cpu_use),
    })
}
