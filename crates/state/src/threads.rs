//! The thread index: one row per persisted thread, for listing and for finding a thread to load.
//! What a thread says lives in its history log; `metadata` is the caller's own JSON.

use rusqlite::{OptionalExtension as _, params};

use crate::{StateDb, StateError};

/// One indexed thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadRecord {
    /// UUID.
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; bumped at every completed turn.
    pub updated_at: i64,
    /// The first user message, or empty.
    pub preview: String,
    /// The provider the thread runs on.
    pub model_provider: String,
    /// Working directory.
    pub cwd: String,
    /// Everything else the caller keeps about the thread, as JSON text.
    pub metadata: String,
}

/// Which timestamp orders a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// `created_at`.
    CreatedAt,
    /// `updated_at`.
    UpdatedAt,
}

/// A page request over the index. The cursor is `"<timestamp>|<id>"` of the last row returned.
#[derive(Clone, Debug)]
pub struct ThreadQuery {
    /// Order.
    pub sort_key: SortKey,
    /// Newest first when true.
    pub descending: bool,
    /// Continue after this cursor.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Only these providers (empty: all).
    pub model_providers: Vec<String>,
    /// Only these working directories (empty: all).
    pub cwds: Vec<String>,
    /// Only threads whose preview contains this text.
    pub search: Option<String>,
    /// Archived threads instead of the others.
    pub archived: bool,
}

/// A page of threads and the cursor of the next page, if any.
pub type ThreadPage = (Vec<ThreadRecord>, Option<String>);

impl StateDb {
    /// Adds a thread.
    pub async fn insert_thread(&self, record: ThreadRecord) -> Result<(), StateError> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO threads (id, created_at, updated_at, preview, model_provider, cwd, metadata, listed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
                params![record.id, record.created_at, record.updated_at, record.preview, record.model_provider, record.cwd, record.metadata],
            )
        })
        .await
        .map(drop)
    }

    /// Updates what changes as a thread is used. A touched thread has had a turn, so listings
    /// show it from now on.
    pub async fn touch_thread(
        &self,
        id: &str,
        updated_at: i64,
        preview: &str,
    ) -> Result<(), StateError> {
        let (id, preview) = (id.to_owned(), preview.to_owned());
        self.run(move |c| {
            c.execute(
                "UPDATE threads SET updated_at = ?2, preview = ?3, listed = 1 WHERE id = ?1",
                params![id, updated_at, preview],
            )
        })
        .await
        .map(drop)
    }

    /// Replaces the caller's JSON of thread `id`; false when it is not indexed.
    pub async fn set_thread_metadata(
        &self,
        id: &str,
        metadata: String,
    ) -> Result<bool, StateError> {
        let id = id.to_owned();
        self.run(move |c| {
            c.execute(
                "UPDATE threads SET metadata = ?2 WHERE id = ?1",
                params![id, metadata],
            )
        })
        .await
        .map(|updated| updated > 0)
    }

    /// Archives (or unarchives) thread `id`; false when it is not indexed.
    pub async fn set_thread_archived(&self, id: &str, archived: bool) -> Result<bool, StateError> {
        let id = id.to_owned();
        self.run(move |c| {
            c.execute(
                "UPDATE threads SET archived = ?2 WHERE id = ?1",
                params![id, archived],
            )
        })
        .await
        .map(|updated| updated > 0)
    }

    /// Removes thread `id` with its goal and token usage, in one transaction; false when it was
    /// not indexed.
    pub async fn delete_thread(&self, id: &str) -> Result<bool, StateError> {
        let id = id.to_owned();
        self.run(move |c| {
            let transaction = c.unchecked_transaction()?;
            transaction.execute("DELETE FROM thread_goals WHERE thread_id = ?1", [&id])?;
            transaction.execute("DELETE FROM thread_token_usage WHERE thread_id = ?1", [&id])?;
            transaction.execute("DELETE FROM thread_lost_turns WHERE thread_id = ?1", [&id])?;
            let deleted = transaction.execute("DELETE FROM threads WHERE id = ?1", [&id])?;
            transaction.commit()?;
            Ok(deleted > 0)
        })
        .await
    }

    /// The thread with `id`, if indexed.
    pub async fn thread(&self, id: &str) -> Result<Option<ThreadRecord>, StateError> {
        let id = id.to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT id, created_at, updated_at, preview, model_provider, cwd, metadata FROM threads WHERE id = ?1",
                [id],
                record,
            )
            .optional()
        })
        .await
    }

    /// One page of the index.
    pub async fn list_threads(&self, query: ThreadQuery) -> Result<ThreadPage, StateError> {
        self.run(move |c| {
            let column = match query.sort_key {
                SortKey::CreatedAt => "created_at",
                SortKey::UpdatedAt => "updated_at",
            };
            let (direction, after) = if query.descending { ("DESC", "<") } else { ("ASC", ">") };
            let mut sql = "SELECT id, created_at, updated_at, preview, model_provider, cwd, metadata FROM threads WHERE listed = 1 AND archived = ?".to_owned();
            let mut values: Vec<rusqlite::types::Value> = vec![i64::from(query.archived).into()];
            if let Some((stamp, id)) = query.cursor.as_deref().and_then(parse_cursor) {
                sql.push_str(&format!(" AND ({column}, id) {after} (?, ?)"));
                values.push(stamp.into());
                values.push(id.into());
            }
            for (field, allowed) in [("model_provider", &query.model_providers), ("cwd", &query.cwds)] {
                if !allowed.is_empty() {
                    let marks = vec!["?"; allowed.len()].join(", ");
                    sql.push_str(&format!(" AND {field} IN ({marks})"));
                    values.extend(allowed.iter().cloned().map(Into::into));
                }
            }
            if let Some(search) = &query.search {
                sql.push_str(" AND instr(preview, ?) > 0");
                values.push(search.clone().into());
            }
            sql.push_str(&format!(" ORDER BY {column} {direction}, id {direction} LIMIT ?"));
            values.push((query.limit as i64 + 1).into());
            let mut rows: Vec<ThreadRecord> = c
                .prepare(&sql)?
                .query_map(rusqlite::params_from_iter(values), record)?
                .collect::<Result<_, _>>()?;
            let next = if rows.len() > query.limit {
                rows.truncate(query.limit);
                rows.last().map(|last| {
                    let stamp = match query.sort_key {
                        SortKey::CreatedAt => last.created_at,
                        SortKey::UpdatedAt => last.updated_at,
                    };
                    format!("{stamp}|{}", last.id)
                })
            } else {
                None
            };
            Ok((rows, next))
        })
        .await
    }
}

