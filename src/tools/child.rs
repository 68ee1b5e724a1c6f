//! The daemon as a child process (`<exe> run`), configured through `TRON_ACTORS_*` variables as a
//! container would configure it: what bench, chaos and the integration tests run and then stop
//! with SIGTERM, or kill with SIGKILL as a crash would.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// Where the child's output goes.
pub enum DaemonOutput {
    /// Nowhere.
    Discard,
    /// stdout and stderr into this file.
    File(PathBuf),
    /// stderr, line by line as it is written, into this file (unbuffered, so that the log is
    /// complete even when the child is SIGKILLed); each line is shown to `watch` first.
    Lines {
        /// The log file.
        path: PathBuf,
        /// Sees every line before it is written.
        watch: Box<dyn Fn(&str) + Send>,
    },
}

/// How to start the daemon; [`DaemonCommand::spawn`] starts it.
pub struct DaemonCommand {
    command: Command,
    output: DaemonOutput,
}

impl DaemonCommand {
    /// `exe run`, stdin closed, output discarded, killed when its [`DaemonChild`] is dropped.
    pub fn new(exe: impl AsRef<OsStr>) -> Self {
        let mut command = Command::new(exe);
        command.arg("run").stdin(Stdio::null()).kill_on_drop(true);
        DaemonCommand {
            command,
            output: DaemonOutput::Discard,
        }
    }

    /// Sets one environment variable (a `TRON_ACTORS_*` config key, usually).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Sets several environment variables.
    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.command.envs(vars);
        self
    }

    /// Leaves out the `TRON_ACTORS_*` and `OTEL_*` variables of this process, so that the
    /// child's configuration is only what is given here.
    pub fn without_inherited_config(mut self) -> Self {
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if name.starts_with("TRON_ACTORS_") || name.starts_with("OTEL_") {
                self.command.env_remove(&key);
            }
        }
        self
    }

    /// Where its output goes.
    pub fn output(mut self, output: DaemonOutput) -> Self {
        self.output = output;
        self
    }

    /// Starts the daemon, its output where `output` said (discarded by default).
    pub fn spawn(mut self) -> std::io::Result<DaemonChild> {
        let mut logger = None;
        match self.output {
            DaemonOutput::Discard => {
                self.command.stdout(Stdio::null()).stderr(Stdio::null());
            }
            DaemonOutput::File(path) => {
                let file = std::fs::File::create(&path)?;
                self.command
                    .stdout(file.try_clone()?)
                    .stderr(Stdio::from(file));
            }
            DaemonOutput::Lines { path, watch } => {
                self.command.stdout(Stdio::null()).stderr(Stdio::piped());
                let mut child = self.command.spawn()?;
                let stderr = child.stderr.take();
                logger = Some(tokio::spawn(copy_lines(stderr, path, watch)));
                return Ok(DaemonChild { child, logger });
            }
        }
        let child = self.command.spawn()?;
        Ok(DaemonChild { child, logger })
    }
}

async fn copy_lines(
    stderr: Option<tokio::process::ChildStderr>,
    path: PathBuf,
    watch: Box<dyn Fn(&str) + Send>,
) {
    let Some(stderr) = stderr else { return };
    let mut file = std::fs::File::create(&path).ok();
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        watch(&line);
        if let Some(file) = file.as_mut() {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// A running daemon; killed if dropped.
pub struct DaemonChild {
    child: Child,
    /// Copies stderr to the log ([`DaemonOutput::Lines`]); done once the child's stderr closes.
    logger: Option<JoinHandle<()>>,
}

impl DaemonChild {
    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Peak resident memory so far (Linux: VmHWM), in MB; 0 when unknown.
    pub fn peak_rss_mb(&self) -> f64 {
        let Some(pid) = self.pid() else { return 0.0 };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return 0.0;
        };
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// SIGKILL, as a crash or power loss would; true when it was still running (a kill that hit
    /// something).
    pub async fn kill(&mut self) -> bool {
        let running = matches!(self.child.try_wait(), Ok(None));
        let _ = self.child.kill().await;
        self.logged().await;
        running
    }

    /// Sends `signal` (`TERM`, `STOP`, `CONT`, ...) with kill(1); true when it was delivered
    /// (false once the child has exited, or when kill(1) failed).
    pub async fn signal(&self, signal: &str) -> bool {
        let Some(pid) = self.pid() else { return false };
        // tokio can only SIGKILL; `kill` is on every unix the harnesses run on.
        Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .await
            .is_ok_and(|status| status.success())
    }

    /// SIGTERM, then its exit status; SIGKILL and `None` if it outstays `limit`.
    pub async fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.signal("TERM").await;
        self.wait_exit(limit).await
    }

    /// Its exit status once it exits (after a signal sent with [`DaemonChild::signal`]);
    /// SIGKILL and `None` if it outstays `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        };
        self.logged().await;
        status
    }

    /// Waits until the log has every line the child wrote.
    async fn logged(&mut self) {
        if let Some(logger) = self.logger.take() {
            let _ = logger.await;
        }
    }
}
