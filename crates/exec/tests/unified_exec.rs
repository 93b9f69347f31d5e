//! Unified-exec sessions against real processes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tether_exec::{
    ExecEvent, ExecEventSink, ExecRequest, Sandbox, SandboxPolicy, TruncationPolicy,
    UnifiedExecError, UnifiedExecManager, WriteStdinRequest,
};
use tokio::sync::mpsc;

fn manager() -> UnifiedExecManager {
    UnifiedExecManager::new(Arc::new(Sandbox::new(env!(
        "CARGO_BIN_EXE_tether-exec-sandbox-helper"
    ))))
}

fn request(script: &str, tty: bool, yield_time_ms: u64) -> ExecRequest {
    ExecRequest {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        cwd: std::env::temp_dir(),
        env: std::env::vars().collect::<HashMap<_, _>>(),
        tty,
        yield_time_ms: Some(yield_time_ms),
        sandbox: SandboxPolicy::DangerFullAccess,
        session_id: None,
        events: None,
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Members of process group `pgid` that are still alive (not gone, not zombies).
fn live_group_members(pgid: i32) -> Vec<i32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|p| p.parse::<i32>().ok()) == Some(pgid) && fields[0] != "Z" {
            members.push(pid);
        }
    }
    members
}

/// Field `index` (0 = state) after the command name of /proc/PID/stat, if alive.
fn stat_field(pid: i32, index: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<String> = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .map(String::from)
        .collect();
    (fields[0] != "Z").then(|| fields[index].clone())
}

/// Waits (bounded) until the group has no live members.
async fn wait_group_dead(pgid: i32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let alive = live_group_members(pgid);
        if alive.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes {alive:?} of group {pgid} still alive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `sh` printing its pid (the group id) and two background-and-foreground sleeps.
async fn start_sleepers(manager: &UnifiedExecManager) -> (i32, i32) {
    let outcome = manager
        .exec(request("echo pid=$$; sleep 1000 & sleep 1000", false, 250))
        .await
        .unwrap();
    let session_id = outcome.session_id.expect("still running");
    let out = text(&outcome.output);
    let pgid: i32 = out
        .trim()
        .strip_prefix("pid=")
        .unwrap_or_else(|| panic!("no pid in {out:?}"))
        .parse()
        .unwrap();
    let sleepers = live_group_members(pgid)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .count();
    assert_eq!(sleepers, 2, "both sleeps run in the session's group");
    (session_id, pgid)
}

#[tokio::test]
async fn pipes_interleave_stdout_and_stderr_and_report_the_exit_code() {
    let outcome = manager()
        .exec(request("echo out; echo err >&2; exit 3", false, 10_000))
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(outcome.session_id, None);
    let out = text(&outcome.output);
    assert!(out.contains("out\n") && out.contains("err\n"), "{out:?}");
    assert_eq!(outcome.original_token_count, 2);
    let model = outcome.model_text(None, TruncationPolicy::Tokens(10_000));
    let lines: Vec<&str> = model.lines().collect();
    assert!(
        lines[0].starts_with("Chunk ID: ") && lines[0].len() == 16,
        "{model}"
    );
    assert!(lines[1].starts_with("Wall time: ") && lines[1].ends_with(" seconds"));
    assert_eq!(lines[2], "Process exited with code 3");
    assert_eq!(lines[3], "Original token count: 2");
    assert_eq!(lines[4], "Output:");
}

#[tokio::test]
async fn unified_exec_environment_is_applied() {
    let outcome = manager()
        .exec(request("echo $TERM $PAGER $NO_COLOR", false, 10_000))
        .await
        .unwrap();
    assert_eq!(text(&outcome.output), "dumb cat 1\n");
}

#[tokio::test]
async fn tty_output_goes_through_the_terminal() {
    let outcome = manager()
        .exec(request(
            "printf 'a\\nb\\n'; test -t 1 && echo is-a-tty",
            true,
            10_000,
        ))
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, Some(0));
    // The pty turns \n into \r\n.
    assert_eq!(text(&outcome.output), "a\r\nb\r\nis-a-tty\r\n");
}

