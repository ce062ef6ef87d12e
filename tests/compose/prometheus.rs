//! Prometheus: its scrape configuration (read from what
//! `prometheus-service/Dockerfile` copies into the image), that it scrapes
//! the scheduler's `/metrics` where the service's code would serve it with
//! the compose environment (host and port as the settings resolve them).

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::{
    compose_files::{port_pairs, read, scalar},
    dockerfile::copied_to,
    observability::PROMETHEUS,
    settings::compose_settings,
};

/// Where `prometheus-service/Dockerfile` puts the configuration (the
/// image's default path).
const PROMETHEUS_CONFIG: &str = "/etc/prometheus/prometheus.yml";
/// The Prometheus job that scrapes the scheduler.
const SCRAPE_JOB: &str = "scheduler-service";

/// The job names of `prometheus.yml`, and the file parsed.
pub fn prometheus_config() -> (Vec<String>, Value) {
    let path = copied_to("prometheus-service", PROMETHEUS_CONFIG);
    let config: Value = serde_yaml::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    let jobs = config["scrape_configs"]
        .as_sequence()
        .expect("prometheus.yml: a scrape_configs list")
        .iter()
        .map(|job| scalar(&job["job_name"]))
        .collect();
    (jobs, config)
}

/// The scheduler serves `/metrics` where other containers and the host reach
/// it, and Prometheus scrapes it there. `config` is compose's resolved
/// configuration, `s` its services.
pub fn assert_scrapes_the_scheduler(config: &Value, s: &BTreeMap<String, Value>) {
    // Where the service's code would listen, read from the container's
    // environment with its defaults: /metrics binds on the gRPC server's
    // host, which compose leaves to the code's default.
    let settings = compose_settings(config);
    let (host, metrics_port) = (settings.server.host, settings.observability.metrics_port);
    assert!(
        host.is_unspecified(),
        "scheduler-service listens on {host} only: Prometheus, in another container, \
         cannot reach its /metrics (it needs 0.0.0.0, every interface)"
    );
    assert!(
        port_pairs(&s["scheduler-service"]).contains(&(9464, metrics_port)),
        "the host does not reach /metrics on 9464: the service serves it on {metrics_port}"
    );

    // Prometheus scrapes that port of that service every 5 s.
    let (jobs, config) = prometheus_config();
    assert!(jobs.contains(&SCRAPE_JOB.to_owned()), "no job {SCRAPE_JOB}");
    let job = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .find(|job| scalar(&job["job_name"]) == SCRAPE_JOB)
        .expect("the scheduler's job");
    let interval = job
        .get("scrape_interval")
        .or_else(|| config["global"].get("scrape_interval"))
        .map(scalar);
    assert_eq!(interval.as_deref(), Some("5s"));
    assert_eq!(
        job.get("metrics_path")
            .map_or_else(|| "/metrics".to_owned(), scalar),
        "/metrics"
    );
    let targets: Vec<String> = job["static_configs"]
        .as_sequence()
        .expect("static_configs")
        .iter()
        .flat_map(|c| c["targets"].as_sequence().cloned().unwrap_or_default())
        .map(|t| scalar(&t))
        .collect();
    assert_eq!(targets.len(), 1, "one scheduler target: {targets:?}");
    let (target, port) = targets[0]
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("target {} names no port", targets[0]));
    assert_eq!(
        target, "scheduler-service",
        "prometheus.yml scrapes {target}, not the scheduler's compose service"
    );
    assert_eq!(
        port,
        metrics_port.to_string(),
        "prometheus.yml scrapes {target}:{port}, but the scheduler serves /metrics on {metrics_port}"
    );
    assert_eq!(
        s[PROMETHEUS]["depends_on"]["scheduler-service"]["condition"].as_str(),
        Some("service_started")
    );
}
