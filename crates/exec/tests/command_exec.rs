//! One-off `command/exec` processes.

use std::sync::Arc;
use std::time::Duration;

use tether_exec::{
    CommandExec, CommandExecError, CommandExecSpec, CommandOutputChunk, OutputStream, Sandbox,
    SandboxPolicy, TIMEOUT_EXIT_CODE, TerminalSize,
};
use tokio::sync::mpsc;

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_tether-exec-sandbox-helper"))
}

fn spec(argv: &[&str]) -> CommandExecSpec {
    CommandExecSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: std::env::temp_dir(),
        env: std::env::vars().collect(),
        env_overrides: Vec::new(),
        sandbox: SandboxPolicy::DangerFullAccess,
        tty: false,
        size: None,
        stream_stdin: false,
        stream_output: false,
        timeout: None,
        output_bytes_cap: None,
        output_sink: None,
    }
}

#[tokio::test]
async fn stdout_and_stderr_are_separate_and_env_overrides_apply() {
    let mut spec = spec(&[
        "/bin/sh",
        "-c",
        "echo ${DROP-unset} $ADD; echo err >&2; exit 5",
    ]);
    spec.env.insert("DROP".into(), "present".into());
    spec.env_overrides = vec![("DROP".into(), None), ("ADD".into(), Some("added".into()))];
    let result = CommandExec::spawn(&sandbox(), spec).unwrap().wait().await;
    assert_eq!(result.exit_code, 5);
    assert_eq!(result.stdout, "unset added\n");
    assert_eq!(result.stderr, "err\n");
}

#[tokio::test]
async fn output_cap_applies_per_stream_and_streams_report_it() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut spec = spec(&["/bin/sh", "-c", "seq 1 1000; seq 1 3 >&2"]);
    spec.output_bytes_cap = Some(10);
    spec.stream_output = true;
    spec.output_sink = Some(Arc::new(move |chunk: CommandOutputChunk| {
        let _ = tx.send(chunk);
    }));
    let result = CommandExec::spawn(&sandbox(), spec).unwrap().wait().await;
    assert_eq!(result.exit_code, 0);
    // Streamed output is not repeated in the result.
    assert_eq!((result.stdout.as_str(), result.stderr.as_str()), ("", ""));
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut stdout_capped = false;
    while let Ok(chunk) = rx.try_recv() {
        match chunk.stream {
            OutputStream::Stdout => {
                assert!(!stdout_capped, "nothing follows the cap");
                stdout.extend(chunk.chunk);
                stdout_capped = chunk.cap_reached;
            }
            OutputStream::Stderr => {
                assert!(!chunk.cap_reached);
                stderr.extend(chunk.chunk);
            }
        }
    }
    assert!(stdout_capped);
    assert_eq!(String::from_utf8(stdout).unwrap(), "1\n2\n3\n4\n5\n");
    assert_eq!(String::from_utf8(stderr).unwrap(), "1\n2\n3\n");
}

#[tokio::test]
async fn collected_output_is_capped_too() {
    let mut spec = spec(&["seq", "1", "100000"]);
    spec.output_bytes_cap = Some(4);
    let result = CommandExec::spawn(&sandbox(), spec).unwrap().wait().await;
    assert_eq!(result.exit_code, 0);
    assert_eq!(result.stdout, "1\n2\n");
}

#[tokio::test]
async fn timeout_kills_with_exit_code_124() {
    let mut spec = spec(&["sleep", "1000"]);
    spec.timeout = Some(Duration::from_millis(200));
    let result = CommandExec::spawn(&sandbox(), spec).unwrap().wait().await;
    assert_eq!(result.exit_code, TIMEOUT_EXIT_CODE);
}