#[tokio::test]
async fn tty_session_reads_what_write_stdin_sends() {
    let manager = manager();
    let first = manager
        .exec(request("read line; echo got:$line", true, 250))
        .await
        .unwrap();
    let session_id = first.session_id.expect("waiting for input");
    assert_eq!(first.exit_code, None);
    assert!(
        first
            .model_text(None, TruncationPolicy::Tokens(10_000))
            .contains(&format!("\nProcess running with session ID {session_id}\n"))
    );
    // The process exits once it read the line, which ends the wait early.
    let second = manager
        .write_stdin(WriteStdinRequest {
            session_id,
            chars: "hello\n",
            yield_time_ms: Some(30_000),
        })
        .await
        .unwrap();
    assert_eq!(second.exit_code, Some(0));
    assert_eq!(second.session_id, None);
    assert!(
        text(&second.output).contains("got:hello"),
        "{:?}",
        second.output
    );
    // Reported and gone.
    let err = manager
        .write_stdin(WriteStdinRequest {
            session_id,
            chars: "",
            yield_time_ms: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), format!("Unknown process id {session_id}"));
}

#[tokio::test]
async fn yield_timeout_returns_a_session_id_and_terminate_forgets_it() {
    let manager = manager();
    let outcome = manager
        .exec(request("sleep 1000", false, 250))
        .await
        .unwrap();
    let session_id = outcome.session_id.expect("still running");
    assert!((1_000..100_000).contains(&session_id));
    assert_eq!(outcome.exit_code, None);
    assert!(outcome.wall_time >= Duration::from_millis(250));
    assert_eq!(manager.session_ids(), vec![session_id]);
    manager.terminate(session_id).await.unwrap();
    assert!(manager.session_ids().is_empty());
    assert_eq!(
        manager.terminate(session_id).await.unwrap_err(),
        UnifiedExecError::UnknownProcessId {
            process_id: session_id
        }
    );
}

