//! Applying an update hunk's chunks to a file's text.
//!
//! Lines keep the line ending they had (`\n` or `\r\n`); context lines keep the file's own text
//! (a loosely matched line is not rewritten); new lines get the file's preferred ending, the one
//! its first line break uses (`\n` when it has none); and every line of an updated file ends with
//! a line break, so a missing final newline is added.

use std::path::Path;

use crate::PatchError;
use crate::parser::{ChunkLine, UpdateChunk};
use crate::seek::seek_sequence;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    Lf,
    CrLf,
}

impl Ending {
    fn as_str(self) -> &'static str {
        match self {
            Ending::Lf => "\n",
            Ending::CrLf => "\r\n",
        }
    }
}

#[derive(Clone)]
struct Line {
    text: String,
    ending: Option<Ending>,
}

/// A line put in place of the matched ones.
enum NewLine {
    /// The file's line at this index, kept as it is.
    Kept(usize),
    /// A line from the patch.
    Text(String),
}

/// The first line replaced, how many lines are replaced, and what goes there.
struct Replacement {
    start: usize,
    removed: usize,
    lines: Vec<NewLine>,
}

/// The new text of a file after applying `chunks` to `original`. `path` is the absolute path,
/// used in the error texts.
pub(crate) fn apply_chunks(
    original: &str,
    chunks: &[UpdateChunk],
    path: &Path,
) -> Result<String, PatchError> {
    let (lines, preferred) = split_lines(original);
    let texts: Vec<String> = lines.iter().map(|line| line.text.clone()).collect();
    let replacements = find_replacements(&texts, chunks, path)?;

    let mut result: Vec<Line> = Vec::new();
    let mut position = 0;
    for replacement in replacements {
        result.extend_from_slice(&lines[position..replacement.start]);
        result.extend(replacement.lines.into_iter().map(|line| match line {
            NewLine::Kept(index) => lines[index].clone(),
            NewLine::Text(text) => Line {
                text,
                ending: Some(preferred),
            },
        }));
        position = replacement.start + replacement.removed;
    }
    result.extend_from_slice(&lines[position..]);

    Ok(result
        .iter()
        .flat_map(|line| {
            [
                line.text.as_str(),
                line.ending.unwrap_or(preferred).as_str(),
            ]
        })
        .collect())
}

/// The file's lines (a final line without a line break has no ending) and its preferred ending.
fn split_lines(text: &str) -> (Vec<Line>, Ending) {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(newline) = rest.find('\n') {
        let line = &rest[..newline];
        let (text, ending) = match line.strip_suffix('\r') {
            Some(text) => (text, Ending::CrLf),
            None => (line, Ending::Lf),
        };
        lines.push(Line {
            text: text.to_string(),
            ending: Some(ending),
        });
        rest = &rest[newline + 1..];
    }
    if !rest.is_empty() {
        lines.push(Line {
            text: rest.to_string(),
            ending: None,
        });
    }
    let preferred = lines
        .first()
        .and_then(|line| line.ending)
        .unwrap_or(Ending::Lf);
    (lines, preferred)
}

