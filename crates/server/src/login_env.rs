//! The environment a login shell sets up, captured once per shell binary.
//!
//! Commands the model asks to run "with login semantics" would otherwise pay for the user's
//! whole profile on every call (hundreds of milliseconds on a machine with a busy
//! `~/.profile`). Like codex's shell snapshot, tether runs the login shell once, keeps the
//! environment it exported, and runs each command with `-c` in that environment.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OnceCell};

/// How long the one login shell may take before tether falls back to its own environment.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(10);

/// One captured environment.
type Environment = Arc<HashMap<String, String>>;

/// Environments by shell binary.
#[derive(Default)]
pub(crate) struct LoginEnvironments {
    shells: Mutex<HashMap<String, Arc<OnceCell<Environment>>>>,
}

impl LoginEnvironments {
    /// The environment `shell -l` exports; the server's own environment when it cannot be
    /// captured. Concurrent callers wait for the same capture.
    pub async fn get(&self, shell: &str) -> Environment {
        let cell = {
            let mut shells = self.shells.lock().await;
            Arc::clone(shells.entry(shell.to_owned()).or_default())
        };
        let environment = cell.get_or_init(|| capture(shell.to_owned())).await;
        Arc::clone(environment)
    }
}

async fn capture(shell: String) -> Environment {
    let output = tokio::time::timeout(
        CAPTURE_TIMEOUT,
        tokio::process::Command::new(&shell)
            .args(["-lc", "env -0"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let captured = match output {
        Ok(Ok(output)) if output.status.success() => Some(parse_env0(&output.stdout)),
        Ok(Ok(output)) => {
            tracing::warn!(%shell, status = %output.status, "the login shell failed; commands get tether's environment");
            None
        }
        Ok(Err(err)) => {
            tracing::warn!(%shell, "cannot run the login shell ({err}); commands get tether's environment");
            None
        }
        Err(_) => {
            tracing::warn!(%shell, "the login shell took over {CAPTURE_TIMEOUT:?}; commands get tether's environment");
            None
        }
    };
    Arc::new(captured.unwrap_or_else(|| std::env::vars().collect()))
}

/// `env -0` output: `KEY=VALUE` entries separated by NUL bytes.
fn parse_env0(bytes: &[u8]) -> HashMap<String, String> {
    bytes
        .split(|byte| *byte == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (key, value) = entry.split_once('=')?;
            (!key.is_empty()).then(|| (key.to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env0_entries_split_at_the_first_equals_sign() {
        let parsed = parse_env0(b"A=1\0B=x=y\0\0C=\0=bad\0");
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed["A"], "1");
        assert_eq!(parsed["B"], "x=y");
        assert_eq!(parsed["C"], "");
    }

    #[tokio::test]
    async fn a_login_shell_environment_is_captured_once_and_shared() {
        let environments = LoginEnvironments::default();
        let first = environments.get("/bin/bash").await;
        assert!(first.contains_key("PATH"));
        let second = environments.get("/bin/bash").await;
        assert!(Arc::ptr_eq(&first, &second));
    }
}
