//! Parsing patch text into hunks, with the leniencies codex 0.169 applies beyond its Lark grammar.
//!
//! The rules below were established against the codex 0.169 `apply_patch` binary; where a rule is
//! looser or stricter than the grammar, the comment says which input made the difference.

use std::path::PathBuf;

const BEGIN_PATCH: &str = "*** Begin Patch";
const END_PATCH: &str = "*** End Patch";
const ADD_FILE: &str = "*** Add File: ";
const DELETE_FILE: &str = "*** Delete File: ";
const UPDATE_FILE: &str = "*** Update File: ";
const MOVE_TO: &str = "*** Move to: ";
const END_OF_FILE: &str = "*** End of File";
const CONTEXT_MARKER: &str = "@@ ";
const BARE_CONTEXT_MARKER: &str = "@@";
const HEREDOC_OPENERS: [&str; 3] = ["<<EOF", "<<'EOF'", "<<\"EOF\""];

const NO_CHUNK_LINES: &str = "Update hunk does not contain any lines";

/// A patch that parsed: its hunks in the order they appear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    /// The file operations, in patch order (which is also the order they are applied in).
    pub hunks: Vec<Hunk>,
}

/// One file operation of a patch. Paths are exactly as written in the patch (relative to the
/// working directory, or absolute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hunk {
    /// `*** Add File: path`: create the file, replacing any file already there.
    Add {
        /// The path as written in the patch.
        path: PathBuf,
        /// The `+` lines, each terminated by `\n`.
        contents: String,
    },
    /// `*** Delete File: path`.
    Delete {
        /// The path as written in the patch.
        path: PathBuf,
    },
    /// `*** Update File: path`, optionally `*** Move to: dest`, then one or more chunks.
    Update {
        /// The path as written in the patch.
        path: PathBuf,
        /// The `*** Move to:` destination as written in the patch.
        move_path: Option<PathBuf>,
        /// The chunks, in file order.
        chunks: Vec<UpdateChunk>,
    },
}

/// One `@@` section of an update: lines to find and what replaces them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateChunk {
    /// The text after `@@ `: a line sought first; the old lines are then sought after it.
    pub change_context: Option<String>,
    /// The chunk's lines, in order, without their markers.
    pub lines: Vec<ChunkLine>,
    /// The chunk ended with `*** End of File`: the old lines must be the last lines of the file.
    pub is_end_of_file: bool,
}

/// One line of a chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkLine {
    /// ` text` (or an empty line): must be present, and stays as the file has it.
    Context(String),
    /// `-text`: must be present, and is removed.
    Removed(String),
    /// `+text`: is inserted.
    Added(String),
}

impl UpdateChunk {
    /// The lines that must be present: context and removed lines.
    pub fn old_lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|line| match line {
            ChunkLine::Context(text) | ChunkLine::Removed(text) => Some(text.as_str()),
            ChunkLine::Added(_) => None,
        })
    }

    /// The lines that replace them: context and added lines.
    pub fn new_lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|line| match line {
            ChunkLine::Context(text) | ChunkLine::Added(text) => Some(text.as_str()),
            ChunkLine::Removed(_) => None,
        })
    }
}

/// Why patch text did not parse. The `Display` texts are codex's, verbatim.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The patch as a whole is malformed (its first or last line).
    #[error("invalid patch: {0}")]
    InvalidPatch(String),
    /// One hunk is malformed; `line_number` is 1-based within the (trimmed) patch text.
    #[error("invalid hunk at line {line_number}, {message}")]
    InvalidHunk {
        /// What is wrong with the hunk.
        message: String,
        /// The line the problem was found on.
        line_number: usize,
    },
}

impl Hunk {
    /// The path as written in the patch (the source path for a move).
    pub fn path(&self) -> &std::path::Path {
        match self {
            Hunk::Add { path, .. } | Hunk::Delete { path } | Hunk::Update { path, .. } => path,
        }
    }
}

