//! `command/exec` and its follow-ups (`write`, `resize`, `terminate`): standalone commands run
//! in the server's sandbox, outside any thread.
//!
//! A process belongs to the connection that started it: it is known by (connection id, the
//! client's `processId`), only that connection's follow-ups reach it, its output deltas go to
//! that connection alone, and it is killed when that connection goes away (or the server shuts
//! down). `command/exec` is checked and spawned in order with the connection's other requests,
//! so a follow-up sent after it always finds the process; the wait for the exit runs on a task
//! of its own, so a long command holds up nothing behind it. The response comes after every
//! delta of the process. Command output is never logged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tether_exec::{
    CommandExec, CommandExecError, CommandExecSpec, CommandOutputChunk, CommandOutputSink,
    DEFAULT_OUTPUT_BYTES_CAP, OutputStream, TerminalSize,
};
use tether_protocol::{
    CommandExecOutputDeltaNotification, CommandExecOutputStream, CommandExecParams,
    CommandExecResizeParams, CommandExecResponse, CommandExecTerminalSize,
    CommandExecTerminateParams, CommandExecWriteParams, EmptyResponse, ErrorObject, Outgoing,
    SandboxPolicy, methods,
};
use tracing::Instrument as _;

use crate::Server;
use crate::connection::Connection;
use crate::dispatch::Ctx;
use crate::error::ServerError;
use crate::reply::Reply;

/// How long a command may run when the request names no timeout (codex's default).
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);

/// How a process is named within its connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ProcessName {
    /// The client's `processId`.
    Client(String),
    /// A buffered command the client did not name; unreachable by follow-ups.
    Generated(u64),
}

impl ProcessName {
    /// As error texts show it: a client id JSON-quoted, a generated one bare.
    fn shown(&self) -> String {
        match self {
            ProcessName::Client(id) => quoted(id),
            ProcessName::Generated(n) => n.to_string(),
        }
    }
}

fn quoted(id: &str) -> String {
    serde_json::Value::from(id).to_string()
}

type Key = (u64, ProcessName);

/// The running `command/exec` processes of every connection.
#[derive(Default)]
pub struct Processes {
    running: Mutex<HashMap<Key, Arc<CommandExec>>>,
    next_generated: AtomicU64,
}

impl Processes {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Arc<CommandExec>>> {
        // Critical sections never panic; recover anyway.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The running process `process_id` of `connection`.
    fn find(&self, connection: u64, process_id: &str) -> Result<Arc<CommandExec>, ServerError> {
        let key = (connection, ProcessName::Client(process_id.to_owned()));
        self.lock().get(&key).cloned().ok_or_else(|| {
            ServerError::invalid(format!(
                "no active command/exec for process id {}",
                quoted(process_id)
            ))
        })
    }

