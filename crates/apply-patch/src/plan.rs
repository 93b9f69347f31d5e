//! Planning a patch against a working directory, and writing planned changes.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Component, Path, PathBuf};

use crate::PatchError;
use crate::parser::{Hunk, Patch};
use crate::update::apply_chunks;

/// Lines of context around each change in a `fileChange` diff, as codex uses.
const FILE_CHANGE_CONTEXT_LINES: usize = 1;

/// What a change does to its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The file is created (or replaced, if it existed).
    Add,
    /// The file is deleted.
    Delete,
    /// The file's text changes, and it moves to `move_path` (absolute) if set.
    Update {
        /// The absolute destination of a `*** Move to:`.
        move_path: Option<PathBuf>,
    },
}

/// One hunk of a patch, resolved against the working directory and the files as they will be
/// when the hunks before it have been applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChange {
    /// The absolute path of the file (the source of a move).
    pub path: PathBuf,
    /// Add, delete or update.
    pub kind: ChangeKind,
    /// The text at `path` before the change: the deleted or updated text, or for an add the text
    /// it replaces (`None` if there was no readable text file there).
    pub old_content: Option<String>,
    /// The text written: to `path`, or to the move destination. `None` for a delete.
    pub new_content: Option<String>,
    /// For a move, the text at the destination that the move replaces, if any.
    pub overwritten_content: Option<String>,
    /// The `diff` of codex's `fileChange` item: the added text for an add, the deleted text for a
    /// delete, and for an update a unified diff (`@@ -a,b +c,d @@` hunks, one line of context).
    pub diff: String,
}

/// A patch resolved against a working directory: every change computed, nothing written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchPlan {
    changes: Vec<FileChange>,
}

/// Applying stopped at an error. The changes before it were written and stay written.
#[derive(Debug)]
pub struct ApplyFailure {
    /// What went wrong.
    pub error: PatchError,
    /// The changes that were completely written before the error, in order.
    pub applied: Vec<FileChange>,
}

impl fmt::Display for ApplyFailure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(formatter)
    }
}

impl std::error::Error for ApplyFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

/// Computes every change of `patch` against the files under `cwd` (an absolute path), writing
/// nothing. Hunks see the effect of the hunks before them, as they will when applied.
///
/// Fails as codex's verification does: an update whose file is unreadable (`Failed to read file
/// to update …`) or whose lines are not found, a delete whose file is unreadable (`Failed to read
/// …`), or a patch without hunks (`No files were modified.`).
pub fn plan_patch(patch: &Patch, cwd: &Path) -> Result<PatchPlan, PatchError> {
    if patch.hunks.is_empty() {
        return Err(PatchError::NoChanges);
    }
    let mut workspace = Workspace::default();
    let changes = patch
        .hunks
        .iter()
        .map(|hunk| workspace.plan_hunk(hunk, cwd))
        .collect::<Result<_, _>>()?;
    Ok(PatchPlan { changes })
}

impl PatchPlan {
    /// The changes, in patch order.
    pub fn changes(&self) -> &[FileChange] {
        &self.changes
    }

    /// Writes the changes in order. Each file is replaced atomically (a temporary file in the same
    /// directory, then a rename); missing parent directories of added and moved files are
    /// created. Before an update or delete touches a file, its text is checked to still be what
    /// the plan was computed from ([`PatchError::Stale`] otherwise).
    pub fn apply(&self) -> Result<(), ApplyFailure> {
        for (index, change) in self.changes.iter().enumerate() {
            let result = check_unchanged(change).and_then(|()| commit(change));
            if let Err(error) = result {
                return Err(ApplyFailure {
                    error,
                    applied: self.changes[..index].to_vec(),
                });
            }
        }
        Ok(())
    }
}

/// Applies `patch` under `cwd` (an absolute path) hunk by hunk, as codex's standalone `apply_patch`
/// does: each hunk is computed against the files as they are and written before the next is read,
/// so a failing hunk leaves the earlier ones applied (they are listed in the failure). Returns the
/// changes made.
///
/// Its errors are the standalone tool's: a delete of a missing file or a directory fails as
/// `Failed to delete file …`.
pub fn apply_patch(patch: &Patch, cwd: &Path) -> Result<Vec<FileChange>, ApplyFailure> {
    let mut applied = Vec::new();
    if patch.hunks.is_empty() {
        return Err(ApplyFailure {
            error: PatchError::NoChanges,
            applied,
        });
    }
    for hunk in &patch.hunks {
        let change = match hunk {
            // The file is removed without being read, so any file (or none) gets to `remove`.
            Hunk::Delete { path } => {
                let path = resolve(cwd, path);
                let old_content = read_text(&path).ok();
                FileChange {
                    diff: old_content.clone().unwrap_or_default(),
                    path,
                    kind: ChangeKind::Delete,
                    old_content,
                    new_content: None,
                    overwritten_content: None,
                }
            }
            _ => match Workspace::default().plan_hunk(hunk, cwd) {
                Ok(change) => change,
                Err(error) => return Err(ApplyFailure { error, applied }),
            },
        };
        if let Err(error) = commit(&change) {
            return Err(ApplyFailure { error, applied });
        }
        applied.push(change);
    }
    Ok(applied)
}

/// The files as earlier hunks of the plan leave them (`None`: deleted), over the real files.
#[derive(Default)]
struct Workspace {
    planned: HashMap<PathBuf, Option<String>>,
}

impl Workspace {
    fn read(&self, path: &Path) -> io::Result<String> {
        match self.planned.get(path) {
            Some(Some(text)) => Ok(text.clone()),
            Some(None) => Err(not_found()),
            None => read_text(path),
        }
    }

