//! One-off commands for `command/exec`: run to completion with a timeout, per-stream
//! output caps, optional streaming of output and stdin, resize and terminate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::sandbox::{Sandbox, SandboxPolicy};
use crate::spawn::{
    ChildIo, LaunchSpec, ProcessGroup, TERMINATE_GRACE, TerminalSize, launch, pump,
};

/// The exit code reported when the timeout killed the command.
pub const TIMEOUT_EXIT_CODE: i32 = 124;
/// The default per-stream output cap (1 MiB).
pub const DEFAULT_OUTPUT_BYTES_CAP: usize = 1024 * 1024;
/// How long output is still read after the command exited.
const IO_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Which stream a chunk came from (a pty has only stdout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output (or the pty).
    Stdout,
    /// Standard error.
    Stderr,
}

/// A chunk of streamed output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutputChunk {
    /// Its stream.
    pub stream: OutputStream,
    /// The bytes (cut at the cap).
    pub chunk: Vec<u8>,
    /// True on the chunk that reached the stream's cap; nothing follows it.
    pub cap_reached: bool,
}

/// Receives streamed output; called from the reading task, so it must not block.
pub type CommandOutputSink = Arc<dyn Fn(CommandOutputChunk) + Send + Sync>;

/// What to run for `command/exec`.
pub struct CommandExecSpec {
    /// The argv (must not be empty).
    pub argv: Vec<String>,
    /// Absolute working directory.
    pub cwd: PathBuf,
    /// The base environment.
    pub env: HashMap<String, String>,
    /// Changes to `env`: a value sets, None unsets.
    pub env_overrides: Vec<(String, Option<String>)>,
    /// The sandbox.
    pub sandbox: SandboxPolicy,
    /// Run on a pty (`size`, default 24x80); implies streaming stdin and output.
    pub tty: bool,
    /// The pty size.
    pub size: Option<TerminalSize>,
    /// Keep stdin open for [`CommandExec::write_stdin`] (otherwise it is /dev/null).
    pub stream_stdin: bool,
    /// Deliver output to `output_sink` instead of collecting it into the result.
    pub stream_output: bool,
    /// Kill the command after this long (exit code 124); None waits forever.
    pub timeout: Option<Duration>,
    /// At most this many bytes per stream; None is unlimited.
    pub output_bytes_cap: Option<usize>,
    /// Where streamed output goes.
    pub output_sink: Option<CommandOutputSink>,
}

/// The final result of a `command/exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandExecResult {
    /// Exit code (-1 when killed by a signal, 124 on timeout).
    pub exit_code: i32,
    /// Collected stdout (empty when streamed).
    pub stdout: String,
    /// Collected stderr (empty when streamed).
    pub stderr: String,
}

/// Why a `command/exec` operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandExecError {
    /// The argv was empty.
    #[error("command must not be empty")]
    EmptyCommand,
    /// A zero-sized terminal was asked for.
    #[error("command/exec size rows and cols must be greater than 0")]
    InvalidSize,
    /// The command could not start (including a refused sandbox).
    #[error("failed to spawn command: {0}")]
    Spawn(String),
    /// Stdin was not opened for streaming.
    #[error("stdin streaming is not enabled for this command/exec")]
    StdinNotStreamed,
    /// Stdin was closed already or the process is gone.
    #[error("stdin is already closed")]
    StdinClosed,
    /// The command does not run on a pty, or the resize failed.
    #[error("failed to resize PTY: {0}")]
    Resize(String),
}

/// A running `command/exec`. Dropping it kills the process group.
pub struct CommandExec {
    group: ProcessGroup,
    exit: watch::Receiver<Option<i32>>,
    /// The pty master (stdin and resize) when the command runs on a pty.
    pty: Option<Mutex<pty_process::OwnedWritePty>>,
    /// The stdin pipe while open.
    pipe_stdin: Mutex<Option<tokio::process::ChildStdin>>,
    stdin_streamed: bool,
    stdin_open: AtomicBool,
    timed_out: Arc<AtomicBool>,
    /// The task reading the output streams, until [`CommandExec::wait`] takes it.
    readers: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Collected stdout and stderr (filled by the readers while they run).
    collected: [Arc<std::sync::Mutex<Vec<u8>>>; 2],
}

