//! The turn's aggregated git-style diff: exact texts, and `git apply` of the diff onto the
//! baseline reproducing the files the patches produced.

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use support::{Tree, make_dir, read_tree, tree};
use tether_apply_patch::{TurnDiff, parse_patch, plan_patch};

const ZERO: &str = "0000000000000000000000000000000000000000";

/// Applies each patch in turn under `root` (plan, then apply) and records it.
fn apply_all(root: &Path, patches: &[&str]) -> TurnDiff {
    let mut diff = TurnDiff::new(root);
    for patch in patches {
        let patch = parse_patch(patch).expect("patch parses");
        let plan = plan_patch(&patch, root).expect("patch plans");
        plan.apply().expect("patch applies");
        diff.record(plan.changes());
    }
    diff
}

/// Git's blob id of `content`, from `git hash-object`.
fn git_blob_id(content: &str) -> String {
    let mut child = Command::new("git")
        .args(["hash-object", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("git must be installed to check blob ids");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(content.as_bytes())
        .expect("write to git");
    let output = child.wait_with_output().expect("git hash-object runs");
    assert!(output.status.success(), "git hash-object failed");
    String::from_utf8(output.stdout)
        .expect("hex")
        .trim()
        .to_string()
}

/// Asserts that `git apply` of `diff` onto a copy of `baseline` gives `expected`.
fn assert_git_applies(baseline: &Tree, diff: &str, expected: &Tree) {
    let dir = make_dir(baseline);
    let mut child = Command::new("git")
        .args(["apply", "--whitespace=nowarn", "-"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git must be installed to check the diff");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(diff.as_bytes())
        .expect("write to git");
    let output = child.wait_with_output().expect("git apply runs");
    assert!(
        output.status.success(),
        "git apply rejected the diff: {}\n{diff}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(&read_tree(dir.path()), expected);
}

#[test]
fn add_then_update_is_one_new_file() {
    let dir = make_dir(&tree(&[]));
    let diff = apply_all(
        dir.path(),
        &[
            "*** Begin Patch\n*** Add File: a.txt\n+foo\n*** End Patch",
            "*** Begin Patch\n*** Update File: a.txt\n@@\n foo\n+bar\n*** End Patch",
        ],
    );
    assert_eq!(
        diff.unified_diff().as_deref(),
        Some(
            format!(
                "diff --git a/a.txt b/a.txt\nnew file mode 100644\nindex {ZERO}..{}\n--- /dev/null\n\
                 +++ b/a.txt\n@@ -0,0 +1,2 @@\n+foo\n+bar\n",
                git_blob_id("foo\nbar\n")
            )
            .as_str()
        )
    );
}

#[test]
fn delete_shows_the_removed_text() {
    let dir = make_dir(&tree(&[("b.txt", "x\n")]));
    let diff = apply_all(
        dir.path(),
        &["*** Begin Patch\n*** Delete File: b.txt\n*** End Patch"],
    );
    assert_eq!(
        diff.unified_diff().as_deref(),
        Some(
            format!(
                "diff --git a/b.txt b/b.txt\ndeleted file mode 100644\nindex {}..{ZERO}\n\
                 --- a/b.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
                git_blob_id("x\n")
            )
            .as_str()
        )
    );
}

#[test]
fn move_with_update_is_one_diff_between_the_paths() {
    let dir = make_dir(&tree(&[("src.txt", "line\n")]));
    let diff = apply_all(
        dir.path(),
        &[
            "*** Begin Patch\n*** Update File: src.txt\n*** Move to: dst.txt\n@@\n-line\n+line2\n\
           *** End Patch",
        ],
    );
    assert_eq!(
        diff.unified_diff().as_deref(),
        Some(
            format!(
                "diff --git a/src.txt b/dst.txt\nindex {}..{}\n--- a/src.txt\n+++ b/dst.txt\n\
                 @@ -1 +1 @@\n-line\n+line2\n",
                git_blob_id("line\n"),
                git_blob_id("line2\n")
            )
            .as_str()
        )
    );
}

#[test]
fn unchanged_text_gives_no_diff() {
    let dir = make_dir(&tree(&[("old.txt", "same\n"), ("u.txt", "a\n")]));
    let diff = apply_all(
        dir.path(),
        &[
            "*** Begin Patch\n*** Update File: old.txt\n*** Move to: new.txt\n@@\n same\n\
             *** End Patch",
            "*** Begin Patch\n*** Update File: u.txt\n@@\n-a\n+b\n*** End Patch",
            "*** Begin Patch\n*** Update File: u.txt\n@@\n-b\n+a\n*** End Patch",
        ],
    );
    assert_eq!(diff.unified_diff(), None);
    assert_eq!(TurnDiff::new(dir.path()).unified_diff(), None);
}

#[test]
fn replacing_existing_files_shows_modifications() {
    let dir = make_dir(&tree(&[
        ("dup.txt", "before\n"),
        ("a.txt", "from\n"),
        ("b.txt", "existing\n"),
    ]));
    let diff = apply_all(
        dir.path(),
        &[
            "*** Begin Patch\n*** Add File: dup.txt\n+after\n*** Update File: a.txt\n\
           *** Move to: b.txt\n@@\n-from\n+new\n*** End Patch",
        ],
    );
    assert_eq!(
        diff.unified_diff().as_deref(),
        Some(
            format!(
                "diff --git a/a.txt b/a.txt\ndeleted file mode 100644\nindex {}..{ZERO}\n\
                 --- a/a.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-from\n\
                 diff --git a/b.txt b/b.txt\nindex {}..{}\n--- a/b.txt\n+++ b/b.txt\n\
                 @@ -1 +1 @@\n-existing\n+new\n\
                 diff --git a/dup.txt b/dup.txt\nindex {}..{}\n--- a/dup.txt\n+++ b/dup.txt\n\
                 @@ -1 +1 @@\n-before\n+after\n",
                git_blob_id("from\n"),
                git_blob_id("existing\n"),
                git_blob_id("new\n"),
                git_blob_id("before\n"),
                git_blob_id("after\n"),
            )
            .as_str()
        )
    );
}

#[test]
fn delete_then_readd_is_a_modification() {
    let dir = make_dir(&tree(&[("cycle.txt", "before\n")]));
    let diff = apply_all(
        dir.path(),
        &[
            "*** Begin Patch\n*** Delete File: cycle.txt\n*** End Patch",
            "*** Begin Patch\n*** Add File: cycle.txt\n+after\n*** End Patch",
        ],
    );
    let text = diff.unified_diff().expect("a diff");
    assert!(
        text.starts_with("diff --git a/cycle.txt b/cycle.txt\nindex "),
        "{text}"
    );
    assert!(text.ends_with("-before\n+after\n"), "{text}");
}

#[test]
fn a_turn_of_many_patches_applies_with_git_onto_the_baseline() {
    let lines: String = (1..=40).map(|n| format!("line {n}\n")).collect();
    let baseline = tree(&[
        ("keep.txt", "untouched\n"),
        ("src/long.txt", &lines),
        ("src/move_me.txt", "alpha\nbeta\n"),
        ("gone/old.txt", "old\n"),
        ("crlf.txt", "a\r\nb\r\n"),
        ("no_newline.txt", "tail"),
    ]);
    let dir = make_dir(&baseline);
    let diff = apply_all(
        dir.path(),
        &[
            "*** Begin Patch\n*** Update File: src/long.txt\n@@\n-line 3\n+LINE 3\n@@\n line 20\n\
             +inserted\n@@\n-line 40\n+the end\n*** End of File\n*** Add File: docs/new.md\n\
             +# New\n*** Delete File: gone/old.txt\n*** End Patch",
            "*** Begin Patch\n*** Update File: src/move_me.txt\n*** Move to: moved/dir/me.txt\n\
             @@\n alpha\n-beta\n+gamma\n*** Update File: crlf.txt\n@@\n-b\n+B\n\
             *** Update File: no_newline.txt\n@@\n-tail\n+tail!\n*** Add File: empty.txt\n\
             *** End Patch",
            "*** Begin Patch\n*** Update File: docs/new.md\n@@\n # New\n+more\n*** End Patch",
        ],
    );
    let text = diff.unified_diff().expect("a diff");
    assert!(
        text.contains("diff --git a/src/move_me.txt b/moved/dir/me.txt\n"),
        "{text}"
    );
    assert!(!text.contains("keep.txt"), "{text}");
    assert!(
        !text.contains(&dir.path().display().to_string()),
        "paths are relative: {text}"
    );
    let mut after = read_tree(dir.path());
    // `git apply` leaves the emptied directory behind only if it is not removed; compare files.
    after.remove("gone");
    assert_git_applies(&baseline, &text, &after);
}