    fn plan_hunk(&mut self, hunk: &Hunk, cwd: &Path) -> Result<FileChange, PatchError> {
        let path = resolve(cwd, hunk.path());
        let change = match hunk {
            Hunk::Add { contents, .. } => FileChange {
                old_content: self.read(&path).ok(),
                new_content: Some(contents.clone()),
                overwritten_content: None,
                diff: contents.clone(),
                kind: ChangeKind::Add,
                path,
            },
            Hunk::Delete { .. } => {
                let old = self.read(&path).map_err(|source| PatchError::Read {
                    context: format!("Failed to read {}", path.display()),
                    source,
                })?;
                FileChange {
                    diff: old.clone(),
                    old_content: Some(old),
                    new_content: None,
                    overwritten_content: None,
                    kind: ChangeKind::Delete,
                    path,
                }
            }
            Hunk::Update {
                move_path, chunks, ..
            } => {
                let old = self.read(&path).map_err(|source| PatchError::Read {
                    context: format!("Failed to read file to update {}", path.display()),
                    source,
                })?;
                let new = apply_chunks(&old, chunks, &path)?;
                let move_path = move_path.as_deref().map(|dest| resolve(cwd, dest));
                let overwritten_content = move_path
                    .as_deref()
                    .filter(|dest| *dest != path)
                    .and_then(|dest| self.read(dest).ok());
                let diff = similar::TextDiff::from_lines(&old, &new)
                    .unified_diff()
                    .context_radius(FILE_CHANGE_CONTEXT_LINES)
                    .to_string();
                FileChange {
                    old_content: Some(old),
                    new_content: Some(new),
                    overwritten_content,
                    diff,
                    kind: ChangeKind::Update { move_path },
                    path,
                }
            }
        };
        self.record(&change);
        Ok(change)
    }

    fn record(&mut self, change: &FileChange) {
        match &change.kind {
            ChangeKind::Add => {
                self.planned
                    .insert(change.path.clone(), change.new_content.clone());
            }
            ChangeKind::Delete => {
                self.planned.insert(change.path.clone(), None);
            }
            ChangeKind::Update { move_path } => {
                let written = move_path.clone().unwrap_or_else(|| change.path.clone());
                self.planned.insert(change.path.clone(), None);
                self.planned.insert(written, change.new_content.clone());
            }
        }
    }
}

/// `path` against `cwd`, with `.` and `..` resolved lexically as codex does.
fn resolve(cwd: &Path, path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new();
    for component in cwd.join(path).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            other => resolved.push(other),
        }
    }
    resolved
}

fn not_found() -> io::Error {
    // ENOENT, so the text reads as the real read's would: "No such file or directory (os error 2)".
    io::Error::from_raw_os_error(2)
}

/// The file's text; invalid UTF-8 is an `InvalidData` error carrying the decoder's message, as in
/// codex.
fn read_text(path: &Path) -> io::Result<String> {
    let bytes = fs::read(path)?;
    String::from_utf8(bytes)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.utf8_error()))
}

fn check_unchanged(change: &FileChange) -> Result<(), PatchError> {
    if change.kind == ChangeKind::Add {
        return Ok(());
    }
    match read_text(&change.path) {
        Ok(current) if Some(&current) == change.old_content.as_ref() => Ok(()),
        _ => Err(PatchError::Stale {
            path: change.path.clone(),
        }),
    }
}

fn write_error(step: &str, path: &Path) -> impl FnOnce(io::Error) -> PatchError {
    let context = format!("{step} {}", path.display());
    move |source| PatchError::Write { context, source }
}

/// Writes one change to the filesystem.
fn commit(change: &FileChange) -> Result<(), PatchError> {
    let new_content = change.new_content.as_deref().unwrap_or_default();
    match &change.kind {
        ChangeKind::Add | ChangeKind::Update { move_path: None } => {
            write_atomically(&change.path, new_content)
        }
        ChangeKind::Delete => fs::remove_file(&change.path)
            .map_err(write_error("Failed to delete file", &change.path)),
        ChangeKind::Update {
            move_path: Some(dest),
        } => {
            write_atomically(dest, new_content)?;
            // Codex 0.169 deletes a file moved onto itself; here it keeps its new text.
            if *dest == change.path {
                return Ok(());
            }
            fs::remove_file(&change.path)
                .map_err(write_error("Failed to remove original", &change.path))
        }
    }
}

/// Replaces `path` with `contents` through a temporary file in the same directory, so readers see
/// the old or the new file, never a part. Missing parent directories are created. A symlink is
/// followed (its target is replaced), and an existing file keeps its permissions.
fn write_atomically(path: &Path, contents: &str) -> Result<(), PatchError> {
    let failed = || write_error("Failed to write file", path);
    let target = match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(failed())?
        }
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = match new_temp_file(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)
                .map_err(write_error("Failed to create parent directories for", path))?;
            new_temp_file(dir)
        }
        other => other,
    }
    .map_err(failed())?;
    if let Ok(existing) = fs::metadata(&target) {
        fs::set_permissions(file.path(), existing.permissions()).map_err(failed())?;
    }
    file.write_all(contents.as_bytes()).map_err(failed())?;
    file.as_file().sync_all().map_err(failed())?;
    file.persist(&target)
        .map_err(|error| error.error)
        .map_err(failed())?;
    Ok(())
}

fn new_temp_file(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".apply-patch-");
    // Created as `fs::write` would create it: 0666 less the umask.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}
