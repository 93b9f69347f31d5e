//! Fixtures for tether's tests, all real: a private software TPM per test, the `tether` binary
//! run as a process, clients speaking JSON over its stdio, TCP WebSocket and unix socket, and a
//! check of every message a client receives against the codex 0.169 JSON Schema, a scripted
//! Responses API server, and a byte tap in front of it that timestamps every read for benches,
//! with [`bench`](mod@bench): the latency samples, tables and memory readings the benches print.
//! The real Codex clients too: the TUI in a pseudo-terminal with a screen model ([`Tui`]), Python
//! scripts on the official SDK ([`run_python`]), the real `codex app-server` to compare with
//! ([`CodexAppServer`]), all from the installation of `scripts/setup-clients.sh` ([`Clients`]).
//! A missing program is a test failure that says what to install, never a skip.

pub mod bench;
mod client;
mod clients;
mod otlp;
mod payloads;
mod process;
mod python_sdk;
mod schema;
mod swtpm;
mod tap;
mod token;
mod tui;
mod upstream;

pub use client::{Client, Frame};
pub use clients::{CODEX_CLI_VERSION, Clients, CodexAppServer, PYTHON_SDK_VERSION, codex_config};
pub use otlp::OtlpReceiver;
pub use payloads::{connection_payload, unix_now};
pub use process::{TetherProcess, send_signal};
pub use python_sdk::{ScriptOutput, run_python};
pub use schema::Schemas;
pub use swtpm::Swtpm;
pub use tap::{Direction, Tap, TapRead};
pub use token::{
    IsolatedToken, TOKEN_BASE_DIR, TOKEN_LABEL, TOKEN_USER, client_module, softhsm_module,
};
pub use tui::{COMPOSER_PLACEHOLDER, CTRL_C, ENTER, ESC, Tui, TuiOptions};
pub use upstream::{
    RecordedRequest, ResponsesServer, Script, Step, completed, last_user_text, message_response,
};
