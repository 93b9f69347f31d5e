//! Command execution for tether's agent tools, with no knowledge of JSON-RPC, threads or
//! turns (the server maps these types to the wire):
//!
//! - [`UnifiedExecManager`]: the process sessions behind `exec_command` / `write_stdin`
//!   (pty or pipes, own process group, yield times, bounded output, kill on drop);
//! - [`ExecOutcome::model_text`]: the tool output text exactly as codex writes it, with
//!   its token estimate and head+tail truncation;
//! - [`shell_argv`], [`render_command`], [`command_actions`]: the command line and its
//!   `commandActions` summary;
//! - [`Sandbox`] / [`SandboxPolicy`]: the Linux sandbox (bubblewrap, then
//!   [`sandbox_exec_main`] applies `no_new_privs` + seccomp and execs), failing closed;
//! - [`CommandExec`]: one-off commands for `command/exec`;
//! - [`Utf8ChunkDecoder`]: text deltas from output chunks.
//!
//! It must not know about approvals, exec policy, or any protocol type.

mod buffer;
mod command;
mod oneoff;
mod output;
mod sandbox;
mod spawn;
mod unified;
mod utf8;

pub use buffer::{HeadTailBuffer, OUTPUT_MAX_BYTES};
pub use command::{CommandAction, command_actions, parse_command, render_command, shell_argv};
pub use oneoff::{
    CommandExec, CommandExecError, CommandExecResult, CommandExecSpec, CommandOutputChunk,
    CommandOutputSink, DEFAULT_OUTPUT_BYTES_CAP, OutputStream, TIMEOUT_EXIT_CODE,
};
pub use output::{
    DEFAULT_MAX_OUTPUT_TOKENS, ExecOutcome, TruncationPolicy, approx_bytes_for_tokens,
    approx_token_count, approx_tokens_from_byte_count, formatted_truncate_text, generate_chunk_id,
    output_omission_marker, truncate_text,
};
pub use sandbox::{
    PROTECTED_SUBPATHS, SANDBOX_EXEC_SUBCOMMAND, Sandbox, SandboxError, SandboxPolicy, bwrap_args,
    sandbox_exec_main,
};
pub use spawn::{TERMINATE_GRACE, TerminalSize};
pub use unified::{
    DEFAULT_EXEC_YIELD_TIME_MS, DEFAULT_WRITE_STDIN_YIELD_TIME_MS, ExecEvent, ExecEventSink,
    ExecRequest, MAX_EMPTY_YIELD_TIME_MS, MAX_SESSIONS, MAX_YIELD_TIME_MS, MIN_EMPTY_YIELD_TIME_MS,
    MIN_YIELD_TIME_MS, UNIFIED_EXEC_ENV, UnifiedExecError, UnifiedExecManager, WriteStdinRequest,
    clamp_exec_yield_time, clamp_write_stdin_yield_time,
};
pub use utf8::Utf8ChunkDecoder;
