//! `stdio://`: one connection per process, newline-delimited JSON. When stdin ends the connection
//! closes and the server shuts down.
//!
//! The stdio client is the process's parent, and its outbound queue is bounded in bytes like any
//! other: nothing ever waits for it, so it cannot delay anyone else. A parent that leaves more
//! than the bound unread is treated as hung, like one that sends a frame over the limit or whose
//! pipes fail: the connection closes with the reason logged on stderr, the server shuts down
//! gracefully, and the process exits non-zero, so whoever supervises the parent sees it. Dropping
//! its notifications instead would leave it with a silently wrong picture of its threads.
//!
//! Reading and writing happen on two dedicated OS threads with plain blocking I/O: stdin and
//! stdout may be pipes, files or terminals, and a thread per direction costs far less than
//! handing every read and write to the blocking pool.

use std::io::{self, BufRead, Write as _};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::Server;
use crate::connection::{CloseReason, Closing, Origin, OutboundQueue};

/// What the stdin thread reports.
enum Line {
    Complete(Vec<u8>),
    End,
    TooLong,
    Failed(io::Error),
}

/// Serves the process's stdin/stdout until stdin ends, the server shuts down, or the connection
/// is closed; returns why it was closed, if it was.
pub async fn serve(server: Arc<Server>) -> Option<CloseReason> {
    let max_frame = server.limits.max_frame_bytes;
    let shutdown = server.shutdown.clone();
    let (lines_tx, mut lines) = mpsc::channel(64);
    std::thread::Builder::new()
        .name("tether-stdin".into())
        .spawn(move || read_stdin(max_frame, lines_tx))
        .expect("spawn the stdin thread");
    super::run(
        &server,
        Origin::Stdio,
        async move |inbox, connection| {
            loop {
                let line = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = connection.closed().cancelled() => break,
                    line = lines.recv() => line.unwrap_or(Line::End),
                };
                match line {
                    Line::Complete(line) => {
                        if !line.iter().all(u8::is_ascii_whitespace) {
                            inbox.deliver(&line).await;
                        }
                    }
                    Line::End => break,
                    Line::TooLong => {
                        connection.close(CloseReason::FrameTooLarge { limit: max_frame });
                        break;
                    }
                    Line::Failed(err) => {
                        connection.close(CloseReason::Transport(format!(
                            "reading stdin failed: {err}"
                        )));
                        break;
                    }
                }
            }
        },
        async |outbound| {
            let closing = Arc::clone(outbound.closing());
            let (done, finished) = oneshot::channel();
            let spawned = std::thread::Builder::new()
                .name("tether-stdout".into())
                .spawn(move || {
                    write_stdout(outbound);
                    let _ = done.send(());
                });
            if spawned.is_err() {
                return;
            }
            tokio::select! {
                _ = finished => {}
                // A parent that stopped reading may never take the rest: the process ends
                // without waiting for it.
                _ = too_slow(&closing) => {}
            }
        },
    )
    .await
}

async fn too_slow(closing: &Closing) {
    closing.token().cancelled().await;
    if !matches!(closing.reason(), Some(CloseReason::TooSlow { .. })) {
        std::future::pending::<()>().await;
    }
}

fn read_stdin(max_frame: usize, lines: mpsc::Sender<Line>) {
    let mut stdin = io::stdin().lock();
    loop {
        let mut line = Vec::new();
        let read = match read_line(&mut stdin, max_frame, &mut line) {
            Ok(true) => Line::Complete(line),
            Ok(false) => Line::End,
            Err(err) if err.kind() == io::ErrorKind::FileTooLarge => Line::TooLong,
            Err(err) => Line::Failed(err),
        };
        let last = !matches!(read, Line::Complete(_));
        if lines.blocking_send(read).is_err() || last {
            return;
        }
    }
}

fn write_stdout(mut outbound: OutboundQueue) {
    let mut stdout = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    while let Some(frame) = outbound.blocking_recv() {
        let written = (|| {
            stdout.write_all(frame.as_bytes())?;
            stdout.write_all(b"\n")?;
            if outbound.is_empty() {
                stdout.flush()?;
            }
            io::Result::Ok(())
        })();
        if let Err(err) = written {
            outbound.closing().close(CloseReason::Transport(format!(
                "writing stdout failed: {err}"
            )));
            return;
        }
    }
    let _ = stdout.flush();
}

/// Reads one line into `line` (without the newline or a trailing CR); `false` at the end of
/// input. A line longer than `max` bytes is an error of kind `FileTooLarge`, and no more than
/// `max` bytes of it are ever held.
fn read_line(reader: &mut impl BufRead, max: usize, line: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(!line.is_empty());
        }
        let (chunk, found_newline) = match buffer.iter().position(|b| *b == b'\n') {
            Some(end) => (&buffer[..end], true),
            None => (buffer, false),
        };
        if line.len() + chunk.len() > max {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "frame too large",
            ));
        }
        line.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(found_newline);
        reader.consume(used);
        if found_newline {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_enforces_the_limit() {
        let input: &[u8] = b"{\"a\":1}\r\n\nabc\n0123456789ABCDEF\nlast";
        let mut reader = io::BufReader::with_capacity(4, input);
        let mut seen = Vec::new();
        loop {
            let mut line = Vec::new();
            match read_line(&mut reader, 10, &mut line) {
                Ok(true) => seen.push(String::from_utf8(line).unwrap()),
                Ok(false) => break,
                Err(err) => {
                    assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
                    seen.push("<too long>".into());
                    break;
                }
            }
        }
        assert_eq!(seen, ["{\"a\":1}", "", "abc", "<too long>"]);
        let mut tail = io::BufReader::new(&b"last"[..]);
        let mut line = Vec::new();
        assert!(read_line(&mut tail, 10, &mut line).unwrap());
        assert_eq!(line, b"last");
        line.clear();
        assert!(!read_line(&mut tail, 10, &mut line).unwrap());
    }
}
