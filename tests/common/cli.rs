//! Running the binary as a plain process, as a container or a systemd unit starts it: its
//! output, its exit status, its operations endpoints.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::process::Command;

pub const WAIT: Duration = Duration::from_secs(120);
pub const BIN: &str = env!("CARGO_BIN_EXE_tron-actors");
pub const API_KEY: &str = "sk-test-SECRET-5f3a9c1e7d";

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The binary with nothing from this process's environment but PATH, as a container or a
/// systemd unit starts it.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

pub async fn output(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env).output().await.unwrap()
}

pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running process whose stdout and stderr go to files, read after it exits (or at any time).
pub struct Process {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl Process {
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Process {
        let dir = tempfile::tempdir().unwrap();
        let out = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let child = command(args, env)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        Process { child, dir }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap()
    }

    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("no exit within 60 s of SIGTERM")
            .unwrap()
    }
}

pub async fn http_get(url: &str) -> Option<(u16, String)> {
    tron_actors::tls::install_crypto_provider();
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

pub async fn wait_ready(port: u16) {
    let url = format!("http://127.0.0.1:{port}/readyz");
    super::wait_until(WAIT, "/readyz answers 200", || async {
        matches!(http_get(&url).await, Some((200, _)))
    })
    .await;
}
