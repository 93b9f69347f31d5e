//! The `apply_patch` patch format of codex 0.169: parsing patch text, planning it against a
//! working directory without writing (so a server can show the change and ask for approval), and
//! writing the planned changes, one atomic file replacement at a time.
//!
//! It also renders what codex shows for a patch: the `fileChange` diff of each file
//! ([`FileChange::diff`]), the success text the model reads ([`success_summary`]) and the
//! aggregated git-style diff of a turn ([`TurnDiff`]). Error `Display` texts are codex's verbatim;
//! the server prefixes them as codex does (`apply_patch verification failed: …`).
//!
//! This crate owns the format and the file writes only. It knows nothing of JSON-RPC, threads,
//! approvals or sandboxing: callers decide whether a plan may be applied, and run it where the
//! sandbox allows. It is synchronous and starts no threads.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! let patch = tether_apply_patch::parse_patch("*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch")?;
//! let plan = tether_apply_patch::plan_patch(&patch, Path::new("/work"))?;
//! // …show plan.changes() and ask for approval…
//! plan.apply()?;
//! print!("{}", tether_apply_patch::success_summary(&patch));
//! # Ok(()) }
//! ```

mod parser;
mod plan;
mod seek;
mod summary;
mod turn_diff;
mod update;

use std::io;
use std::path::PathBuf;

pub use parser::{ChunkLine, Hunk, ParseError, Patch, UpdateChunk, parse_patch};
pub use plan::{ApplyFailure, ChangeKind, FileChange, PatchPlan, apply_patch, plan_patch};
pub use summary::success_summary;
pub use turn_diff::TurnDiff;

/// Why a patch could not be planned or applied. The `Display` texts are codex's, verbatim, except
/// [`PatchError::Stale`], which codex has no counterpart for.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch text did not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The patch has no hunks.
    #[error("No files were modified.")]
    NoChanges,
    /// A file the patch needs could not be read, e.g. `Failed to read file to update /w/x: No
    /// such file or directory (os error 2)`.
    #[error("{context}: {source}")]
    Read {
        /// What was being read, with the absolute path.
        context: String,
        /// The I/O error (invalid UTF-8 is `InvalidData`).
        source: io::Error,
    },
    /// An update's context or lines are not in the file, e.g. `Failed to find expected lines in
    /// /w/x:\n…`.
    #[error("{0}")]
    Mismatch(String),
    /// Writing, creating directories, deleting or removing a moved file failed, e.g. `Failed to
    /// write file /w/x`. As in codex, the text names the step and path; the I/O error is the
    /// [`std::error::Error::source`].
    #[error("{context}")]
    Write {
        /// What was being done, with the absolute path.
        context: String,
        /// The I/O error.
        source: io::Error,
    },
    /// A planned file no longer holds what the plan was computed from; nothing was written to it.
    #[error("{} changed after the patch was planned; plan the patch again", path.display())]
    Stale {
        /// The absolute path of the file.
        path: PathBuf,
    },
}