/// Parses patch text: `*** Begin Patch`, hunks, `*** End Patch`.
///
/// Lenient as codex is: the text is trimmed; marker lines are compared trimmed; a heredoc wrapper
/// (`<<EOF`, `<<'EOF'` or `<<"EOF"` … `EOF`) is stripped; the first chunk of an update may omit
/// `@@`; blank lines after an `*** End of File` are skipped; an empty line inside a chunk is an
/// empty context line; an early `*** End Patch` may be followed only by blank lines and the
/// last line. A patch with no hunks parses (applying it is what fails).
pub fn parse_patch(text: &str) -> Result<Patch, ParseError> {
    let lines: Vec<&str> = text.trim().lines().collect();
    let body = match patch_body(&lines) {
        Ok(body) => body,
        Err(error) => match strip_heredoc(&lines) {
            Some(inner) => patch_body(inner)?,
            None => return Err(error),
        },
    };

    let mut hunks = Vec::new();
    let mut remaining = body;
    // Hunks start on line 2, after `*** Begin Patch`; codex numbers a heredoc-wrapped patch the
    // same way, not counting the opener.
    let mut line_number = 2;
    while let Some(line) = remaining.first() {
        // An end marker before the last line ends the patch early: codex 0.169 accepts only blank
        // lines between it and the last line.
        if is_end_patch(line) {
            if remaining[1..].iter().all(|line| line.trim().is_empty()) {
                break;
            }
            return Err(last_line_error());
        }
        let (hunk, consumed) = parse_hunk(remaining, line_number)?;
        hunks.push(hunk);
        line_number += consumed;
        remaining = &remaining[consumed..];
    }
    Ok(Patch { hunks })
}

