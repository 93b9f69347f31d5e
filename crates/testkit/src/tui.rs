//! The real Codex TUI in a pseudo-terminal, with a screen model fed from it.
//!
//! What the TUI needs to run unattended in a fresh home (found by running codex-cli 0.169.0):
//! - The terminal must answer its start-up queries: it sends `CSI ? u` (keyboard protocol), `CSI
//!   c` (device attributes), `CSI 6 n` (cursor position) and `OSC 10 ; ?` / `OSC 11 ; ?` (default
//!   colours), and waits for the answers before it draws. [`Tui`] answers them as a plain xterm
//!   without the kitty keyboard protocol would (no answer to `CSI ? u`: the device attributes that
//!   follow tell the TUI the protocol is off, so keys are sent as legacy bytes).
//! - Its own `CODEX_HOME` (a temp dir per TUI unless given) holds a `config.toml` with
//!   `check_for_update_on_startup = false` (the update check would ask the internet for the
//!   latest release), `[analytics] enabled = false`, and the working directory marked trusted
//!   (`[projects."<cwd>"] trust_level = "trusted"`). With `--remote` and a fresh home the TUI
//!   showed no onboarding, login or trust prompt (the account, models and config come from the
//!   server: `account/read` answering `requiresOpenaiAuth: true` without an account would show
//!   the sign-in screen); the trust entry keeps a git work tree as cwd from asking either.
//! - The footer `<model> default · <cwd>` under the composer appears only once the bootstrap
//!   requests were answered; the composer alone is drawn before them ([`Tui::wait_for_composer`]).
//! - `HOME` is that temp dir too, so nothing of the user's `~/.codex` is read, and the
//!   environment is otherwise only `PATH`, `TERM=xterm-256color` and `LANG=C.UTF-8` plus what the
//!   test sets.
//! - Typed text arrives faster than a person types, so the TUI's paste-burst detection takes it
//!   for a paste, in which Enter inserts a newline. [`Tui::submit`] therefore types the text,
//!   waits until it shows in the composer, and only then sends Enter.
//!
//! Waiting is on screen updates: every chunk read from the terminal wakes the waiters, which look
//! at the screen again; nothing sleeps for a fixed time.

use std::io::{Read as _, Write};
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portable_pty::{ChildKiller, CommandBuilder, MasterPty, PtySize, native_pty_system};
use tokio::sync::watch;

use crate::Clients;

/// Enter, as a terminal sends it.
pub const ENTER: &str = "\r";
/// Escape.
pub const ESC: &str = "\x1b";
/// Ctrl-C.
pub const CTRL_C: &str = "\x03";

/// The composer's placeholder text while it is empty.
pub const COMPOSER_PLACEHOLDER: &str = "Ask Codex to do anything";

/// How a [`Tui`] is started.
#[derive(Clone, Debug)]
pub struct TuiOptions {
    /// Terminal height.
    pub rows: u16,
    /// Terminal width.
    pub cols: u16,
    /// The TUI's `CODEX_HOME`; a new temp dir when `None` (see [`Tui::home`]).
    pub home: Option<PathBuf>,
    /// The working directory; a new temp dir when `None` (see [`Tui::cwd`]).
    pub cwd: Option<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

impl Default for TuiOptions {
    fn default() -> TuiOptions {
        TuiOptions {
            rows: 40,
            cols: 120,
            home: None,
            cwd: None,
            env: Vec::new(),
        }
    }
}

/// What the reader and waiter threads share with the test.
struct Terminal {
    parser: vt100::Parser<Answers>,
    /// No more output will come (the terminal reached end of file).
    closed: bool,
    /// The exit code, once the process exited.
    exit: Option<u32>,
}

/// Collects the answers to the terminal queries found while parsing one chunk.
#[derive(Default)]
struct Answers(Vec<u8>);

impl vt100::Callbacks for Answers {
    fn unhandled_csi(
        &mut self,
        screen: &mut vt100::Screen,
        i1: Option<u8>,
        _i2: Option<u8>,
        params: &[&[u16]],
        c: char,
    ) {
        match (i1, params, c) {
            (None, [[6]], 'n') => {
                let (row, col) = screen.cursor_position();
                self.0
                    .extend(format!("\x1b[{};{}R", row + 1, col + 1).into_bytes());
            }
            // VT220 with ANSI colour, no kitty keyboard protocol.
            (None, [] | [[0]], 'c') => self.0.extend(b"\x1b[?62;22c"),
            _ => {}
        }
    }

