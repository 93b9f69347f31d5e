//! Text deltas from a byte stream whose chunks may end inside a UTF-8 character.

/// Decodes output chunks into text (for `outputDelta` notifications) without splitting a
/// character across two deltas; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8ChunkDecoder {
    /// The start of a character whose remaining bytes have not arrived yet (< 4 bytes).
    incomplete: Vec<u8>,
}

impl Utf8ChunkDecoder {
    /// The text completed by `chunk`; an unfinished trailing character is held back.
    pub fn decode(&mut self, chunk: &[u8]) -> String {
        let mut bytes = std::mem::take(&mut self.incomplete);
        bytes.extend_from_slice(chunk);
        let mut text = String::with_capacity(bytes.len());
        let mut rest = bytes.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    break;
                }
                Err(err) => {
                    let (valid, after) = rest.split_at(err.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match err.error_len() {
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        None => {
                            self.incomplete = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        text
    }

    /// Whatever is still held back, at the end of the stream.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.incomplete);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_chunks_come_out_whole() {
        let mut decoder = Utf8ChunkDecoder::default();
        let bytes = "aé€😀".as_bytes();
        let mut text = String::new();
        for byte in bytes {
            text.push_str(&decoder.decode(std::slice::from_ref(byte)));
        }
        assert_eq!(text, "aé€😀");
        assert_eq!(decoder.finish(), "");
    }

    #[test]
    fn invalid_bytes_are_replaced_and_a_cut_tail_is_flushed() {
        let mut decoder = Utf8ChunkDecoder::default();
        assert_eq!(decoder.decode(b"a\xffb\xe2\x82"), "a\u{fffd}b");
        assert_eq!(decoder.finish(), "\u{fffd}");
    }
}
