//! Planning without writing, then applying the plan: what a server shows for approval and what it
//! writes afterwards.

mod support;

use std::path::{Path, PathBuf};

use support::{make_dir, read_tree, tree};
use tether_apply_patch::{ChangeKind, FileChange, PatchError, PatchPlan, parse_patch, plan_patch};

fn plan(root: &Path, patch: &str) -> Result<PatchPlan, PatchError> {
    let patch = parse_patch(patch).expect("patch parses");
    plan_patch(&patch, root)
}

fn plan_error(root: &Path, patch: &str) -> String {
    match plan(root, patch) {
        Ok(plan) => panic!("plan should fail, got {plan:?}"),
        Err(error) => error.to_string().replace(&root.display().to_string(), "$D"),
    }
}

#[test]
fn planning_writes_nothing_and_describes_each_file_change() {
    let input = tree(&[
        ("edit.txt", "line1\nline2\nline3\n"),
        ("gone.txt", "bye\n"),
        ("src/old.rs", "fn a() {}\n"),
    ]);
    let dir = make_dir(&input);
    let root = dir.path();
    let plan = plan(
        root,
        "*** Begin Patch\n*** Add File: new/hello.txt\n+hello\n*** Update File: edit.txt\n@@\n line1\n\
         -line2\n+LINE2\n*** Delete File: gone.txt\n*** Update File: src/old.rs\n\
         *** Move to: src/new.rs\n@@\n-fn a() {}\n+fn b() {}\n*** End Patch",
    )
    .expect("patch plans");
    assert_eq!(read_tree(root), input, "planning must not write");

    assert_eq!(
        plan.changes(),
        &[
            FileChange {
                path: root.join("new/hello.txt"),
                kind: ChangeKind::Add,
                old_content: None,
                new_content: Some("hello\n".into()),
                overwritten_content: None,
                diff: "hello\n".into(),
            },
            FileChange {
                path: root.join("edit.txt"),
                kind: ChangeKind::Update { move_path: None },
                old_content: Some("line1\nline2\nline3\n".into()),
                new_content: Some("line1\nLINE2\nline3\n".into()),
                overwritten_content: None,
                diff: "@@ -1,3 +1,3 @@\n line1\n-line2\n+LINE2\n line3\n".into(),
            },
            FileChange {
                path: root.join("gone.txt"),
                kind: ChangeKind::Delete,
                old_content: Some("bye\n".into()),
                new_content: None,
                overwritten_content: None,
                diff: "bye\n".into(),
            },
            FileChange {
                path: root.join("src/old.rs"),
                kind: ChangeKind::Update {
                    move_path: Some(root.join("src/new.rs"))
                },
                old_content: Some("fn a() {}\n".into()),
                new_content: Some("fn b() {}\n".into()),
                overwritten_content: None,
                diff: "@@ -1 +1 @@\n-fn a() {}\n+fn b() {}\n".into(),
            },
        ]
    );

    plan.apply().expect("plan applies");
    assert_eq!(
        read_tree(root),
        tree(&[
            ("edit.txt", "line1\nLINE2\nline3\n"),
            ("new/hello.txt", "hello\n"),
            ("src/new.rs", "fn b() {}\n"),
        ])
    );
}

#[test]
fn update_diffs_carry_one_line_of_context_per_hunk() {
    let dir = make_dir(&tree(&[("f.txt", "1\n2\n3\n4\n5\n6\n7\n8\n9\n")]));
    let plan = plan(
        dir.path(),
        "*** Begin Patch\n*** Update File: f.txt\n@@\n-2\n+two\n@@\n-8\n+eight\n\
         *** End Patch",
    )
    .expect("patch plans");
    assert_eq!(
        plan.changes()[0].diff,
        "@@ -1,3 +1,3 @@\n 1\n-2\n+two\n 3\n@@ -7,3 +7,3 @@\n 7\n-8\n+eight\n 9\n"
    );
}

#[test]
fn replaced_files_are_recorded_as_overwritten() {
    let dir = make_dir(&tree(&[
        ("a.txt", "from\n"),
        ("b.txt", "existing\n"),
        ("dup.txt", "before\n"),
    ]));
    let plan = plan(
        dir.path(),
        "*** Begin Patch\n*** Add File: dup.txt\n+after\n*** Update File: a.txt\n\
         *** Move to: b.txt\n@@\n-from\n+new\n*** End Patch",
    )
    .expect("patch plans");
    assert_eq!(plan.changes()[0].old_content.as_deref(), Some("before\n"));
    assert_eq!(
        plan.changes()[1].overwritten_content.as_deref(),
        Some("existing\n")
    );
}

