//! Schema versions, recorded in SQLite's `user_version`. Append only: a released migration is
//! never edited, so every database walks the same path.

use std::path::Path;

use rusqlite::Connection;

use crate::StateError;

const MIGRATIONS: &[&str] = &[
    // 1: device-key bindings.
    "CREATE TABLE device_key_bindings (
        key_id TEXT PRIMARY KEY,
        account_user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );",
    // 2: the thread index (histories live in per-thread logs).
    "CREATE TABLE threads (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        preview TEXT NOT NULL,
        model_provider TEXT NOT NULL,
        cwd TEXT NOT NULL,
        metadata TEXT NOT NULL
    );
    CREATE INDEX threads_by_created ON threads (created_at, id);
    CREATE INDEX threads_by_updated ON threads (updated_at, id);",
    // 3: thread goals, as JSON (the wire `ThreadGoal`), one per thread.
    "CREATE TABLE thread_goals (
        thread_id TEXT PRIMARY KEY,
        goal TEXT NOT NULL
    );",
    // 4: a thread's token usage (total and the last turn's), as JSON, one per thread.
    "CREATE TABLE thread_token_usage (
        thread_id TEXT PRIMARY KEY,
        usage TEXT NOT NULL
    );",
    // 5: archived threads leave listings; threads with no completed turn are not listed (rows
    // from before this version are assumed to have one).
    "ALTER TABLE threads ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE threads ADD COLUMN listed INTEGER NOT NULL DEFAULT 1;",
    // 6: completed turns that could not be written to a thread's history log before tether
    // stopped, as a JSON array of turn ids, one row per thread.
    "CREATE TABLE thread_lost_turns (
        thread_id TEXT PRIMARY KEY,
        turns TEXT NOT NULL
    );",
];

/// The version a fully migrated database has.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

/// The file's schema version, refusing one newer than this build knows.
pub(crate) fn version(connection: &Connection, path: &Path) -> Result<i64, StateError> {
    let found: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|source| StateError::classify(path, source))?;
    if found > LATEST {
        return Err(StateError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: LATEST,
        });
    }
    Ok(found)
}

/// Brings a database at version `found` up to [`LATEST`].
pub(crate) fn apply(connection: &Connection, path: &Path, found: i64) -> Result<(), StateError> {
    let fail = |source| StateError::classify(path, source);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let version = index as i64 + 1;
        // The version bump commits with the migration, so a crash leaves one or the other whole.
        connection
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; {sql} PRAGMA user_version = {version}; COMMIT;"
            ))
            .map_err(|source| {
                let _ = connection.execute_batch("ROLLBACK");
                fail(source)
            })?;
    }
    Ok(())
}
