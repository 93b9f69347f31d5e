//! Python scripts run with the virtualenv that has the official Codex SDK (`openai-codex`),
//! as a user would run them.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use crate::Clients;

/// What a script did.
#[derive(Clone, Debug)]
pub struct ScriptOutput {
    /// Its exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Everything it printed.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl ScriptOutput {
    /// Panics with both streams unless the script exited 0; returns stdout.
    pub fn expect_success(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "the script failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        &self.stdout
    }
}

/// Runs `script` (Python source, fed on stdin) with the SDK's python, in `cwd`, with `env` on
/// top of an environment of `PATH`, `HOME` = `cwd` and `PYTHONUNBUFFERED=1`. Kills it and panics
/// after `timeout`.
pub async fn run_python(
    clients: &Clients,
    script: &str,
    cwd: &Path,
    env: &[(&str, &str)],
    timeout: Duration,
) -> ScriptOutput {
    let mut child = tokio::process::Command::new(clients.python())
        .arg("-")
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", cwd)
        .env("PYTHONUNBUFFERED", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("start {}: {err}", clients.python().display()));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the python script still ran after {timeout:?}"))
        .unwrap();
    ScriptOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
