//! Black-box scenarios, in the manner of codex's `tests/fixtures/scenarios`: an input tree in a
//! temporary directory, a patch applied there hunk by hunk (as the standalone `apply_patch` tool
//! does), and the resulting tree compared byte for byte. The expected trees and texts were checked
//! against the codex 0.169 `apply_patch` binary.

mod support;

use std::path::Path;

use support::{Tree, make_dir, read_tree, tree};
use tether_apply_patch::{ChangeKind, apply_patch, parse_patch, success_summary};

/// What applying a patch did: the summary on success, or the error text and the paths (relative
/// to the directory) of the changes that were written before it.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Applied(String),
    Failed(String, Vec<String>),
}

/// Applies `patch` in a directory holding `input`; returns the outcome (with the directory's path
/// written as `$D`) and the resulting tree.
fn run(input: &Tree, patch: &str) -> (Outcome, Tree) {
    let dir = make_dir(input);
    let root = dir.path();
    let patch = patch.replace("$D", &root.display().to_string());
    let outcome = match parse_patch(&patch) {
        Err(error) => Outcome::Failed(error.to_string(), Vec::new()),
        Ok(parsed) => match apply_patch(&parsed, root) {
            Ok(_) => Outcome::Applied(success_summary(&parsed)),
            Err(failure) => Outcome::Failed(
                failure
                    .error
                    .to_string()
                    .replace(&root.display().to_string(), "$D"),
                failure
                    .applied
                    .iter()
                    .map(|change| relative(root, &change.path))
                    .collect(),
            ),
        },
    };
    (outcome, read_tree(root))
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .expect("changes are under the directory")
        .display()
        .to_string()
}

fn applied(summary: &str) -> Outcome {
    Outcome::Applied(format!("Success. Updated the following files:\n{summary}"))
}

fn failed(error: &str) -> Outcome {
    Outcome::Failed(error.to_string(), Vec::new())
}

/// Asserts that the patch fails with `error` and leaves the input as it was.
fn assert_rejected(input: &Tree, patch: &str, error: &str) {
    let (outcome, result) = run(input, patch);
    assert_eq!(outcome, failed(error));
    assert_eq!(&result, input);
}

#[test]
fn add_file() {
    let (outcome, result) = run(
        &tree(&[]),
        "*** Begin Patch\n*** Add File: bar.md\n+This is a new file\n+\n+  indented\n*** End Patch\n",
    );
    assert_eq!(outcome, applied("A bar.md\n"));
    assert_eq!(
        result,
        tree(&[("bar.md", "This is a new file\n\n  indented\n")])
    );
}

#[test]
fn multiple_operations() {
    let (outcome, result) = run(
        &tree(&[
            ("delete.txt", "obsolete\n"),
            ("modify.txt", "line1\nline2\n"),
        ]),
        "*** Begin Patch\n*** Add File: nested/new.txt\n+created\n*** Delete File: delete.txt\n\
         *** Update File: modify.txt\n@@\n-line2\n+changed\n*** End Patch",
    );
    assert_eq!(
        outcome,
        applied("A nested/new.txt\nM modify.txt\nD delete.txt\n")
    );
    assert_eq!(
        result,
        tree(&[
            ("modify.txt", "line1\nchanged\n"),
            ("nested/new.txt", "created\n")
        ])
    );
}

#[test]
fn multiple_chunks() {
    let (outcome, result) = run(
        &tree(&[("multi.txt", "line1\nline2\nline3\nline4\n")]),
        "*** Begin Patch\n*** Update File: multi.txt\n@@\n-line2\n+changed2\n@@\n-line4\n\
         +changed4\n*** End Patch",
    );
    assert_eq!(outcome, applied("M multi.txt\n"));
    assert_eq!(
        result,
        tree(&[("multi.txt", "line1\nchanged2\nline3\nchanged4\n")])
    );
}

#[test]
fn move_to_new_directory() {
    let (outcome, result) = run(
        &tree(&[
            ("old/name.txt", "old content\n"),
            ("old/other.txt", "unrelated\n"),
        ]),
        "*** Begin Patch\n*** Update File: old/name.txt\n*** Move to: renamed/dir/name.txt\n@@\n\
         -old content\n+new content\n*** End Patch",
    );
    assert_eq!(outcome, applied("M renamed/dir/name.txt\n"));
    assert_eq!(
        result,
        tree(&[
            ("old/other.txt", "unrelated\n"),
            ("renamed/dir/name.txt", "new content\n")
        ])
    );
}

#[test]
fn rejects_empty_patch() {
    assert_rejected(
        &tree(&[("foo.txt", "stable\n")]),
        "*** Begin Patch\n*** End Patch",
        "No files were modified.",
    );
}

