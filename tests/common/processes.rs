//! Real processes for the durability tests: the service binary as a child
//! (so that it can be killed with SIGKILL), and private broker and database
//! servers on free ports (so that stopping them disturbs no other test).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A free TCP port on loopback (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on {port}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not listen on port {port} within 30 s");
}

/// Where `scripts/services.sh` installs `program` (cargo's bin folder), or
/// the bare name, to be found on PATH.
fn installed(program: &str) -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    cargo_home
        .map(|home| home.join("bin").join(program))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// A server we can stop and start again on the same port and data.
pub struct ServerProcess {
    name: &'static str,
    program: &'static str,
    args: Vec<String>,
    dir: PathBuf,
    /// Its port.
    pub port: u16,
    child: Option<Child>,
}

impl ServerProcess {
    /// A Kafka-protocol broker (tansu) storing in SQLite under `dir`, so that
    /// its data survives a restart.
    pub async fn kafka(dir: &Path) -> Self {
        let port = free_port();
        std::fs::create_dir_all(dir.join("kafka")).expect("kafka dir");
        let url = format!("tcp://127.0.0.1:{port}");
        Self::start(
            "kafka",
            "tansu",
            vec![
                "broker".into(),
                "--listener-url".into(),
                url.clone(),
                "--advertised-listener-url".into(),
                url,
                "--storage-engine".into(),
                "sqlite://kafka/tansu.db".into(),
            ],
            dir,
            port,
        )
        .await
    }

    /// A MongoDB-protocol server (polodb) storing under `dir`.
    pub async fn mongodb(dir: &Path) -> Self {
        let port = free_port();
        let path = dir.join("mongodb");
        Self::start(
            "mongodb",
            "polodb",
            vec![
                "serve".into(),
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--path".into(),
                path.to_string_lossy().into_owned(),
            ],
            dir,
            port,
        )
        .await
    }

    async fn start(
        name: &'static str,
        program: &'static str,
        args: Vec<String>,
        dir: &Path,
        port: u16,
    ) -> Self {
        let mut server = ServerProcess {
            name,
            program,
            args,
            dir: dir.to_owned(),
            port,
            child: None,
        };
        server.restart().await;
        server
    }

    /// Starts the server (again) and waits until it listens.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let mut child = Command::new(installed(self.program))
            .args(&self.args)
            .current_dir(&self.dir)
            .stdout(log_file(&self.dir, self.name))
            .stderr(log_file(&self.dir, self.name))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (run scripts/services.sh install): {e}",
                    self.program
                )
            });
        wait_for_port(self.port, self.name, &mut child).await;
        self.child = Some(child);
    }

    /// Kills the server with SIGKILL and waits for it to die.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The service binary running as a child process.
pub struct ServiceProcess {
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    /// Its gRPC port.
    pub port: u16,
    child: Option<Child>,
}

impl ServiceProcess {
    /// Starts `scheduler-service` with these variables (plus a free
    /// SERVER_PORT, and METRICS_PORT 0 unless given) and waits until it listens.
    pub async fn start(env: &[(String, String)], log_dir: &Path) -> Self {
        let mut process = ServiceProcess {
            env: env.to_vec(),
            log_dir: log_dir.to_owned(),
            port: 0,
            child: None,
        };
        process.restart().await;
        process
    }

    /// Starts the service (again), on a new port.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "service already running");
        self.port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_scheduler-service"))
            // A free metrics port unless the test picks one: children run side by side.
            .env("METRICS_PORT", "0")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("SERVER_HOST", "127.0.0.1")
            .env("SERVER_PORT", self.port.to_string())
            .env("RUST_LOG", "info")
            .stdout(log_file(&self.log_dir, "service"))
            .stderr(log_file(&self.log_dir, "service"))
            .spawn()
            .expect("start the service binary");
        wait_for_port(self.port, "scheduler-service", &mut child).await;
        self.child = Some(child);
    }

    /// A gRPC client of this process.
    pub async fn client(
        &self,
    ) -> scheduler_service::grpc::proto::jobs_service_client::JobsServiceClient<
        tonic::transport::Channel,
    > {
        scheduler_service::grpc::proto::jobs_service_client::JobsServiceClient::connect(format!(
            "http://127.0.0.1:{}",
            self.port
        ))
        .await
        .expect("connect to the service")
    }

    /// SIGKILL: the process dies at once, mid-whatever.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().expect("exit status")
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}
