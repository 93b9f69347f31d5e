//! Properties: a patch written from the diff of two files turns the first into the second; parsing
//! and planning never panic, whatever the input.

mod support;

use std::fmt::Write as _;

use proptest::prelude::*;
use similar::{ChangeTag, TextDiff};
use support::{make_dir, read_tree, tree};
use tether_apply_patch::{parse_patch, plan_patch};

/// Distinct lines (so every chunk has exactly one place to go), each with some text that may
/// carry surrounding whitespace.
fn distinct_lines(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[ a-z]{0,6}", 0..max).prop_map(|texts| {
        texts
            .into_iter()
            .enumerate()
            .map(|(index, text)| format!("{text}#{index}"))
            .collect()
    })
}

/// A second version of `lines`: some lines kept, some dropped, some new lines inserted.
fn edited(lines: Vec<String>) -> impl Strategy<Value = (Vec<String>, Vec<String>)> {
    let count = lines.len();
    (
        prop::collection::vec(any::<bool>(), count),
        prop::collection::vec(prop::option::of("[a-z ]{0,6}"), count + 1),
    )
        .prop_map(move |(keep, inserts)| {
            let mut new = Vec::new();
            for (index, insert) in inserts.iter().enumerate() {
                if let Some(text) = insert {
                    new.push(format!("{text}+{index}"));
                }
                if index < count && keep[index] {
                    new.push(lines[index].clone());
                }
            }
            (lines.clone(), new)
        })
}

fn file_text(lines: &[String]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// An update patch for `path` built from the line diff of `old` and `new`, one chunk per group of
/// changes with up to three lines of context.
fn patch_from_diff(path: &str, old: &str, new: &str) -> String {
    let mut patch = format!("*** Begin Patch\n*** Update File: {path}\n");
    let diff = TextDiff::from_lines(old, new);
    for group in diff.grouped_ops(3) {
        patch.push_str("@@\n");
        for op in group {
            for change in diff.iter_changes(&op) {
                let marker = match change.tag() {
                    ChangeTag::Equal => ' ',
                    ChangeTag::Delete => '-',
                    ChangeTag::Insert => '+',
                };
                let line = change.value().trim_end_matches('\n');
                let _ = writeln!(patch, "{marker}{line}");
            }
        }
    }
    patch.push_str("*** End Patch\n");
    patch
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_patch_from_a_diff_turns_the_old_file_into_the_new(
        (old, new) in distinct_lines(30).prop_flat_map(edited)
    ) {
        let old = file_text(&old);
        let new = file_text(&new);
        prop_assume!(old != new);
        let dir = make_dir(&tree(&[("f.txt", &old)]));
        let patch = parse_patch(&patch_from_diff("f.txt", &old, &new)).expect("patch parses");

        let plan = plan_patch(&patch, dir.path()).expect("patch plans");
        prop_assert_eq!(plan.changes()[0].new_content.as_deref(), Some(new.as_str()));
        plan.apply().expect("plan applies");
        prop_assert_eq!(read_tree(dir.path()), tree(&[("f.txt", &new)]));
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse_patch(&text);
    }

    #[test]
    fn parsing_and_planning_patch_like_text_never_panics(
        lines in prop::collection::vec(
            prop_oneof![
                Just("*** Begin Patch".to_string()),
                Just("*** End Patch".to_string()),
                Just("*** Update File: f.txt".to_string()),
                Just("*** Add File: g.txt".to_string()),
                Just("*** Delete File: f.txt".to_string()),
                Just("*** Move to: h.txt".to_string()),
                Just("*** End of File".to_string()),
                Just("@@".to_string()),
                "@@ [a-c ]{0,3}",
                "[ +-][a-c \u{2013}\u{201C}]{0,3}",
                "[<'\"EOF ]{0,6}",
                "\\PC{0,4}",
            ],
            0..16,
        ),
        file in "[a-c \n\r]{0,24}",
    ) {
        let dir = make_dir(&tree(&[("f.txt", &file)]));
        let text = format!("*** Begin Patch\n{}\n*** End Patch", lines.join("\n"));
        for candidate in [text.as_str(), &lines.join("\n")] {
            if let Ok(patch) = parse_patch(candidate) {
                // Planning reads files but writes nothing; paths here stay inside the directory.
                let _ = plan_patch(&patch, dir.path());
            }
        }
        prop_assert_eq!(read_tree(dir.path()), tree(&[("f.txt", &file)]));
    }
}