    fn forget(&self, key: &Key) {
        self.lock().remove(key);
    }
}

/// A `command/exec` whose params passed every check, ready to spawn.
struct Checked {
    name: Option<String>,
    spec: CommandExecSpec,
}

fn invalid_params(message: &str) -> ServerError {
    ServerError::Wire(ErrorObject::invalid_params(message))
}

/// The checks codex makes, in codex's order, before anything is spawned.
fn check(params: CommandExecParams, server_cwd: &Path) -> Result<Checked, ServerError> {
    if params.command.is_empty() {
        return Err(ServerError::invalid("command must not be empty"));
    }
    if params.sandbox_policy.is_some() && params.permission_profile.is_some() {
        return Err(ServerError::invalid(
            "`permissionProfile` cannot be combined with `sandboxPolicy`",
        ));
    }
    if params.size.is_some() && !params.tty {
        return Err(invalid_params("command/exec size requires tty: true"));
    }
    if params.disable_output_cap && params.output_bytes_cap.is_some() {
        return Err(invalid_params(
            "command/exec cannot set both outputBytesCap and disableOutputCap",
        ));
    }
    if params.disable_timeout && params.timeout_ms.is_some() {
        return Err(invalid_params(
            "command/exec cannot set both timeoutMs and disableTimeout",
        ));
    }
    let timeout = match params.timeout_ms {
        _ if params.disable_timeout => None,
        None => Some(DEFAULT_TIMEOUT),
        Some(ms) => match u64::try_from(ms) {
            Ok(ms) => Some(Duration::from_millis(ms)),
            Err(_) => {
                return Err(invalid_params(&format!(
                    "command/exec timeoutMs must be non-negative, got {ms}"
                )));
            }
        },
    };
    if let Some(profile) = &params.permission_profile {
        return Err(ServerError::invalid(format!(
            "invalid permission profile: tether has no permission profiles (asked for {})",
            quoted(profile)
        )));
    }
    let size = params.size.map(terminal_size).transpose()?;
    if params.process_id.is_none()
        && (params.tty || params.stream_stdin || params.stream_stdout_stderr)
    {
        return Err(ServerError::invalid(
            "command/exec tty or streaming requires a client-supplied processId",
        ));
    }
    let output_bytes_cap = if params.disable_output_cap {
        None
    } else {
        Some(
            params
                .output_bytes_cap
                .map_or(DEFAULT_OUTPUT_BYTES_CAP, |cap| {
                    usize::try_from(cap).unwrap_or(usize::MAX)
                }),
        )
    };
    let cwd = match &params.cwd {
        Some(cwd) => server_cwd.join(cwd),
        None => server_cwd.to_path_buf(),
    };
    Ok(Checked {
        name: params.process_id,
        spec: CommandExecSpec {
            argv: params.command,
            cwd,
            env: std::env::vars().collect(),
            env_overrides: params.env.unwrap_or_default().into_iter().collect(),
            sandbox: exec_sandbox_policy(params.sandbox_policy.unwrap_or_else(default_policy)),
            tty: params.tty,
            size,
            stream_stdin: params.stream_stdin,
            stream_output: params.stream_stdout_stderr,
            timeout,
            output_bytes_cap,
            output_sink: None,
        },
    })
}

/// The sandbox of a command that names none. tether reads no `sandbox_mode` from its config, so
/// this is codex's default: read-only, no network.
fn default_policy() -> SandboxPolicy {
    SandboxPolicy::read_only()
}

/// The wire policy as the sandbox takes it. An external sandbox is someone else's: tether adds
/// none of its own, as codex does.
pub(crate) fn exec_sandbox_policy(policy: SandboxPolicy) -> tether_exec::SandboxPolicy {
    match policy {
        SandboxPolicy::ReadOnly { network_access } => {
            tether_exec::SandboxPolicy::ReadOnly { network_access }
        }
        SandboxPolicy::WorkspaceWrite {
            writable_roots,
            network_access,
            exclude_tmpdir_env_var,
            exclude_slash_tmp,
        } => tether_exec::SandboxPolicy::WorkspaceWrite {
            writable_roots: writable_roots.into_iter().map(PathBuf::from).collect(),
            network_access,
            exclude_tmpdir_env_var,
            exclude_slash_tmp,
        },
        SandboxPolicy::DangerFullAccess | SandboxPolicy::ExternalSandbox { .. } => {
            tether_exec::SandboxPolicy::DangerFullAccess
        }
    }
}

fn terminal_size(size: CommandExecTerminalSize) -> Result<TerminalSize, ServerError> {
    if size.rows == 0 || size.cols == 0 {
        return Err(invalid_params(
            "command/exec size rows and cols must be greater than 0",
        ));
    }
    Ok(TerminalSize {
        rows: size.rows,
        cols: size.cols,
    })
}

/// Sends a process's output deltas to its connection until the response is due: the gate is
/// closed before the response is sent, so no delta can follow it.
struct Deltas {
    connection: Arc<Connection>,
    process_id: String,
    open: Mutex<bool>,
}

impl Deltas {
    fn deliver(&self, chunk: CommandOutputChunk) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if !*open {
            return;
        }
        let delta = CommandExecOutputDeltaNotification {
            process_id: self.process_id.clone(),
            stream: match chunk.stream {
                OutputStream::Stdout => CommandExecOutputStream::Stdout,
                OutputStream::Stderr => CommandExecOutputStream::Stderr,
            },
            delta_base64: STANDARD.encode(&chunk.chunk),
            cap_reached: chunk.cap_reached,
        };
        self.connection.send_now(Outgoing::notify(&delta));
    }

    fn close(&self) {
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = false;
    }
}