#[test]
fn planning_rejects_what_codex_verification_rejects() {
    let input = tree(&[("dir/x.txt", "x\n"), ("u.txt", "a\n")]);
    let dir = make_dir(&input);
    let root = dir.path();
    assert_eq!(
        plan_error(root, "*** Begin Patch\n*** End Patch"),
        "No files were modified."
    );
    assert_eq!(
        plan_error(
            root,
            "*** Begin Patch\n*** Delete File: missing.txt\n*** End Patch"
        ),
        "Failed to read $D/missing.txt: No such file or directory (os error 2)"
    );
    assert_eq!(
        plan_error(root, "*** Begin Patch\n*** Delete File: dir\n*** End Patch"),
        "Failed to read $D/dir: Is a directory (os error 21)"
    );
    assert_eq!(
        plan_error(
            root,
            "*** Begin Patch\n*** Update File: u.txt\n@@\n-zz\n*** End Patch"
        ),
        "Failed to find expected lines in $D/u.txt:\nzz"
    );
    // Unlike applying hunk by hunk, nothing is written when a later hunk fails.
    assert_eq!(
        plan_error(
            root,
            "*** Begin Patch\n*** Add File: created.txt\n+hello\n*** Update File: missing.txt\n\
             @@\n-old\n+new\n*** End Patch"
        ),
        "Failed to read file to update $D/missing.txt: No such file or directory (os error 2)"
    );
    assert_eq!(read_tree(root), input);
}

#[test]
fn later_hunks_are_planned_against_earlier_ones() {
    let dir = make_dir(&tree(&[("a.txt", "a\n")]));
    let root = dir.path();
    let plan = plan(
        root,
        "*** Begin Patch\n*** Add File: n.txt\n+one\n*** Update File: n.txt\n@@\n-one\n+two\n\
         *** Update File: a.txt\n*** Move to: b.txt\n@@\n-a\n+b\n*** Update File: b.txt\n@@\n-b\n\
         +c\n*** End Patch",
    )
    .expect("patch plans");
    assert_eq!(plan.changes()[1].old_content.as_deref(), Some("one\n"));
    assert_eq!(
        plan_error(
            root,
            "*** Begin Patch\n*** Delete File: a.txt\n*** Update File: a.txt\n@@\n-a\n*** End Patch"
        ),
        "Failed to read file to update $D/a.txt: No such file or directory (os error 2)"
    );
    plan.apply().expect("plan applies");
    assert_eq!(
        read_tree(root),
        tree(&[("b.txt", "c\n"), ("n.txt", "two\n")])
    );
}

#[test]
fn a_failed_write_reports_the_changes_already_made() {
    let dir = make_dir(&tree(&[("dir/x", "x"), ("u.txt", "a\n")]));
    let root = dir.path();
    let plan = plan(
        root,
        "*** Begin Patch\n*** Add File: first.txt\n+1\n*** Update File: u.txt\n@@\n-a\n+b\n\
         *** Add File: dir\n+never\n*** Add File: last.txt\n+never\n*** End Patch",
    )
    .expect("a directory in the way is only found when writing");
    let failure = plan.apply().expect_err("writing onto a directory fails");
    assert_eq!(
        failure.to_string(),
        format!("Failed to write file {}", root.join("dir").display())
    );
    assert!(
        std::error::Error::source(&failure).is_some(),
        "the I/O error is kept"
    );
    let applied: Vec<&PathBuf> = failure.applied.iter().map(|change| &change.path).collect();
    assert_eq!(applied, [&root.join("first.txt"), &root.join("u.txt")]);
    assert_eq!(
        read_tree(root),
        tree(&[("dir/x", "x"), ("first.txt", "1\n"), ("u.txt", "b\n")])
    );
}

#[test]
fn a_file_changed_after_planning_is_not_overwritten() {
    let dir = make_dir(&tree(&[("u.txt", "a\n"), ("d.txt", "d\n")]));
    let root = dir.path();
    let update = plan(
        root,
        "*** Begin Patch\n*** Update File: u.txt\n@@\n-a\n+b\n*** End Patch",
    )
    .expect("patch plans");
    let delete = plan(
        root,
        "*** Begin Patch\n*** Delete File: d.txt\n*** End Patch",
    )
    .expect("plans");
    std::fs::write(root.join("u.txt"), "a\nedited meanwhile\n").expect("edit the file");
    std::fs::remove_file(root.join("d.txt")).expect("delete the file");

    for (plan, name) in [(update, "u.txt"), (delete, "d.txt")] {
        let failure = plan.apply().expect_err("the file changed");
        assert_eq!(
            failure.to_string(),
            format!(
                "{} changed after the patch was planned; plan the patch again",
                root.join(name).display()
            )
        );
        assert!(failure.applied.is_empty());
    }
    assert_eq!(read_tree(root), tree(&[("u.txt", "a\nedited meanwhile\n")]));
}
