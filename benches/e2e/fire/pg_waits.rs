//! `--pg-waits`: what the service's PostgreSQL sessions were doing while the
//! jobs fired, sampled from `pg_stat_activity` every 10 ms.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use test_support::postgres_uri;

/// Samples, every 10 ms until `running` turns false, the state and wait
/// event of the PostgreSQL sessions whose last statement names `schema`
/// (the service's); returns each state's share of the samples.
pub async fn sample_pg_waits(schema: String, running: Arc<AtomicBool>) -> Vec<(String, f64)> {
    let Ok((client, connection)) =
        tokio_postgres::connect(&postgres_uri(), tokio_postgres::NoTls).await
    else {
        return Vec::new();
    };
    tokio::spawn(connection);
    let Ok(statement) = client
        .prepare(
            "SELECT coalesce(state, ''), coalesce(wait_event_type || ':' || wait_event, '') \
             FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE $1",
        )
        .await
    else {
        return Vec::new();
    };
    let pattern = format!("%\"{schema}\"%");
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    while running.load(Ordering::Relaxed) {
        if let Ok(rows) = client.query(&statement, &[&pattern]).await {
            for row in rows {
                let state: String = row.get(0);
                let wait: String = row.get(1);
                let key = if wait.is_empty() {
                    state
                } else {
                    format!("{state} ({wait})")
                };
                *counts.entry(key).or_default() += 1;
                total += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut shares: Vec<(String, f64)> = counts
        .into_iter()
        .map(|(k, n)| (k, n as f64 / total.max(1) as f64))
        .collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    shares
}
