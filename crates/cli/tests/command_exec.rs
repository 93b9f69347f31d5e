//! `command/exec` and its follow-ups end to end: a real `tether serve`, WebSocket clients whose
//! every message is checked against the 0.169 schema, and real processes, sandboxed by
//! bubblewrap unless a test asks for `dangerFullAccess` (to see a pid it can look up in /proc).

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tether_testkit::{Client, TetherProcess};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

struct Setup {
    _home: tempfile::TempDir,
    process: TetherProcess,
}

/// The sandbox is the default of every command, so every test needs bubblewrap: a missing one
/// is a failure that says what to install, never a skip.
fn require_bwrap() {
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .any(|dir| dir.join("bwrap").is_file());
    assert!(
        found,
        "bubblewrap (bwrap) is not on PATH: the command/exec sandbox needs it. Install it with \
         scripts/setup.sh (or `apt-get install bubblewrap`)."
    );
}

async fn setup() -> Setup {
    require_bwrap();
    let home = tempfile::tempdir().unwrap();
    let process = TetherProcess::start(
        Path::new(TETHER),
        home.path(),
        &["--listen", "ws://127.0.0.1:0"],
        &[],
    )
    .await;
    Setup {
        _home: home,
        process,
    }
}

async fn client(setup: &Setup) -> Client {
    let mut client = setup.process.ws().await;
    client.initialize("command-exec-test", Value::Null).await;
    client
}

/// Receives until the response to `id`; returns it and what came before it.
async fn until(client: &mut Client, id: &str) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let message = client.recv().await;
        if message["id"] == id {
            return (message, before);
        }
        before.push(message);
    }
}

/// Sends a request and returns its response, which must come before anything else.
async fn call(client: &mut Client, id: &str, method: &str, params: Value) -> Value {
    client.call(id, method, params).await
}

fn sh(script: &str) -> Value {
    json!(["/bin/sh", "-c", script])
}

fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

/// The bytes of the `stream` deltas of `process_id` among `messages`, in order.
fn streamed(messages: &[Value], process_id: &str, stream: &str) -> String {
    let mut bytes = Vec::new();
    for message in messages {
        assert_eq!(message["method"], "command/exec/outputDelta", "{message}");
        assert_eq!(message["params"]["processId"], process_id, "{message}");
        if message["params"]["stream"] == stream {
            let delta = message["params"]["deltaBase64"].as_str().unwrap();
            bytes.extend(STANDARD.decode(delta).unwrap());
        }
    }
    String::from_utf8(bytes).unwrap()
}

fn error_message(response: &Value) -> &str {
    assert_eq!(response["error"]["code"], -32600, "{response}");
    response["error"]["message"].as_str().unwrap()
}

/// Starts `cat` as `process_id` with streamed stdin (request id `id`); it runs until its stdin
/// is closed, so a test decides when it ends without any clock.
fn start_cat(client: &mut Client, id: &str, process_id: &str) {
    client.request(
        id,
        "command/exec",
        json!({"command": ["cat"], "processId": process_id, "streamStdin": true}),
    );
}

/// `command/exec/write` of `delta` (if any), closing stdin if `close`; returns the response.
async fn write(
    client: &mut Client,
    id: &str,
    process_id: &str,
    delta: Option<&str>,
    close: bool,
) -> Value {
    let params = json!({
        "processId": process_id,
        "deltaBase64": delta.map(b64),
        "closeStdin": close,
    });
    call(client, id, "command/exec/write", params).await
}

/// Closes the stdin of the `cat` started by request `id` and returns that request's response.
async fn finish_cat(client: &mut Client, id: &str, process_id: &str) -> Value {
    let closed = write(client, &format!("{id}-close"), process_id, None, true).await;
    assert_eq!(closed["result"], json!({}));
    let (response, before) = until(client, id).await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(response["result"]["exitCode"], 0, "{response}");
    response
}

#[tokio::test]
async fn a_simple_command_returns_its_exit_code_stdout_and_stderr() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    let response = call(
        &mut client,
        "run",
        "command/exec",
        json!({
            "command": sh("echo \"hi $TETHER_TEST_SET ${HOME-unset}\"; echo err >&2; exit 3"),
            "env": {"TETHER_TEST_SET": "set", "HOME": null},
        }),
    )
    .await;
    assert_eq!(
        response["result"],
        json!({"exitCode": 3, "stdout": "hi set unset\n", "stderr": "err\n"})
    );
}

