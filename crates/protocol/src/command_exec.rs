//! `command/exec` and its follow-ups: a standalone command (no thread, no turn) run in the
//! server's sandbox, its stdin, pty size and termination, and its streamed output.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::SandboxPolicy;

/// `command/exec` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandExecParams {
    /// The argv; an empty one is refused.
    pub command: Vec<String>,
    /// The client's name for the process, unique among this connection's running ones; needed
    /// for streaming, a pty and the follow-up requests.
    #[serde(default)]
    pub process_id: Option<String>,
    /// Run on a pty; implies `streamStdin` and `streamStdoutStderr`.
    #[serde(default)]
    pub tty: bool,
    /// Keep stdin open for `command/exec/write`.
    #[serde(default)]
    pub stream_stdin: bool,
    /// Send output as `command/exec/outputDelta` instead of in the response.
    #[serde(default)]
    pub stream_stdout_stderr: bool,
    /// Per-stream output cap in bytes (the server default when absent).
    #[serde(default)]
    pub output_bytes_cap: Option<u64>,
    /// No output cap.
    #[serde(default)]
    pub disable_output_cap: bool,
    /// No timeout.
    #[serde(default)]
    pub disable_timeout: bool,
    /// Timeout in milliseconds (the server default when absent).
    #[serde(default)]
    pub timeout_ms: Option<i64>,
    /// Working directory, relative to the server's; the server's when absent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Changes to the inherited environment: a value sets, `null` unsets.
    #[serde(default)]
    pub env: Option<BTreeMap<String, Option<String>>>,
    /// Initial pty size; only with `tty`.
    #[serde(default)]
    pub size: Option<CommandExecTerminalSize>,
    /// The sandbox; the server's default when absent.
    #[serde(default)]
    pub sandbox_policy: Option<SandboxPolicy>,
    /// A permissions profile id; cannot be combined with `sandboxPolicy`.
    #[serde(default)]
    pub permission_profile: Option<String>,
}

/// A pty size in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommandExecTerminalSize {
    /// Height.
    pub rows: u16,
    /// Width.
    pub cols: u16,
}

/// `command/exec` result, sent when the process exited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandExecResponse {
    /// The exit code (124 after the timeout, -1 when killed by a signal).
    pub exit_code: i32,
    /// Collected stdout; empty when it was streamed.
    pub stdout: String,
    /// Collected stderr; empty when it was streamed.
    pub stderr: String,
}

/// `command/exec/write` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandExecWriteParams {
    /// The process, as named in `command/exec`.
    pub process_id: String,
    /// Bytes to write, base64.
    #[serde(default)]
    pub delta_base64: Option<String>,
    /// Close stdin after writing.
    #[serde(default)]
    pub close_stdin: bool,
}

/// `command/exec/resize` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandExecResizeParams {
    /// The process, as named in `command/exec`.
    pub process_id: String,
    /// The new pty size.
    pub size: CommandExecTerminalSize,
}

/// `command/exec/terminate` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandExecTerminateParams {
    /// The process, as named in `command/exec`.
    pub process_id: String,
}

/// Which stream a `command/exec/outputDelta` carries (a pty has only `stdout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandExecOutputStream {
    /// Standard output, or the pty.
    Stdout,
    /// Standard error.
    Stderr,
}

/// `command/exec/outputDelta`: a chunk of a streaming command's output, to the connection that
/// started it only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandExecOutputDeltaNotification {
    /// The process, as named in `command/exec`.
    pub process_id: String,
    /// Its stream.
    pub stream: CommandExecOutputStream,
    /// The bytes, base64.
    pub delta_base64: String,
    /// True on the stream's last chunk when the output cap cut it.
    pub cap_reached: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_take_codex_spelling_and_null_env_values() {
        let params: CommandExecParams = serde_json::from_value(json!({
            "command": ["sh", "-c", "true"],
            "processId": "p1",
            "tty": true,
            "size": {"rows": 24, "cols": 80},
            "env": {"A": "1", "B": null},
            "sandboxPolicy": {"type": "workspaceWrite", "writableRoots": ["/tmp/x"]},
            "timeoutMs": 5,
            "outputBytesCap": null,
        }))
        .unwrap();
        assert_eq!(params.process_id.as_deref(), Some("p1"));
        assert_eq!(
            params.env.unwrap(),
            BTreeMap::from([
                ("A".to_owned(), Some("1".to_owned())),
                ("B".to_owned(), None)
            ])
        );
        assert_eq!(
            params.size,
            Some(CommandExecTerminalSize { rows: 24, cols: 80 })
        );
        assert!(matches!(
            params.sandbox_policy,
            Some(SandboxPolicy::WorkspaceWrite { .. })
        ));
        assert!(!params.stream_stdin && !params.disable_timeout);
    }

    #[test]
    fn the_delta_is_spelled_like_codex() {
        let delta = CommandExecOutputDeltaNotification {
            process_id: "p".into(),
            stream: CommandExecOutputStream::Stderr,
            delta_base64: "aGk=".into(),
            cap_reached: false,
        };
        assert_eq!(
            serde_json::to_value(&delta).unwrap(),
            json!({"processId": "p", "stream": "stderr", "deltaBase64": "aGk=", "capReached": false})
        );
    }
}
