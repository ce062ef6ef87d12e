//! Private broker and database servers for the durability and transport
//! tests: tansu (a Kafka-protocol broker, also one that requires SASL SCRAM) and
//! polodb (a MongoDB-protocol server) on free ports, storing under a test's
//! folder, so that a test can kill one and start it again on the same port
//! and data without disturbing any other test. `scripts/services.sh install` puts both binaries in cargo's bin
//! folder.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::child::{ChildProcess, free_port, log_file, wait_for_port};

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

/// A server we can stop and start again on the same port and data.
pub struct ServerProcess {
    name: &'static str,
    program: &'static str,
    args: Vec<String>,
    dir: PathBuf,
    /// Its port.
    pub port: u16,
    child: Option<ChildProcess>,
}

impl ServerProcess {
    /// A Kafka-protocol broker (tansu) storing in SQLite under `dir`, so that
    /// its data survives a restart.
    pub async fn kafka(dir: &Path) -> Self {
        let port = free_port().expect("a free port");
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

    /// A Kafka-protocol broker (tansu) on `port`, keeping its data in
    /// memory, which tells its clients to reach it at `advertised` (a
    /// [`crate::Link`] in front of it, so that cutting the link cuts every
    /// client off).
    pub async fn kafka_behind(dir: &Path, port: u16, advertised: u16) -> Self {
        Self::start(
            "kafka",
            "tansu",
            vec![
                "broker".into(),
                "--listener-url".into(),
                format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url".into(),
                format!("tcp://127.0.0.1:{advertised}"),
                "--storage-engine".into(),
                "memory://tansu/".into(),
            ],
            dir,
            port,
        )
        .await
    }

    /// A Kafka-protocol broker (tansu) that answers only clients that
    /// authenticated with SASL SCRAM-SHA-512 as one of `users` (name,
    /// password), storing in SQLite under `dir`. tansu 0.6 offers SCRAM (and
    /// OAUTHBEARER, which it cannot check), not PLAIN, and takes new SCRAM
    /// credentials only from a client that is already authenticated: so the
    /// broker first runs without authentication while `tansu user create`
    /// stores the users, then again on the same data with `--authentication`.
    pub async fn kafka_requiring_sasl(dir: &Path, users: &[(&str, &str)]) -> Self {
        let mut server = Self::kafka(dir).await;
        let broker = format!("tcp://127.0.0.1:{}", server.port);
        for (user, password) in users {
            let created = Command::new(installed("tansu"))
                .args(["user", "create", user, password, "--broker", &broker])
                .args(["--mechanism", "scram512"])
                .current_dir(dir)
                .stdout(log_file(dir, "kafka-users"))
                .stderr(log_file(dir, "kafka-users"))
                .status()
                .expect("tansu user create runs");
            assert!(created.success(), "tansu user create {user}: {created}");
        }
        server.kill();
        server.args.push("--authentication".into());
        server.restart().await;
        server
    }

    /// A MongoDB-protocol server (polodb) storing under `dir`.
    pub async fn mongodb(dir: &Path) -> Self {
        let port = free_port().expect("a free port");
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
        let mut child = ChildProcess::spawn(
            Command::new(installed(self.program))
                .args(&self.args)
                .current_dir(&self.dir)
                .stdout(log_file(&self.dir, self.name))
                .stderr(log_file(&self.dir, self.name)),
        )
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} (run scripts/services.sh install): {e}",
                self.program
            )
        });
        wait_for_port(self.port, self.name, &mut child, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        self.child = Some(child);
    }

    /// Kills the server with SIGKILL and waits for it to die.
    pub fn kill(&mut self) {
        self.child = None;
    }
}
