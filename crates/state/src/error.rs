use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// Why the state database could not be opened or used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file is not a SQLite database, or its pages are damaged.
    #[error("state database {path} is corrupt or not a SQLite database: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// SQLite's report.
        source: rusqlite::Error,
    },
    /// Another process holds a lock for longer than the busy timeout.
    #[error("state database {path} is locked by another process: {source}")]
    Locked {
        /// The file.
        path: PathBuf,
        /// SQLite's report.
        source: rusqlite::Error,
    },
    /// The file (or its directory) cannot be written.
    #[error("state database {path} is read-only")]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },
    /// The file was migrated by a newer tether.
    #[error(
        "state database {path} has schema version {found}, newer than the {supported} this tether knows; use a newer tether"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The file or its directory could not be created.
    #[error("state database {path}: cannot create it: {source}")]
    Directory {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Any other SQLite failure.
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's report.
        source: rusqlite::Error,
    },
    /// A query panicked while holding the connection.
    #[error("state database {path}: connection poisoned by an earlier panic")]
    Poisoned {
        /// The file.
        path: PathBuf,
    },
    /// The blocking task running a query failed.
    #[error("state database {path}: query task failed: {reason}")]
    Task {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl StateError {
    pub(crate) fn classify(path: &Path, source: rusqlite::Error) -> StateError {
        let path = path.to_owned();
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                StateError::Corrupt { path, source }
            }
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StateError::Locked { path, source }
            }
            Some(ErrorCode::ReadOnly) => StateError::ReadOnly { path },
            _ => StateError::Sqlite { path, source },
        }
    }
}
