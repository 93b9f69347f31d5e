//! Starting a child in its own process group, on a pseudo-terminal or on pipes, watching
//! its exit, and signalling the whole group.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;

/// How long a terminated process group gets between SIGTERM and SIGKILL.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// Rows and columns of a pseudo-terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl Default for TerminalSize {
    fn default() -> Self {
        Self { rows: 24, cols: 80 }
    }
}

/// What to start: the final argv (already wrapped by the sandbox when needed).
pub(crate) struct LaunchSpec<'a> {
    pub argv: &'a [String],
    pub cwd: &'a Path,
    pub env: &'a HashMap<String, String>,
    /// A pseudo-terminal of this size, or pipes when None.
    pub tty: Option<TerminalSize>,
    /// With pipes: give the child a stdin pipe (otherwise /dev/null).
    pub stdin_pipe: bool,
}

/// The parent's ends of the child's standard streams.
pub(crate) enum ChildIo {
    Pty {
        reader: pty_process::OwnedReadPty,
        writer: pty_process::OwnedWritePty,
    },
    Pipes {
        stdin: Option<ChildStdin>,
        stdout: ChildStdout,
        stderr: ChildStderr,
    },
}

/// A started child: its process group, its streams and its exit status.
pub(crate) struct Launched {
    pub group: ProcessGroup,
    pub io: ChildIo,
    /// Becomes `Some(code)` when the child has exited (-1 when killed by a signal).
    pub exit: watch::Receiver<Option<i32>>,
}

/// Paths to remove once the child has exited (mount points bubblewrap created).
pub(crate) type ExitCleanup = Vec<PathBuf>;

/// Starts `spec` as the leader of a new session (and so of a new process group).
pub(crate) fn launch(spec: LaunchSpec<'_>, cleanup: ExitCleanup) -> io::Result<Launched> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let (child, io) = match spec.tty {
        Some(size) => {
            let (pty, pts) = pty_process::open().map_err(io::Error::other)?;
            pty.resize(pty_process::Size::new(size.rows, size.cols))
                .map_err(io::Error::other)?;
            // pty-process makes the child a session leader with the pty as its
            // controlling terminal, so its process group id is its pid.
            let child = pty_process::Command::new(program)
                .args(args)
                .current_dir(spec.cwd)
                .env_clear()
                .envs(spec.env)
                .spawn(pts)
                .map_err(io::Error::other)?;
            let (reader, writer) = pty.into_split();
            (child, ChildIo::Pty { reader, writer })
        }
        None => {
            let mut command = Command::new(program);
            command
                .args(args)
                .current_dir(spec.cwd)
                .env_clear()
                .envs(spec.env)
                .stdin(if spec.stdin_pipe {
                    std::process::Stdio::piped()
                } else {
                    std::process::Stdio::null()
                })
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            start_new_session(&mut command);
            let mut child = command.spawn()?;
            let io = ChildIo::Pipes {
                stdin: child.stdin.take(),
                stdout: child
                    .stdout
                    .take()
                    .ok_or_else(|| io::Error::other("no stdout pipe"))?,
                stderr: child
                    .stderr
                    .take()
                    .ok_or_else(|| io::Error::other("no stderr pipe"))?,
            };
            (child, io)
        }
    };
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("child exited before its pid was read"))?;
    let (exit_tx, exit) = watch::channel(None);
    tokio::spawn(watch_exit(child, exit_tx, cleanup));
    Ok(Launched {
        group: ProcessGroup { leader: pid },
        io,
        exit,
    })
}

/// Makes the piped child call `setsid()` before exec, like pty-process does for a pty.
#[allow(unsafe_code)]
fn start_new_session(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe work is allowed: it makes one raw `setsid` syscall (rustix, no
    // allocation, no locks) and builds an io::Error from the errno, which does not
    // allocate either.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid()
                .map(drop)
                .map_err(|errno| io::Error::from_raw_os_error(errno.raw_os_error()))
        });
    }
}

async fn watch_exit(mut child: Child, exit_tx: watch::Sender<Option<i32>>, cleanup: ExitCleanup) {
    let code = match child.wait().await {
        Ok(status) => status.code().unwrap_or(-1),
        Err(_) => -1,
    };
    for path in cleanup {
        // Only the empty mount-point directories bubblewrap created are removed; a
        // directory that gained content meanwhile stays.
        let _ = std::fs::remove_dir(&path);
    }
    let _ = exit_tx.send(Some(code));
}

/// Where a child's signals go. Every child leads its own session, so this is its process
/// group (id = the leader's pid) and every other process of that session, which reaches
/// background jobs a shell with job control moved to groups of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessGroup {
    leader: u32,
}

impl ProcessGroup {
    /// Sends `signal` to the group (and the session); processes already gone are skipped.
    pub fn signal(self, signal: Signal) {
        let Some(pid) = i32::try_from(self.leader).ok().and_then(Pid::from_raw) else {
            return;
        };
        let _ = kill_process_group(pid, signal);
        for member in session_members(pid.as_raw_nonzero().get()) {
            if let Some(member) = Pid::from_raw(member) {
                let _ = kill_process(member, signal);
            }
        }
    }

    /// SIGKILL to the whole group at once.
    pub fn kill(self) {
        self.signal(Signal::KILL);
    }

    /// SIGTERM to the group, then SIGKILL once the leader has exited or `grace` passed,
    /// so children that outlive or ignore SIGTERM die too.
    pub async fn terminate(self, exit: &mut watch::Receiver<Option<i32>>, grace: Duration) {
        self.signal(Signal::TERM);
        let _ = tokio::time::timeout(grace, exit.wait_for(Option::is_some)).await;
        self.kill();
    }
}

/// Pids of the processes in session `sid`, from /proc.
fn session_members(sid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After "pid (comm)": state ppid pgrp session ...
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(3)?.parse::<i32>().ok())
                == Some(sid)
        })
        .collect()
}

/// Copies everything `reader` yields into `sink` until EOF or an error (a pty whose
/// other side is closed reports EIO, which ends the stream too).
pub(crate) async fn pump<R, F>(mut reader: R, mut sink: F)
where
    R: tokio::io::AsyncRead + Unpin,
    F: FnMut(&[u8]),
{
    let mut buf = vec![0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => sink(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}