/// `command/exec`: checks, spawns (in order), then answers from a task of its own when the
/// process exited.
pub async fn start(ctx: Ctx, params: CommandExecParams, reply: Reply<methods::CommandExec>) {
    let server_cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let Checked { name, mut spec } = match check(params, &server_cwd) {
        Ok(checked) => checked,
        Err(error) => return reply.error(error).await,
    };
    let connection = ctx.connection.id();
    let streamed = spec.tty || spec.stream_output;
    let deltas = name.as_ref().filter(|_| streamed).map(|process_id| {
        Arc::new(Deltas {
            connection: Arc::clone(&ctx.connection),
            process_id: process_id.clone(),
            open: Mutex::new(true),
        })
    });
    if let Some(deltas) = &deltas {
        let deltas = Arc::clone(deltas);
        let sink: CommandOutputSink = Arc::new(move |chunk| deltas.deliver(chunk));
        spec.output_sink = Some(sink);
    }
    let processes = &ctx.server.command_execs;
    let key = (
        connection,
        match name {
            Some(id) => ProcessName::Client(id),
            None => {
                ProcessName::Generated(processes.next_generated.fetch_add(1, Ordering::Relaxed))
            }
        },
    );
    let program = spec.argv[0].clone();
    let spawned = {
        let mut running = processes.lock();
        if running.contains_key(&key) {
            Err(ServerError::invalid(format!(
                "duplicate active command/exec process id: {}",
                key.1.shown()
            )))
        } else {
            match CommandExec::spawn(&ctx.server.sandbox, spec) {
                Ok(process) => {
                    let process = Arc::new(process);
                    running.insert(key.clone(), Arc::clone(&process));
                    Ok(process)
                }
                Err(err) => Err(spawn_error(&err)),
            }
        }
    };
    let process = match spawned {
        Ok(process) => process,
        Err(error) => return reply.error(error).await,
    };
    tracing::debug!(connection, process = %key.1.shown(), %program, "command/exec started");
    let server = Arc::clone(&ctx.server);
    let gone = ctx.connection.gone().clone();
    let span = ctx.trace.span.clone();
    ctx.server.tasks.spawn(
        async move {
            let result = wait(&process, &server, &gone).await;
            if let Some(deltas) = &deltas {
                deltas.close();
            }
            // Forgotten before the answer, so a client that reuses the id after it is not
            // told it is still running.
            server.command_execs.forget(&key);
            tracing::debug!(connection, process = %key.1.shown(), exit_code = result.exit_code, "command/exec exited");
            reply
                .ok(CommandExecResponse {
                    exit_code: result.exit_code,
                    stdout: result.stdout,
                    stderr: result.stderr,
                })
                .await;
        }
        .instrument(span),
    );
}

/// Waits for the process; kills it first if its connection goes away or the server stops.
async fn wait(
    process: &CommandExec,
    server: &Server,
    gone: &tokio_util::sync::CancellationToken,
) -> tether_exec::CommandExecResult {
    let waiting = process.wait();
    tokio::pin!(waiting);
    tokio::select! {
        result = &mut waiting => result,
        () = async {
            tokio::select! {
                () = gone.cancelled() => {}
                () = server.shutdown.cancelled() => {}
            }
        } => {
            process.terminate();
            waiting.await
        }
    }
}

/// A command that could not start, the sandbox refusing it included: `-32603` with the reason.
fn spawn_error(err: &CommandExecError) -> ServerError {
    tracing::warn!("command/exec could not start: {err}");
    ServerError::Wire(ErrorObject::internal(err.to_string()))
}

/// What a follow-up's failure says: the process's own texts, as `-32600`.
fn control_error(err: CommandExecError) -> ServerError {
    ServerError::invalid(err.to_string())
}

/// `command/exec/write`.
pub async fn write(ctx: Ctx, params: CommandExecWriteParams) -> Result<EmptyResponse, ServerError> {
    if params.delta_base64.is_none() && !params.close_stdin {
        return Err(invalid_params(
            "command/exec/write requires deltaBase64 or closeStdin",
        ));
    }
    let bytes = match &params.delta_base64 {
        Some(delta) => STANDARD
            .decode(delta)
            .map_err(|err| invalid_params(&format!("invalid deltaBase64: {err}")))?,
        None => Vec::new(),
    };
    let process = ctx
        .server
        .command_execs
        .find(ctx.connection.id(), &params.process_id)?;
    // An empty write still says whether stdin is streamed and open.
    if !bytes.is_empty() || !params.close_stdin {
        process.write_stdin(&bytes).await.map_err(control_error)?;
    }
    if params.close_stdin {
        match process.close_stdin().await {
            // Closing twice is not an error, as in codex.
            Ok(()) | Err(CommandExecError::StdinClosed) => {}
            Err(err) => return Err(control_error(err)),
        }
    }
    Ok(EmptyResponse {})
}

/// `command/exec/resize`.
pub async fn resize(
    ctx: Ctx,
    params: CommandExecResizeParams,
) -> Result<EmptyResponse, ServerError> {
    let size = terminal_size(params.size)?;
    let process = ctx
        .server
        .command_execs
        .find(ctx.connection.id(), &params.process_id)?;
    process.resize(size).await.map_err(control_error)?;
    Ok(EmptyResponse {})
}