#[tokio::test]
async fn unknown_session_and_closed_stdin_errors_use_codex_texts() {
    let manager = manager();
    let err = manager
        .write_stdin(WriteStdinRequest {
            session_id: 0,
            chars: "",
            yield_time_ms: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        format!("write_stdin failed: {err}"),
        "write_stdin failed: Unknown process id 0"
    );

    let outcome = manager
        .exec(request("sleep 1000", false, 250))
        .await
        .unwrap();
    let err = manager
        .write_stdin(WriteStdinRequest {
            session_id: outcome.session_id.unwrap(),
            chars: "x",
            yield_time_ms: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "stdin is closed for this session; rerun exec_command with tty=true to keep stdin open"
    );
    manager.terminate_all().await;
}

#[tokio::test]
async fn spawn_failure_is_a_create_process_error() {
    let mut req = request("true", false, 250);
    req.argv = vec!["/nonexistent/tether-no-such-binary".into()];
    let err = manager().exec(req).await.unwrap_err();
    assert!(
        matches!(&err, UnifiedExecError::CreateProcess { message } if message.contains("No such file")),
        "{err:?}"
    );
    let mut req = request("true", false, 250);
    req.argv.clear();
    assert_eq!(
        manager().exec(req).await.unwrap_err(),
        UnifiedExecError::MissingCommandLine
    );
}

#[tokio::test]
async fn large_output_is_truncated_like_codex() {
    let outcome = manager()
        .exec(request("seq 1 30000", false, 30_000))
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, Some(0));
    let expected_output: String = (1..=30000).map(|n| format!("{n}\n")).collect();
    assert_eq!(text(&outcome.output), expected_output);
    assert_eq!(expected_output.len(), 168_894);
    assert_eq!(outcome.original_token_count, 42_224);

    let model = outcome.model_text(None, TruncationPolicy::Tokens(10_000));
    let (header, body) = model.split_once("Original token count: ").unwrap();
    assert!(header.ends_with("Process exited with code 0\n"), "{header}");
    let expected_body = format!(
        "42224\nOutput:\nWarning: truncated output (original token count: 42224)\nTotal output lines: 30000\n\n{}…32224 tokens truncated…{}",
        &expected_output[..20_000],
        &expected_output[expected_output.len() - 20_000..]
    );
    assert_eq!(body, expected_body);

    // A smaller max_output_tokens wins over the catalog policy: 40 bytes, 20 per side.
    let small = outcome.model_text(Some(10), TruncationPolicy::Tokens(10_000));
    let expected_small = format!(
        "Output:\nWarning: truncated output (original token count: 42224)\nTotal output lines: 30000\n\n{}…42214 tokens truncated…{}",
        &expected_output[..20],
        &expected_output[expected_output.len() - 20..]
    );
    assert!(small.ends_with(&expected_small), "{small}");
    assert!(small.ends_with("9\n10…42214 tokens truncated…7\n29998\n29999\n30000\n"));
}

#[tokio::test]
async fn terminating_a_session_kills_its_whole_process_group() {
    let manager = manager();
    let (session_id, pgid) = start_sleepers(&manager).await;
    manager.terminate(session_id).await.unwrap();
    wait_group_dead(pgid).await;
}

#[tokio::test]
async fn terminate_reaches_background_jobs_in_other_process_groups() {
    for tty in [false, true] {
        let manager = manager();
        let mut req = request("", tty, 250);
        req.argv = vec![
            "/bin/bash".into(),
            "-c".into(),
            "set -m; sleep 1000 & echo job=$!; wait".into(),
        ];
        let outcome = manager.exec(req).await.unwrap();
        let out = text(&outcome.output);
        let job: i32 = out
            .trim()
            .strip_prefix("job=")
            .unwrap_or_else(|| panic!("no job pid in {out:?}"))
            .parse()
            .unwrap();
        // Job control put the background job in a process group of its own.
        assert_eq!(stat_field(job, 2), Some(job.to_string()), "tty={tty}");
        manager
            .terminate(outcome.session_id.unwrap())
            .await
            .unwrap();
        wait_group_dead(job).await;
    }
}

#[tokio::test]
async fn terminate_all_kills_every_session() {
    let manager = manager();
    let (_, first) = start_sleepers(&manager).await;
    let (_, second) = start_sleepers(&manager).await;
    manager.terminate_all().await;
    assert!(manager.session_ids().is_empty());
    wait_group_dead(first).await;
    wait_group_dead(second).await;
}

#[tokio::test]
async fn dropping_the_manager_kills_everything() {
    let manager = manager();
    let (_, pgid) = start_sleepers(&manager).await;
    drop(manager);
    wait_group_dead(pgid).await;
}

#[tokio::test]
async fn events_deliver_output_chunks_and_one_exit() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink: ExecEventSink = Arc::new(move |event| {
        let _ = tx.send(event);
    });
    let manager = manager();
    let mut req = request("echo one; read x; echo two", true, 250);
    req.events = Some(sink);
    let session_id = manager.reserve_session_id();
    req.session_id = Some(session_id);
    let first = manager.exec(req).await.unwrap();
    assert_eq!(first.session_id, Some(session_id));
    manager
        .write_stdin(WriteStdinRequest {
            session_id,
            chars: "\n",
            yield_time_ms: Some(30_000),
        })
        .await
        .unwrap();
    let mut streamed = Vec::new();
    let exit = loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(ExecEvent::Output {
                session_id: id,
                chunk,
            })) => {
                assert_eq!(id, session_id);
                streamed.extend(chunk);
            }
            Ok(Some(exited @ ExecEvent::Exited { .. })) => break exited,
            other => panic!("no exit event: {other:?}"),
        }
    };
    let ExecEvent::Exited {
        session_id: id,
        exit_code,
        aggregated_output,
        ..
    } = exit
    else {
        unreachable!()
    };
    assert_eq!((id, exit_code), (session_id, 0));
    assert!(aggregated_output.contains("one") && aggregated_output.contains("two"));
    assert_eq!(text(&streamed), aggregated_output);
}

#[test]
fn yield_times_are_clamped_like_codex() {
    use tether_exec::{clamp_exec_yield_time, clamp_write_stdin_yield_time};
    assert_eq!(clamp_exec_yield_time(None), 10_000);
    assert_eq!(clamp_exec_yield_time(Some(1)), 250);
    assert_eq!(clamp_exec_yield_time(Some(99_999)), 30_000);
    assert_eq!(clamp_write_stdin_yield_time(None, false), 250);
    assert_eq!(clamp_write_stdin_yield_time(None, true), 5_000);
    assert_eq!(clamp_write_stdin_yield_time(Some(999_999), true), 300_000);
    assert_eq!(clamp_write_stdin_yield_time(Some(999_999), false), 30_000);
}