#[test]
fn rejects_missing_context() {
    assert_rejected(
        &tree(&[("modify.txt", "line1\nline2\n")]),
        "*** Begin Patch\n*** Update File: modify.txt\n@@\n-missing\n+changed\n*** End Patch",
        "Failed to find expected lines in $D/modify.txt:\nmissing",
    );
    assert_rejected(
        &tree(&[("modify.txt", "line1\nline2\n")]),
        "*** Begin Patch\n*** Update File: modify.txt\n@@ def nope():\n-line1\n*** End Patch",
        "Failed to find context 'def nope():' in $D/modify.txt",
    );
}

#[test]
fn rejects_missing_file_delete() {
    assert_rejected(
        &tree(&[("foo.txt", "stable\n")]),
        "*** Begin Patch\n*** Delete File: missing.txt\n*** End Patch",
        "Failed to delete file $D/missing.txt",
    );
}

#[test]
fn rejects_empty_update_hunk() {
    assert_rejected(
        &tree(&[("foo.txt", "stable\n")]),
        "*** Begin Patch\n*** Update File: foo.txt\n*** End Patch",
        "invalid hunk at line 2, Update file hunk for path 'foo.txt' is empty",
    );
}

#[test]
fn requires_existing_file_for_update() {
    assert_rejected(
        &tree(&[("foo.txt", "stable\n")]),
        "*** Begin Patch\n*** Update File: missing.txt\n@@\n-old\n+new\n*** End Patch",
        "Failed to read file to update $D/missing.txt: No such file or directory (os error 2)",
    );
}

#[test]
fn move_overwrites_existing_destination() {
    let (outcome, result) = run(
        &tree(&[
            ("old/name.txt", "from\n"),
            ("old/other.txt", "unrelated\n"),
            ("renamed/dir/name.txt", "existing\n"),
        ]),
        "*** Begin Patch\n*** Update File: old/name.txt\n*** Move to: renamed/dir/name.txt\n@@\n\
         -from\n+new\n*** End Patch",
    );
    assert_eq!(outcome, applied("M renamed/dir/name.txt\n"));
    assert_eq!(
        result,
        tree(&[
            ("old/other.txt", "unrelated\n"),
            ("renamed/dir/name.txt", "new\n")
        ])
    );
}

#[test]
fn add_overwrites_existing_file() {
    let (outcome, result) = run(
        &tree(&[("duplicate.txt", "old content\n")]),
        "*** Begin Patch\n*** Add File: duplicate.txt\n+new content\n*** End Patch",
    );
    assert_eq!(outcome, applied("A duplicate.txt\n"));
    assert_eq!(result, tree(&[("duplicate.txt", "new content\n")]));
}

#[test]
fn delete_directory_fails() {
    assert_rejected(
        &tree(&[("dir/foo.txt", "inside\n")]),
        "*** Begin Patch\n*** Delete File: dir\n*** End Patch",
        "Failed to delete file $D/dir",
    );
}

#[test]
fn rejects_invalid_hunk_header() {
    assert_rejected(
        &tree(&[("foo.txt", "stable\n")]),
        "*** Begin Patch\n*** Frobnicate File: foo.txt\n*** End Patch",
        "invalid hunk at line 2, '*** Frobnicate File: foo.txt' is not a valid hunk header. \
         Valid hunk headers: '*** Add File: {path}', '*** Delete File: {path}', \
         '*** Update File: {path}'",
    );
}

#[test]
fn update_file_appends_trailing_newline() {
    let (outcome, result) = run(
        &tree(&[("no_newline.txt", "no newline at end")]),
        "*** Begin Patch\n*** Update File: no_newline.txt\n@@\n-no newline at end\n\
         +first line\n+second line\n*** End Patch",
    );
    assert_eq!(outcome, applied("M no_newline.txt\n"));
    assert_eq!(
        result,
        tree(&[("no_newline.txt", "first line\nsecond line\n")])
    );
}

#[test]
fn failure_after_partial_success_leaves_changes() {
    let (outcome, result) = run(
        &tree(&[]),
        "*** Begin Patch\n*** Add File: created.txt\n+hello\n*** Update File: missing.txt\n@@\n\
         -old\n+new\n*** End Patch",
    );
    assert_eq!(
        outcome,
        Outcome::Failed(
            "Failed to read file to update $D/missing.txt: No such file or directory (os error 2)"
                .into(),
            vec!["created.txt".into()]
        )
    );
    assert_eq!(result, tree(&[("created.txt", "hello\n")]));
}

#[test]
fn pure_addition_update_chunk() {
    let (outcome, result) = run(
        &tree(&[("input.txt", "line1\nline2\n")]),
        "*** Begin Patch\n*** Update File: input.txt\n@@\n+added line 1\n+added line 2\n\
         *** End Patch",
    );
    assert_eq!(outcome, applied("M input.txt\n"));
    assert_eq!(
        result,
        tree(&[("input.txt", "line1\nline2\nadded line 1\nadded line 2\n")])
    );
}

