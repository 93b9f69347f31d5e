//! Server-sent events: enough of the format for the Responses API (`data` fields, blank-line
//! dispatch, comments and other fields ignored, LF or CRLF line endings).
//!
//! Decoding is linear in the bytes received: each byte is examined once while looking for the
//! end of its line, however the bytes are split into chunks, and a line's bytes are copied once
//! into its event. An incomplete line waits in the buffer without being scanned again.

/// Accumulates bytes and yields the `data` of each complete event.
#[derive(Default)]
pub(crate) struct SseDecoder {
    /// Bytes of the incomplete line at the end of what was fed (complete lines are removed).
    pending: Vec<u8>,
    /// How much of `pending` is known to hold no line feed.
    scanned: usize,
    /// The `data` of the event being built, if it has any `data` field yet.
    data: Option<String>,
    /// Every byte examined while looking for line ends: equal to the bytes fed, for tests.
    #[cfg(test)]
    examined: usize,
}

impl SseDecoder {
    /// Feeds bytes; returns the data of every event they complete.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut line_start = 0;
        while let Some(offset) = self.pending[self.scanned..]
            .iter()
            .position(|b| *b == b'\n')
        {
            let end = self.scanned + offset;
            #[cfg(test)]
            {
                self.examined += offset + 1;
            }
            let mut line = &self.pending[line_start..end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if let Some(event) = Self::line(&mut self.data, line) {
                events.push(event);
            }
            line_start = end + 1;
            self.scanned = line_start;
        }
        #[cfg(test)]
        {
            self.examined += self.pending.len() - self.scanned;
        }
        // What is left is the start of a line, all of it from this feed's bytes when any line
        // ended here: removing the consumed prefix copies at most `bytes.len()` bytes.
        self.pending.drain(..line_start);
        self.scanned = self.pending.len();
        events
    }

    /// Applies one complete line to the event in `data`; a blank line dispatches it.
    fn line(data: &mut Option<String>, line: &[u8]) -> Option<String> {
        if line.is_empty() {
            return data.take();
        }
        if line.first() == Some(&b':') {
            return None;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            let value = String::from_utf8_lossy(value);
            match data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(&value);
                }
                None => *data = Some(value.into_owned()),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_across_arbitrary_chunks() {
        let stream = b": comment\r\nevent: response.created\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nevent: x\ndata: second\n\nid: 3\n\ndata\n\ndata:no space\n\n";
        for chunk in 1..stream.len() {
            let mut decoder = SseDecoder::default();
            let mut events = Vec::new();
            for piece in stream.chunks(chunk) {
                events.extend(decoder.feed(piece));
            }
            assert_eq!(
                events,
                ["{\"a\":\n1}", "second", "", "no space"],
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn every_byte_is_examined_once_however_a_large_event_is_chunked() {
        let payload = "x".repeat(1 << 20);
        let stream = format!("event: big\ndata: {payload}\ndata: tail\n\ndata: next\n\n");
        for chunk in [1, 7, 4096, 65536, stream.len()] {
            let mut decoder = SseDecoder::default();
            let mut events = Vec::new();
            for piece in stream.as_bytes().chunks(chunk) {
                events.extend(decoder.feed(piece));
            }
            assert_eq!(events.len(), 2, "chunk size {chunk}");
            assert_eq!(events[0].len(), payload.len() + "\ntail".len());
            assert_eq!(
                decoder.examined,
                stream.len(),
                "chunk size {chunk}: bytes were scanned again"
            );
        }
    }

    #[test]
    fn an_unfinished_line_is_kept_until_its_end_arrives() {
        let mut decoder = SseDecoder::default();
        assert!(decoder.feed(b"data: {\"partial\":").is_empty());
        assert!(decoder.feed(b" true}").is_empty());
        assert_eq!(decoder.feed(b"\n\n"), ["{\"partial\": true}"]);
    }
}
