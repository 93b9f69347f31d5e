//! Unified exec: the process sessions behind the `exec_command` and `write_stdin` tools.
//!
//! A session is one process (on a pty or pipes, in its own process group) with a bounded
//! buffer of output not yet returned to the model. `exec` waits up to the yield time or
//! until the process exits; a process still running keeps its session id for
//! `write_stdin`. Dropping the manager kills every process it started.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::buffer::{HeadTailBuffer, OUTPUT_MAX_BYTES};
use crate::output::{ExecOutcome, approx_token_count, generate_chunk_id};
use crate::sandbox::{Sandbox, SandboxPolicy};
use crate::spawn::{
    ChildIo, LaunchSpec, ProcessGroup, TERMINATE_GRACE, TerminalSize, launch, pump,
};

/// Shortest wait of an `exec_command` or a non-empty `write_stdin`.
pub const MIN_YIELD_TIME_MS: u64 = 250;
/// Longest wait of an `exec_command` or a non-empty `write_stdin`.
pub const MAX_YIELD_TIME_MS: u64 = 30_000;
/// `exec_command`'s wait when `yield_time_ms` is not given.
pub const DEFAULT_EXEC_YIELD_TIME_MS: u64 = 10_000;
/// `write_stdin`'s wait when `yield_time_ms` is not given.
pub const DEFAULT_WRITE_STDIN_YIELD_TIME_MS: u64 = 250;
/// Shortest wait of an empty `write_stdin` (a poll).
pub const MIN_EMPTY_YIELD_TIME_MS: u64 = 5_000;
/// Longest wait of an empty `write_stdin` (codex's background terminal timeout).
pub const MAX_EMPTY_YIELD_TIME_MS: u64 = 300_000;
/// Sessions kept at most; beyond it the least recently used (not among the newest 8) is
/// killed.
pub const MAX_SESSIONS: usize = 64;
const PROTECTED_RECENT_SESSIONS: usize = 8;

/// How long output is still awaited after the process exited while a leftover child
/// holds the output open.
const POST_EXIT_OUTPUT_WAIT: Duration = Duration::from_millis(50);
/// How long the exit event waits for output to close after the process exited.
const EXIT_EVENT_OUTPUT_WAIT: Duration = Duration::from_millis(100);
/// Pause after writing to stdin so the process can react before output is collected.
const AFTER_STDIN_WRITE: Duration = Duration::from_millis(100);

/// Variables every unified-exec process gets, overriding the caller's environment, so
/// tools print plain, uncoloured, unpaged UTF-8.
pub const UNIFIED_EXEC_ENV: [(&str, &str); 10] = [
    ("NO_COLOR", "1"),
    ("TERM", "dumb"),
    ("LANG", "C.UTF-8"),
    ("LC_CTYPE", "C.UTF-8"),
    ("LC_ALL", "C.UTF-8"),
    ("COLORTERM", ""),
    ("PAGER", "cat"),
    ("GIT_PAGER", "cat"),
    ("GH_PAGER", "cat"),
    ("CODEX_CI", "1"),
];

/// `exec_command`'s `yield_time_ms` (default 10000) clamped to 250..=30000.
pub fn clamp_exec_yield_time(yield_time_ms: Option<u64>) -> u64 {
    yield_time_ms
        .unwrap_or(DEFAULT_EXEC_YIELD_TIME_MS)
        .clamp(MIN_YIELD_TIME_MS, MAX_YIELD_TIME_MS)
}

/// `write_stdin`'s `yield_time_ms` (default 250): 250..=30000 when writing, and
/// 5000..=300000 for an empty poll.
pub fn clamp_write_stdin_yield_time(yield_time_ms: Option<u64>, chars_empty: bool) -> u64 {
    let requested = yield_time_ms.unwrap_or(DEFAULT_WRITE_STDIN_YIELD_TIME_MS);
    if chars_empty {
        requested.clamp(MIN_EMPTY_YIELD_TIME_MS, MAX_EMPTY_YIELD_TIME_MS)
    } else {
        requested.clamp(MIN_YIELD_TIME_MS, MAX_YIELD_TIME_MS)
    }
}