impl CommandExec {
    /// Starts `spec` under its sandbox.
    pub fn spawn(sandbox: &Sandbox, spec: CommandExecSpec) -> Result<Self, CommandExecError> {
        if spec.argv.is_empty() {
            return Err(CommandExecError::EmptyCommand);
        }
        if spec.size.is_some_and(|s| s.rows == 0 || s.cols == 0) {
            return Err(CommandExecError::InvalidSize);
        }
        let mut env = spec.env.clone();
        for (key, value) in &spec.env_overrides {
            match value {
                Some(value) => env.insert(key.clone(), value.clone()),
                None => env.remove(key),
            };
        }
        let stdin_streamed = spec.tty || spec.stream_stdin;
        let stream_output = spec.tty || spec.stream_output;
        let (argv, cleanup) = sandbox
            .wrap(&spec.sandbox, &spec.cwd, &spec.argv)
            .map_err(|e| CommandExecError::Spawn(e.to_string()))?;
        let launched = launch(
            LaunchSpec {
                argv: &argv,
                cwd: &spec.cwd,
                env: &env,
                tty: spec.tty.then(|| spec.size.unwrap_or_default()),
                stdin_pipe: stdin_streamed,
            },
            cleanup,
        )
        .map_err(|e| CommandExecError::Spawn(e.to_string()))?;

        let collected: [Arc<std::sync::Mutex<Vec<u8>>>; 2] = Default::default();
        let capture = Capture {
            cap: spec.output_bytes_cap,
            sink: spec.output_sink.clone().filter(|_| stream_output),
            keep: !stream_output,
        };
        let [stdout_buffer, stderr_buffer] = collected.clone();
        let (pty, pipe_stdin, readers) = match launched.io {
            ChildIo::Pty { reader, writer } => {
                let readers = tokio::spawn(async move {
                    capture
                        .read(reader, OutputStream::Stdout, &stdout_buffer)
                        .await;
                });
                (Some(Mutex::new(writer)), None, readers)
            }
            ChildIo::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                let readers = tokio::spawn(async move {
                    tokio::join!(
                        capture.read(stdout, OutputStream::Stdout, &stdout_buffer),
                        capture.read(stderr, OutputStream::Stderr, &stderr_buffer)
                    );
                });
                (None, stdin, readers)
            }
        };
        let timed_out = Arc::new(AtomicBool::new(false));
        // The timer ends by itself when the command exits first.
        if let Some(timeout) = spec.timeout {
            let group = launched.group;
            let mut exit = launched.exit.clone();
            let timed_out = Arc::clone(&timed_out);
            tokio::spawn(async move {
                if tokio::time::timeout(timeout, exit.wait_for(Option::is_some))
                    .await
                    .is_err()
                {
                    timed_out.store(true, Ordering::SeqCst);
                    group.terminate(&mut exit, TERMINATE_GRACE).await;
                }
            });
        }
        Ok(Self {
            group: launched.group,
            exit: launched.exit,
            pty,
            pipe_stdin: Mutex::new(pipe_stdin),
            stdin_streamed,
            stdin_open: AtomicBool::new(stdin_streamed),
            timed_out,
            readers: std::sync::Mutex::new(Some(readers)),
            collected,
        })
    }

    /// Writes bytes to the command's stdin.
    pub async fn write_stdin(&self, bytes: &[u8]) -> Result<(), CommandExecError> {
        if !self.stdin_streamed {
            return Err(CommandExecError::StdinNotStreamed);
        }
        if !self.stdin_open.load(Ordering::SeqCst) {
            return Err(CommandExecError::StdinClosed);
        }
        let result = match &self.pty {
            Some(pty) => pty.lock().await.write_all(bytes).await,
            None => match self.pipe_stdin.lock().await.as_mut() {
                Some(pipe) => pipe.write_all(bytes).await,
                None => return Err(CommandExecError::StdinClosed),
            },
        };
        result.map_err(|_| CommandExecError::StdinClosed)
    }

    /// Closes stdin: the pipe is closed; on a pty an end-of-file (Ctrl-D) is sent.
    pub async fn close_stdin(&self) -> Result<(), CommandExecError> {
        if !self.stdin_streamed {
            return Err(CommandExecError::StdinNotStreamed);
        }
        if !self.stdin_open.swap(false, Ordering::SeqCst) {
            return Err(CommandExecError::StdinClosed);
        }
        match &self.pty {
            Some(pty) => {
                let _ = pty.lock().await.write_all(b"\x04").await;
            }
            None => drop(self.pipe_stdin.lock().await.take()),
        }
        Ok(())
    }

    /// Resizes the pty.
    pub async fn resize(&self, size: TerminalSize) -> Result<(), CommandExecError> {
        if size.rows == 0 || size.cols == 0 {
            return Err(CommandExecError::InvalidSize);
        }
        let pty = self
            .pty
            .as_ref()
            .ok_or_else(|| CommandExecError::Resize("the command has no PTY".into()))?;
        pty.lock()
            .await
            .resize(pty_process::Size::new(size.rows, size.cols))
            .map_err(|e| CommandExecError::Resize(e.to_string()))
    }

    /// Kills the process group (SIGTERM, then SIGKILL after a grace period) in the
    /// background; [`CommandExec::wait`] then returns.
    pub fn terminate(&self) {
        let group = self.group;
        let mut exit = self.exit.clone();
        tokio::spawn(async move { group.terminate(&mut exit, TERMINATE_GRACE).await });
    }

    /// Waits for the exit and the remaining output (at most 2 s after the exit), then
    /// kills anything the command left running in its session. Takes `&self` so that
    /// stdin, resize and terminate stay usable while it waits; the output is collected
    /// once, so only the first call returns it.
    pub async fn wait(&self) -> CommandExecResult {
        let mut exit = self.exit.clone();
        let code = exit
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|c| *c)
            .unwrap_or(-1);
        // A leftover child may hold the streams open: keep what arrived within the drain
        // time and stop reading.
        let readers = self
            .readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(mut readers) = readers
            && tokio::time::timeout(IO_DRAIN_TIMEOUT, &mut readers)
                .await
                .is_err()
        {
            readers.abort();
        }
        // The command is over: whatever it left running in its session goes too.
        self.group.kill();
        let [stdout, stderr] = self.collected.each_ref().map(|buffer| {
            std::mem::take(
                &mut *buffer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )
        });
        CommandExecResult {
            exit_code: if self.timed_out.load(Ordering::SeqCst) {
                TIMEOUT_EXIT_CODE
            } else {
                code
            },
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Drop for CommandExec {
    fn drop(&mut self) {
        if self.exit.borrow().is_none() {
            self.group.kill();
        }
    }
}

#[derive(Clone)]
struct Capture {
    cap: Option<usize>,
    sink: Option<CommandOutputSink>,
    keep: bool,
}

impl Capture {
    /// Reads one stream to its end, keeping (or streaming) at most `cap` bytes; the rest
    /// is read and dropped so the command never blocks on a full pipe.
    async fn read<R>(&self, reader: R, stream: OutputStream, kept: &std::sync::Mutex<Vec<u8>>)
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        let mut seen = 0usize;
        let mut done = false;
        pump(reader, |chunk| {
            if done {
                return;
            }
            let room = self.cap.map_or(chunk.len(), |cap| cap - seen);
            let part = &chunk[..room.min(chunk.len())];
            seen += part.len();
            let cap_reached = self.cap == Some(seen);
            done = cap_reached;
            if self.keep {
                kept.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend_from_slice(part);
            }
            if let Some(sink) = &self.sink {
                sink(CommandOutputChunk {
                    stream,
                    chunk: part.to_vec(),
                    cap_reached,
                });
            }
        })
        .await;
    }
}