#[tokio::test]
async fn stdin_is_streamed_and_closed() {
    let mut spec = spec(&["cat"]);
    spec.stream_stdin = true;
    let process = CommandExec::spawn(&sandbox(), spec).unwrap();
    process.write_stdin(b"abc").await.unwrap();
    process.write_stdin(b"def").await.unwrap();
    process.close_stdin().await.unwrap();
    assert_eq!(
        process.write_stdin(b"late").await.unwrap_err(),
        CommandExecError::StdinClosed
    );
    let result = process.wait().await;
    assert_eq!((result.exit_code, result.stdout.as_str()), (0, "abcdef"));
}

#[tokio::test]
async fn stdin_is_refused_unless_streamed() {
    let process = CommandExec::spawn(&sandbox(), spec(&["true"])).unwrap();
    assert_eq!(
        process.write_stdin(b"x").await.unwrap_err(),
        CommandExecError::StdinNotStreamed
    );
    assert_eq!(process.wait().await.exit_code, 0);
}

#[tokio::test]
async fn tty_has_the_requested_size_and_follows_resizes() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut spec = spec(&["/bin/sh", "-c", "stty size; read x; stty size"]);
    spec.tty = true;
    spec.size = Some(TerminalSize {
        rows: 30,
        cols: 100,
    });
    spec.output_sink = Some(Arc::new(move |chunk: CommandOutputChunk| {
        let _ = tx.send(chunk);
    }));
    let process = CommandExec::spawn(&sandbox(), spec).unwrap();
    let mut seen = String::new();
    while !seen.contains("30 100\r\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("first stty size")
            .unwrap();
        assert_eq!(chunk.stream, OutputStream::Stdout);
        seen.push_str(&String::from_utf8_lossy(&chunk.chunk));
    }
    process
        .resize(TerminalSize {
            rows: 40,
            cols: 120,
        })
        .await
        .unwrap();
    process.write_stdin(b"\n").await.unwrap();
    let result = process.wait().await;
    assert_eq!(result.exit_code, 0);
    while let Ok(chunk) = rx.try_recv() {
        seen.push_str(&String::from_utf8_lossy(&chunk.chunk));
    }
    assert!(seen.ends_with("40 120\r\n"), "{seen:?}");
}

#[tokio::test]
async fn terminate_ends_the_command() {
    let process = CommandExec::spawn(&sandbox(), spec(&["sleep", "1000"])).unwrap();
    process.terminate();
    let result = process.wait().await;
    assert_eq!(result.exit_code, -1, "killed by a signal");
}

#[tokio::test]
async fn bad_requests_are_refused() {
    assert_eq!(
        CommandExec::spawn(&sandbox(), spec(&[])).err(),
        Some(CommandExecError::EmptyCommand)
    );
    let mut zero = spec(&["true"]);
    zero.tty = true;
    zero.size = Some(TerminalSize { rows: 0, cols: 80 });
    assert_eq!(
        CommandExec::spawn(&sandbox(), zero).err(),
        Some(CommandExecError::InvalidSize)
    );
    let process = CommandExec::spawn(&sandbox(), spec(&["true"])).unwrap();
    assert!(matches!(
        process.resize(TerminalSize { rows: 10, cols: 10 }).await,
        Err(CommandExecError::Resize(_))
    ));
    process.wait().await;
}

#[tokio::test]
async fn a_leftover_child_holding_stdout_does_not_lose_output_and_is_killed() {
    let process = CommandExec::spawn(
        &sandbox(),
        spec(&["/bin/sh", "-c", "echo early; echo pid=$$ >&2; sleep 1000 &"]),
    )
    .unwrap();
    let result = process.wait().await;
    assert_eq!(result.exit_code, 0);
    assert_eq!(result.stdout, "early\n");
    let sid: i32 = result
        .stderr
        .trim()
        .strip_prefix("pid=")
        .unwrap()
        .parse()
        .unwrap();
    // The background sleep was in the command's session and is gone (or a zombie).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    let fields: Vec<&str> = stat
                        .rsplit_once(')')
                        .map(|(_, r)| r.split_whitespace().collect())
                        .unwrap_or_default();
                    fields.first() != Some(&"Z") && fields.get(3) == Some(&sid.to_string().as_str())
                })
            })
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{alive:?} left running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