/// Something a session's process did, delivered as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// Bytes the process printed (stdout and stderr interleaved); chunks may split UTF-8
    /// characters.
    Output {
        /// The session.
        session_id: i32,
        /// The bytes.
        chunk: Vec<u8>,
    },
    /// The process exited; sent once per process.
    Exited {
        /// The session.
        session_id: i32,
        /// Exit code (-1 when killed by a signal).
        exit_code: i32,
        /// Time since the process started.
        duration: Duration,
        /// Everything it printed (head and tail, at most 1 MiB).
        aggregated_output: String,
    },
}

/// Receives [`ExecEvent`]s; called from the reading task, so it must not block.
pub type ExecEventSink = Arc<dyn Fn(ExecEvent) + Send + Sync>;

/// Starts a command for `exec_command`.
pub struct ExecRequest {
    /// The full argv, e.g. from [`crate::shell_argv`].
    pub argv: Vec<String>,
    /// Absolute working directory.
    pub cwd: PathBuf,
    /// The environment (the [`UNIFIED_EXEC_ENV`] values are applied on top).
    pub env: HashMap<String, String>,
    /// Run on a pseudo-terminal (stdin stays writable) instead of pipes (stdin closed).
    pub tty: bool,
    /// How long to wait before returning; see [`clamp_exec_yield_time`].
    pub yield_time_ms: Option<u64>,
    /// The sandbox the command runs in.
    pub sandbox: SandboxPolicy,
    /// An id from [`UnifiedExecManager::reserve_session_id`], or None to pick one.
    pub session_id: Option<i32>,
    /// Where output and exit are reported as they happen.
    pub events: Option<ExecEventSink>,
}

/// Writes to (or polls) a running session for `write_stdin`.
pub struct WriteStdinRequest<'a> {
    /// The session.
    pub session_id: i32,
    /// Text to write; empty polls.
    pub chars: &'a str,
    /// How long to wait; see [`clamp_write_stdin_yield_time`].
    pub yield_time_ms: Option<u64>,
}

/// Why `exec_command` or `write_stdin` failed; `Display` is codex's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnifiedExecError {
    /// The process could not be started (including a refused sandbox).
    #[error("Failed to create unified exec process: {message}")]
    CreateProcess {
        /// Why.
        message: String,
    },
    /// No such session (never existed, exited and reported, or killed).
    #[error("Unknown process id {process_id}")]
    UnknownProcessId {
        /// The id asked for.
        process_id: i32,
    },
    /// Writing to the pty failed.
    #[error("failed to write to stdin")]
    WriteToStdin,
    /// The session runs on pipes, whose stdin is closed.
    #[error(
        "stdin is closed for this session; rerun exec_command with tty=true to keep stdin open"
    )]
    StdinClosed,
    /// The argv was empty.
    #[error("missing command line for unified exec request")]
    MissingCommandLine,
}

struct Session {
    id: i32,
    tty: bool,
    group: ProcessGroup,
    pty_writer: Option<tokio::sync::Mutex<pty_process::OwnedWritePty>>,
    /// Output not yet returned by `exec`/`write_stdin`.
    pending: Mutex<HeadTailBuffer>,
    output_arrived: Notify,
    output_closed: watch::Receiver<bool>,
    exit: watch::Receiver<Option<i32>>,
    last_used: Mutex<Instant>,
}

impl Session {
    fn exit_code(&self) -> Option<i32> {
        *self.exit.borrow()
    }
}

#[derive(Default)]
struct Store {
    sessions: HashMap<i32, Arc<Session>>,
    reserved: HashSet<i32>,
}

