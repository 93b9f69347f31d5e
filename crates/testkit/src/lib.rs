//! Fixtures for tether's tests, all real: a private software TPM per test, the `tether` binary
//! run as a process, clients speaking JSON over its stdio, TCP WebSocket and unix socket, and a
//! check of every message a client receives against the codex 0.169 JSON Schema, a scripted
//! Responses API server, and a byte tap in front of it that timestamps every read for benches,
//! with [`bench`](mod@bench): the latency samples, tables and memory readings the benches print.
//! A missing program is a test failure that says what to install, never a skip.

pub mod bench;
mod client;
mod otlp;
mod payloads;
mod process;
mod schema;
mod swtpm;
mod tap;
mod token;
mod upstream;

pub use client::{Client, Frame};
pub use otlp::OtlpReceiver;
pub use payloads::{connection_payload, unix_now};
pub use process::{TetherProcess, send_signal};
pub use schema::Schemas;
pub use swtpm::Swtpm;
pub use tap::{Direction, Tap, TapRead};
pub use token::{
    IsolatedToken, TOKEN_BASE_DIR, TOKEN_LABEL, TOKEN_USER, client_module, softhsm_module,
};
pub use upstream::{RecordedRequest, ResponsesServer, Script, Step, completed, message_response};
