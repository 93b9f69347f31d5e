//! The aggregated git-style diff of the patches applied in a turn (`turn/diff/updated`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha1::{Digest as _, Sha1};

use crate::plan::{ChangeKind, FileChange};

const ZERO_OID: &str = "0000000000000000000000000000000000000000";
const REGULAR_FILE_MODE: &str = "100644";
const CONTEXT_LINES: usize = 3;

/// The net change of every file touched by the changes recorded so far, from the text each file
/// had when first touched to the text it has now, rendered as `git diff` does: `diff --git`,
/// `new file mode` / `deleted file mode`, `index <old blob sha1>..<new blob sha1>`, `---`/`+++`
/// headers (`/dev/null` for a missing side) and hunks with three lines of context. A file moved
/// without another file taking its old place, to a path that did not exist, shows as one diff from
/// the old path to the new. Paths are shown relative to the root given to [`TurnDiff::new`] (with
/// `/` separators); files outside it are shown with their absolute path.
#[derive(Clone, Debug, Default)]
pub struct TurnDiff {
    root: PathBuf,
    files: BTreeMap<PathBuf, Tracked>,
    /// Where the file now at a path (key) came from (value), for files that were moved.
    origins: HashMap<PathBuf, PathBuf>,
}

#[derive(Clone, Debug)]
struct Tracked {
    baseline: Option<String>,
    current: Option<String>,
}

impl TurnDiff {
    /// An empty diff whose paths are shown relative to `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            ..Self::default()
        }
    }

    /// Records changes that were written, in the order they were written.
    pub fn record(&mut self, changes: &[FileChange]) {
        for change in changes {
            self.record_one(change);
        }
    }

    /// The diff of everything recorded, or `None` when no file's text differs from its baseline.
    pub fn unified_diff(&self) -> Option<String> {
        let renames = self.renames();
        let destinations: HashSet<&PathBuf> = renames.values().copied().collect();
        let mut paths: Vec<&PathBuf> = self.files.keys().collect();
        paths.sort_by_key(|path| self.display(path));

        let mut diff = String::new();
        for path in paths {
            if destinations.contains(path) {
                continue;
            }
            let right_path = renames.get(path).copied().unwrap_or(path);
            let right = &self.files[right_path];
            let left = &self.files[path];
            if let Some(rendered) = self.render(
                path,
                left.baseline.as_deref(),
                right_path,
                right.current.as_deref(),
            ) {
                diff.push_str(&rendered);
                if !diff.ends_with('\n') {
                    diff.push('\n');
                }
            }
        }
        (!diff.is_empty()).then_some(diff)
    }

    fn record_one(&mut self, change: &FileChange) {
        let path = &change.path;
        match &change.kind {
            ChangeKind::Add => {
                self.set(path, change.old_content.clone(), change.new_content.clone());
                self.origins.remove(path);
            }
            ChangeKind::Delete => {
                self.set(path, change.old_content.clone(), None);
                self.origins.remove(path);
            }
            ChangeKind::Update {
                move_path: Some(dest),
            } if dest != path => {
                self.set(path, change.old_content.clone(), None);
                self.set(
                    dest,
                    change.overwritten_content.clone(),
                    change.new_content.clone(),
                );
                let origin = self.origins.remove(path).unwrap_or_else(|| path.clone());
                if *dest != origin {
                    self.origins.insert(dest.clone(), origin);
                } else {
                    self.origins.remove(dest);
                }
            }
            // Without a move, or moved onto itself: an update in place.
            ChangeKind::Update { .. } => {
                self.set(path, change.old_content.clone(), change.new_content.clone());
            }
        }
    }

    /// Notes the text at `path` before a change (kept only the first time the path is touched)
    /// and after it.
    fn set(&mut self, path: &Path, before: Option<String>, after: Option<String>) {
        self.files
            .entry(path.to_path_buf())
            .or_insert(Tracked {
                baseline: before,
                current: None,
            })
            .current = after;
    }

    /// Moves to render as one diff: origin → destination.
    fn renames(&self) -> HashMap<&PathBuf, &PathBuf> {
        self.origins
            .iter()
            .filter(|(dest, origin)| {
                let (Some(dest_file), Some(origin_file)) =
                    (self.files.get(*dest), self.files.get(*origin))
                else {
                    return false;
                };
                dest_file.current.is_some()
                    && dest_file.baseline.is_none()
                    && origin_file.current.is_none()
                    && origin_file.baseline.is_some()
            })
            .map(|(dest, origin)| (origin, dest))
            .collect()
    }

    fn render(
        &self,
        left_path: &Path,
        left: Option<&str>,
        right_path: &Path,
        right: Option<&str>,
    ) -> Option<String> {
        if left == right {
            return None;
        }
        let left_name = self.display(left_path);
        let right_name = self.display(right_path);
        let mut out = format!("diff --git a/{left_name} b/{right_name}\n");
        match (left, right) {
            (None, Some(_)) => {
                let _ = writeln!(out, "new file mode {REGULAR_FILE_MODE}");
            }
            (Some(_), None) => {
                let _ = writeln!(out, "deleted file mode {REGULAR_FILE_MODE}");
            }
            _ => {}
        }
        let _ = writeln!(out, "index {}..{}", blob_id(left), blob_id(right));
        let old_header = left.map_or_else(|| "/dev/null".to_string(), |_| format!("a/{left_name}"));
        let new_header =
            right.map_or_else(|| "/dev/null".to_string(), |_| format!("b/{right_name}"));
        let hunks = similar::TextDiff::from_lines(left.unwrap_or(""), right.unwrap_or(""))
            .unified_diff()
            .context_radius(CONTEXT_LINES)
            .header(&old_header, &new_header)
            .to_string();
        out.push_str(&hunks);
        Some(out)
    }

    fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
            .replace('\\', "/")
    }
}

/// Git's object id of a blob with this content, or the zero id for a missing file.
fn blob_id(content: Option<&str>) -> String {
    let Some(content) = content else {
        return ZERO_OID.to_string();
    };
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", content.len()).as_bytes());
    hasher.update(content.as_bytes());
    hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(40), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_are_gits() {
        // `git hash-object` of an empty file and of "hello\n".
        assert_eq!(
            blob_id(Some("")),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        assert_eq!(
            blob_id(Some("hello\n")),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(blob_id(None), ZERO_OID);
    }
}
