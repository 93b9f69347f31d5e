//! Opening real database files in every bad state: each gives an error naming the file and
//! leaves the file as it was.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tether_device_key::{BindingStore, KeyBinding, KeyId, ProtectionClass};
use tether_state::{StateDb, StateError, StateOptions};

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("nested").join("state.sqlite")
}

fn binding(account: &str) -> KeyBinding {
    KeyBinding {
        key_id: KeyId::generate(ProtectionClass::HardwareTpm),
        account_user_id: account.into(),
        client_id: "cli_1".into(),
    }
}

#[tokio::test]
async fn fresh_database_has_the_bindings_table_and_keeps_rows_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let db = StateDb::open(&path).unwrap();
    let stored = binding("acct-ü");
    db.insert(stored.clone()).await.unwrap();
    assert_eq!(db.get(&stored.key_id).await.unwrap(), Some(stored.clone()));
    let other = KeyId::generate(ProtectionClass::HardwareTpm);
    assert_eq!(db.get(&other).await.unwrap(), None);
    drop(db);

    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.get(&stored.key_id).await.unwrap(), Some(stored.clone()));
    let duplicate = db.insert(stored).await.unwrap_err().to_string();
    assert!(
        duplicate.contains("UNIQUE constraint failed"),
        "{duplicate}"
    );

    let raw = rusqlite::Connection::open(&path).unwrap();
    let columns: Vec<(String, String, bool, bool)> = raw
        .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info('device_key_bindings')")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? > 0))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [
        ("key_id", "TEXT", false, true),
        ("account_user_id", "TEXT", true, false),
        ("client_id", "TEXT", true, false),
        ("created_at", "INTEGER", true, false),
        ("updated_at", "INTEGER", true, false),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(n, t, nn, pk)| (n.to_string(), t.to_string(), *nn, *pk))
        .collect();
    assert_eq!(columns, expected);
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 6);
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn corrupt_file_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = StateDb::open(&path)
        .err()
        .expect("corrupt file must not open");
    assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    assert!(
        std::fs::read(&path).unwrap() == garbage,
        "the corrupt file was modified"
    );
}

#[test]
fn newer_schema_is_refused_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("CREATE TABLE future(x); PRAGMA user_version = 42;")
        .unwrap();
    drop(raw);
    let before = std::fs::read(&path).unwrap();
    let err = StateDb::open(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "state database {} has schema version 42, newer than the 6 this tether knows; use a newer tether",
            path.display()
        )
    );
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the file was modified"
    );
}

#[test]
fn locked_database_fails_after_the_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    // Another process's writer (a rollback-journal database mid-transaction), as the sqlite3
    // shell would hold it.
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder
        .execute_batch("CREATE TABLE other(x); BEGIN EXCLUSIVE; INSERT INTO other VALUES (1);")
        .unwrap();
    let started = Instant::now();
    let options = StateOptions {
        busy_timeout: Duration::from_millis(150),
    };
    let err = StateDb::open_with(&path, options)
        .err()
        .expect("locked database must not open");
    assert!(matches!(err, StateError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains(path.to_str().unwrap()));
    assert!(started.elapsed() >= Duration::from_millis(150));
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    StateDb::open(&path).expect("opens once the lock is gone");
}

/// Makes a file immutable (even root cannot write it) until dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        let status = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .expect("chattr (e2fsprogs) is needed");
        assert!(
            status.success(),
            "chattr +i {} failed: the test needs a filesystem with attributes",
            path.display()
        );
        Immutable(path.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn read_only_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    drop(StateDb::open(&path).unwrap());
    let before = std::fs::read(&path).unwrap();
    let _guard = Immutable::set(&path);
    let err = StateDb::open(&path)
        .err()
        .expect("read-only file must not open");
    assert_eq!(
        err.to_string(),
        format!("state database {} is read-only", path.display())
    );
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the file was modified"
    );
}

#[test]
fn unusable_path_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let path = blocker.join("state.sqlite");
    let err = StateDb::open(&path).err().unwrap();
    assert!(matches!(err, StateError::Directory { .. }), "{err:?}");
    assert!(err.to_string().contains(path.to_str().unwrap()));
}

#[tokio::test]
async fn thread_index_touch_and_pages() {
    use tether_state::{SortKey, ThreadQuery, ThreadRecord};
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("s.sqlite")).unwrap();
    for (n, id) in ["a", "b", "c"].iter().enumerate() {
        let record = ThreadRecord {
            id: id.to_string(),
            created_at: 100 + n as i64,
            updated_at: 100 + n as i64,
            preview: String::new(),
            model_provider: "p".into(),
            cwd: "/".into(),
            metadata: "{}".into(),
        };
        db.insert_thread(record).await.unwrap();
    }
    db.insert_thread(ThreadRecord {
        id: "untouched".into(),
        created_at: 900,
        updated_at: 900,
        preview: String::new(),
        model_provider: "p".into(),
        cwd: "/".into(),
        metadata: "{}".into(),
    })
    .await
    .unwrap();
    for (id, stamp) in [("b", 101), ("c", 102)] {
        db.touch_thread(id, stamp, "").await.unwrap();
    }
    db.touch_thread("a", 500, "needle").await.unwrap();
    let a = db.thread("a").await.unwrap().unwrap();
    assert_eq!((a.updated_at, a.preview.as_str()), (500, "needle"));
    let query = |sort_key, cursor: Option<String>| ThreadQuery {
        sort_key,
        descending: true,
        cursor,
        limit: 2,
        model_providers: vec![],
        cwds: vec![],
        search: None,
        archived: false,
    };
    // A thread that never had a turn is not listed.
    let (rows, next) = db
        .list_threads(query(SortKey::UpdatedAt, None))
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    let (rows, next) = db
        .list_threads(query(SortKey::UpdatedAt, next))
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(next, None);
    // Archived threads leave the listing and are listed on their own.
    assert!(db.set_thread_archived("c", true).await.unwrap());
    let (rows, _) = db
        .list_threads(query(SortKey::UpdatedAt, None))
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let archived = ThreadQuery {
        archived: true,
        ..query(SortKey::UpdatedAt, None)
    };
    let (rows, _) = db.list_threads(archived).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    assert!(db.delete_thread("c").await.unwrap());
    assert!(db.thread("c").await.unwrap().is_none());
    assert!(!db.delete_thread("c").await.unwrap());
}