#[tokio::test]
async fn read_only_refuses_a_write_that_a_writable_root_allows() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    let root = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let target = root.path().join("written");
    let touch = json!(["touch", target.to_str().unwrap()]);

    // No sandboxPolicy: the server default, read-only.
    let refused = call(&mut client, "ro", "command/exec", json!({"command": touch})).await;
    assert_ne!(refused["result"]["exitCode"], 0, "{refused}");
    let stderr = refused["result"]["stderr"].as_str().unwrap();
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(!target.exists());

    // The temporary directories are excluded, so only the named root (and the cwd) is writable.
    let policy = |roots: Vec<&str>| {
        json!({
            "type": "workspaceWrite",
            "writableRoots": roots,
            "networkAccess": false,
            "excludeTmpdirEnvVar": true,
            "excludeSlashTmp": true,
        })
    };
    let still_refused = call(
        &mut client,
        "ww-other",
        "command/exec",
        json!({"command": touch, "cwd": cwd.path(), "sandboxPolicy": policy(vec![])}),
    )
    .await;
    assert_ne!(still_refused["result"]["exitCode"], 0, "{still_refused}");
    assert!(!target.exists());
    let allowed = call(
        &mut client,
        "ww",
        "command/exec",
        json!({
            "command": touch,
            "cwd": cwd.path(),
            "sandboxPolicy": policy(vec![root.path().to_str().unwrap()]),
        }),
    )
    .await;
    assert_eq!(
        allowed["result"],
        json!({"exitCode": 0, "stdout": "", "stderr": ""})
    );
    assert!(target.exists());
}

#[tokio::test]
async fn streamed_output_arrives_as_base64_deltas_before_the_response() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    client.request(
        "stream",
        "command/exec",
        json!({
            "command": sh("printf 'out 1\\n'; printf 'err 1\\n' >&2; printf 'out 2\\n'"),
            "processId": "s1",
            "streamStdoutStderr": true,
        }),
    );
    let (response, deltas) = until(&mut client, "stream").await;
    assert_eq!(
        response["result"],
        json!({"exitCode": 0, "stdout": "", "stderr": ""}),
        "streamed output is not repeated in the response"
    );
    assert_eq!(streamed(&deltas, "s1", "stdout"), "out 1\nout 2\n");
    assert_eq!(streamed(&deltas, "s1", "stderr"), "err 1\n");
    assert!(
        deltas.iter().all(|d| d["params"]["capReached"] == false),
        "{deltas:?}"
    );
}

#[tokio::test]
async fn stdin_writes_reach_the_process_and_closing_stdin_ends_it() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    start_cat(&mut client, "cat", "cat1");
    let first = write(&mut client, "w1", "cat1", Some("hello\n"), false).await;
    assert_eq!(first["result"], json!({}));
    // Writing and closing in one request.
    let last = write(&mut client, "w2", "cat1", Some("bye"), true).await;
    assert_eq!(last["result"], json!({}));
    let (response, before) = until(&mut client, "cat").await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(
        response["result"],
        json!({"exitCode": 0, "stdout": "hello\nbye", "stderr": ""})
    );
    // It exited: the id is free and unknown.
    let after = write(&mut client, "w3", "cat1", Some("more"), false).await;
    assert_eq!(
        error_message(&after),
        "no active command/exec for process id \"cat1\""
    );
}

#[tokio::test]
async fn a_tty_command_sees_its_size_and_its_resize() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    client.request(
        "tty",
        "command/exec",
        json!({
            "command": sh("stty size; read line; stty size"),
            "processId": "tty1",
            "tty": true,
            "size": {"rows": 10, "cols": 40},
        }),
    );
    let mut output = String::new();
    while !output.contains("10 40") {
        let delta = client.recv().await;
        output += &streamed(std::slice::from_ref(&delta), "tty1", "stdout");
    }
    let resized = call(
        &mut client,
        "resize",
        "command/exec/resize",
        json!({"processId": "tty1", "size": {"rows": 20, "cols": 100}}),
    )
    .await;
    assert_eq!(resized["result"], json!({}));
    client.request(
        "go",
        "command/exec/write",
        json!({"processId": "tty1", "deltaBase64": b64("go\n")}),
    );
    let (written, deltas) = until(&mut client, "go").await;
    assert_eq!(written["result"], json!({}));
    output += &streamed(&deltas, "tty1", "stdout");
    let (response, deltas) = until(&mut client, "tty").await;
    output += &streamed(&deltas, "tty1", "stdout");
    assert_eq!(
        response["result"],
        json!({"exitCode": 0, "stdout": "", "stderr": ""})
    );
    assert!(output.contains("20 100"), "{output:?}");
    assert!(output.find("10 40") < output.find("20 100"), "{output:?}");
}

