//! A thread's durable history: an append-only JSONL log, one completed turn per line, synced at
//! every turn boundary. A torn last line (the process died mid-write) is skipped, never fatal.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};

use tether_protocol::Turn;

/// The log of one thread.
#[derive(Clone)]
pub struct HistoryLog {
    path: PathBuf,
}

impl HistoryLog {
    /// The log at `path` (created on first append).
    pub fn new(path: PathBuf) -> HistoryLog {
        HistoryLog { path }
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every turn recorded so far. A missing log is an empty history; a line that does not
    /// decode (a torn write) is skipped with a warning.
    pub fn read(&self) -> io::Result<Vec<Turn>> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut turns = Vec::new();
        for (number, line) in BufReader::new(file).split(b'\n').enumerate() {
            let line = line?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Turn>(&line) {
                Ok(turn) => turns.push(turn),
                Err(err) => tracing::warn!(
                    path = %self.path.display(),
                    line = number + 1,
                    "skipping an unreadable history line: {err}"
                ),
            }
        }
        Ok(turns)
    }

    /// Appends a completed turn and syncs it to disk before returning. A torn line left by an
    /// earlier crash is first terminated, so the new line stands on its own. A failed write (a
    /// full disk) is cut back off, so the log never keeps half of a turn it reported as lost.
    pub fn append(&self, turn: &Turn) -> io::Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)?;
        let length_before = file.metadata()?.len();
        let mut line = serde_json::to_vec(turn)?;
        line.push(b'\n');
        if !ends_with_newline(&file, length_before)? {
            line.insert(0, b'\n');
        }
        let written = file.write_all(&line).and_then(|()| file.sync_data());
        if written.is_err() {
            // Best effort: the write error is the one worth reporting.
            let _ = file.set_len(length_before);
        }
        written
    }
}

impl HistoryLog {
    /// Replaces the log with exactly `turns`: written to a temporary file, synced, renamed over
    /// the log, and the directory synced, so a crash leaves the old history or the new one.
    pub fn rewrite(&self, turns: &[Turn]) -> io::Result<()> {
        let directory = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(directory)?;
        let temporary = self.path.with_extension("jsonl.rewrite");
        let mut file = File::create(&temporary)?;
        for turn in turns {
            let mut line = serde_json::to_vec(turn)?;
            line.push(b'\n');
            file.write_all(&line)?;
        }
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path)?;
        File::open(directory)?.sync_all()
    }
}

/// Whether the `length` bytes of `file` end a line. A positional read, so the append position
/// is untouched.
fn ends_with_newline(file: &File, length: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt as _;
    if length == 0 {
        return Ok(true);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, length - 1)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::{ItemsView, TurnStatus};

    fn turn(id: &str) -> Turn {
        Turn {
            id: id.into(),
            root_turn_id: Some(id.into()),
            items: vec![],
            items_view: ItemsView::Full,
            status: TurnStatus::Completed,
            error: None,
            started_at: Some(1),
            completed_at: Some(2),
            duration_ms: Some(1000),
        }
    }

    #[test]
    fn appends_reads_back_and_survives_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = HistoryLog::new(dir.path().join("t.jsonl"));
        assert!(log.read().unwrap().is_empty());
        log.append(&turn("a")).unwrap();
        // A crash mid-write leaves half a line.
        let mut file = OpenOptions::new().append(true).open(log.path()).unwrap();
        file.write_all(br#"{"id":"torn","ite"#).unwrap();
        drop(file);
        assert_eq!(log.read().unwrap(), vec![turn("a")]);
        log.append(&turn("b")).unwrap();
        assert_eq!(log.read().unwrap(), vec![turn("a"), turn("b")]);
        log.rewrite(&[turn("a")]).unwrap();
        assert_eq!(log.read().unwrap(), vec![turn("a")]);
    }
}
