//! What the model is told about a command: token estimates, middle truncation and the
//! `exec_command` / `write_stdin` tool output text, byte for byte as codex writes them.

use std::time::Duration;

use rand::Rng;

const BYTES_PER_TOKEN: usize = 4;

/// The default `max_output_tokens` of `exec_command` / `write_stdin`.
pub const DEFAULT_MAX_OUTPUT_TOKENS: usize = 10_000;

/// Estimated tokens in a text: its UTF-8 length divided by four, rounded up.
pub fn approx_token_count(text: &str) -> usize {
    approx_tokens_from_byte_count(text.len())
}

/// Estimated tokens in `bytes` bytes, rounded up.
pub fn approx_tokens_from_byte_count(bytes: usize) -> usize {
    bytes.div_ceil(BYTES_PER_TOKEN)
}

/// Bytes that `tokens` estimated tokens stand for.
pub fn approx_bytes_for_tokens(tokens: usize) -> usize {
    tokens.saturating_mul(BYTES_PER_TOKEN)
}

/// A budget for model-facing text, as codex's catalog `truncation_policy` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TruncationPolicy {
    /// At most this many bytes; the marker counts removed characters.
    Bytes(usize),
    /// At most this many estimated tokens; the marker counts removed tokens.
    Tokens(usize),
}

impl TruncationPolicy {
    /// The budget in bytes.
    pub fn byte_budget(self) -> usize {
        match self {
            Self::Bytes(bytes) => bytes,
            Self::Tokens(tokens) => approx_bytes_for_tokens(tokens),
        }
    }

    /// The budget in estimated tokens.
    pub fn token_budget(self) -> usize {
        match self {
            Self::Bytes(bytes) => approx_tokens_from_byte_count(bytes),
            Self::Tokens(tokens) => tokens,
        }
    }

    /// The budget scaled by `factor`, rounded up.
    pub fn scaled(self, factor: f64) -> Self {
        let scale = |n: usize| (n as f64 * factor).ceil() as usize;
        match self {
            Self::Bytes(bytes) => Self::Bytes(scale(bytes)),
            Self::Tokens(tokens) => Self::Tokens(scale(tokens)),
        }
    }
}

/// Cuts the middle out of `content` so it fits `policy`, keeping half the budget from the
/// start and half from the end (on character boundaries, so lines may be split) joined by
/// `…N tokens truncated…` (or `…N chars truncated…` for a byte policy).
pub fn truncate_text(content: &str, policy: TruncationPolicy) -> String {
    let budget = policy.byte_budget();
    let counts_tokens = matches!(policy, TruncationPolicy::Tokens(_));
    if content.is_empty() {
        return String::new();
    }
    if budget == 0 {
        let removed = if counts_tokens {
            approx_tokens_from_byte_count(content.len())
        } else {
            content.chars().count()
        };
        return truncation_marker(counts_tokens, removed);
    }
    if content.len() <= budget {
        return content.to_string();
    }
    let head_budget = budget / 2;
    let tail_start = content.len() - (budget - head_budget);
    let mut head_end = 0;
    let mut tail_begin = None;
    let mut removed_chars = 0;
    for (index, ch) in content.char_indices() {
        let end = index + ch.len_utf8();
        if end <= head_budget {
            head_end = end;
        } else if index >= tail_start {
            tail_begin.get_or_insert(index);
        } else {
            removed_chars += 1;
        }
    }
    let tail_begin = tail_begin.unwrap_or(content.len()).max(head_end);
    let removed = if counts_tokens {
        approx_tokens_from_byte_count(content.len() - budget)
    } else {
        removed_chars
    };
    let marker = truncation_marker(counts_tokens, removed);
    let mut out = String::with_capacity(head_end + marker.len() + content.len() - tail_begin);
    out.push_str(&content[..head_end]);
    out.push_str(&marker);
    out.push_str(&content[tail_begin..]);
    out
}

fn truncation_marker(counts_tokens: bool, removed: usize) -> String {
    if counts_tokens {
        format!("…{removed} tokens truncated…")
    } else {
        format!("…{removed} chars truncated…")
    }
}

/// `content` unchanged when it fits, otherwise the warning header codex puts above a
/// truncated output followed by [`truncate_text`].
pub fn formatted_truncate_text(content: &str, policy: TruncationPolicy) -> String {
    if content.len() <= policy.byte_budget() {
        return content.to_string();
    }
    let original_token_count = approx_token_count(content);
    let total_lines = content.lines().count();
    let truncated = truncate_text(content, policy);
    format!(
        "Warning: truncated output (original token count: {original_token_count})\nTotal output lines: {total_lines}\n\n{truncated}"
    )
}

/// The line codex puts where the collection buffer dropped output.
pub fn output_omission_marker(omitted_bytes: usize) -> String {
    format!("... {omitted_bytes} bytes omitted ...")
}

/// A fresh six-hex-digit chunk id, as in `Chunk ID: 7fca8b`.
pub fn generate_chunk_id() -> String {
    let mut rng = rand::thread_rng();
    (0..6)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// The result of one `exec_command` or `write_stdin` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// Six hex digits naming this chunk of output.
    pub chunk_id: String,
    /// Time spent waiting for output in this call.
    pub wall_time: Duration,
    /// Output collected during this call (stdout and stderr interleaved), at most
    /// [`crate::OUTPUT_MAX_BYTES`].
    pub output: Vec<u8>,
    /// Bytes dropped from the middle of this call's output to bound memory.
    pub omitted_bytes: usize,
    /// The live session id when the process is still running (then `exit_code` is None).
    pub session_id: Option<i32>,
    /// The exit code once the process has exited (-1 when killed by a signal).
    pub exit_code: Option<i32>,
    /// Estimated tokens of the collected output before truncation.
    pub original_token_count: usize,
}