/// The lines between a first line `*** Begin Patch` and a last line `*** End Patch`.
fn patch_body<'a>(lines: &'a [&'a str]) -> Result<&'a [&'a str], ParseError> {
    match lines {
        [first, ..] if first.trim() != BEGIN_PATCH => Err(ParseError::InvalidPatch(
            "The first line of the patch must be '*** Begin Patch'".into(),
        )),
        [_, body @ .., last] if last.trim() == END_PATCH => Ok(body),
        // Also an empty patch, which reports the missing end marker as codex does.
        _ => Err(last_line_error()),
    }
}

fn last_line_error() -> ParseError {
    ParseError::InvalidPatch("The last line of the patch must be '*** End Patch'".into())
}

/// Whether a line is an end marker (compared trimmed).
fn is_end_patch(line: &str) -> bool {
    line.trim() == END_PATCH
}

/// The lines inside a heredoc wrapper, when the text is one: an opener line, a last line ending in
/// `EOF`, and at least two lines between them.
fn strip_heredoc<'a>(lines: &'a [&'a str]) -> Option<&'a [&'a str]> {
    match lines {
        [first, inner @ .., last]
            if HEREDOC_OPENERS.contains(first) && last.ends_with("EOF") && inner.len() >= 2 =>
        {
            Some(inner)
        }
        _ => None,
    }
}

fn invalid_hunk(message: String, line_number: usize) -> ParseError {
    ParseError::InvalidHunk {
        message,
        line_number,
    }
}

/// Whether a line starts a new file operation. Inside an update this is checked on the raw line
/// (a tab-indented header there is a malformed chunk line in codex 0.169).
fn is_hunk_header(line: &str) -> bool {
    [ADD_FILE, DELETE_FILE, UPDATE_FILE]
        .iter()
        .any(|marker| line.starts_with(marker))
}

/// Parses the hunk at the start of `lines`; returns it and how many lines it used.
fn parse_hunk(lines: &[&str], line_number: usize) -> Result<(Hunk, usize), ParseError> {
    let header = lines[0].trim();
    if let Some(path) = header.strip_prefix(ADD_FILE) {
        let added: Vec<&str> = lines[1..]
            .iter()
            .map_while(|line| line.strip_prefix('+'))
            .collect();
        let contents = added.iter().map(|line| format!("{line}\n")).collect();
        let hunk = Hunk::Add {
            path: PathBuf::from(path),
            contents,
        };
        return Ok((hunk, 1 + added.len()));
    }
    if let Some(path) = header.strip_prefix(DELETE_FILE) {
        let hunk = Hunk::Delete {
            path: PathBuf::from(path),
        };
        return Ok((hunk, 1));
    }
    if let Some(path) = header.strip_prefix(UPDATE_FILE) {
        return parse_update(path, lines, line_number);
    }
    Err(invalid_hunk(
        format!(
            "'{header}' is not a valid hunk header. Valid hunk headers: '*** Add File: {{path}}', \
             '*** Delete File: {{path}}', '*** Update File: {{path}}'"
        ),
        line_number,
    ))
}

fn parse_update(
    path: &str,
    lines: &[&str],
    line_number: usize,
) -> Result<(Hunk, usize), ParseError> {
    let mut consumed = 1;
    let mut move_path = None;
    // Before the first chunk, codex 0.169 skips `*** End of File` lines (without setting the
    // flag) and takes one move line among them. Both compare with trailing whitespace removed,
    // leading whitespace kept.
    while let Some(line) = lines.get(consumed).map(|line| line.trim_end()) {
        if line == END_OF_FILE {
            consumed += 1;
        } else if let Some(dest) = line.strip_prefix(MOVE_TO).filter(|_| move_path.is_none()) {
            move_path = Some(PathBuf::from(dest));
            consumed += 1;
        } else {
            break;
        }
    }

    let mut chunks = Vec::new();
    while let Some(line) = lines.get(consumed) {
        // Blank lines are skipped only after an `*** End of File`; anywhere else in an update
        // they are context lines, or (whitespace-only, after a chunk) a chunk lacking its `@@`.
        let after_end_of_file = chunks
            .last()
            .is_some_and(|chunk: &UpdateChunk| chunk.is_end_of_file);
        if after_end_of_file && line.trim().is_empty() {
            consumed += 1;
            continue;
        }
        if is_hunk_header(line) || is_end_patch(line) {
            break;
        }
        let (chunk, used) = parse_chunk(
            &lines[consumed..],
            line_number + consumed,
            chunks.is_empty(),
        )?;
        chunks.push(chunk);
        consumed += used;
    }

    if chunks.is_empty() {
        return Err(invalid_hunk(
            format!("Update file hunk for path '{path}' is empty"),
            line_number,
        ));
    }
    let hunk = Hunk::Update {
        path: PathBuf::from(path),
        move_path,
        chunks,
    };
    Ok((hunk, consumed))
}

/// Parses one chunk at the start of `lines` (which is not empty); returns it and how many lines it
/// used. Only the first chunk of an update may start without an `@@` line.
fn parse_chunk(
    lines: &[&str],
    line_number: usize,
    first_chunk: bool,
) -> Result<(UpdateChunk, usize), ParseError> {
    // `@@` lines are compared with trailing whitespace removed: `@@ ` is a bare marker and
    // `@@ ctx  ` seeks `ctx`, while a leading space makes the line a context line.
    let marker = lines[0].trim_end();
    let (change_context, start) = if marker == BARE_CONTEXT_MARKER {
        (None, 1)
    } else if let Some(context) = marker.strip_prefix(CONTEXT_MARKER) {
        (Some(context.to_string()), 1)
    } else if first_chunk {
        (None, 0)
    } else {
        return Err(invalid_hunk(
            format!(
                "Expected update hunk to start with a @@ context marker, got: '{}'",
                lines[0]
            ),
            line_number,
        ));
    };
    if start >= lines.len() {
        return Err(invalid_hunk(NO_CHUNK_LINES.into(), line_number + 1));
    }

    let mut chunk = UpdateChunk {
        change_context,
        lines: Vec::new(),
        is_end_of_file: false,
    };
    let mut parsed = 0;
    for line in &lines[start..] {
        // An end marker ends the chunk's lines; a hunk header right after `@@` does not, and is
        // reported as an unexpected line (as codex 0.169 does).
        if line.trim_end() == END_PATCH {
            if parsed == 0 {
                return Err(invalid_hunk(NO_CHUNK_LINES.into(), line_number + start));
            }
            break;
        }
        if line.trim_end() == END_OF_FILE {
            if parsed == 0 {
                return Err(invalid_hunk(NO_CHUNK_LINES.into(), line_number + 1));
            }
            chunk.is_end_of_file = true;
            parsed += 1;
            break;
        }
        let text = || line.get(1..).unwrap_or_default().to_string();
        match line.chars().next() {
            None | Some(' ') => chunk.lines.push(ChunkLine::Context(text())),
            Some('+') => chunk.lines.push(ChunkLine::Added(text())),
            Some('-') => chunk.lines.push(ChunkLine::Removed(text())),
            Some(_) if parsed == 0 => {
                return Err(invalid_hunk(
                    format!(
                        "Unexpected line found in update hunk: '{line}'. Every line should start \
                         with ' ' (context line), '+' (added line), or '-' (removed line)"
                    ),
                    line_number + start,
                ));
            }
            // Anything else ends the chunk: the next chunk or hunk starts here.
            Some(_) => break,
        }
        parsed += 1;
    }
    Ok((chunk, start + parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(path: &str, move_path: Option<&str>, chunks: Vec<UpdateChunk>) -> Hunk {
        Hunk::Update {
            path: path.into(),
            move_path: move_path.map(PathBuf::from),
            chunks,
        }
    }

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

    fn hunks(text: &str) -> Vec<Hunk> {
        match parse_patch(text) {
            Ok(patch) => patch.hunks,
            Err(error) => panic!("patch should parse, got {error}"),
        }
    }

    fn error_text(text: &str) -> String {
        match parse_patch(text) {
            Ok(patch) => panic!("patch should not parse, got {patch:?}"),
            Err(error) => error.to_string(),
        }
    }

    const INVALID_HEADER_TAIL: &str = "is not a valid hunk header. Valid hunk headers: \
        '*** Add File: {path}', '*** Delete File: {path}', '*** Update File: {path}'";

    #[test]
    fn all_three_operations_and_a_move_parse_in_order() {
        let parsed = hunks(
            "*** Begin Patch\n*** Add File: a/add.txt\n+one\n+two\n*** Delete File: gone.txt\n\
             *** Update File: src.py\n*** Move to: dst.py\n@@ def f():\n-    pass\n+    return 1\n\
             *** End Patch\n",
        );
        assert_eq!(
            parsed,
            vec![
                Hunk::Add {
                    path: "a/add.txt".into(),
                    contents: "one\ntwo\n".into()
                },
                Hunk::Delete {
                    path: "gone.txt".into()
                },
                update(
                    "src.py",
                    Some("dst.py"),
                    vec![chunk(
                        Some("def f():"),
                        &["-    pass", "+    return 1"],
                        false
                    )]
                ),
            ]
        );
    }

    #[test]
    fn add_contents_keep_trailing_whitespace_and_may_be_empty() {
        assert_eq!(
            hunks("*** Begin Patch\n*** Add File: a\n+x  \n+\n*** End Patch"),
            vec![Hunk::Add {
                path: "a".into(),
                contents: "x  \n\n".into()
            }]
        );
        assert_eq!(
            hunks("*** Begin Patch\n*** Add File: a\n*** End Patch"),
            vec![Hunk::Add {
                path: "a".into(),
                contents: String::new()
            }]
        );
    }

    #[test]
    fn begin_and_end_only_parses_to_no_hunks() {
        assert_eq!(hunks("*** Begin Patch\n*** End Patch"), vec![]);
    }

    #[test]
    fn first_line_must_be_begin_patch() {
        assert_eq!(
            error_text("bad"),
            "invalid patch: The first line of the patch must be '*** Begin Patch'"
        );
        assert_eq!(
            error_text("*** Add File: a\n+x\n*** End Patch"),
            "invalid patch: The first line of the patch must be '*** Begin Patch'"
        );
    }

    #[test]
    fn last_line_must_be_end_patch() {
        let expected = "invalid patch: The last line of the patch must be '*** End Patch'";
        assert_eq!(error_text(""), expected);
        assert_eq!(error_text("   \n "), expected);
        assert_eq!(error_text("*** Begin Patch"), expected);
        assert_eq!(
            error_text("*** Begin Patch\n*** Add File: a\n+x\n"),
            expected
        );
    }

    #[test]
    fn only_end_markers_may_follow_the_first_end_marker() {
        assert_eq!(
            hunks("*** Begin Patch\n*** Add File: x\n+y\n*** End Patch\n*** End Patch\n").len(),
            1
        );
        assert_eq!(
            hunks("*** Begin Patch\n*** Add File: x\n+y\n  *** End Patch  \n*** End Patch").len(),
            1
        );
        let expected = "invalid patch: The last line of the patch must be '*** End Patch'";
        assert_eq!(
            error_text("*** Begin Patch\n*** Add File: x\n+y\n*** End Patch\ngarbage"),
            expected
        );
        assert_eq!(
            error_text(
                "*** Begin Patch\n*** Add File: x\n+y\n*** End Patch\n*** Add File: z\n+w\n\
                 *** End Patch"
            ),
            expected
        );
    }

    #[test]
    fn patch_text_is_trimmed_and_markers_compared_trimmed() {
        assert_eq!(
            hunks(
                "\n  \n *** Begin Patch \n  *** Update File: f.txt \n@@\n-one\n+two\n*** End Patch \n\n"
            ),
            vec![update(
                "f.txt",
                None,
                vec![chunk(None, &["-one", "+two"], false)]
            )]
        );
    }

    #[test]
    fn header_paths_keep_inner_leading_spaces() {
        assert_eq!(
            hunks("*** Begin Patch\n*** Add File:   sp.txt\n+x\n*** End Patch"),
            vec![Hunk::Add {
                path: "  sp.txt".into(),
                contents: "x\n".into()
            }]
        );
    }

    #[test]
    fn heredoc_wrappers_are_stripped() {
        let inner = "*** Begin Patch\n*** Add File: h.txt\n+h\n*** End Patch";
        for opener in ["<<EOF", "<<'EOF'", "<<\"EOF\""] {
            assert_eq!(
                hunks(&format!("{opener}\n{inner}\nEOF\n")),
                vec![Hunk::Add {
                    path: "h.txt".into(),
                    contents: "h\n".into()
                }],
                "opener {opener}"
            );
        }
        // Any last line ending in EOF closes it; inner markers are still compared trimmed.
        assert_eq!(hunks(&format!("<<EOF\n  {inner}  \nXEOF")).len(), 1);
        assert_eq!(hunks("<<EOF\n*** Begin Patch\n*** End Patch\nEOF"), vec![]);
    }

    #[test]
    fn malformed_heredoc_wrappers_report_the_unwrapped_error() {
        let inner = "*** Begin Patch\n*** Add File: h.txt\n+h\n*** End Patch";
        assert_eq!(
            error_text(&format!("<<\"EOF'\n{inner}\nEOF")),
            "invalid patch: The first line of the patch must be '*** Begin Patch'"
        );
        // Wrapped, but the inner text lacks its end marker: the inner error is reported.
        assert_eq!(
            error_text("<<EOF\n*** Begin Patch\n*** Update File: f.py\nEOF\n"),
            "invalid patch: The last line of the patch must be '*** End Patch'"
        );
        // Fewer than four lines is not a wrapper.
        assert_eq!(
            error_text("<<EOF\n*** Begin Patch\nEOF"),
            "invalid patch: The first line of the patch must be '*** Begin Patch'"
        );
    }

    #[test]
    fn first_chunk_may_omit_the_context_marker() {
        assert_eq!(
            hunks("*** Begin Patch\n*** Update File: f.py\n import foo\n+bar\n*** End Patch"),
            vec![update(
                "f.py",
                None,
                vec![chunk(None, &[" import foo", "+bar"], false)]
            )]
        );
    }

    #[test]
    fn later_chunks_need_a_context_marker() {
        assert_eq!(
            error_text("*** Begin Patch\n*** Update File: u\n@@\n-a\n+b\nbad\n*** End Patch"),
            "invalid hunk at line 6, Expected update hunk to start with a @@ context marker, \
             got: 'bad'"
        );
        // A second End of File marker is not a chunk start either.
        assert_eq!(
            error_text(
                "*** Begin Patch\n*** Update File: u\n@@\n-a\n*** End of File\n*** End of File\n\
                 *** End Patch"
            ),
            "invalid hunk at line 6, Expected update hunk to start with a @@ context marker, \
             got: '*** End of File'"
        );
    }

    #[test]
    fn blank_lines_between_chunks_are_skipped() {
        assert_eq!(
            hunks(
                "*** Begin Patch\n*** Update File: u\n@@\n-a\n+b\n*** End of File\n\n  \n@@ \n-c\n\
                 +d\n*** End Patch"
            ),
            vec![update(
                "u",
                None,
                vec![
                    chunk(None, &["-a", "+b"], true),
                    chunk(None, &["-c", "+d"], false)
                ]
            )]
        );
        // Before a chunk has ended, blank lines are context lines of that chunk.
        assert_eq!(
            hunks("*** Begin Patch\n*** Update File: u\n-a\n\n  \n@@\n-c\n*** End Patch"),
            vec![update(
                "u",
                None,
                vec![
                    chunk(None, &["-a", " ", "  "], false),
                    chunk(None, &["-c"], false)
                ]
            )]
        );
    }

    #[test]
    fn empty_line_inside_a_chunk_is_an_empty_context_line() {
        assert_eq!(
            hunks(
                "*** Begin Patch\n*** Update File: u\n@@ ctx\n\n context\n-remove\n+add\n*** End Patch"
            ),
            vec![update(
                "u",
                None,
                vec![chunk(
                    Some("ctx"),
                    &[" ", " context", "-remove", "+add"],
                    false
                )]
            )]
        );
    }

    #[test]
    fn context_markers_ignore_trailing_whitespace_only() {
        assert_eq!(
            hunks("*** Begin Patch\n*** Update File: u\n@@   ctx \n-a\n@@\t\n-b\n*** End Patch"),
            vec![update(
                "u",
                None,
                vec![
                    chunk(Some("  ctx"), &["-a"], false),
                    chunk(None, &["-b"], false)
                ]
            )]
        );
        // With a leading space, `@@` is a context line.
        assert_eq!(
            hunks("*** Begin Patch\n*** Update File: u\n @@\n-a\n*** End Patch"),
            vec![update("u", None, vec![chunk(None, &[" @@", "-a"], false)])]
        );
    }

    #[test]
    fn end_of_file_marker_sets_the_flag_and_tolerates_trailing_whitespace() {
        assert_eq!(
            hunks(
                "*** Begin Patch\n*** Update File: u\n@@\n+x\n*** End of File \n@@\n-a\n\
                 *** End of File\n*** End Patch"
            ),
            vec![update(
                "u",
                None,
                vec![chunk(None, &["+x"], true), chunk(None, &["-a"], true)]
            )]
        );
        // Indented, it is a context line.
        assert_eq!(
            hunks("*** Begin Patch\n*** Update File: u\n@@\n-a\n *** End of File\n*** End Patch"),
            vec![update(
                "u",
                None,
                vec![chunk(None, &["-a", " *** End of File"], false)]
            )]
        );
    }

    #[test]
    fn move_line_ignores_trailing_whitespace_only() {
        assert_eq!(
            hunks("*** Begin Patch\n*** Update File: u\n*** Move to: v \n@@\n-a\n*** End Patch"),
            vec![update("u", Some("v"), vec![chunk(None, &["-a"], false)])]
        );
        // Indented, it is a context line of the first chunk.
        assert_eq!(
            hunks("*** Begin Patch\n*** Update File: u\n  *** Move to: v\n-a\n*** End Patch"),
            vec![update(
                "u",
                None,
                vec![chunk(None, &["  *** Move to: v", "-a"], false)]
            )]
        );
    }

    #[test]
    fn end_of_file_lines_before_the_first_chunk_are_skipped() {
        assert_eq!(
            hunks(
                "*** Begin Patch\n*** Update File: u\n*** End of File\n*** Move to: v\n\
                 *** End of File \n-a\n+A\n*** End Patch"
            ),
            vec![update(
                "u",
                Some("v"),
                vec![chunk(None, &["-a", "+A"], false)]
            )]
        );
        assert_eq!(
            error_text("*** Begin Patch\n*** Update File: u\n*** End of File\n*** End Patch"),
            "invalid hunk at line 2, Update file hunk for path 'u' is empty"
        );
    }

    #[test]
    fn update_hunk_without_chunks_is_empty() {
        let expected = "invalid hunk at line 2, Update file hunk for path 'test.py' is empty";
        assert_eq!(
            error_text("*** Begin Patch\n*** Update File: test.py\n*** End Patch"),
            expected
        );
        assert_eq!(
            error_text("*** Begin Patch\n*** Update File: test.py\n*** Move to: x\n*** End Patch"),
            expected
        );
        assert_eq!(
            error_text(
                "*** Begin Patch\n*** Update File: test.py\n*** Add File: x\n+y\n*** End Patch"
            ),
            expected
        );
    }

    #[test]
    fn a_blank_line_alone_is_a_chunk_of_one_empty_context_line() {
        let blank = chunk(None, &[" "], false);
        assert_eq!(
            hunks("*** Begin Patch\n*** Update File: u\n\n*** Delete File: d\n*** End Patch"),
            vec![
                update("u", None, vec![blank.clone()]),
                Hunk::Delete { path: "d".into() }
            ]
        );
        assert_eq!(
            hunks("*** Begin Patch\n*** Update File: u\n*** Move to: v\n\n*** End Patch"),
            vec![update("u", Some("v"), vec![blank])]
        );
    }

    #[test]
    fn a_whitespace_line_after_a_chunk_is_a_chunk_without_marker() {
        assert_eq!(
            error_text(
                "*** Begin Patch\n*** Update File: u\n  \n\t\n*** Delete File: d\n*** End Patch"
            ),
            "invalid hunk at line 4, Expected update hunk to start with a @@ context marker, \
             got: '\t'"
        );
    }

    #[test]
    fn an_early_end_marker_ends_the_patch() {
        // Hunks before it are parsed first, so their errors come first.
        assert_eq!(
            error_text(
                "*** Begin Patch\n*** Update File: f\n*** Delete File: g\n d\n*** End Patch\n\
                 *** End Patch"
            ),
            "invalid hunk at line 2, Update file hunk for path 'f' is empty"
        );
        assert_eq!(
            hunks("*** Begin Patch\n*** Update File: u\n@@\n-a\n*** End Patch \n\n*** End Patch"),
            vec![update("u", None, vec![chunk(None, &["-a"], false)])]
        );
        assert_eq!(
            error_text(
                "*** Begin Patch\n*** Update File: u\n@@\n-a\n*** End Patch\n*** Add File: z\n\
                 +w\n*** End Patch"
            ),
            "invalid patch: The last line of the patch must be '*** End Patch'"
        );
        assert_eq!(
            error_text("*** Begin Patch\n*** End Patch\n*** Add File: x\n+y\n*** End Patch"),
            "invalid patch: The last line of the patch must be '*** End Patch'"
        );
        assert_eq!(
            error_text(
                "*** Begin Patch\n*** Add File: x\n+y\n*** End Patch\n*** End Patch\n*** End Patch"
            ),
            "invalid patch: The last line of the patch must be '*** End Patch'"
        );
    }

    #[test]
    fn chunk_with_only_markers_has_no_lines() {
        assert_eq!(
            error_text("*** Begin Patch\n*** Update File: u\n@@\n*** End Patch\n*** End Patch"),
            "invalid hunk at line 4, Update hunk does not contain any lines"
        );
        assert_eq!(
            error_text("*** Begin Patch\n*** Update File: u\n@@ x\n*** Add File: a\n*** End Patch"),
            "invalid hunk at line 4, Unexpected line found in update hunk: '*** Add File: a'. \
             Every line should start with ' ' (context line), '+' (added line), or '-' (removed \
             line)"
        );
        assert_eq!(
            error_text("*** Begin Patch\n*** Update File: u\n@@\n*** End Patch"),
            "invalid hunk at line 4, Update hunk does not contain any lines"
        );
        assert_eq!(
            error_text("*** Begin Patch\n*** Update File: u\n@@\n*** End of File\n*** End Patch"),
            "invalid hunk at line 4, Update hunk does not contain any lines"
        );
    }

    #[test]
    fn chunk_starting_with_a_foreign_line_is_rejected() {
        assert_eq!(
            error_text("*** Begin Patch\n*** Update File: u\n@@\nbad\n*** End Patch"),
            "invalid hunk at line 4, Unexpected line found in update hunk: 'bad'. Every line \
             should start with ' ' (context line), '+' (added line), or '-' (removed line)"
        );
        // A second context marker right after the first is such a line.
        assert_eq!(
            error_text("*** Begin Patch\n*** Update File: u\n@@ a\n@@ b\n-c\n*** End Patch"),
            "invalid hunk at line 4, Unexpected line found in update hunk: '@@ b'. Every line \
             should start with ' ' (context line), '+' (added line), or '-' (removed line)"
        );
        // So is a second move line.
        assert_eq!(
            error_text(
                "*** Begin Patch\n*** Update File: u\n*** Move to: v\n*** Move to: w\n-a\n\
                 *** End Patch"
            ),
            "invalid hunk at line 4, Unexpected line found in update hunk: '*** Move to: w'. \
             Every line should start with ' ' (context line), '+' (added line), or '-' (removed \
             line)"
        );
    }

    #[test]
    fn unexpected_first_line_without_marker_is_reported_on_its_own_line() {
        assert_eq!(
            error_text("*** Begin Patch\n*** Update File: u\nbad\n*** End Patch"),
            "invalid hunk at line 3, Unexpected line found in update hunk: 'bad'. Every line \
             should start with ' ' (context line), '+' (added line), or '-' (removed line)"
        );
    }

    #[test]
    fn invalid_hunk_headers_are_reported_with_their_line() {
        assert_eq!(
            error_text("*** Begin Patch\n*** Frobnicate File: foo\n*** End Patch"),
            format!("invalid hunk at line 2, '*** Frobnicate File: foo' {INVALID_HEADER_TAIL}")
        );
        // Lines that are not `+` end an added file; the next must be a header.
        assert_eq!(
            error_text("*** Begin Patch\n*** Add File: a\n+x\njunk\n*** End Patch"),
            format!("invalid hunk at line 4, 'junk' {INVALID_HEADER_TAIL}")
        );
        assert_eq!(
            error_text("*** Begin Patch\n*** Delete File: a\n+junk\n*** End Patch"),
            format!("invalid hunk at line 3, '+junk' {INVALID_HEADER_TAIL}")
        );
        // Blank lines between hunks are not skipped.
        assert_eq!(
            error_text("*** Begin Patch\n\n*** Add File: a\n+x\n*** End Patch"),
            format!("invalid hunk at line 2, '' {INVALID_HEADER_TAIL}")
        );
        // An unknown `***` line after a chunk is not a header either.
        assert_eq!(
            error_text("*** Begin Patch\n*** Update File: u\n@@\n-a\n*** Bogus\n*** End Patch"),
            "invalid hunk at line 5, Expected update hunk to start with a @@ context marker, \
             got: '*** Bogus'"
        );
        assert_eq!(
            error_text("*** Begin Patch\n*** Add File: x\n+y\n*** Begin Patch\n*** End Patch"),
            format!("invalid hunk at line 4, '*** Begin Patch' {INVALID_HEADER_TAIL}")
        );
    }

    #[test]
    fn headers_after_added_lines_may_be_indented_but_not_after_chunks() {
        assert_eq!(
            hunks("*** Begin Patch\n*** Add File: x\n+y\n\t*** Add File: z\n+w\n*** End Patch")
                .len(),
            2
        );
        assert_eq!(
            error_text(
                "*** Begin Patch\n*** Update File: u\n@@\n-a\n+b\n\t*** Add File: z\n+w\n\
                 *** End Patch"
            ),
            "invalid hunk at line 6, Expected update hunk to start with a @@ context marker, \
             got: '\t*** Add File: z'"
        );
    }

    #[test]
    fn crlf_patch_text_parses_like_lf() {
        assert_eq!(
            hunks("*** Begin Patch\r\n*** Update File: u\r\n@@\r\n-b\r\n+B\r\n*** End Patch\r\n"),
            vec![update("u", None, vec![chunk(None, &["-b", "+B"], false)])]
        );
    }

    #[test]
    fn chunk_lines_end_at_the_next_hunk_header() {
        assert_eq!(
            hunks(
                "*** Begin Patch\n*** Update File: file.py\n@@\n+line\n*** Add File: other.py\n\
                 +content\n*** End Patch"
            ),
            vec![
                update("file.py", None, vec![chunk(None, &["+line"], false)]),
                Hunk::Add {
                    path: "other.py".into(),
                    contents: "content\n".into()
                }
            ]
        );
    }

    #[test]
    fn line_numbers_count_from_the_trimmed_text() {
        assert_eq!(
            error_text("\n\n*** Begin Patch\n*** Add File: a\n+x\n*** Nope\n*** End Patch"),
            format!("invalid hunk at line 4, '*** Nope' {INVALID_HEADER_TAIL}")
        );
    }
}