#[tokio::test]
async fn terminate_kills_a_running_command() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    client.request(
        "sleep",
        "command/exec",
        json!({"command": ["sleep", "300"], "processId": "t1", "disableTimeout": true}),
    );
    let terminated = call(
        &mut client,
        "kill",
        "command/exec/terminate",
        json!({"processId": "t1"}),
    )
    .await;
    assert_eq!(terminated["result"], json!({}));
    let (response, before) = until(&mut client, "sleep").await;
    assert!(before.is_empty(), "{before:?}");
    assert_ne!(response["result"]["exitCode"], 0, "{response}");
    assert_ne!(
        response["result"]["exitCode"], 124,
        "not the timeout: {response}"
    );
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_with_exit_code_124() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    let response = call(
        &mut client,
        "slow",
        "command/exec",
        json!({"command": sh("echo started; exec sleep 300"), "timeoutMs": 300}),
    )
    .await;
    assert_eq!(response["result"]["exitCode"], 124, "{response}");
    assert_eq!(response["result"]["stdout"], "started\n", "{response}");
}

#[tokio::test]
async fn the_output_cap_truncates_each_stream_and_says_so() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    let script = sh("printf 0123456789; printf abcdefghij >&2");
    let buffered = call(
        &mut client,
        "buffered",
        "command/exec",
        json!({"command": script, "outputBytesCap": 5}),
    )
    .await;
    assert_eq!(
        buffered["result"],
        json!({"exitCode": 0, "stdout": "01234", "stderr": "abcde"})
    );

    client.request(
        "streamed",
        "command/exec",
        json!({
            "command": script,
            "outputBytesCap": 5,
            "processId": "cap",
            "streamStdoutStderr": true,
        }),
    );
    let (response, deltas) = until(&mut client, "streamed").await;
    assert_eq!(response["result"]["exitCode"], 0, "{response}");
    assert_eq!(streamed(&deltas, "cap", "stdout"), "01234");
    assert_eq!(streamed(&deltas, "cap", "stderr"), "abcde");
    for stream in ["stdout", "stderr"] {
        let last = deltas
            .iter()
            .rfind(|d| d["params"]["stream"] == stream)
            .unwrap();
        assert_eq!(last["params"]["capReached"], true, "{last}");
    }

    let uncapped = call(
        &mut client,
        "uncapped",
        "command/exec",
        json!({"command": script, "disableOutputCap": true}),
    )
    .await;
    assert_eq!(uncapped["result"]["stdout"], "0123456789");
}

#[tokio::test]
async fn a_running_command_does_not_hold_up_the_requests_behind_it() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    // Runs until its stdin is closed, which only happens after the other answers arrived.
    start_cat(&mut client, "long", "long");
    let listed = call(&mut client, "loaded", "thread/loaded/list", json!({})).await;
    assert!(listed["result"].is_object(), "{listed}");
    let quick = call(
        &mut client,
        "quick",
        "command/exec",
        json!({"command": ["echo", "quick"]}),
    )
    .await;
    assert_eq!(quick["result"]["stdout"], "quick\n", "{quick}");
    finish_cat(&mut client, "long", "long").await;
}