impl ExecOutcome {
    /// The collected output as text (invalid UTF-8 replaced).
    pub fn output_text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    /// The `function_call_output` text for the model: the header lines, then the output
    /// cut to the smaller of `max_output_tokens` (default 10000) and the catalog
    /// `truncation_policy`, leaving room for the header within 1.2 times that policy.
    pub fn model_text(
        &self,
        max_output_tokens: Option<usize>,
        truncation_policy: TruncationPolicy,
    ) -> String {
        let header = self.header();
        let output_budget = truncation_policy
            .scaled(1.2)
            .byte_budget()
            .saturating_sub(header.len() + 1);
        let requested =
            TruncationPolicy::Tokens(max_output_tokens.unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS));
        let mut policy = if requested.byte_budget() < truncation_policy.byte_budget() {
            requested
        } else {
            truncation_policy
        };
        let mut output = self.truncated_output(policy);
        // Shrink the budget until header and output fit, so history never truncates an
        // already truncated output a second time.
        while output.len() > output_budget && policy.byte_budget() > 0 {
            let excess = output.len() - output_budget;
            policy = match policy {
                TruncationPolicy::Bytes(bytes) => {
                    TruncationPolicy::Bytes(bytes.saturating_sub(excess))
                }
                TruncationPolicy::Tokens(tokens) => TruncationPolicy::Tokens(
                    tokens.saturating_sub(approx_tokens_from_byte_count(excess)),
                ),
            };
            output = self.truncated_output(policy);
        }
        format!("{header}\n{output}")
    }

    fn header(&self) -> String {
        let mut lines = Vec::with_capacity(5);
        if !self.chunk_id.is_empty() {
            lines.push(format!("Chunk ID: {}", self.chunk_id));
        }
        lines.push(format!(
            "Wall time: {:.4} seconds",
            self.wall_time.as_secs_f64()
        ));
        if let Some(code) = self.exit_code {
            lines.push(format!("Process exited with code {code}"));
        }
        if let Some(id) = self.session_id {
            lines.push(format!("Process running with session ID {id}"));
        }
        lines.push(format!(
            "Original token count: {}",
            self.original_token_count
        ));
        lines.push("Output:".to_string());
        lines.join("\n")
    }

    fn truncated_output(&self, policy: TruncationPolicy) -> String {
        let text = self.output_text();
        if self.omitted_bytes == 0 {
            return formatted_truncate_text(&text, policy);
        }
        let marker = output_omission_marker(self.omitted_bytes);
        if text.len() <= policy.byte_budget() {
            return format!("{marker}\n{text}");
        }
        let truncated = truncate_text(&text, policy);
        format!(
            "Warning: truncated output (original token count: {})\n{marker}\n\n{truncated}",
            self.original_token_count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_estimate_rounds_up() {
        assert_eq!(approx_token_count(""), 0);
        assert_eq!(approx_token_count("hello\n"), 2);
        assert_eq!(approx_token_count("abcd"), 1);
        assert_eq!(approx_token_count("abcde"), 2);
    }

    #[test]
    fn truncation_keeps_head_and_tail_halves() {
        let text = "0123456789abcdefghij"; // 20 bytes, 5 tokens
        assert_eq!(
            truncate_text(text, TruncationPolicy::Tokens(2)),
            "0123…3 tokens truncated…ghij"
        );
        assert_eq!(
            truncate_text(text, TruncationPolicy::Bytes(8)),
            "0123…12 chars truncated…ghij"
        );
        assert_eq!(
            truncate_text(text, TruncationPolicy::Tokens(0)),
            "…5 tokens truncated…"
        );
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        let text = "ééééé"; // 10 bytes
        assert_eq!(
            truncate_text(text, TruncationPolicy::Bytes(5)),
            "é…3 chars truncated…é"
        );
    }

    #[test]
    fn formatted_truncation_has_the_warning_header() {
        let text = "line1\nline2\nline3\n";
        assert_eq!(
            formatted_truncate_text(text, TruncationPolicy::Tokens(100)),
            text
        );
        assert_eq!(
            formatted_truncate_text(text, TruncationPolicy::Tokens(2)),
            "Warning: truncated output (original token count: 5)\nTotal output lines: 3\n\nline…3 tokens truncated…ne3\n"
        );
    }

    #[test]
    fn model_text_for_an_exited_process() {
        let outcome = ExecOutcome {
            chunk_id: "7fca8b".into(),
            wall_time: Duration::from_micros(202_300),
            output: b"hello\n".to_vec(),
            omitted_bytes: 0,
            session_id: None,
            exit_code: Some(0),
            original_token_count: 2,
        };
        assert_eq!(
            outcome.model_text(None, TruncationPolicy::Tokens(10_000)),
            "Chunk ID: 7fca8b\nWall time: 0.2023 seconds\nProcess exited with code 0\nOriginal token count: 2\nOutput:\nhello\n"
        );
    }

    #[test]
    fn model_text_for_a_running_process_with_omitted_output() {
        let outcome = ExecOutcome {
            chunk_id: "abcdef".into(),
            wall_time: Duration::from_secs(1),
            output: b"tail".to_vec(),
            omitted_bytes: 12,
            session_id: Some(95294),
            exit_code: None,
            original_token_count: 1,
        };
        assert_eq!(
            outcome.model_text(Some(100), TruncationPolicy::Tokens(10_000)),
            "Chunk ID: abcdef\nWall time: 1.0000 seconds\nProcess running with session ID 95294\nOriginal token count: 1\nOutput:\n... 12 bytes omitted ...\ntail"
        );
    }

    #[test]
    fn chunk_ids_are_six_hex_digits() {
        let id = generate_chunk_id();
        assert_eq!(id.len(), 6);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
