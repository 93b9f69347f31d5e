//! tether's state database: one SQLite file, its versioned migrations, and the stores built on it
//! (device-key bindings, the thread index, per-thread goals and token usage).
//!
//! This crate owns the schema and every SQL statement, and nothing but SQLite: it does not know
//! about providers, JSON-RPC or connections. Opening never repairs or resets anything: a corrupt,
//! locked, read-only or newer-schema file is an error that names the file, and the file is left as
//! it was. Queries run on tokio's blocking pool so callers stay async.

mod bindings;
mod error;
mod migrations;
mod threads;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, DatabaseName, OpenFlags};

pub use error::StateError;
pub use threads::{SortKey, ThreadPage, ThreadQuery, ThreadRecord};

/// How to open the database.
#[derive(Clone, Copy, Debug)]
pub struct StateOptions {
    /// How long a statement waits for another process's lock before failing as locked.
    pub busy_timeout: Duration,
}

impl Default for StateOptions {
    fn default() -> Self {
        StateOptions {
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// An open, migrated state database. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct StateDb {
    path: Arc<PathBuf>,
    connection: Arc<Mutex<Connection>>,
}

impl StateDb {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<StateDb, StateError> {
        StateDb::open_with(path, StateOptions::default())
    }

    /// [`StateDb::open`] with explicit options.
    pub fn open_with(path: &Path, options: StateOptions) -> Result<StateDb, StateError> {
        let fail = |source| StateError::classify(path, source);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|source| StateError::Directory {
                    path: path.to_owned(),
                    source,
                })?;
        }
        create_private(path).map_err(|source| StateError::Directory {
            path: path.to_owned(),
            source,
        })?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags).map_err(fail)?;
        // SQLite silently falls back to read-only when the file cannot be opened for writing.
        if connection.is_readonly(DatabaseName::Main).map_err(fail)? {
            return Err(StateError::ReadOnly {
                path: path.to_owned(),
            });
        }
        connection
            .busy_timeout(options.busy_timeout)
            .map_err(fail)?;
        // Refuse a newer schema before anything (even the journal mode) writes to the file.
        let version = migrations::version(&connection, path)?;
        // Bindings are written rarely and must survive power loss with the key they name.
        connection
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(fail)?;
        let mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(fail)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StateError::ReadOnly {
                path: path.to_owned(),
            });
        }
        migrations::apply(&connection, path, version)?;
        Ok(StateDb {
            path: Arc::new(path.to_owned()),
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `query` on the blocking pool with the connection to itself.
    async fn run<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StateError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let connection = db.connection.lock().map_err(|_| StateError::Poisoned {
                path: db.path.to_path_buf(),
            })?;
            query(&connection).map_err(|source| StateError::classify(&db.path, source))
        })
        .await
        .map_err(|err| StateError::Task {
            path: self.path.to_path_buf(),
            reason: err.to_string(),
        })?
    }
}

/// Creates the file owner-only before SQLite does (it would use 0644): it names accounts and
/// clients. SQLite gives its -wal and -shm files the same mode as the database.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map(drop),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}