/// Waits (bounded) until no process `pid` is left.
async fn wait_gone(pid: u32) {
    let proc = format!("/proc/{pid}");
    for _ in 0..200 {
        if !Path::new(&proc).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("process {pid} is still running after its connection closed");
}

#[tokio::test]
async fn closing_the_connection_kills_its_processes() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    // Unsandboxed, so the pid is the host's.
    let unsandboxed = json!({"type": "dangerFullAccess"});
    client.request(
        "streamed",
        "command/exec",
        json!({
            "command": sh("echo $$; exec sleep 300"),
            "processId": "bg",
            "streamStdoutStderr": true,
            "disableTimeout": true,
            "sandboxPolicy": unsandboxed,
        }),
    );
    // A buffered one the client never named goes too.
    client.request(
        "unnamed",
        "command/exec",
        json!({
            "command": sh(&format!("echo $$ > {}; exec sleep 300", pid_file.display())),
            "disableTimeout": true,
            "sandboxPolicy": unsandboxed,
        }),
    );
    let delta = client.recv().await;
    let streamed_pid: u32 = streamed(&[delta], "bg", "stdout").trim().parse().unwrap();
    let mut unnamed_pid = None;
    for _ in 0..200 {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        {
            unnamed_pid = Some(pid);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unnamed_pid = unnamed_pid.expect("the unnamed command wrote its pid");
    assert!(Path::new(&format!("/proc/{streamed_pid}")).exists());
    assert!(Path::new(&format!("/proc/{unnamed_pid}")).exists());
    drop(client);
    wait_gone(streamed_pid).await;
    wait_gone(unnamed_pid).await;
}

#[tokio::test]
async fn duplicate_unknown_and_unnamed_process_ids_are_refused() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    start_cat(&mut client, "dup", "dup");
    let again = call(
        &mut client,
        "dup2",
        "command/exec",
        json!({"command": ["true"], "processId": "dup"}),
    )
    .await;
    assert_eq!(
        error_message(&again),
        "duplicate active command/exec process id: \"dup\""
    );
    for (id, method, params) in [
        (
            "write",
            "command/exec/write",
            json!({"processId": "nope", "deltaBase64": b64("x")}),
        ),
        (
            "resize",
            "command/exec/resize",
            json!({"processId": "nope", "size": {"rows": 1, "cols": 1}}),
        ),
        (
            "terminate",
            "command/exec/terminate",
            json!({"processId": "nope"}),
        ),
    ] {
        let unknown = call(&mut client, id, method, params).await;
        assert_eq!(
            error_message(&unknown),
            "no active command/exec for process id \"nope\"",
            "{method}"
        );
    }
    let unnamed = call(
        &mut client,
        "unnamed",
        "command/exec",
        json!({"command": ["cat"], "streamStdin": true}),
    )
    .await;
    assert_eq!(
        error_message(&unnamed),
        "command/exec tty or streaming requires a client-supplied processId"
    );
    let empty = call(&mut client, "empty", "command/exec", json!({"command": []})).await;
    assert_eq!(error_message(&empty), "command must not be empty");
    let both = call(
        &mut client,
        "both",
        "command/exec",
        json!({"command": ["true"], "timeoutMs": 5, "disableTimeout": true}),
    )
    .await;
    assert_eq!(both["error"]["code"], -32602, "{both}");
    assert_eq!(
        both["error"]["message"],
        "command/exec cannot set both timeoutMs and disableTimeout"
    );

    finish_cat(&mut client, "dup", "dup").await;
}

#[tokio::test]
async fn another_connection_cannot_reach_a_process() {
    let setup = setup().await;
    let mut owner = client(&setup).await;
    let mut other = client(&setup).await;
    start_cat(&mut owner, "mine", "shared");
    // Wait until the owner's process is known: its own follow-up finds it.
    let probe = write(&mut owner, "probe", "shared", Some("owner\n"), false).await;
    assert_eq!(probe["result"], json!({}));

    let intruder = write(&mut other, "write", "shared", Some("intruder\n"), true).await;
    assert_eq!(
        error_message(&intruder),
        "no active command/exec for process id \"shared\""
    );
    let terminate = call(
        &mut other,
        "terminate",
        "command/exec/terminate",
        json!({"processId": "shared"}),
    )
    .await;
    assert_eq!(
        error_message(&terminate),
        "no active command/exec for process id \"shared\""
    );
    // The id is the owner's only on its own connection.
    let own = call(
        &mut other,
        "own",
        "command/exec",
        json!({"command": ["echo", "other"], "processId": "shared"}),
    )
    .await;
    assert_eq!(own["result"]["stdout"], "other\n", "{own}");

    let done = finish_cat(&mut owner, "mine", "shared").await;
    assert_eq!(
        done["result"],
        json!({"exitCode": 0, "stdout": "owner\n", "stderr": ""}),
        "the other connection's bytes never reached it"
    );
}
