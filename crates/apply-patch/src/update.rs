//! Applying an update hunk's chunks to a file's text.
//!
//! A chunk changes only its runs of `-` and `+` lines: context lines stay as the file has them (a
//! loosely matched line is not rewritten), and lines keep the line ending they had (`\n` or
//! `\r\n`). New lines get the file's preferred ending, the one its first line break uses (`\n`
//! when it has none), and every line of an updated file ends with a line break, so a missing final
//! newline is added.

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

/// Lines `start..start + removed` of the file give way to `inserted`.
#[derive(Debug, PartialEq, Eq)]
struct Replacement {
    start: usize,
    removed: usize,
    inserted: Vec<String>,
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
        // Replacements never overlap (each chunk is sought after the previous one), so `start`
        // is at or after `position`; `max` only keeps a broken invariant from panicking.
        let start = replacement.start.max(position);
        result.extend_from_slice(&lines[position..start]);
        result.extend(replacement.inserted.into_iter().map(|text| Line {
            text,
            ending: Some(preferred),
        }));
        position = (start + replacement.removed).min(lines.len());
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

/// Where each chunk's runs of changes apply, in file order (a stable sort, so replacements at the
/// same line stay in patch order). Chunks are sought in patch order, each after the previous one's
/// match.
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

        if chunk.old_lines().next().is_none() {
            // A pure addition goes at the very end of the file.
            replacements.push(Replacement {
                start: lines.len(),
                removed: 0,
                inserted: chunk.new_lines().map(str::to_string).collect(),
            });
            continue;
        }

        let mut chunk_lines = chunk.lines.clone();
        let mut old = old_texts(&chunk_lines);
        let mut found = seek_sequence(lines, &old, next, chunk.is_end_of_file);
        // A trailing empty line in the chunk often stands for the file's final newline, which is
        // not a line here: retry without it.
        if found.is_none() && old.last().is_some_and(String::is_empty) {
            drop_final_newline(&mut chunk_lines);
            old.pop();
            found = seek_sequence(lines, &old, next, chunk.is_end_of_file);
        }
        let start = found.ok_or_else(|| {
            PatchError::Mismatch(format!(
                "Failed to find expected lines in {}:\n{}",
                path.display(),
                chunk.old_lines().collect::<Vec<_>>().join("\n")
            ))
        })?;
        replacements.extend(change_runs(&chunk_lines, start));
        next = start + old.len();
    }
    replacements.sort_by_key(|replacement| replacement.start);
    Ok(replacements)
}

fn old_texts(lines: &[ChunkLine]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| match line {
            ChunkLine::Context(text) | ChunkLine::Removed(text) => Some(text.clone()),
            ChunkLine::Added(_) => None,
        })
        .collect()
}

/// Removes the chunk's last old line (an empty one), and its last new line if that is empty too.
/// A context line dropped from the old lines stays among the new ones, as a line to insert.
fn drop_final_newline(lines: &mut Vec<ChunkLine>) {
    let last_old = lines
        .iter()
        .rposition(|line| !matches!(line, ChunkLine::Added(_)));
    if let Some(index) = last_old {
        match lines.remove(index) {
            ChunkLine::Context(text) => lines.insert(index, ChunkLine::Added(text)),
            ChunkLine::Removed(_) | ChunkLine::Added(_) => {}
        }
    }
    let last_new = lines
        .iter()
        .rposition(|line| !matches!(line, ChunkLine::Removed(_)));
    if let Some(index) = last_new
        && matches!(&lines[index], ChunkLine::Context(text) | ChunkLine::Added(text) if text.is_empty())
    {
        match lines.remove(index) {
            ChunkLine::Context(text) => lines.insert(index, ChunkLine::Removed(text)),
            ChunkLine::Removed(_) | ChunkLine::Added(_) => {}
        }
    }
}

/// The chunk's runs of `-`/`+` lines as replacements, for a chunk whose old lines start at file
/// line `start`.
fn change_runs(lines: &[ChunkLine], start: usize) -> Vec<Replacement> {
    let mut runs = Vec::new();
    let mut run: Option<Replacement> = None;
    let mut at = start;
    for line in lines {
        match line {
            ChunkLine::Context(_) => {
                runs.extend(run.take());
                at += 1;
            }
            ChunkLine::Removed(_) => {
                run.get_or_insert_with(|| empty_run(at)).removed += 1;
                at += 1;
            }
            ChunkLine::Added(text) => run
                .get_or_insert_with(|| empty_run(at))
                .inserted
                .push(text.clone()),
        }
    }
    runs.extend(run);
    runs
}

fn empty_run(start: usize) -> Replacement {
    Replacement {
        start,
        removed: 0,
        inserted: Vec::new(),
    }
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
    fn only_runs_of_changes_are_replaced_so_same_line_insertions_keep_patch_order() {
        // The second chunk inserts after `b`, at the end, where the pure addition already went.
        assert_eq!(
            apply(
                "a\nb\n",
                &[
                    chunk(None, &["+X"], false),
                    chunk(None, &[" b", "+c"], false)
                ]
            ),
            "a\nb\nX\nc\n"
        );
        assert_eq!(
            apply(
                "a\nb\nb2\n",
                &[
                    chunk(None, &["+X"], false),
                    chunk(None, &["-b", "+c", " b2"], false)
                ]
            ),
            "a\nc\nb2\nX\n"
        );
    }

    #[test]
    fn dropping_the_final_empty_line_keeps_the_other_changes() {
        assert_eq!(
            apply("a\n", &[chunk(None, &[" a", "-", "+Z"], false)]),
            "a\nZ\n"
        );
        assert_eq!(
            apply("a\n", &[chunk(None, &[" a", "-", "+"], false)]),
            "a\n"
        );
        assert_eq!(
            apply("a\n", &[chunk(None, &[" a", "+", " "], false)]),
            "a\n\n"
        );
    }

    #[test]
    fn end_of_file_chunks_are_not_sought_before_the_previous_match() {
        assert_eq!(
            error(
                "x\n",
                &[
                    chunk(None, &[" x"], false),
                    chunk(None, &["-x", "+X"], true)
                ]
            ),
            "Failed to find expected lines in /w/f.txt:\nx"
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