    fn unhandled_osc(&mut self, _screen: &mut vt100::Screen, params: &[&[u8]]) {
        match params {
            [b"10", b"?"] => self.0.extend(b"\x1b]10;rgb:ffff/ffff/ffff\x1b\\"),
            [b"11", b"?"] => self.0.extend(b"\x1b]11;rgb:0000/0000/0000\x1b\\"),
            _ => {}
        }
    }
}

/// A running Codex TUI. Killed on drop.
pub struct Tui {
    terminal: Arc<Mutex<Terminal>>,
    updates: watch::Receiver<u64>,
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
    killer: Box<dyn ChildKiller + Send + Sync>,
    home: PathBuf,
    cwd: PathBuf,
    _master: Box<dyn MasterPty + Send>,
    _temp: Option<tempfile::TempDir>,
}

impl Tui {
    /// Starts the installed codex TUI (`codex ARGS…`, e.g. `--remote ws://127.0.0.1:PORT`, or
    /// `--remote unix://PATH resume ID`) in a 40×120 terminal with a fresh home and working
    /// directory.
    pub fn start(clients: &Clients, args: &[&str]) -> Tui {
        Tui::start_with(clients, args, TuiOptions::default())
    }

    /// [`Tui::start`] with `options`.
    pub fn start_with(clients: &Clients, args: &[&str], options: TuiOptions) -> Tui {
        let temp = (options.home.is_none() || options.cwd.is_none())
            .then(|| tempfile::tempdir().expect("temp dir for the TUI"));
        let in_temp = |name: &str| {
            let dir = temp.as_ref().unwrap().path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        };
        let home = options
            .home
            .clone()
            .unwrap_or_else(|| in_temp("codex-home"));
        let cwd = options.cwd.clone().unwrap_or_else(|| in_temp("work"));
        write_tui_config(&home, &cwd);

        let pair = native_pty_system()
            .openpty(PtySize {
                rows: options.rows,
                cols: options.cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pseudo-terminal");
        let mut command = CommandBuilder::new(clients.codex());
        command.args(args);
        command.cwd(&cwd);
        command.env_clear();
        command.env("PATH", std::env::var("PATH").unwrap_or_default());
        command.env("HOME", &home);
        command.env("CODEX_HOME", &home);
        command.env("TERM", "xterm-256color");
        command.env("LANG", "C.UTF-8");
        for (name, value) in &options.env {
            command.env(name, value);
        }
        let mut child = pair
            .slave
            .spawn_command(command)
            .unwrap_or_else(|err| panic!("start {}: {err}", clients.codex().display()));
        // Our copy of the slave side must go, or the master never reaches end of file.
        drop(pair.slave);
        let killer = child.clone_killer();
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = Arc::new(Mutex::new(pair.master.take_writer().expect("pty writer")));

        let size = |n: u16| NonZeroU16::new(n).expect("a terminal has at least one row and column");
        let terminal = Arc::new(Mutex::new(Terminal {
            parser: vt100::Parser::new_with_callbacks(
                size(options.rows),
                size(options.cols),
                0,
                Answers::default(),
            ),
            closed: false,
            exit: None,
        }));
        let (notify, updates) = watch::channel(0u64);
        let notify = Arc::new(notify);

        let (shared, answer_to, wake) = (
            Arc::clone(&terminal),
            Arc::clone(&writer),
            Arc::clone(&notify),
        );
        std::thread::spawn(move || {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                // EIO once the TUI and everything it started closed the terminal.
                let read = reader.read(&mut chunk).unwrap_or(0);
                let answers = {
                    let mut terminal = shared.lock().unwrap();
                    if read == 0 {
                        terminal.closed = true;
                    } else {
                        terminal.parser.process(&chunk[..read]);
                    }
                    std::mem::take(&mut terminal.parser.callbacks_mut().0)
                };
                if !answers.is_empty() {
                    let mut writer = answer_to.lock().unwrap();
                    let _ = writer.write_all(&answers).and_then(|()| writer.flush());
                }
                wake.send_modify(|generation| *generation += 1);
                if read == 0 {
                    return;
                }
            }
        });
        let (shared, wake) = (Arc::clone(&terminal), notify);
        std::thread::spawn(move || {
            let code = child.wait().map(|status| status.exit_code()).unwrap_or(1);
            shared.lock().unwrap().exit = Some(code);
            wake.send_modify(|generation| *generation += 1);
        });

        Tui {
            terminal,
            updates,
            writer,
            killer,
            home,
            cwd,
            _master: pair.master,
            _temp: temp,
        }
    }

    /// The TUI's `CODEX_HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The TUI's working directory.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// The visible screen as text: one line per row, trailing blanks trimmed.
    pub fn screen_text(&self) -> String {
        self.terminal.lock().unwrap().parser.screen().contents()
    }

    /// Sends `keys` as the terminal would ([`ENTER`], [`ESC`], [`CTRL_C`], or text).
    pub fn send_keys(&self, keys: &str) {
        let mut writer = self.writer.lock().unwrap();
        writer
            .write_all(keys.as_bytes())
            .and_then(|()| writer.flush())
            .expect("write to the TUI's terminal");
    }

    /// Types `text` (without Enter).
    pub fn type_text(&self, text: &str) {
        self.send_keys(text);
    }

    /// Types `text`, waits until the composer shows it, then presses Enter (see the module doc
    /// for why Enter must not follow the text at once). `text` must fit on one screen line.
    pub async fn submit(&mut self, text: &str, timeout: Duration) -> Result<(), String> {
        self.type_text(text);
        self.wait_for_text(text, timeout).await?;
        self.send_keys(ENTER);
        Ok(())
    }

    /// Waits until the TUI is ready for a prompt: the empty composer and, under it, the footer
    /// naming `model`. The footer is drawn only after the bootstrap requests (account, models,
    /// config) were answered; the composer alone shows up before them, and a failed bootstrap
    /// then exits.
    pub async fn wait_for_composer(
        &mut self,
        model: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let footer = format!("{model} ");
        self.wait_until("the composer and the model footer", timeout, |screen| {
            screen.contains(COMPOSER_PLACEHOLDER) && screen.contains(&footer)
        })
        .await
    }

    /// Waits until the screen shows `text` (within one row).
    pub async fn wait_for_text(&mut self, text: &str, timeout: Duration) -> Result<(), String> {
        self.wait_until(&format!("{text:?} on the screen"), timeout, |screen| {
            screen.contains(text)
        })
        .await
    }

    /// Waits until the screen shows `text` at least `count` times.
    pub async fn wait_for_count(
        &mut self,
        text: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        self.wait_until(
            &format!("{count}× {text:?} on the screen"),
            timeout,
            |screen| screen.matches(text).count() >= count,
        )
        .await
    }

    /// Waits until `done(screen text)` holds; the error names `what` and holds the screen.
    pub async fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        self.wait_for_state(what, timeout, |terminal| {
            done(&terminal.parser.screen().contents()).then_some(())
        })
        .await
    }