/// The sessions of one agent (one thread): start, write, poll, kill.
pub struct UnifiedExecManager {
    sandbox: Arc<Sandbox>,
    store: Mutex<Store>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl UnifiedExecManager {
    /// A manager whose sandboxed commands are wrapped by `sandbox`.
    pub fn new(sandbox: Arc<Sandbox>) -> Self {
        Self {
            sandbox,
            store: Mutex::new(Store::default()),
        }
    }

    /// Picks an unused random-looking id (1000..100000) for a command not started yet,
    /// so its item can carry the id before it runs. Pass it in [`ExecRequest::session_id`]
    /// or give it back with [`UnifiedExecManager::release_session_id`].
    pub fn reserve_session_id(&self) -> i32 {
        let mut store = lock(&self.store);
        let mut rng = rand::thread_rng();
        loop {
            let id = rng.gen_range(1_000..100_000);
            if !store.reserved.contains(&id) && !store.sessions.contains_key(&id) {
                store.reserved.insert(id);
                return id;
            }
        }
    }

    /// Frees a reserved id that will not be used.
    pub fn release_session_id(&self, session_id: i32) {
        lock(&self.store).reserved.remove(&session_id);
    }

    /// Ids of the sessions currently held (running, or exited but not yet reported).
    pub fn session_ids(&self) -> Vec<i32> {
        lock(&self.store).sessions.keys().copied().collect()
    }

    /// Starts `request` and waits until it exits or its yield time passes.
    pub async fn exec(&self, request: ExecRequest) -> Result<ExecOutcome, UnifiedExecError> {
        let session_id = match request.session_id {
            Some(id) if lock(&self.store).sessions.contains_key(&id) => {
                return Err(UnifiedExecError::CreateProcess {
                    message: format!("session id {id} is already in use"),
                });
            }
            Some(id) => id,
            None => self.reserve_session_id(),
        };
        let result = self.start(session_id, &request);
        let session = match result {
            Ok(session) => session,
            Err(err) => {
                self.release_session_id(session_id);
                return Err(err);
            }
        };
        let yield_time = Duration::from_millis(clamp_exec_yield_time(request.yield_time_ms));
        Ok(self.collect_and_report(&session, yield_time).await)
    }

    fn start(
        &self,
        session_id: i32,
        request: &ExecRequest,
    ) -> Result<Arc<Session>, UnifiedExecError> {
        if request.argv.is_empty() {
            return Err(UnifiedExecError::MissingCommandLine);
        }
        let mut env = request.env.clone();
        for (key, value) in UNIFIED_EXEC_ENV {
            env.insert(key.to_string(), value.to_string());
        }
        let create_error = |message: String| UnifiedExecError::CreateProcess { message };
        let (argv, cleanup) = self
            .sandbox
            .wrap(&request.sandbox, &request.cwd, &request.argv)
            .map_err(|e| create_error(e.to_string()))?;
        let launched = launch(
            LaunchSpec {
                argv: &argv,
                cwd: &request.cwd,
                env: &env,
                tty: request.tty.then(TerminalSize::default),
                stdin_pipe: false,
            },
            cleanup,
        )
        .map_err(|e| create_error(e.to_string()))?;

        let (closed_tx, output_closed) = watch::channel(false);
        let (pty_writer, readers) = match launched.io {
            ChildIo::Pty { reader, writer } => (Some(writer), Readers::Pty(reader)),
            ChildIo::Pipes { stdout, stderr, .. } => (None, Readers::Pipes(stdout, stderr)),
        };
        let session = Arc::new(Session {
            id: session_id,
            tty: request.tty,
            group: launched.group,
            pty_writer: pty_writer.map(tokio::sync::Mutex::new),
            pending: Mutex::new(HeadTailBuffer::default()),
            output_arrived: Notify::new(),
            output_closed,
            exit: launched.exit,
            last_used: Mutex::new(Instant::now()),
        });
        let transcript = Arc::new(Mutex::new(HeadTailBuffer::new(OUTPUT_MAX_BYTES)));
        tokio::spawn(read_output(
            Arc::clone(&session),
            readers,
            Arc::clone(&transcript),
            request.events.clone(),
            closed_tx,
        ));
        if let Some(events) = request.events.clone() {
            tokio::spawn(report_exit(
                Arc::clone(&session),
                transcript,
                events,
                Instant::now(),
            ));
        }
        self.insert(Arc::clone(&session));
        Ok(session)
    }

    fn insert(&self, session: Arc<Session>) {
        let pruned = {
            let mut store = lock(&self.store);
            store.reserved.remove(&session.id);
            let pruned = if store.sessions.len() >= MAX_SESSIONS {
                prune_candidate(&store.sessions).and_then(|id| store.sessions.remove(&id))
            } else {
                None
            };
            store.sessions.insert(session.id, session);
            pruned
        };
        if let Some(old) = pruned {
            old.group.kill();
        }
    }

    /// Writes `chars` to a tty session (empty polls) and collects output until the yield
    /// time passes or the process exits.
    pub async fn write_stdin(
        &self,
        request: WriteStdinRequest<'_>,
    ) -> Result<ExecOutcome, UnifiedExecError> {
        let session = lock(&self.store)
            .sessions
            .get(&request.session_id)
            .cloned()
            .ok_or(UnifiedExecError::UnknownProcessId {
                process_id: request.session_id,
            })?;
        *lock(&session.last_used) = Instant::now();
        if !request.chars.is_empty() {
            let writer = session
                .pty_writer
                .as_ref()
                .filter(|_| session.tty)
                .ok_or(UnifiedExecError::StdinClosed)?;
            let mut writer = writer.lock().await;
            writer
                .write_all(request.chars.as_bytes())
                .await
                .map_err(|_| UnifiedExecError::WriteToStdin)?;
            writer
                .flush()
                .await
                .map_err(|_| UnifiedExecError::WriteToStdin)?;
            drop(writer);
            tokio::time::sleep(AFTER_STDIN_WRITE).await;
        }
        let yield_time = Duration::from_millis(clamp_write_stdin_yield_time(
            request.yield_time_ms,
            request.chars.is_empty(),
        ));
        Ok(self.collect_and_report(&session, yield_time).await)
    }

    async fn collect_and_report(
        &self,
        session: &Arc<Session>,
        yield_time: Duration,
    ) -> ExecOutcome {
        let start = Instant::now();
        let (output, omitted_bytes) = collect_output(session, start + yield_time).await;
        let wall_time = start.elapsed();
        let exit_code = session.exit_code();
        if exit_code.is_some() {
            lock(&self.store).sessions.remove(&session.id);
        }
        ExecOutcome {
            chunk_id: generate_chunk_id(),
            wall_time,
            original_token_count: approx_token_count(&String::from_utf8_lossy(&output)),
            output,
            omitted_bytes,
            session_id: exit_code.is_none().then_some(session.id),
            exit_code,
        }
    }

    /// Kills one session's process group (SIGTERM, then SIGKILL after a grace period)
    /// and forgets it.
    pub async fn terminate(&self, session_id: i32) -> Result<(), UnifiedExecError> {
        let session = lock(&self.store).sessions.remove(&session_id).ok_or(
            UnifiedExecError::UnknownProcessId {
                process_id: session_id,
            },
        )?;
        let mut exit = session.exit.clone();
        session.group.terminate(&mut exit, TERMINATE_GRACE).await;
        Ok(())
    }

    /// Kills every session the way [`UnifiedExecManager::terminate`] does, concurrently.
    pub async fn terminate_all(&self) {
        let sessions: Vec<Arc<Session>> = {
            let mut store = lock(&self.store);
            store.reserved.clear();
            store.sessions.drain().map(|(_, s)| s).collect()
        };
        let tasks: Vec<_> = sessions
            .into_iter()
            .map(|session| {
                tokio::spawn(async move {
                    let mut exit = session.exit.clone();
                    session.group.terminate(&mut exit, TERMINATE_GRACE).await;
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for UnifiedExecManager {
    fn drop(&mut self) {
        for session in lock(&self.store).sessions.values() {
            session.group.kill();
        }
    }
}

/// The session to prune: among all but the 8 most recently used, an exited one first,
/// else the least recently used.
fn prune_candidate(sessions: &HashMap<i32, Arc<Session>>) -> Option<i32> {
    let mut by_use: Vec<(i32, Instant, bool)> = sessions
        .values()
        .map(|s| (s.id, *lock(&s.last_used), s.exit_code().is_some()))
        .collect();
    by_use.sort_by_key(|(_, used, _)| *used);
    let unprotected = &by_use[..by_use.len().saturating_sub(PROTECTED_RECENT_SESSIONS)];
    unprotected
        .iter()
        .find(|(_, _, exited)| *exited)
        .or_else(|| unprotected.first())
        .map(|(id, _, _)| *id)
}

enum Readers {
    Pty(pty_process::OwnedReadPty),
    Pipes(tokio::process::ChildStdout, tokio::process::ChildStderr),
}

async fn read_output(
    session: Arc<Session>,
    readers: Readers,
    transcript: Arc<Mutex<HeadTailBuffer>>,
    events: Option<ExecEventSink>,
    closed_tx: watch::Sender<bool>,
) {
    let on_chunk = |chunk: &[u8]| {
        lock(&session.pending).push(chunk);
        lock(&transcript).push(chunk);
        if let Some(events) = &events {
            events(ExecEvent::Output {
                session_id: session.id,
                chunk: chunk.to_vec(),
            });
        }
        session.output_arrived.notify_one();
    };
    match readers {
        Readers::Pty(reader) => pump(reader, on_chunk).await,
        Readers::Pipes(stdout, stderr) => {
            tokio::join!(pump(stdout, on_chunk), pump(stderr, on_chunk));
        }
    }
    let _ = closed_tx.send(true);
    session.output_arrived.notify_one();
}

async fn report_exit(
    session: Arc<Session>,
    transcript: Arc<Mutex<HeadTailBuffer>>,
    events: ExecEventSink,
    started: Instant,
) {
    let mut exit = session.exit.clone();
    let Ok(code) = exit
        .wait_for(Option::is_some)
        .await
        .map(|c| c.unwrap_or(-1))
    else {
        return;
    };
    let duration = started.elapsed();
    let mut closed = session.output_closed.clone();
    let _ = tokio::time::timeout(EXIT_EVENT_OUTPUT_WAIT, closed.wait_for(|c| *c)).await;
    let aggregated_output = String::from_utf8_lossy(&lock(&transcript).to_bytes()).into_owned();
    events(ExecEvent::Exited {
        session_id: session.id,
        exit_code: code,
        duration,
        aggregated_output,
    });
}

/// Drains the session's pending output until `deadline`, or until the process exited and
/// its output closed (waiting at most [`POST_EXIT_OUTPUT_WAIT`] for the close after exit).
async fn collect_output(session: &Session, deadline: Instant) -> (Vec<u8>, usize) {
    let mut collected = HeadTailBuffer::new(OUTPUT_MAX_BYTES);
    let mut omitted = 0;
    let mut exit = session.exit.clone();
    let mut closed = session.output_closed.clone();
    let mut close_deadline: Option<Instant> = None;
    loop {
        // Read "closed" before draining: once closed, this drain gets the last bytes.
        let output_closed = *closed.borrow_and_update();
        let exited = exit.borrow_and_update().is_some();
        let (bytes, dropped) = lock(&session.pending).take();
        collected.push(&bytes);
        omitted += dropped;
        if exited && output_closed {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let mut wake_at = deadline;
        if exited {
            let close_by = *close_deadline.get_or_insert(now + POST_EXIT_OUTPUT_WAIT);
            if now >= close_by {
                break;
            }
            wake_at = wake_at.min(close_by);
        }
        tokio::select! {
            _ = session.output_arrived.notified() => {}
            _ = exit.changed(), if !exited => {}
            _ = closed.changed(), if !output_closed => {}
            _ = tokio::time::sleep_until(wake_at) => {}
        }
    }
    omitted += collected.omitted_bytes();
    (collected.to_bytes(), omitted)
}
