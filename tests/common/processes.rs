//! Real processes for the durability tests: the service binary as a child
//! (so that it can be killed with SIGKILL), and private broker and database
//! servers on free ports (so that stopping them disturbs no other test).
//! The processes themselves are test-support's, shared with the benchmarks;
//! this adds what the tests want of them: the binary built with them, its
//! log in the test's folder, a restart on a new port and a client.

use std::{path::Path, path::PathBuf, process::ExitStatus, time::Duration};

use scheduler_service::{config::vars, grpc::proto::jobs_service_client::JobsServiceClient};
use test_support::{ServiceChild, free_port, log_file};
use tonic::transport::Channel;

#[allow(unused_imports)] // only the durability tests use private servers
pub use test_support::ServerProcess;

/// The service binary running as a child process.
pub struct ServiceProcess {
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    /// Its gRPC port.
    pub port: u16,
    /// The port of its `/metrics` (the same after a restart).
    pub metrics_port: u16,
    /// The port of its HTTP API (the same after a restart).
    pub http_port: u16,
    child: Option<ServiceChild>,
}

impl ServiceProcess {
    /// Starts `scheduler-service` with these variables (plus a free
    /// SERVER_PORT, METRICS_PORT and HTTP_PORT) and waits until it listens.
    pub async fn start(env: &[(String, String)], log_dir: &Path) -> Self {
        let metrics_port = free_port().expect("a free port");
        let mut env = env.to_vec();
        env.push((vars::METRICS_PORT.to_owned(), metrics_port.to_string()));
        let http_port = free_port().expect("a free port");
        env.push((vars::HTTP_PORT.to_owned(), http_port.to_string()));
        let mut process = ServiceProcess {
            env,
            log_dir: log_dir.to_owned(),
            port: 0,
            metrics_port,
            http_port,
            child: None,
        };
        process.restart().await;
        process
    }

    /// Starts the service (again), on a new port.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "service already running");
        let mut env = self.env.clone();
        env.push(("RUST_LOG".to_owned(), "info".to_owned()));
        let mut child = ServiceChild::spawn(
            Path::new(env!("CARGO_BIN_EXE_scheduler-service")),
            &env,
            log_file(&self.log_dir, "service"),
            log_file(&self.log_dir, "service"),
        )
        .expect("start the service binary");
        child
            .wait_listening(Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        self.port = child.port;
        self.child = Some(child);
    }

    /// A gRPC client of this process.
    pub async fn client(&self) -> JobsServiceClient<Channel> {
        JobsServiceClient::connect(format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("connect to the service")
    }

    /// The value of the series `name{labels}` on its `/metrics`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        super::metric_value(
            &super::scrape_metrics(self.metrics_port).await,
            name,
            labels,
        )
    }

    /// Waits until the series `name{labels}` is at least `least` (a bound
    /// of a minute on a hang).
    pub async fn wait_for_metric(&self, name: &str, labels: &[(&str, &str)], least: f64) -> f64 {
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let value = self.metric(name, labels).await;
                if value >= least {
                    return value;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        waited
            .await
            .unwrap_or_else(|_| panic!("{name}{labels:?} never reached {least}"))
    }

    /// SIGKILL: the process dies at once, mid-whatever.
    pub fn kill_9(&mut self) {
        self.child = None;
    }

    /// SIGTERM, then waits for the exit status (SIGKILL after a minute).
    /// The wait blocks a thread, so it runs beside the test's runtime, not
    /// on it: what the test serves in-process (a network link, a trace
    /// collector) keeps answering while the service stops.
    pub async fn terminate(&mut self) -> ExitStatus {
        let child = self.child.take().expect("running");
        tokio::task::spawn_blocking(move || child.terminate(Duration::from_secs(60)))
            .await
            .expect("the wait for the service's exit")
            .expect("exit status")
    }
}