    /// Waits until the TUI exited and its output was all read; returns the exit code (1 for a
    /// death by signal).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<u32, String> {
        self.wait_for_state("exit", timeout, |terminal| {
            terminal.exit.filter(|_| terminal.closed)
        })
        .await
    }

    /// Looks at the terminal after every update until `ready` gives a value.
    async fn wait_for_state<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&Terminal) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.updates.borrow_and_update();
            let screen = {
                let terminal = self.terminal.lock().unwrap();
                if let Some(value) = ready(&terminal) {
                    return Ok(value);
                }
                if terminal.closed && terminal.exit.is_some() {
                    return Err(format!(
                        "the TUI exited (code {:?}) without {what}; its screen:\n{}",
                        terminal.exit,
                        terminal.parser.screen().contents()
                    ));
                }
                terminal.parser.screen().contents()
            };
            let changed = tokio::time::timeout_at(deadline, self.updates.changed()).await;
            if changed.is_err() {
                return Err(format!(
                    "no {what} after {timeout:?}; the screen:\n{screen}"
                ));
            }
        }
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        if self.terminal.lock().unwrap().exit.is_none() {
            let _ = self.killer.kill();
        }
    }
}

/// The TUI's own `config.toml` (see the module doc), kept if the home already has one.
fn write_tui_config(home: &Path, cwd: &Path) {
    let path = home.join("config.toml");
    if path.exists() {
        return;
    }
    let config = format!(
        "check_for_update_on_startup = false\n\n[analytics]\nenabled = false\n\n\
         [projects.{}]\ntrust_level = \"trusted\"\n",
        toml_string(&cwd.display().to_string())
    );
    std::fs::write(&path, config).expect("write the TUI's config.toml");
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}
