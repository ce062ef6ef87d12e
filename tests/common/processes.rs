//! Real processes for the durability tests: the service binary as a child
//! (so that it can be killed with SIGKILL), and private broker and database
//! servers on free ports (so that stopping them disturbs no other test).
//! The processes themselves are test-support's, shared with the benchmarks;
//! this adds what the tests want of them: the binary built with them, its
//! log in the test's folder, a restart on a new port and a client.

use std::{
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

use scheduler_service::{config::vars, grpc::proto::jobs_service_client::JobsServiceClient};
use test_support::{ServiceChild, free_port, log_file, log_tail};
use tonic::transport::Channel;

#[allow(unused_imports)] // only the durability tests use private servers
pub use test_support::ServerProcess;

/// A folder for the logs of a test's processes, deleted when the test
/// passes and kept when it fails (its path on standard error), so that a
/// failure in CI can be read afterwards.
pub struct LogDir(Option<tempfile::TempDir>);

impl LogDir {
    /// A new, empty folder.
    pub fn fresh() -> Self {
        LogDir(Some(tempfile::tempdir().expect("temp dir")))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if let (true, Some(dir)) = (std::thread::panicking(), self.0.take()) {
            eprintln!(
                "the failed test's logs are kept in {}",
                dir.keep().display()
            );
        }
    }
}

/// The first of `service`, `service-2`, … with no log yet in `dir`.
fn free_log_name(dir: &Path) -> String {
    (1..)
        .map(|n| match n {
            1 => "service".to_owned(),
            n => format!("service-{n}"),
        })
        .find(|name| !dir.join(format!("{name}.log")).exists())
        .expect("a free name")
}

/// The service binary running as a child process.
pub struct ServiceProcess {
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    /// Its log's name, kept across restarts: `service` (`service.log`) for
    /// the first process of a folder, `service-2` for the second, and so on.
    log_name: String,
    /// Its gRPC port.
    pub port: u16,
    /// The port of its `/metrics` (a new one at each start).
    pub metrics_port: u16,
    /// The port of its HTTP API (a new one at each start).
    pub http_port: u16,
    child: Option<ServiceChild>,
}

/// Starts of a service whose port was taken between the test picking it and
/// the service binding it (any process of the machine may take a free port
/// meanwhile, an outgoing connection included).
const START_ATTEMPTS: usize = 5;

impl ServiceProcess {
    /// Starts `scheduler-service` with these variables (plus free
    /// SERVER_PORT, METRICS_PORT and HTTP_PORT) and waits until it listens.
    pub async fn start(env: &[(String, String)], log_dir: &Path) -> Self {
        let mut process = ServiceProcess {
            env: env.to_vec(),
            log_dir: log_dir.to_owned(),
            log_name: free_log_name(log_dir),
            port: 0,
            metrics_port: 0,
            http_port: 0,
            child: None,
        };
        process.restart().await;
        process
    }

    /// Starts the service (again), on new ports. A start that fails because
    /// a port was taken meanwhile is tried again on others; any other
    /// failure panics with the end of the service's log.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "service already running");
        for _ in 0..START_ATTEMPTS {
            let (metrics_port, http_port) =
                (free_port().expect("a port"), free_port().expect("a port"));
            let mut env = self.env.clone();
            env.push((vars::METRICS_PORT.to_owned(), metrics_port.to_string()));
            env.push((vars::HTTP_PORT.to_owned(), http_port.to_string()));
            env.push(("RUST_LOG".to_owned(), "info".to_owned()));
            let mut child = ServiceChild::spawn(
                Path::new(env!("CARGO_BIN_EXE_scheduler-service")),
                &env,
                log_file(&self.log_dir, &self.log_name),
                log_file(&self.log_dir, &self.log_name),
            )
            .expect("start the service binary");
            match child.wait_listening(Duration::from_secs(90)).await {
                Ok(()) => {
                    (self.port, self.metrics_port, self.http_port) =
                        (child.port, metrics_port, http_port);
                    self.child = Some(child);
                    return;
                }
                Err(failed) => {
                    let tail = log_tail(&self.log_path(), 20);
                    if !tail.contains("Address already in use") {
                        panic!("{failed}; the end of its log:\n{tail}");
                    }
                    eprintln!("{failed}: a port was taken meanwhile; starting on others");
                }
            }
        }
        panic!("no start of {START_ATTEMPTS} found its ports free");
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
        wait_for_total_metric(std::slice::from_ref(self), name, labels, least).await
    }

    /// Its log file.
    fn log_path(&self) -> PathBuf {
        self.log_dir.join(format!("{}.log", self.log_name))
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

/// The sum of the series `name{labels}` over these processes' `/metrics`.
pub async fn total_metric(
    processes: &[ServiceProcess],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let mut sum = 0.0;
    for process in processes {
        sum += process.metric(name, labels).await;
    }
    sum
}

/// Waits until the sum of the series `name{labels}` over these processes
/// is at least `least` (a bound of a minute on a hang), and returns it.
pub async fn wait_for_total_metric(
    processes: &[ServiceProcess],
    name: &str,
    labels: &[(&str, &str)],
    least: f64,
) -> f64 {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let value = total_metric(processes, name, labels).await;
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