#[test]
fn whitespace_padded_hunk_header() {
    let (outcome, result) = run(
        &tree(&[("foo.txt", "old\n")]),
        "*** Begin Patch\n  *** Update File: foo.txt  \n@@\n-old\n+new\n*** End Patch",
    );
    assert_eq!(outcome, applied("M foo.txt\n"));
    assert_eq!(result, tree(&[("foo.txt", "new\n")]));
}

#[test]
fn whitespace_padded_patch_markers() {
    let (outcome, result) = run(
        &tree(&[("file.txt", "one\n")]),
        "  \n *** Begin Patch\t\n*** Update File: file.txt\n@@\n-one\n+two\n  *** End Patch \n\n",
    );
    assert_eq!(outcome, applied("M file.txt\n"));
    assert_eq!(result, tree(&[("file.txt", "two\n")]));
}

#[test]
fn unicode_simple() {
    let (outcome, result) = run(
        &tree(&[("foo.txt", "line1\nἀλφα ✓\nline3\n")]),
        "*** Begin Patch\n*** Update File: foo.txt\n@@\n line1\n-ἀλφα ✓\n+日本語 ✔\n line3\n\
         *** End Patch",
    );
    assert_eq!(outcome, applied("M foo.txt\n"));
    assert_eq!(result, tree(&[("foo.txt", "line1\n日本語 ✔\nline3\n")]));
}

#[test]
fn delete_file_success() {
    let (outcome, result) = run(
        &tree(&[("keep.txt", "keep\n"), ("obsolete.txt", "gone\n")]),
        "*** Begin Patch\n*** Delete File: obsolete.txt\n*** End Patch",
    );
    assert_eq!(outcome, applied("D obsolete.txt\n"));
    assert_eq!(result, tree(&[("keep.txt", "keep\n")]));
}

#[test]
fn update_file_deletion_only() {
    let (outcome, result) = run(
        &tree(&[("lines.txt", "line1\nline2\nline3\n")]),
        "*** Begin Patch\n*** Update File: lines.txt\n@@\n line1\n-line2\n line3\n*** End Patch",
    );
    assert_eq!(outcome, applied("M lines.txt\n"));
    assert_eq!(result, tree(&[("lines.txt", "line1\nline3\n")]));
}

#[test]
fn update_file_end_of_file_marker() {
    let (outcome, result) = run(
        &tree(&[("tail.txt", "second\nfirst\nsecond\n")]),
        "*** Begin Patch\n*** Update File: tail.txt\n@@\n-second\n+second updated\n\
         *** End of File\n*** End Patch",
    );
    assert_eq!(outcome, applied("M tail.txt\n"));
    assert_eq!(
        result,
        tree(&[("tail.txt", "second\nfirst\nsecond updated\n")])
    );
}

#[test]
fn heredoc_wrapped_patch() {
    let (outcome, result) = run(
        &tree(&[]),
        "<<'EOF'\n*** Begin Patch\n*** Add File: h.txt\n+h\n*** End Patch\nEOF\n",
    );
    assert_eq!(outcome, applied("A h.txt\n"));
    assert_eq!(result, tree(&[("h.txt", "h\n")]));
}

#[test]
fn crlf_files_keep_their_line_endings() {
    let (outcome, result) = run(
        &tree(&[("c.txt", "a\r\nb\r\nc"), ("l.txt", "a\nb\r\n")]),
        "*** Begin Patch\n*** Update File: c.txt\n@@\n-b\n+B\n+B2\n*** Update File: l.txt\n@@\n\
         -b\n+B\n*** End Patch",
    );
    assert_eq!(outcome, applied("M c.txt\nM l.txt\n"));
    assert_eq!(
        result,
        tree(&[("c.txt", "a\r\nB\r\nB2\r\nc\r\n"), ("l.txt", "a\nB\n")])
    );
}

#[test]
fn typographic_punctuation_and_whitespace_are_matched_loosely() {
    let (outcome, result) = run(
        &tree(&[(
            "u.py",
            "import x  # local \u{2013} avoids top\u{2011}level\n    padded   \n",
        )]),
        "*** Begin Patch\n*** Update File: u.py\n@@\n-import x  # local - avoids top-level\n\
         -padded\n+done\n*** End Patch",
    );
    assert_eq!(outcome, applied("M u.py\n"));
    assert_eq!(result, tree(&[("u.py", "done\n")]));
}

