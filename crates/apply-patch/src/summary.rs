//! The text the model reads after a patch applied.

use std::fmt::Write as _;

use crate::parser::{Hunk, Patch};

/// Codex's success text: `Success. Updated the following files:` then one line per hunk, added
/// files (`A`) first, then updated ones (`M`, the move destination for a move), then deleted ones
/// (`D`), each in patch order, with paths exactly as written in the patch.
pub fn success_summary(patch: &Patch) -> String {
    let mut summary = String::from("Success. Updated the following files:\n");
    for letter in ['A', 'M', 'D'] {
        for hunk in &patch.hunks {
            let path = match (letter, hunk) {
                ('A', Hunk::Add { path, .. }) | ('D', Hunk::Delete { path }) => path,
                (
                    'M',
                    Hunk::Update {
                        path, move_path, ..
                    },
                ) => move_path.as_ref().unwrap_or(path),
                _ => continue,
            };
            // Writing to a String cannot fail.
            let _ = writeln!(summary, "{letter} {}", path.display());
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_patch;

    #[test]
    fn lists_adds_then_updates_then_deletes_with_patch_paths() {
        let patch = match parse_patch(
            "*** Begin Patch\n*** Delete File: d.txt\n*** Update File: u.txt\n*** Move to: m/v.txt\n\
             @@\n-u\n*** Add File: /abs/a.txt\n+a\n*** Update File: ./w.txt\n@@\n-w\n\
             *** Add File: rel/b.txt\n+b\n*** End Patch",
        ) {
            Ok(patch) => patch,
            Err(error) => panic!("{error}"),
        };
        assert_eq!(
            success_summary(&patch),
            "Success. Updated the following files:\nA /abs/a.txt\nA rel/b.txt\nM m/v.txt\n\
             M ./w.txt\nD d.txt\n"
        );
    }
}
