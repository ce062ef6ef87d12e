//! The `scheduler-service` binary as a child process on a free port, the way
//! the durability tests and the end-to-end benchmark run it: as it ships,
//! configured only through its variables, and killable at any moment.

use std::{
    io,
    path::Path,
    process::{ChildStderr, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use scheduler_service::config::vars;

use crate::child::{ChildProcess, free_port, wait_for_port};

/// A running service binary. Dropping it kills the process (SIGKILL).
#[derive(Debug)]
pub struct ServiceChild {
    process: ChildProcess,
    /// Its gRPC port on 127.0.0.1.
    pub port: u16,
    /// When the process was spawned.
    pub spawned_at: Instant,
}

impl ServiceChild {
    /// Spawns `bin` with these variables on a free gRPC port of 127.0.0.1,
    /// with METRICS_PORT 0 (any free port: instances run side by side)
    /// unless `env` gives one, and its output sent where told. It does not
    /// wait: see [`ServiceChild::wait_listening`].
    pub fn spawn(
        bin: &Path,
        env: &[(String, String)],
        stdout: Stdio,
        stderr: Stdio,
    ) -> io::Result<Self> {
        let port = free_port()?;
        let mut command = Command::new(bin);
        command
            .env(vars::METRICS_PORT, "0")
            .env(vars::HTTP_PORT, "0")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(vars::SERVER_HOST, "127.0.0.1")
            .env(vars::SERVER_PORT, port.to_string())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let spawned_at = Instant::now();
        let process = ChildProcess::spawn(&mut command)?;
        Ok(ServiceChild {
            process,
            port,
            spawned_at,
        })
    }

    /// Waits until it accepts connections; fails if it exits first or
    /// `limit` passes.
    pub async fn wait_listening(&mut self, limit: Duration) -> Result<(), String> {
        wait_for_port(self.port, "scheduler-service", &mut self.process, limit).await
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.process.id()
    }

    /// Its standard error, if it was piped and not taken yet.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.process.take_stderr()
    }

    /// SIGTERM, then its exit status (SIGKILL after `limit`).
    pub fn terminate(self, limit: Duration) -> io::Result<ExitStatus> {
        self.process.terminate(limit)
    }
}