#[test]
fn absolute_and_dotted_paths_resolve_against_the_directory() {
    let (outcome, result) = run(
        &tree(&[("sub/u.txt", "a\n")]),
        "*** Begin Patch\n*** Add File: $D/abs.txt\n+abs\n*** Update File: sub/../sub/u.txt\n\
         *** Move to: ./moved/u.txt\n@@\n-a\n+b\n*** End Patch",
    );
    let Outcome::Applied(summary) = outcome else {
        panic!("patch should apply, got {outcome:?}");
    };
    assert!(
        summary.ends_with("/abs.txt\nM ./moved/u.txt\n"),
        "{summary}"
    );
    assert_eq!(
        result,
        tree(&[("abs.txt", "abs\n"), ("moved/u.txt", "b\n"), ("sub/", "")])
    );
    assert_rejected(
        &tree(&[]),
        "*** Begin Patch\n*** Update File: ./x/../nope.txt\n@@\n-a\n*** End Patch",
        "Failed to read file to update $D/nope.txt: No such file or directory (os error 2)",
    );
}

#[test]
fn non_utf8_update_is_rejected_but_delete_works() {
    let dir = make_dir(&tree(&[]));
    std::fs::write(dir.path().join("bin.dat"), b"a\n\xff\xfe\n").expect("write a binary file");
    let update = parse_patch("*** Begin Patch\n*** Update File: bin.dat\n@@\n-a\n*** End Patch")
        .expect("patch parses");
    let failure = apply_patch(&update, dir.path()).expect_err("a binary file is not text");
    assert_eq!(
        failure.error.to_string(),
        format!(
            "Failed to read file to update {}/bin.dat: invalid utf-8 sequence of 1 bytes from index 2",
            dir.path().display()
        )
    );
    let delete =
        parse_patch("*** Begin Patch\n*** Delete File: bin.dat\n*** End Patch").expect("parses");
    let changes = apply_patch(&delete, dir.path()).expect("any file can be deleted");
    assert_eq!(changes[0].kind, ChangeKind::Delete);
    assert_eq!(read_tree(dir.path()), tree(&[]));
}

#[test]
fn writing_onto_a_directory_or_under_a_file_fails_after_earlier_hunks() {
    let (outcome, result) = run(
        &tree(&[("dir/x", "x"), ("f", "file")]),
        "*** Begin Patch\n*** Add File: ok.txt\n+ok\n*** Add File: dir\n+b\n*** End Patch",
    );
    assert_eq!(
        outcome,
        Outcome::Failed("Failed to write file $D/dir".into(), vec!["ok.txt".into()])
    );
    assert_eq!(
        result,
        tree(&[("dir/x", "x"), ("f", "file"), ("ok.txt", "ok\n")])
    );
    assert_rejected(
        &tree(&[("f", "file")]),
        "*** Begin Patch\n*** Add File: f/x.txt\n+b\n*** End Patch",
        "Failed to write file $D/f/x.txt",
    );
}

#[test]
fn hunks_see_earlier_hunks_of_the_same_patch() {
    let (outcome, result) = run(
        &tree(&[("u.txt", "a\n")]),
        "*** Begin Patch\n*** Add File: n.txt\n+one\n*** Update File: n.txt\n@@\n-one\n+two\n\
         *** Update File: u.txt\n@@\n-a\n+b\n*** Update File: u.txt\n@@\n-b\n+c\n*** End Patch",
    );
    assert_eq!(outcome, applied("A n.txt\nM n.txt\nM u.txt\nM u.txt\n"));
    assert_eq!(result, tree(&[("n.txt", "two\n"), ("u.txt", "c\n")]));
}

#[test]
fn a_file_moved_onto_itself_keeps_its_new_text() {
    // Codex 0.169 deletes such a file; losing it is not reproduced.
    let (outcome, result) = run(
        &tree(&[("u.txt", "a\n")]),
        "*** Begin Patch\n*** Update File: u.txt\n*** Move to: u.txt\n@@\n-a\n+b\n*** End Patch",
    );
    assert_eq!(outcome, applied("M u.txt\n"));
    assert_eq!(result, tree(&[("u.txt", "b\n")]));
}

#[cfg(unix)]
#[test]
fn replaced_files_keep_their_mode_and_symlinks_are_followed() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = make_dir(&tree(&[("run.sh", "echo a\n"), ("real.txt", "a\n")]));
    let root = dir.path();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o751))
        .expect("chmod");
    std::os::unix::fs::symlink("real.txt", root.join("link.txt")).expect("symlink");
    let patch = parse_patch(
        "*** Begin Patch\n*** Update File: run.sh\n@@\n-echo a\n+echo b\n*** Update File: link.txt\n\
         @@\n-a\n+b\n*** End Patch",
    )
    .expect("patch parses");
    apply_patch(&patch, root).expect("patch applies");

    let mode = std::fs::metadata(root.join("run.sh"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o751);
    assert!(
        std::fs::symlink_metadata(root.join("link.txt"))
            .expect("lstat")
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(root.join("real.txt")).expect("read"),
        "b\n"
    );
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(root)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(
        names.iter().all(|name| !name.starts_with(".apply-patch-")),
        "{names:?}"
    );
}