impl StateDb {
    /// The goal of `thread_id` as stored (JSON), if any.
    pub async fn goal(&self, thread_id: &str) -> Result<Option<String>, StateError> {
        self.document(PerThread::Goal, thread_id).await
    }

    /// Stores (or replaces) the goal of `thread_id`.
    pub async fn put_goal(&self, thread_id: &str, goal: String) -> Result<(), StateError> {
        self.put_document(PerThread::Goal, thread_id, goal).await
    }

    /// The token usage of `thread_id` as stored (JSON), if any.
    pub async fn token_usage(&self, thread_id: &str) -> Result<Option<String>, StateError> {
        self.document(PerThread::TokenUsage, thread_id).await
    }

    /// Stores (or replaces) the token usage of `thread_id`.
    pub async fn put_token_usage(&self, thread_id: &str, usage: String) -> Result<(), StateError> {
        self.put_document(PerThread::TokenUsage, thread_id, usage)
            .await
    }

    /// The turns of `thread_id` recorded as lost (JSON), if any.
    pub async fn lost_turns(&self, thread_id: &str) -> Result<Option<String>, StateError> {
        self.document(PerThread::LostTurns, thread_id).await
    }

    /// Records (or replaces) the turns of `thread_id` that were lost.
    pub async fn put_lost_turns(&self, thread_id: &str, turns: String) -> Result<(), StateError> {
        self.put_document(PerThread::LostTurns, thread_id, turns)
            .await
    }

    async fn document(
        &self,
        kind: PerThread,
        thread_id: &str,
    ) -> Result<Option<String>, StateError> {
        let thread_id = thread_id.to_owned();
        let (table, column) = kind.table_and_column();
        self.run(move |c| {
            c.query_row(
                &format!("SELECT {column} FROM {table} WHERE thread_id = ?1"),
                [thread_id],
                |row| row.get(0),
            )
            .optional()
        })
        .await
    }

    async fn put_document(
        &self,
        kind: PerThread,
        thread_id: &str,
        document: String,
    ) -> Result<(), StateError> {
        let thread_id = thread_id.to_owned();
        let (table, column) = kind.table_and_column();
        self.run(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO {table} (thread_id, {column}) VALUES (?1, ?2)
                     ON CONFLICT (thread_id) DO UPDATE SET {column} = excluded.{column}"
                ),
                params![thread_id, document],
            )
        })
        .await
        .map(drop)
    }

    /// Removes the goal of `thread_id`; true if there was one.
    pub async fn delete_goal(&self, thread_id: &str) -> Result<bool, StateError> {
        let thread_id = thread_id.to_owned();
        self.run(move |c| c.execute("DELETE FROM thread_goals WHERE thread_id = ?1", [thread_id]))
            .await
            .map(|deleted| deleted > 0)
    }
}

/// The JSON documents kept one per thread.
#[derive(Clone, Copy)]
enum PerThread {
    Goal,
    TokenUsage,
    LostTurns,
}

impl PerThread {
    /// Fixed names, never input: safe to put into SQL text.
    fn table_and_column(self) -> (&'static str, &'static str) {
        match self {
            PerThread::Goal => ("thread_goals", "goal"),
            PerThread::TokenUsage => ("thread_token_usage", "usage"),
            PerThread::LostTurns => ("thread_lost_turns", "turns"),
        }
    }
}

fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (stamp, id) = cursor.split_once('|')?;
    Some((stamp.parse().ok()?, id.to_owned()))
}

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<ThreadRecord> {
    Ok(ThreadRecord {
        id: row.get(0)?,
        created_at: row.get(1)?,
        updated_at: row.get(2)?,
        preview: row.get(3)?,
        model_provider: row.get(4)?,
        cwd: row.get(5)?,
        metadata: row.get(6)?,
    })
}
