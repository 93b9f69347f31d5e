//! A byte buffer of bounded size that keeps the start and the end of a stream.

use std::collections::VecDeque;

/// The most output one process buffer holds (codex `UNIFIED_EXEC_OUTPUT_MAX_BYTES`, 1 MiB).
pub const OUTPUT_MAX_BYTES: usize = 1024 * 1024;

/// Keeps the first half of its capacity ("head") and the most recent half ("tail") of
/// everything pushed into it, and counts the bytes dropped in between, so memory stays
/// bounded however much a process prints.
#[derive(Debug)]
pub struct HeadTailBuffer {
    head_capacity: usize,
    tail_capacity: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    omitted: usize,
}

impl HeadTailBuffer {
    /// A buffer that retains at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        let head_capacity = capacity / 2;
        Self {
            head_capacity,
            tail_capacity: capacity - head_capacity,
            head: Vec::new(),
            tail: VecDeque::new(),
            omitted: 0,
        }
    }

    /// Appends bytes: the head fills first, then the tail keeps the newest bytes.
    pub fn push(&mut self, mut bytes: &[u8]) {
        let head_room = self.head_capacity - self.head.len();
        if head_room > 0 {
            let taken = head_room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..taken]);
            bytes = &bytes[taken..];
        }
        if bytes.is_empty() {
            return;
        }
        if bytes.len() >= self.tail_capacity {
            // The chunk alone fills the tail: everything before its last bytes is dropped.
            self.omitted += self.tail.len() + bytes.len() - self.tail_capacity;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_capacity..]);
            return;
        }
        self.tail.extend(bytes);
        let excess = self.tail.len().saturating_sub(self.tail_capacity);
        if excess > 0 {
            self.tail.drain(..excess);
            self.omitted += excess;
        }
    }

    /// Bytes dropped from the middle so far.
    pub fn omitted_bytes(&self) -> usize {
        self.omitted
    }

    /// Bytes currently held.
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// True when nothing is held and nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.omitted == 0
    }

    /// The retained bytes, head then tail (the dropped middle is not marked).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&self.head);
        out.extend(self.tail.iter());
        out
    }

    /// Takes the retained bytes and the omitted count, leaving the buffer empty.
    pub fn take(&mut self) -> (Vec<u8>, usize) {
        let bytes = self.to_bytes();
        let omitted = self.omitted;
        self.head.clear();
        self.tail.clear();
        self.omitted = 0;
        (bytes, omitted)
    }
}

impl Default for HeadTailBuffer {
    fn default() -> Self {
        Self::new(OUTPUT_MAX_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_under_capacity() {
        let mut buffer = HeadTailBuffer::new(10);
        buffer.push(b"abc");
        buffer.push(b"def");
        assert_eq!(buffer.to_bytes(), b"abcdef");
        assert_eq!(buffer.omitted_bytes(), 0);
    }

    #[test]
    fn drops_the_middle_over_capacity() {
        let mut buffer = HeadTailBuffer::new(6);
        buffer.push(b"abcdefgh");
        buffer.push(b"ij");
        // head "abc", tail keeps the newest 3 bytes.
        assert_eq!(buffer.to_bytes(), b"abchij");
        assert_eq!(buffer.omitted_bytes(), 4);
        let (bytes, omitted) = buffer.take();
        assert_eq!((bytes.as_slice(), omitted), (&b"abchij"[..], 4));
        assert!(buffer.is_empty());
    }

    #[test]
    fn many_small_pushes_stay_bounded() {
        let mut buffer = HeadTailBuffer::new(8);
        for _ in 0..1000 {
            buffer.push(b"xy");
        }
        assert_eq!(buffer.len(), 8);
        assert_eq!(buffer.omitted_bytes(), 2000 - 8);
    }
}
