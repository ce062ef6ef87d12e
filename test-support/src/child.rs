//! Child processes for tests and benchmarks: a process that is killed when
//! its handle is dropped (a failing test or a benchmark that gives up leaves
//! nothing running), stopped gracefully with SIGTERM when asked; free ports
//! to run servers on side by side, and the wait until one listens.

use std::{
    fs::OpenOptions,
    io,
    net::TcpListener,
    path::Path,
    process::{Child, ChildStderr, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// A free TCP port on loopback (bound and released; good enough for tests).
pub fn free_port() -> io::Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// Appends to `<dir>/<name>.log`, or discards the output if that file cannot
/// be opened.
pub fn log_file(dir: &Path, name: &str) -> Stdio {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// The last `lines` lines of the log at `path` (empty if it cannot be
/// read): what a failed start says about itself.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A running child process, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
}

impl ChildProcess {
    /// Spawns `command`.
    pub fn spawn(command: &mut Command) -> io::Result<Self> {
        command.spawn().map(|child| ChildProcess { child })
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Its standard error, if it was piped and not taken yet.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// SIGTERM, then its exit status; SIGKILL if it has not exited within
    /// `limit`. Blocks the calling thread while it waits.
    pub fn terminate(mut self, limit: Duration) -> io::Result<ExitStatus> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.id().to_string())
            .status()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `child` (called `what` in errors) accepts TCP connections on
/// 127.0.0.1:`port`; fails if it exits first or `limit` passes.
pub(crate) async fn wait_for_port(
    port: u16,
    what: &str,
    child: &mut ChildProcess,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(format!(
                    "{what} exited with {status} before listening on {port}"
                ));
            }
            Err(e) => return Err(format!("{what}: cannot read its status: {e}")),
            Ok(None) => {}
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what} did not listen on port {port} within {} s",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