/// `command/exec/terminate`: the process is killed; its `command/exec` then answers.
pub async fn terminate(
    ctx: Ctx,
    params: CommandExecTerminateParams,
) -> Result<EmptyResponse, ServerError> {
    ctx.server
        .command_execs
        .find(ctx.connection.id(), &params.process_id)?
        .terminate();
    Ok(EmptyResponse {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::error_codes;

    fn params(command: &[&str]) -> CommandExecParams {
        CommandExecParams {
            command: command.iter().map(|s| s.to_string()).collect(),
            ..CommandExecParams::default()
        }
    }

    fn refused(params: CommandExecParams) -> ErrorObject {
        match check(params, Path::new("/srv")) {
            Ok(_) => panic!("expected a refusal"),
            Err(error) => error.to_wire(),
        }
    }

    #[test]
    fn checks_use_codex_texts_and_codes() {
        let cases: Vec<(CommandExecParams, i64, &str)> = vec![
            (
                params(&[]),
                error_codes::INVALID_REQUEST,
                "command must not be empty",
            ),
            (
                CommandExecParams {
                    sandbox_policy: Some(SandboxPolicy::read_only()),
                    permission_profile: Some("p".into()),
                    ..params(&["true"])
                },
                error_codes::INVALID_REQUEST,
                "`permissionProfile` cannot be combined with `sandboxPolicy`",
            ),
            (
                CommandExecParams {
                    size: Some(CommandExecTerminalSize { rows: 1, cols: 1 }),
                    ..params(&["true"])
                },
                error_codes::INVALID_PARAMS,
                "command/exec size requires tty: true",
            ),
            (
                CommandExecParams {
                    disable_output_cap: true,
                    output_bytes_cap: Some(1),
                    ..params(&["true"])
                },
                error_codes::INVALID_PARAMS,
                "command/exec cannot set both outputBytesCap and disableOutputCap",
            ),
            (
                CommandExecParams {
                    disable_timeout: true,
                    timeout_ms: Some(1),
                    ..params(&["true"])
                },
                error_codes::INVALID_PARAMS,
                "command/exec cannot set both timeoutMs and disableTimeout",
            ),
            (
                CommandExecParams {
                    timeout_ms: Some(-5),
                    ..params(&["true"])
                },
                error_codes::INVALID_PARAMS,
                "command/exec timeoutMs must be non-negative, got -5",
            ),
            (
                CommandExecParams {
                    tty: true,
                    process_id: Some("p".into()),
                    size: Some(CommandExecTerminalSize { rows: 0, cols: 80 }),
                    ..params(&["true"])
                },
                error_codes::INVALID_PARAMS,
                "command/exec size rows and cols must be greater than 0",
            ),
            (
                CommandExecParams {
                    stream_stdin: true,
                    ..params(&["true"])
                },
                error_codes::INVALID_REQUEST,
                "command/exec tty or streaming requires a client-supplied processId",
            ),
        ];
        for (params, code, message) in cases {
            let error = refused(params);
            assert_eq!((error.code, error.message.as_str()), (code, message));
        }
    }

    #[test]
    fn defaults_are_read_only_ten_seconds_and_one_mebibyte() {
        let Checked { name, spec } = check(
            CommandExecParams {
                cwd: Some("sub".into()),
                env: Some([("A".to_owned(), None)].into()),
                ..params(&["true"])
            },
            Path::new("/srv"),
        )
        .unwrap_or_else(|_| panic!("accepted"));
        assert_eq!(name, None);
        assert_eq!(spec.cwd, Path::new("/srv/sub"));
        assert_eq!(
            spec.sandbox,
            tether_exec::SandboxPolicy::ReadOnly {
                network_access: false
            }
        );
        assert_eq!(spec.timeout, Some(Duration::from_secs(10)));
        assert_eq!(spec.output_bytes_cap, Some(DEFAULT_OUTPUT_BYTES_CAP));
        assert_eq!(spec.env_overrides, vec![("A".to_owned(), None)]);
        let Checked { spec, .. } = check(
            CommandExecParams {
                disable_timeout: true,
                disable_output_cap: true,
                cwd: Some("/abs".into()),
                ..params(&["true"])
            },
            Path::new("/srv"),
        )
        .unwrap_or_else(|_| panic!("accepted"));
        assert_eq!(
            (spec.timeout, spec.output_bytes_cap, spec.cwd),
            (None, None, PathBuf::from("/abs"))
        );
    }
}
