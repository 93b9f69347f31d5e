//! `stdio://`: one connection per process, newline-delimited JSON. The client is never dropped
//! for being slow; when stdin ends the connection closes and the server shuts down.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::Server;
use crate::connection::{Origin, WhenFull};

/// Serves the process's stdin/stdout until stdin ends or the server shuts down.
pub async fn serve(server: Arc<Server>) {
    let max_frame = server.limits.max_frame_bytes;
    let shutdown = server.shutdown.clone();
    super::run(
        &server,
        Origin::Stdio,
        WhenFull::Wait,
        server.limits.stdio_outbound_queue,
        async move |inbox, connection| {
            let mut stdin = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
            let mut line = Vec::new();
            loop {
                let read = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    read = read_line(&mut stdin, max_frame, &mut line) => read,
                };
                match read {
                    Ok(Line::Complete) => {
                        if !line.iter().all(u8::is_ascii_whitespace) {
                            inbox.deliver(&line).await;
                        }
                    }
                    Ok(Line::End) => break,
                    Ok(Line::TooLong) => {
                        tracing::warn!(
                            connection = connection.id(),
                            max_frame,
                            "closing connection: a frame is larger than the limit"
                        );
                        break;
                    }
                    Err(err) => {
                        tracing::warn!(
                            connection = connection.id(),
                            "closing connection: reading stdin failed: {err}"
                        );
                        break;
                    }
                }
            }
        },
        async |mut outbound, _closed| {
            let mut stdout = tokio::io::stdout();
            while let Some(frame) = outbound.recv().await {
                let written = async {
                    stdout.write_all(frame.as_bytes()).await?;
                    stdout.write_all(b"\n").await?;
                    if outbound.is_empty() {
                        stdout.flush().await?;
                    }
                    io::Result::Ok(())
                };
                if let Err(err) = written.await {
                    tracing::warn!("writing stdout failed: {err}");
                    return;
                }
            }
        },
    )
    .await;
}

enum Line {
    Complete,
    End,
    TooLong,
}

/// Reads one line into `line` (without the newline or a trailing CR), refusing to hold more
/// than `max` bytes of it.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
    line: &mut Vec<u8>,
) -> io::Result<Line> {
    line.clear();
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(if line.is_empty() {
                Line::End
            } else {
                Line::Complete
            });
        }
        let (chunk, found_newline) = match buffer.iter().position(|b| *b == b'\n') {
            Some(end) => (&buffer[..end], true),
            None => (buffer, false),
        };
        if line.len() + chunk.len() > max {
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(found_newline);
        reader.consume(used);
        if found_newline {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Line::Complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_lines_and_enforces_the_limit() {
        let input: &[u8] = b"{\"a\":1}\r\n\nabc\n0123456789ABCDEF\nlast";
        let mut reader = BufReader::with_capacity(4, input);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            match read_line(&mut reader, 10, &mut line).await.unwrap() {
                Line::Complete => seen.push(String::from_utf8(line.clone()).unwrap()),
                Line::TooLong => {
                    seen.push("<too long>".into());
                    break;
                }
                Line::End => break,
            }
        }
        assert_eq!(seen, ["{\"a\":1}", "", "abc", "<too long>"]);
        let mut tail = BufReader::new(&b"last"[..]);
        assert!(matches!(
            read_line(&mut tail, 10, &mut line).await.unwrap(),
            Line::Complete
        ));
        assert_eq!(line, b"last");
        assert!(matches!(
            read_line(&mut tail, 10, &mut line).await.unwrap(),
            Line::End
        ));
    }
}
