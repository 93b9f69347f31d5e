//! Finding a run of lines in a file, from strict to loose, as codex does.

/// The index of the first place at or after `start` where `pattern` occurs in `lines`.
///
/// Four passes, each over the whole range before the next starts: exact, then ignoring trailing
/// whitespace, then ignoring surrounding whitespace, then also treating typographic dashes,
/// quotes and spaces as their ASCII forms. With `at_end` the pattern may only match as the last
/// lines of the file, and only if they start at or after `start`. An empty pattern matches at
/// `start`.
pub(crate) fn seek_sequence(
    lines: &[String],
    pattern: &[String],
    start: usize,
    at_end: bool,
) -> Option<usize> {
    if pattern.is_empty() {
        return Some(start);
    }
    let last_start = lines.len().checked_sub(pattern.len())?;
    let first_start = if at_end { last_start.max(start) } else { start };
    if first_start > last_start {
        return None;
    }
    let passes: [fn(&str, &str) -> bool; 4] = [
        |line, wanted| line == wanted,
        |line, wanted| line.trim_end() == wanted.trim_end(),
        |line, wanted| line.trim() == wanted.trim(),
        |line, wanted| ascii_punctuation(line).eq(ascii_punctuation(wanted)),
    ];
    passes.iter().find_map(|matches| {
        (first_start..=last_start).find(|&at| {
            pattern
                .iter()
                .zip(&lines[at..])
                .all(|(wanted, line)| matches(line, wanted))
        })
    })
}

/// The trimmed line with typographic punctuation replaced by its ASCII form, so a patch written in
/// ASCII still finds lines holding en dashes, curly quotes or non-breaking spaces (and the other
/// way round).
fn ascii_punctuation(line: &str) -> impl Iterator<Item = char> + '_ {
    line.trim().chars().map(|c| match c {
        '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
        '\u{2018}'..='\u{201B}' => '\'',
        '\u{201C}'..='\u{201F}' => '"',
        '\u{00A0}' | '\u{2002}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => ' ',
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::seek_sequence;

    fn lines(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn exact_match_is_found_from_start() {
        let file = lines(&["foo", "bar", "baz", "bar", "baz"]);
        assert_eq!(
            seek_sequence(&file, &lines(&["bar", "baz"]), 0, false),
            Some(1)
        );
        assert_eq!(
            seek_sequence(&file, &lines(&["bar", "baz"]), 2, false),
            Some(3)
        );
        assert_eq!(
            seek_sequence(&file, &lines(&["bar", "baz"]), 4, false),
            None
        );
    }

    #[test]
    fn an_exact_match_later_wins_over_a_loose_match_earlier() {
        let file = lines(&["foo  ", "foo"]);
        assert_eq!(seek_sequence(&file, &lines(&["foo"]), 0, false), Some(1));
    }

    #[test]
    fn trailing_whitespace_is_ignored_in_the_second_pass() {
        let file = lines(&["foo   ", "bar\t\t"]);
        assert_eq!(
            seek_sequence(&file, &lines(&["foo", "bar"]), 0, false),
            Some(0)
        );
    }

    #[test]
    fn surrounding_whitespace_is_ignored_in_the_third_pass() {
        let file = lines(&["    foo   ", "   bar\t"]);
        assert_eq!(
            seek_sequence(&file, &lines(&["foo", "bar"]), 0, false),
            Some(0)
        );
    }

    #[test]
    fn typographic_punctuation_matches_ascii_in_the_last_pass() {
        let file = lines(&["a \u{2013} b\u{2011}c \u{201C}q\u{201D} \u{2018}s\u{2019}\u{00A0}x"]);
        assert_eq!(
            seek_sequence(&file, &lines(&["a - b-c \"q\" 's' x"]), 0, false),
            Some(0)
        );
        let ascii = lines(&["\"q\""]);
        assert_eq!(
            seek_sequence(&ascii, &lines(&["\u{201C}q\u{201D}"]), 0, false),
            Some(0)
        );
        assert_eq!(seek_sequence(&ascii, &lines(&["'q'"]), 0, false), None);
    }

    #[test]
    fn end_anchored_patterns_only_match_the_last_lines() {
        let file = lines(&["x", "y", "x"]);
        assert_eq!(seek_sequence(&file, &lines(&["x"]), 0, true), Some(2));
        assert_eq!(seek_sequence(&file, &lines(&["y"]), 0, true), None);
        assert_eq!(seek_sequence(&file, &lines(&["x"]), 0, false), Some(0));
        assert_eq!(seek_sequence(&file, &lines(&["y", "x"]), 2, true), None);
    }

    #[test]
    fn pattern_longer_than_the_file_is_not_found() {
        let file = lines(&["one"]);
        assert_eq!(
            seek_sequence(&file, &lines(&["one", "two"]), 0, false),
            None
        );
        assert_eq!(seek_sequence(&file, &lines(&["one", "two"]), 0, true), None);
    }

    #[test]
    fn empty_pattern_matches_at_start() {
        assert_eq!(seek_sequence(&lines(&["a"]), &[], 1, false), Some(1));
    }
}
