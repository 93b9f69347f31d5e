//! Server-sent events: enough of the format for the Responses API (`data:` lines, blank-line
//! dispatch, comments and other fields ignored, LF or CRLF line endings).

/// Accumulates bytes and yields the `data` of each complete event.
#[derive(Default)]
pub(crate) struct SseDecoder {
    buffer: Vec<u8>,
    data: Vec<String>,
}

impl SseDecoder {
    /// Feeds bytes; returns the data of every event they complete.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(self.data.join("\n"));
                    self.data.clear();
                }
                continue;
            }
            let line = String::from_utf8_lossy(&line);
            if let Some(value) = line.strip_prefix("data:") {
                self.data
                    .push(value.strip_prefix(' ').unwrap_or(value).to_owned());
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_across_arbitrary_chunks() {
        let stream = b": comment\r\nevent: response.created\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nevent: x\ndata: second\n\nid: 3\n\n";
        for chunk in 1..stream.len() {
            let mut decoder = SseDecoder::default();
            let mut events = Vec::new();
            for piece in stream.chunks(chunk) {
                events.extend(decoder.feed(piece));
            }
            assert_eq!(events, ["{\"a\":\n1}", "second"], "chunk size {chunk}");
        }
    }
}