/// Where each chunk applies, in file order. Chunks are sought in patch order, each after the
/// previous one's match.
fn find_replacements(
    lines: &[String],
    chunks: &[UpdateChunk],
    path: &Path,
) -> Result<Vec<Replacement>, PatchError> {
    let mut replacements = Vec::new();
    let mut next = 0;
    for chunk in chunks {
        if let Some(context) = &chunk.change_context {
            let found = seek_sequence(lines, std::slice::from_ref(context), next, false)
                .ok_or_else(|| {
                    PatchError::Mismatch(format!(
                        "Failed to find context '{context}' in {}",
                        path.display()
                    ))
                })?;
            next = found + 1;
        }

        let mut old: Vec<String> = chunk.old_lines().map(str::to_string).collect();
        if old.is_empty() {
            // A pure addition goes at the end of the file (after a final empty line too).
            let start = lines.len();
            let added = chunk
                .new_lines()
                .map(|text| NewLine::Text(text.to_string()));
            replacements.push(Replacement {
                start,
                removed: 0,
                lines: added.collect(),
            });
            continue;
        }

        // Each new line, with the index among the old lines of the context lines.
        let mut new: Vec<(Option<usize>, &str)> = Vec::new();
        let mut old_index = 0;
        for line in &chunk.lines {
            match line {
                ChunkLine::Context(text) => {
                    new.push((Some(old_index), text));
                    old_index += 1;
                }
                ChunkLine::Removed(_) => old_index += 1,
                ChunkLine::Added(text) => new.push((None, text)),
            }
        }

        let mut found = seek_sequence(lines, &old, next, chunk.is_end_of_file);
        // A trailing empty line in the chunk often stands for the file's final newline, which is
        // not a line here: retry without it.
        if found.is_none() && old.last().is_some_and(String::is_empty) {
            old.pop();
            if new.last().is_some_and(|(_, text)| text.is_empty()) {
                new.pop();
            }
            found = seek_sequence(lines, &old, next, chunk.is_end_of_file);
        }
        let start = found.ok_or_else(|| {
            PatchError::Mismatch(format!(
                "Failed to find expected lines in {}:\n{}",
                path.display(),
                chunk.old_lines().collect::<Vec<_>>().join("\n")
            ))
        })?;
        let new_lines = new
            .into_iter()
            .map(|(old_index, text)| match old_index {
                Some(index) if index < old.len() => NewLine::Kept(start + index),
                _ => NewLine::Text(text.to_string()),
            })
            .collect();
        replacements.push(Replacement {
            start,
            removed: old.len(),
            lines: new_lines,
        });
        next = start + old.len();
    }
    replacements.sort_by_key(|replacement| replacement.start);
    Ok(replacements)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk from marked lines: ` context`, `-removed`, `+added`.
    fn chunk(context: Option<&str>, marked: &[&str], eof: bool) -> UpdateChunk {
        let lines = marked
            .iter()
            .map(|line| {
                let text = line[1..].to_string();
                match &line[..1] {
                    " " => ChunkLine::Context(text),
                    "-" => ChunkLine::Removed(text),
                    _ => ChunkLine::Added(text),
                }
            })
            .collect();
        UpdateChunk {
            change_context: context.map(str::to_string),
            lines,
            is_end_of_file: eof,
        }
    }

    fn apply(original: &str, chunks: &[UpdateChunk]) -> String {
        match apply_chunks(original, chunks, Path::new("/w/f.txt")) {
            Ok(text) => text,
            Err(error) => panic!("chunks should apply, got {error}"),
        }
    }

    fn error(original: &str, chunks: &[UpdateChunk]) -> String {
        match apply_chunks(original, chunks, Path::new("/w/f.txt")) {
            Ok(text) => panic!("chunks should not apply, got {text:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn replaces_lines_in_place() {
        assert_eq!(
            apply("a\nb\nc\n", &[chunk(None, &["-b", "+B"], false)]),
            "a\nB\nc\n"
        );
    }

    #[test]
    fn a_missing_final_newline_is_added() {
        assert_eq!(
            apply(
                "no newline",
                &[chunk(None, &["-no newline", "+changed"], false)]
            ),
            "changed\n"
        );
        assert_eq!(
            apply("x\na\ny", &[chunk(None, &[" a", "+b"], false)]),
            "x\na\nb\ny\n"
        );
    }

    #[test]
    fn deleting_every_line_leaves_an_empty_file() {
        assert_eq!(apply("a\n", &[chunk(None, &["-a"], false)]), "");
        assert_eq!(apply("a", &[chunk(None, &["-a"], false)]), "");
    }

    #[test]
    fn pure_additions_go_at_the_very_end() {
        assert_eq!(
            apply("x\ny\n", &[chunk(None, &["+added"], false)]),
            "x\ny\nadded\n"
        );
        assert_eq!(
            apply("x\ny", &[chunk(None, &["+added"], false)]),
            "x\ny\nadded\n"
        );
        assert_eq!(apply("", &[chunk(None, &["+added"], false)]), "added\n");
        assert_eq!(apply("a\n\n", &[chunk(None, &["+x"], false)]), "a\n\nx\n");
    }

    #[test]
    fn replacements_are_applied_in_file_order() {
        let chunks = [
            chunk(None, &["+x"], false),
            chunk(None, &["-a", "+A"], false),
        ];
        assert_eq!(apply("a\nb\n", &chunks), "A\nb\nx\n");
    }

    #[test]
    fn line_endings_are_kept_and_new_lines_use_the_first_break_style() {
        assert_eq!(
            apply("a\r\nb\r\nc\r\n", &[chunk(None, &["-b", "+B"], false)]),
            "a\r\nB\r\nc\r\n"
        );
        assert_eq!(
            apply("a\r\nb\nc\r\n", &[chunk(None, &["-b", "+B", "+B2"], false)]),
            "a\r\nB\r\nB2\r\nc\r\n"
        );
        assert_eq!(
            apply("a\nb\r\nc\r\n", &[chunk(None, &["-b", "+B"], false)]),
            "a\nB\nc\r\n"
        );
        assert_eq!(
            apply("a\r\nb\r\nc", &[chunk(None, &["-c", "+C"], false)]),
            "a\r\nb\r\nC\r\n"
        );
    }

    #[test]
    fn context_line_is_sought_first_and_lines_after_it() {
        let original = "class B\n def f():\n    pass\nclass A\n def f():\n    pass\n";
        assert_eq!(
            apply(
                original,
                &[chunk(
                    Some("class A"),
                    &["  def f():", "-    pass", "+    return 1"],
                    false
                )]
            ),
            "class B\n def f():\n    pass\nclass A\n def f():\n    return 1\n"
        );
        // The context line itself is not part of the match.
        assert_eq!(
            apply("b\nb\n", &[chunk(Some("b"), &["-b", "+d"], false)]),
            "b\nd\n"
        );
    }

    #[test]
    fn chunks_are_sought_after_the_previous_match() {
        assert_eq!(
            apply(
                "a\na\n",
                &[
                    chunk(None, &["-a", "+A"], false),
                    chunk(None, &["-a", "+A2"], false)
                ]
            ),
            "A\nA2\n"
        );
        assert_eq!(
            error(
                "a\nb\n",
                &[
                    chunk(None, &["-b", "+B"], false),
                    chunk(None, &["-a", "+A"], false)
                ]
            ),
            "Failed to find expected lines in /w/f.txt:\na"
        );
    }

    #[test]
    fn end_of_file_chunks_match_only_the_last_lines() {
        assert_eq!(
            apply("x\ny\nx\n", &[chunk(None, &["-x", "+X"], true)]),
            "x\ny\nX\n"
        );
        assert_eq!(
            apply("x\ny\nx\n", &[chunk(None, &["-x", "+X"], false)]),
            "X\ny\nx\n"
        );
        assert_eq!(
            error("x\ny\n", &[chunk(None, &["-x", "+X"], true)]),
            "Failed to find expected lines in /w/f.txt:\nx"
        );
    }

    #[test]
    fn a_trailing_empty_old_line_stands_for_the_final_newline() {
        assert_eq!(
            apply("a\nb\n", &[chunk(None, &[" a", "-b", "+B", " "], false)]),
            "a\nB\n"
        );
        assert_eq!(
            apply("a\nb\n", &[chunk(None, &[" a", "-b", "+B", "+"], false)]),
            "a\nB\n\n"
        );
        assert_eq!(apply("a\n", &[chunk(None, &[" a", "-"], false)]), "a\n");
    }

    #[test]
    fn context_lines_keep_the_file_text_and_removed_lines_do_not() {
        assert_eq!(
            apply(
                "x \ny \nz \n",
                &[chunk(None, &[" x", "-y", "+Y", " z"], false)]
            ),
            "x \nY\nz \n"
        );
        assert_eq!(
            apply(
                "x \ny\nw \nv\n",
                &[chunk(None, &[" x", "-y", "+Y", " w", "-v", "+V"], false)]
            ),
            "x \nY\nw \nV\n"
        );
        assert_eq!(
            apply("x \ny\n", &[chunk(None, &["-x", "-y", "+x", "+Y"], false)]),
            "x\nY\n"
        );
        assert_eq!(
            apply("a\n\t\nb\n", &[chunk(None, &[" ", "-b"], false)]),
            "a\n\t\n"
        );
        assert_eq!(
            apply("x\r\ny\n", &[chunk(None, &[" x", "-y", "+Y"], false)]),
            "x\r\nY\r\n"
        );
    }

    #[test]
    fn context_lines_dropped_by_the_retry_use_the_patch_text() {
        assert_eq!(apply("a \n", &[chunk(None, &[" a", " "], false)]), "a \n");
        assert_eq!(
            apply("a\n", &[chunk(None, &[" ", "+x"], false)]),
            "\nx\na\n"
        );
    }

    #[test]
    fn missing_context_and_lines_report_the_path_and_what_was_sought() {
        assert_eq!(
            error("a\nb\n", &[chunk(Some("nope"), &["-a", "+b"], false)]),
            "Failed to find context 'nope' in /w/f.txt"
        );
        assert_eq!(
            error("a\nb\n", &[chunk(None, &["-a", "-zz", "+yes"], false)]),
            "Failed to find expected lines in /w/f.txt:\na\nzz"
        );
    }
}
