//! The bubblewrap + seccomp sandbox, run for real (bubblewrap must be installed:
//! `scripts/setup.sh`).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use tether_exec::{
    CommandExec, CommandExecSpec, ExecOutcome, ExecRequest, Sandbox, SandboxError, SandboxPolicy,
    UnifiedExecError, UnifiedExecManager,
};

const HELPER: &str = env!("CARGO_BIN_EXE_tether-exec-sandbox-helper");

fn sandbox() -> Arc<Sandbox> {
    let sandbox = Sandbox::new(HELPER);
    if let Err(err) = sandbox.probe() {
        panic!("the sandbox tests need a working bubblewrap (run scripts/setup.sh): {err}");
    }
    Arc::new(sandbox)
}

fn workspace_write(network_access: bool) -> SandboxPolicy {
    SandboxPolicy::WorkspaceWrite {
        writable_roots: Vec::new(),
        network_access,
        // The temp dirs live under /tmp, which must stay read-only for these tests.
        exclude_tmpdir_env_var: true,
        exclude_slash_tmp: true,
    }
}

/// A small, fixed environment: what the machine's shell profile adds (pyenv hooks and the
/// like) must not reach the commands' output.
fn plain_env() -> HashMap<String, String> {
    HashMap::from([
        ("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned()),
        (
            "HOME".to_owned(),
            std::env::var("HOME").unwrap_or_else(|_| "/".to_owned()),
        ),
    ])
}

async fn run(policy: SandboxPolicy, cwd: &Path, script: &str) -> ExecOutcome {
    run_with(sandbox(), policy, cwd, script).await.unwrap()
}

async fn run_with(
    sandbox: Arc<Sandbox>,
    policy: SandboxPolicy,
    cwd: &Path,
    script: &str,
) -> Result<ExecOutcome, UnifiedExecError> {
    UnifiedExecManager::new(sandbox)
        .exec(ExecRequest {
            argv: vec!["/bin/bash".into(), "-c".into(), script.into()],
            cwd: cwd.to_path_buf(),
            env: plain_env(),
            tty: false,
            yield_time_ms: Some(30_000),
            sandbox: policy,
            session_id: None,
            events: None,
        })
        .await
}

fn text(outcome: &ExecOutcome) -> String {
    outcome.output_text()
}

#[tokio::test]
async fn writes_inside_the_workspace_succeed_and_outside_fail_read_only() {
    let workspace = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let inside_file = workspace.path().join("inside.txt");
    let outside_file = outside.path().join("outside.txt");
    let outcome = run(
        workspace_write(false),
        workspace.path(),
        &format!(
            "echo ok > {} && echo written; touch {}",
            inside_file.display(),
            outside_file.display()
        ),
    )
    .await;
    let out = text(&outcome);
    assert!(out.contains("written"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert_ne!(outcome.exit_code, Some(0));
    assert_eq!(std::fs::read_to_string(&inside_file).unwrap(), "ok\n");
    assert!(!outside_file.exists());
}

#[tokio::test]
async fn git_and_codex_directories_stay_read_only_inside_the_workspace() {
    let workspace = tempfile::tempdir().unwrap();
    std::fs::create_dir(workspace.path().join(".git")).unwrap();
    std::fs::write(workspace.path().join(".git/HEAD"), "ref\n").unwrap();
    let outcome = run(
        workspace_write(false),
        workspace.path(),
        "echo x > .git/HEAD; touch .git/new; mkdir -p .codex/sub; echo done",
    )
    .await;
    let out = text(&outcome);
    assert_eq!(out.matches("Read-only file system").count(), 3, "{out}");
    assert!(out.ends_with("done\n"), "{out}");
    assert_eq!(
        std::fs::read_to_string(workspace.path().join(".git/HEAD")).unwrap(),
        "ref\n"
    );
    assert!(!workspace.path().join(".git/new").exists());
    // The empty mount point made for the missing .codex is gone after the exit.
    assert!(!workspace.path().join(".codex").exists());
}

#[tokio::test]
async fn read_only_policy_refuses_writes_even_in_the_cwd() {
    let workspace = tempfile::tempdir().unwrap();
    let outcome = run(
        SandboxPolicy::ReadOnly {
            network_access: false,
        },
        workspace.path(),
        "touch here.txt",
    )
    .await;
    assert_ne!(outcome.exit_code, Some(0));
    assert!(text(&outcome).contains("Read-only file system"));
    assert!(!workspace.path().join("here.txt").exists());
}

#[tokio::test]
async fn the_helper_sets_no_new_privs_and_a_seccomp_filter() {
    let workspace = tempfile::tempdir().unwrap();
    let outcome = run(
        workspace_write(false),
        workspace.path(),
        "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status",
    )
    .await;
    assert_eq!(text(&outcome), "NoNewPrivs:\t1\nSeccomp:\t2\n");
}

#[tokio::test]
async fn network_is_refused_without_network_access_and_allowed_with_it() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let workspace = tempfile::tempdir().unwrap();
    let connect = format!("echo hi > /dev/tcp/127.0.0.1/{port} && echo connected");

    let refused = run(workspace_write(false), workspace.path(), &connect).await;
    let out = text(&refused);
    assert_ne!(refused.exit_code, Some(0), "{out}");
    assert!(!out.contains("connected"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");

    // With network access the same connect reaches the listener.
    let allowed = run(workspace_write(true), workspace.path(), &connect).await;
    assert_eq!(allowed.exit_code, Some(0), "{}", text(&allowed));
    let (mut stream, _) = listener.accept().unwrap();
    let mut received = String::new();
    std::io::Read::read_to_string(&mut stream, &mut received).unwrap();
    assert_eq!(received, "hi\n");
}

#[tokio::test]
async fn danger_full_access_writes_anywhere() {
    let workspace = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("free.txt");
    let outcome = run(
        SandboxPolicy::DangerFullAccess,
        workspace.path(),
        &format!("echo free > {}", file.display()),
    )
    .await;
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(std::fs::read_to_string(file).unwrap(), "free\n");
}

#[tokio::test]
async fn missing_bubblewrap_is_a_clear_refusal_and_nothing_runs() {
    let broken = Arc::new(Sandbox::with_bwrap(HELPER, "/nonexistent/bwrap"));
    let err = broken.probe().unwrap_err();
    let SandboxError::Unavailable(message) = &err else {
        panic!("{err:?}");
    };
    assert!(message.contains("/nonexistent/bwrap"), "{message}");
    assert!(message.contains("Install bubblewrap"), "{message}");

    let workspace = tempfile::tempdir().unwrap();
    let marker = workspace.path().join("ran");
    let err = run_with(
        Arc::clone(&broken),
        workspace_write(false),
        workspace.path(),
        &format!("touch {}", marker.display()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, UnifiedExecError::CreateProcess { message: m } if m == message),
        "{err:?}"
    );
    assert!(!marker.exists());

    // command/exec refuses the same way; danger-full-access needs no sandbox.
    let spec = |sandbox| CommandExecSpec {
        argv: vec!["touch".into(), marker.display().to_string()],
        cwd: workspace.path().to_path_buf(),
        env: plain_env(),
        env_overrides: Vec::new(),
        sandbox,
        tty: false,
        size: None,
        stream_stdin: false,
        stream_output: false,
        timeout: None,
        output_bytes_cap: None,
        output_sink: None,
    };
    let refused = CommandExec::spawn(&broken, spec(workspace_write(false)));
    assert!(refused.is_err());
    assert!(!marker.exists());
    let result = CommandExec::spawn(&broken, spec(SandboxPolicy::DangerFullAccess))
        .unwrap()
        .wait()
        .await;
    assert_eq!(result.exit_code, 0);
    assert!(marker.exists());
}

#[tokio::test]
async fn command_exec_runs_sandboxed_with_separate_streams() {
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandbox();
    let result = CommandExec::spawn(
        &sandbox,
        CommandExecSpec {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo hi; touch /tether-outside || echo e >&2; exit 2".into(),
            ],
            cwd: workspace.path().to_path_buf(),
            env: plain_env(),
            env_overrides: Vec::new(),
            sandbox: SandboxPolicy::ReadOnly {
                network_access: false,
            },
            tty: false,
            size: None,
            stream_stdin: false,
            stream_output: false,
            timeout: None,
            output_bytes_cap: None,
            output_sink: None,
        },
    )
    .unwrap()
    .wait()
    .await;
    assert_eq!(result.exit_code, 2);
    assert_eq!(result.stdout, "hi\n");
    assert!(
        result.stderr.contains("Read-only file system"),
        "{}",
        result.stderr
    );
    assert!(result.stderr.ends_with("e\n"), "{}", result.stderr);
}

#[tokio::test]
async fn default_workspace_write_allows_tmp_and_leaves_no_mount_points_behind() {
    let workspace = tempfile::tempdir().unwrap();
    let tmp_file = tempfile::Builder::new()
        .prefix("tether-sandbox-")
        .tempfile()
        .unwrap();
    let missing_before: Vec<_> = tether_exec::PROTECTED_SUBPATHS
        .iter()
        .map(|name| Path::new("/tmp").join(name))
        .filter(|path| !path.exists())
        .collect();
    let policy = SandboxPolicy::WorkspaceWrite {
        writable_roots: Vec::new(),
        network_access: false,
        exclude_tmpdir_env_var: false,
        exclude_slash_tmp: false,
    };
    let outcome = run(
        policy,
        workspace.path(),
        &format!("echo tmp > {}", tmp_file.path().display()),
    )
    .await;
    assert_eq!(outcome.exit_code, Some(0), "{}", text(&outcome));
    assert_eq!(std::fs::read_to_string(tmp_file.path()).unwrap(), "tmp\n");
    for path in missing_before {
        assert!(!path.exists(), "{} was left behind", path.display());
    }
}

#[tokio::test]
async fn a_tty_works_inside_the_sandbox() {
    let workspace = tempfile::tempdir().unwrap();
    let outcome = UnifiedExecManager::new(sandbox())
        .exec(ExecRequest {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "test -t 0 && echo on-a-tty".into(),
            ],
            cwd: workspace.path().to_path_buf(),
            env: plain_env(),
            tty: true,
            yield_time_ms: Some(30_000),
            sandbox: workspace_write(false),
            session_id: None,
            events: None,
        })
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(text(&outcome), "on-a-tty\r\n");
}

/// Pids whose command line has `needle` as an argument and that are alive.
fn live_processes_with_arg(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
            });
            alive
                && cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == needle.as_bytes())
        })
        .collect()
}

#[tokio::test]
async fn killing_a_sandboxed_session_kills_the_command_inside() {
    let workspace = tempfile::tempdir().unwrap();
    let unique = format!("1000.{}", std::process::id());
    let manager = UnifiedExecManager::new(sandbox());
    let outcome = manager
        .exec(ExecRequest {
            argv: vec!["sleep".into(), unique.clone()],
            cwd: workspace.path().to_path_buf(),
            env: plain_env(),
            tty: false,
            yield_time_ms: Some(250),
            sandbox: workspace_write(false),
            session_id: None,
            events: None,
        })
        .await
        .unwrap();
    let session_id = outcome.session_id.expect("sleeping");
    // bwrap has started the sleep by the time the 250 ms yield ended; check it runs.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while live_processes_with_arg(&unique).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sandboxed sleep never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    manager.terminate(session_id).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let alive = live_processes_with_arg(&unique);
        if alive.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{alive:?} survived");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
