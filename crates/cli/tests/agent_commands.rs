//! The agent runs commands: the loopback Responses server scripts the model's `exec_command`,
//! `write_stdin` and `update_plan` calls; `tether serve` runs them as real processes in real
//! temporary workspaces under the real bubblewrap sandbox, asking a real client where the
//! approval policy says so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tether_testkit::{
    Client, ResponsesServer, Script, Step, TetherProcess, completed, message_response,
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

struct Setup {
    upstream: ResponsesServer,
    _home: tempfile::TempDir,
    /// Outside /tmp, which the workspace-write sandbox leaves writable.
    workspace: tempfile::TempDir,
    process: TetherProcess,
}

async fn setup(extra_config: &str) -> Setup {
    assert!(
        Path::new("/usr/bin/bwrap").exists() || which("bwrap"),
        "bubblewrap is missing: run scripts/setup.sh (it installs the `bubblewrap` package)"
    );
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let config = format!(
        "model = \"mock-model\"\nmodel_provider = \"mock\"\n{extra_config}\n\
         [model_providers.mock]\nname = \"Mock\"\nbase_url = \"{}\"\nwire_api = \"responses\"\n\
         request_max_retries = 0\nstream_max_retries = 0\nstream_idle_timeout_ms = 20000\n",
        upstream.base_url()
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let workspace = tempfile::tempdir_in(workspace_parent()).unwrap();
    std::fs::create_dir(workspace.path().join(".git")).unwrap();
    let process = TetherProcess::start(
        Path::new(TETHER),
        home.path(),
        &["--listen", "ws://127.0.0.1:0"],
        &[],
    )
    .await;
    Setup {
        upstream,
        _home: home,
        workspace,
        process,
    }
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .any(|dir| dir.join(name).is_file())
}

/// A directory outside `/tmp` and `$TMPDIR` (the sandbox keeps both writable), so a write
/// there shows whether the sandbox let it through.
fn workspace_parent() -> PathBuf {
    let parent = PathBuf::from("/var/tmp/tether-agent-tests");
    std::fs::create_dir_all(&parent).unwrap();
    let tmpdir = std::env::var_os("TMPDIR").map(PathBuf::from);
    assert!(
        !tmpdir.is_some_and(|tmpdir| parent.starts_with(tmpdir)),
        "TMPDIR must not contain {}",
        parent.display()
    );
    parent
}

/// The model calls `name` with `arguments`.
fn tool_call(response_id: &str, call_id: &str, name: &str, arguments: Value) -> Script {
    let arguments = arguments.to_string();
    Script::Stream(vec![
        Step::Event(json!({"type": "response.created", "response": {"id": response_id}})),
        Step::Event(
            json!({"type": "response.output_item.done", "item": {"type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id, "name": name, "arguments": arguments}}),
        ),
        completed(response_id),
    ])
}

fn exec(response_id: &str, call_id: &str, arguments: Value) -> Script {
    tool_call(response_id, call_id, "exec_command", arguments)
}

fn answer(response_id: &str) -> Script {
    Script::Stream(message_response(response_id, &["done"]))
}

fn text(text: &str) -> Value {
    json!([{"type": "text", "text": text, "text_elements": []}])
}

async fn start(client: &mut Client, setup: &Setup, params: Value) -> String {
    client.initialize("agent-test", Value::Null).await;
    let mut params = params;
    params["cwd"] = json!(setup.workspace.path().display().to_string());
    client.start_thread(params).await
}

async fn run_turn(client: &mut Client, thread_id: &str, input: &str) -> Vec<Value> {
    client.request(
        "turn",
        "turn/start",
        json!({"threadId": thread_id, "input": text(input)}),
    );
    client.recv_until("turn/completed").await
}

fn items<'a>(messages: &'a [Value], method: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| m["method"] == method && m["params"]["item"]["type"] == "commandExecution")
        .map(|m| &m["params"]["item"])
        .collect()
}

/// The `function_call_output` the model got for `call_id` in request `index`.
fn output_sent(upstream: &ResponsesServer, index: usize, call_id: &str) -> String {
    let body = &upstream.requests()[index].body;
    body["input"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "function_call_output" && item["call_id"] == call_id)
        .unwrap_or_else(|| panic!("no output for {call_id} in {body}"))["output"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Checks codex's header lines and returns the output after them.
fn exec_output(text: &str, exit_code: i32) -> String {
    let lines: Vec<&str> = text.splitn(5, '\n').collect();
    assert_eq!(lines.len(), 5, "{text:?}");
    assert!(
        lines[0].len() == "Chunk ID: 123abc".len() && lines[0].starts_with("Chunk ID: "),
        "{text:?}"
    );
    assert!(
        lines[1].starts_with("Wall time: ") && lines[1].ends_with(" seconds"),
        "{text:?}"
    );
    assert_eq!(lines[2], format!("Process exited with code {exit_code}"));
    assert!(lines[3].starts_with("Original token count: "), "{text:?}");
    let output = lines[4].strip_prefix("Output:\n").expect("an Output: line");
    output.to_owned()
}

#[tokio::test]
async fn exec_command_streams_its_item_and_returns_codexs_output_text_to_the_model() {
    let setup = setup("").await;
    setup.upstream.push(exec(
        "r1",
        "call_1",
        json!({"cmd": "echo hello; echo oops >&2; exit 3"}),
    ));
    setup.upstream.push(answer("r2"));
    let mut client = setup.process.ws().await;
    let thread_id = start(&mut client, &setup, json!({"sandbox": "workspace-write"})).await;
    let messages = run_turn(&mut client, &thread_id, "run it").await;

    let started = items(&messages, "item/started");
    assert_eq!(started.len(), 1, "{messages:?}");
    let item = started[0];
    assert_eq!(item["id"], "call_1");
    assert_eq!(
        item["command"],
        "/bin/bash -lc 'echo hello; echo oops >&2; exit 3'"
    );
    assert_eq!(item["source"], "unifiedExecStartup");
    assert_eq!(item["status"], "inProgress");
    assert_eq!(
        item["cwd"],
        setup.workspace.path().display().to_string().as_str()
    );
    let process_id = item["processId"].as_str().expect("a process id").to_owned();
    let deltas: String = messages
        .iter()
        .filter(|m| m["method"] == "item/commandExecution/outputDelta")
        .map(|m| {
            assert_eq!(m["params"]["itemId"], "call_1");
            m["params"]["delta"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(
        deltas.contains("hello\n") && deltas.contains("oops\n"),
        "{deltas:?}"
    );
    let done = items(&messages, "item/completed");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["status"], "failed");
    assert_eq!(done[0]["exitCode"], 3);
    assert_eq!(done[0]["processId"], process_id.as_str());
    assert!(done[0]["durationMs"].is_i64());
    let aggregated = done[0]["aggregatedOutput"].as_str().unwrap();
    assert!(aggregated.contains("hello\n") && aggregated.contains("oops\n"));
    // The item completes before the model hears of it.
    let completed_at = messages
        .iter()
        .position(|m| m["method"] == "item/completed")
        .unwrap();
    let answer_at = messages
        .iter()
        .position(|m| m["method"] == "item/agentMessage/delta")
        .unwrap();
    assert!(completed_at < answer_at);

    let requests = setup.upstream.requests();
    assert_eq!(requests.len(), 2);
    let names: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["exec_command", "write_stdin"]);
    let output = exec_output(&output_sent(&setup.upstream, 1, "call_1"), 3);
    assert!(
        output.contains("hello\n") && output.contains("oops\n"),
        "{output:?}"
    );
    let input = requests[1].body["input"].as_array().unwrap();
    let call = input
        .iter()
        .find(|item| item["type"] == "function_call")
        .unwrap();
    assert_eq!(call["name"], "exec_command");
    assert_eq!(call["call_id"], "call_1");
}

#[tokio::test]
async fn the_sandbox_confines_writes_keeps_git_read_only_and_cuts_the_network() {
    let setup = setup("").await;
    let outside = tempfile::tempdir_in(workspace_parent()).unwrap();
    let outside_file = outside.path().join("escaped.txt");
    let port = setup
        .upstream
        .base_url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/v1")
        .to_owned();
    let script = format!(
        "touch inside.txt && echo inside-ok; touch {} || echo outside-refused; touch .git/config || echo git-refused; (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null || echo network-refused",
        outside_file.display()
    );
    setup
        .upstream
        .push(exec("r1", "call_1", json!({"cmd": script})));
    setup.upstream.push(answer("r2"));
    let mut client = setup.process.ws().await;
    let thread_id = start(&mut client, &setup, json!({"sandbox": "workspace-write"})).await;
    run_turn(&mut client, &thread_id, "try").await;
    let output = exec_output(&output_sent(&setup.upstream, 1, "call_1"), 0);
    for expected in [
        "inside-ok",
        "outside-refused",
        "git-refused",
        "network-refused",
    ] {
        assert!(output.contains(expected), "{expected} missing: {output}");
    }
    assert!(setup.workspace.path().join("inside.txt").exists());
    assert!(!outside_file.exists());
    assert!(!setup.workspace.path().join(".git/config").exists());
}

#[tokio::test]
async fn read_only_refuses_every_write() {
    let setup = setup("").await;
    setup.upstream.push(exec(
        "r1",
        "call_1",
        json!({"cmd": "touch made.txt || echo refused"}),
    ));
    setup.upstream.push(answer("r2"));
    let mut client = setup.process.ws().await;
    let thread_id = start(&mut client, &setup, json!({"sandbox": "read-only"})).await;
    run_turn(&mut client, &thread_id, "try").await;
    let output = exec_output(&output_sent(&setup.upstream, 1, "call_1"), 0);
    assert!(output.contains("Read-only file system"), "{output}");
    assert!(output.contains("refused"));
    assert!(!setup.workspace.path().join("made.txt").exists());
}

/// An `on-request` thread whose model asks to write outside the workspace, escalated.
async fn escalation(setup: &Setup, client: &mut Client) -> (String, PathBuf, Value) {
    let target = setup.workspace.path().parent().unwrap().join(format!(
        "escalated-{}",
        setup
            .workspace
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
    ));
    let arguments = json!({
        "cmd": format!("touch {}", target.display()),
        "sandbox_permissions": "require_escalated",
        "justification": "write next to the workspace",
    });
    setup.upstream.push(exec("r1", "call_1", arguments));
    let thread_id = start(
        client,
        setup,
        json!({"sandbox": "workspace-write", "approvalPolicy": "on-request"}),
    )
    .await;
    client.request(
        "turn",
        "turn/start",
        json!({"threadId": thread_id, "input": text("write it")}),
    );
    let before = client
        .recv_until("item/commandExecution/requestApproval")
        .await;
    let request = before.last().unwrap().clone();
    let started = items(&before, "item/started");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["source"], "agent");
    let waiting = before
        .iter()
        .rev()
        .find(|m| m["method"] == "thread/status/changed")
        .expect("a status change");
    assert_eq!(
        waiting["params"]["status"]["activeFlags"],
        json!(["waitingOnApproval"])
    );
    (thread_id, target, request)
}

#[tokio::test]
async fn an_accepted_escalation_runs_outside_the_sandbox() {
    let setup = setup("").await;
    let mut client = setup.process.ws().await;
    let (thread_id, target, request) = escalation(&setup, &mut client).await;
    setup.upstream.push(answer("r2"));
    let params = &request["params"];
    assert_eq!(params["threadId"], thread_id.as_str());
    assert_eq!(params["itemId"], "call_1");
    assert_eq!(params["reason"], "write next to the workspace");
    assert_eq!(params["kind"], "command");
    assert!(
        params["availableDecisions"]
            .as_array()
            .unwrap()
            .contains(&json!("accept"))
    );
    client.send(json!({"id": request["id"], "result": {"decision": "accept"}}));
    let rest = client.recv_until("turn/completed").await;
    let resolved = rest
        .iter()
        .position(|m| m["method"] == "serverRequest/resolved")
        .expect("resolved");
    let done_at = rest
        .iter()
        .position(|m| m["method"] == "item/completed")
        .unwrap();
    assert!(resolved < done_at);
    assert!(
        items(&rest, "item/started").is_empty(),
        "announced once, before the approval"
    );
    let done = items(&rest, "item/completed");
    assert_eq!(done[0]["status"], "completed");
    assert_eq!(done[0]["source"], "unifiedExecStartup");
    assert!(target.exists(), "ran outside the sandbox");
    std::fs::remove_file(&target).unwrap();
    assert_eq!(
        rest.last().unwrap()["params"]["turn"]["status"],
        "completed"
    );
}

#[tokio::test]
async fn a_declined_command_is_not_run_and_the_model_is_told() {
    let setup = setup("").await;
    let mut client = setup.process.ws().await;
    let (_, target, request) = escalation(&setup, &mut client).await;
    setup.upstream.push(answer("r2"));
    client.send(json!({"id": request["id"], "result": {"decision": "decline"}}));
    let rest = client.recv_until("turn/completed").await;
    let done = items(&rest, "item/completed");
    assert_eq!(done[0]["status"], "declined");
    assert_eq!(done[0]["exitCode"], Value::Null);
    assert!(!target.exists());
    assert_eq!(
        output_sent(&setup.upstream, 1, "call_1"),
        r#"exec_command failed: CreateProcess { message: "Rejected(\"rejected by user\")" }"#
    );
    assert_eq!(
        rest.last().unwrap()["params"]["turn"]["status"],
        "completed"
    );
}

#[tokio::test]
async fn a_cancelled_command_ends_the_turn_interrupted() {
    let setup = setup("").await;
    let mut client = setup.process.ws().await;
    let (_, target, request) = escalation(&setup, &mut client).await;
    client.send(json!({"id": request["id"], "result": {"decision": "cancel"}}));
    let rest = client.recv_until("turn/completed").await;
    assert_eq!(items(&rest, "item/completed")[0]["status"], "declined");
    assert_eq!(
        rest.last().unwrap()["params"]["turn"]["status"],
        "interrupted"
    );
    assert!(!target.exists());
    client.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(setup.upstream.requests().len(), 1, "no further model call");
}

#[tokio::test]
async fn accept_for_session_does_not_ask_again_for_the_same_command() {
    let setup = setup("").await;
    let mut client = setup.process.ws().await;
    let (thread_id, target, request) = escalation(&setup, &mut client).await;
    // The same command again, in the next round.
    let arguments = json!({
        "cmd": format!("touch {}", target.display()),
        "sandbox_permissions": "require_escalated",
    });
    setup.upstream.push(exec("r2", "call_2", arguments));
    setup.upstream.push(answer("r3"));
    client.send(json!({"id": request["id"], "result": {"decision": "acceptForSession"}}));
    let rest = client.recv_until("turn/completed").await;
    assert!(
        !rest
            .iter()
            .any(|m| m["method"] == "item/commandExecution/requestApproval"),
        "asked again: {rest:?}"
    );
    let done = items(&rest, "item/completed");
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|item| item["status"] == "completed"));
    std::fs::remove_file(&target).unwrap();
    let _ = thread_id;
}

#[tokio::test]
async fn an_approval_is_replayed_to_a_client_that_resumes_and_only_recipients_answer() {
    let setup = setup("thread_unload_delay_secs = 60").await;
    let mut first = setup.process.ws().await;
    let (thread_id, target, request) = escalation(&setup, &mut first).await;
    setup.upstream.push(answer("r2"));
    drop(first);
    // A connection that never subscribed cannot answer it.
    let mut stranger = setup.process.ws().await;
    stranger.initialize("stranger", Value::Null).await;
    stranger.send(json!({"id": request["id"], "result": {"decision": "accept"}}));
    let mut second = setup.process.ws().await;
    second.initialize("second", Value::Null).await;
    second.request("resume", "thread/resume", json!({"threadId": thread_id}));
    let replayed = second
        .recv_until("item/commandExecution/requestApproval")
        .await;
    let again = replayed.last().unwrap();
    assert_eq!(again["id"], request["id"]);
    assert_eq!(again["params"], request["params"]);
    assert!(!target.exists(), "the stranger's answer was ignored");
    second.send(json!({"id": request["id"], "result": {"decision": "accept"}}));
    let rest = second.recv_until("turn/completed").await;
    assert_eq!(items(&rest, "item/completed")[0]["status"], "completed");
    assert!(target.exists());
    std::fs::remove_file(&target).unwrap();
}

#[tokio::test]
async fn a_tty_session_is_driven_by_write_stdin() {
    let setup = setup("").await;
    setup.upstream.push(exec(
        "r1",
        "call_1",
        json!({"cmd": "read line; echo got-$line", "tty": true, "yield_time_ms": 500}),
    ));
    // The model writes to the session whose id the first output named.
    setup.upstream.respond_with(|body| {
        let output = body["input"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|item| item["type"] == "function_call_output")
            .map(|item| item["output"].as_str().unwrap().to_owned())
            .unwrap_or_default();
        match output
            .lines()
            .find_map(|line| line.strip_prefix("Process running with session ID "))
        {
            Some(id) => tool_call(
                "r2",
                "call_2",
                "write_stdin",
                json!({"session_id": id.parse::<i64>().unwrap(), "chars": "hi\n", "yield_time_ms": 2000}),
            ),
            None => answer("r3"),
        }
    });
    let mut client = setup.process.ws().await;
    let thread_id = start(&mut client, &setup, json!({"sandbox": "workspace-write"})).await;
    let messages = run_turn(&mut client, &thread_id, "talk to it").await;
    let interaction = messages
        .iter()
        .find(|m| m["method"] == "item/commandExecution/terminalInteraction")
        .expect("a terminal interaction");
    assert_eq!(interaction["params"]["itemId"], "call_1");
    assert_eq!(interaction["params"]["stdin"], "hi\n");
    let done = items(&messages, "item/completed");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["status"], "completed");
    let written = output_sent(&setup.upstream, 2, "call_2");
    assert!(written.contains("got-hi"), "{written}");
    assert!(written.contains("Process exited with code 0"), "{written}");
}

#[tokio::test]
async fn an_interrupt_kills_a_running_command_and_its_children() {
    let setup = setup("").await;
    setup.upstream.push(exec(
        "r1",
        "call_1",
        json!({"cmd": "sleep 987654 & echo started; wait", "yield_time_ms": 30000}),
    ));
    let mut client = setup.process.ws().await;
    let thread_id = start(&mut client, &setup, json!({"sandbox": "workspace-write"})).await;
    client.request(
        "turn",
        "turn/start",
        json!({"threadId": thread_id, "input": text("sleep")}),
    );
    let started = client.recv_until("turn/started").await;
    let turn_id = started.last().unwrap()["params"]["turn"]["id"].clone();
    loop {
        let message = client.recv().await;
        if message["method"] == "item/commandExecution/outputDelta"
            && message["params"]["delta"]
                .as_str()
                .unwrap()
                .contains("started")
        {
            break;
        }
    }
    let host_pid = host_pid_of_sleep().await;
    client.request(
        "stop",
        "turn/interrupt",
        json!({"threadId": thread_id, "turnId": turn_id}),
    );
    let rest = client.recv_until("turn/completed").await;
    assert_eq!(items(&rest, "item/completed")[0]["status"], "failed");
    assert_eq!(
        rest.last().unwrap()["params"]["turn"]["status"],
        "interrupted"
    );
    wait_gone(host_pid).await;
}

/// The sandbox has its own pid namespace: find the host pid of the `sleep 987654` child
/// (polling: the shell may print before the forked child has exec'd `sleep`).
async fn host_pid_of_sleep() -> i32 {
    for _ in 0..200 {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline == b"sleep\x00987654\x00" {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no `sleep 987654` process found");
}

/// Polls until `pid` is gone (or a zombie), failing after 10 s.
async fn wait_gone(pid: i32) {
    for _ in 0..200 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if status.is_empty() || status.contains(") Z ") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("process {pid} survived the interrupt");
}

#[tokio::test]
async fn update_plan_announces_the_plan_when_enabled() {
    let setup = setup("[tools.update_plan]\nenabled = true").await;
    setup.upstream.push(tool_call(
        "r1",
        "call_1",
        "update_plan",
        json!({"explanation": "first things first", "plan": [
            {"step": "read", "status": "completed"},
            {"step": "write", "status": "in_progress"},
            {"step": "test", "status": "pending"}
        ]}),
    ));
    setup.upstream.push(answer("r2"));
    let mut client = setup.process.ws().await;
    let thread_id = start(&mut client, &setup, json!({})).await;
    let messages = run_turn(&mut client, &thread_id, "plan").await;
    let plan = messages
        .iter()
        .find(|m| m["method"] == "turn/plan/updated")
        .expect("a plan update");
    assert_eq!(plan["params"]["explanation"], "first things first");
    assert_eq!(
        plan["params"]["plan"],
        json!([
            {"step": "read", "status": "completed"},
            {"step": "write", "status": "inProgress"},
            {"step": "test", "status": "pending"}
        ])
    );
    assert_eq!(output_sent(&setup.upstream, 1, "call_1"), "Plan updated");
    let names: Vec<String> = setup.upstream.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["exec_command", "write_stdin", "update_plan"]);
}

#[tokio::test]
async fn shell_tool_false_takes_the_command_tools_away() {
    let setup = setup("[features]\nshell_tool = false").await;
    setup.upstream.push(answer("r1"));
    let mut client = setup.process.ws().await;
    let thread_id = start(&mut client, &setup, json!({})).await;
    run_turn(&mut client, &thread_id, "hi").await;
    let tools = &setup.upstream.requests()[0].body["tools"];
    assert!(
        tools.as_array().is_none_or(|tools| tools.is_empty()),
        "{tools}"
    );
}

#[tokio::test]
async fn without_bubblewrap_a_config_warning_says_why_and_sandboxed_commands_are_refused() {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let config = format!(
        "model = \"mock-model\"\nmodel_provider = \"mock\"\n[model_providers.mock]\nname = \"Mock\"\n\
         base_url = \"{}\"\nwire_api = \"responses\"\nrequest_max_retries = 0\nstream_max_retries = 0\n",
        upstream.base_url()
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let workspace = tempfile::tempdir_in(workspace_parent()).unwrap();
    // No bwrap on this PATH.
    let process = TetherProcess::start(
        Path::new(TETHER),
        home.path(),
        &["--listen", "ws://127.0.0.1:0"],
        &[("PATH", "/nonexistent")],
    )
    .await;
    upstream.push(exec("r1", "call_1", json!({"cmd": "touch made.txt"})));
    upstream.push(answer("r2"));
    let mut client = process.ws().await;
    client.request(
        "init",
        "initialize",
        json!({"clientInfo": {"name": "no-bwrap", "version": "1"}}),
    );
    let response = client.recv().await;
    assert_eq!(response["id"], "init");
    let warning = client.recv().await;
    assert_eq!(warning["method"], "configWarning", "{warning}");
    let summary = warning["params"]["summary"].as_str().unwrap();
    assert!(summary.contains("bubblewrap"), "{summary}");
    assert!(summary.contains("apt-get install bubblewrap"), "{summary}");
    let thread_id = client
        .start_thread(
            json!({"cwd": workspace.path().display().to_string(), "sandbox": "workspace-write"}),
        )
        .await;
    let messages = run_turn(&mut client, &thread_id, "try").await;
    let done = items(&messages, "item/completed");
    assert_eq!(done[0]["status"], "failed");
    let output = output_sent(&upstream, 1, "call_1");
    assert!(
        output.starts_with("exec_command failed: Failed to create unified exec process:")
            && output.contains("bubblewrap"),
        "{output}"
    );
    assert!(
        !workspace.path().join("made.txt").exists(),
        "never unsandboxed"
    );
}

#[tokio::test]
async fn a_shell_command_runs_unsandboxed_in_a_turn_of_its_own_and_the_next_turn_hears_of_it() {
    let setup = setup("").await;
    let outside = tempfile::tempdir_in(workspace_parent()).unwrap();
    let marker = outside.path().join("from-shell.txt");
    let mut client = setup.process.ws().await;
    let thread_id = start(&mut client, &setup, json!({"sandbox": "read-only"})).await;
    let command = format!("touch {} && echo shell-out", marker.display());
    let response = client
        .call(
            "bang",
            "thread/shellCommand",
            json!({"threadId": thread_id, "command": command}),
        )
        .await;
    assert_eq!(response["result"], json!({}));
    let messages = client.recv_until("turn/completed").await;
    let names: Vec<&str> = messages
        .iter()
        .map(|m| m["method"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names.first(), Some(&"thread/status/changed"), "{names:?}");
    assert!(names.contains(&"turn/started"), "{names:?}");
    let started = items(&messages, "item/started");
    assert_eq!(started[0]["source"], "userShell");
    let done = items(&messages, "item/completed");
    assert_eq!(done[0]["status"], "completed");
    assert_eq!(done[0]["aggregatedOutput"], "shell-out\n");
    assert!(
        marker.exists(),
        "unsandboxed, though the thread is read-only"
    );
    assert!(setup.upstream.requests().is_empty(), "no model call");

    setup.upstream.push(answer("r1"));
    run_turn(&mut client, &thread_id, "what happened?").await;
    let body = &setup.upstream.requests()[0].body;
    let shell_message = body["input"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item["content"][0]["text"].as_str())
        .find(|text| text.starts_with("<user_shell_command>"))
        .unwrap_or_else(|| panic!("no shell record in {body}"));
    let expected_head = format!(
        "<user_shell_command>\n<command>\n{command}\n</command>\n<result>\nExit code: 0\nDuration: "
    );
    assert!(shell_message.starts_with(&expected_head), "{shell_message}");
    assert!(
        shell_message.ends_with(" seconds\nOutput:\nshell-out\n\n</result>\n</user_shell_command>"),
        "{shell_message}"
    );
}

#[tokio::test]
async fn long_output_reaches_the_model_cut_to_head_and_tail_with_codexs_marker() {
    let setup = setup("").await;
    setup.upstream.push(exec(
        "r1",
        "call_1",
        json!({"cmd": "seq 1 30000", "max_output_tokens": 200}),
    ));
    setup.upstream.push(answer("r2"));
    let mut client = setup.process.ws().await;
    let thread_id = start(&mut client, &setup, json!({})).await;
    let messages = run_turn(&mut client, &thread_id, "count").await;
    let output = exec_output(&output_sent(&setup.upstream, 1, "call_1"), 0);
    assert!(
        output.starts_with("Warning: truncated output (original token count: "),
        "{output}"
    );
    assert!(
        output.contains("\nTotal output lines: 30000\n\n1\n2\n3\n"),
        "{output}"
    );
    assert!(output.contains(" tokens truncated…"), "{output}");
    assert!(output.trim_end().ends_with("29999\n30000"), "{output}");
    assert!(
        output.len() < 2_000,
        "about 200 tokens: {} bytes",
        output.len()
    );
    // The client still gets everything.
    let done = items(&messages, "item/completed");
    let aggregated = done[0]["aggregatedOutput"].as_str().unwrap();
    assert_eq!(aggregated.lines().count(), 30_000);
}

#[tokio::test]
async fn background_terminals_list_the_running_session_and_terminate_it() {
    let setup = setup("").await;
    setup.upstream.push(exec(
        "r1",
        "call_1",
        json!({"cmd": "sleep 876543", "tty": true, "yield_time_ms": 250}),
    ));
    setup.upstream.push(answer("r2"));
    let mut client = setup.process.ws().await;
    let thread_id = start(&mut client, &setup, json!({"sandbox": "workspace-write"})).await;
    let messages = run_turn(&mut client, &thread_id, "start it").await;
    let started = items(&messages, "item/started");
    let process_id = started[0]["processId"].as_str().unwrap().to_owned();
    assert!(
        items(&messages, "item/completed").is_empty(),
        "still running after its turn"
    );
    let listed = client
        .call(
            "list",
            "thread/backgroundTerminals/list",
            json!({"threadId": thread_id}),
        )
        .await;
    let data = listed["result"]["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{listed}");
    assert_eq!(data[0]["processId"], process_id.as_str());
    assert_eq!(data[0]["itemId"], "call_1");
    client.request(
        "kill",
        "thread/backgroundTerminals/terminate",
        json!({"threadId": thread_id, "processId": process_id}),
    );
    let mut terminated = None;
    let mut completed = None;
    while terminated.is_none() || completed.is_none() {
        let message = client.recv().await;
        if message["id"] == "kill" {
            terminated = Some(message["result"]["terminated"].clone());
        } else if message["method"] == "item/completed" {
            completed = Some(message["params"]["item"].clone());
        }
    }
    assert_eq!(terminated, Some(json!(true)));
    let item = completed.unwrap();
    assert_eq!(item["id"], "call_1");
    assert_eq!(item["status"], "failed");
    let listed = client
        .call(
            "list2",
            "thread/backgroundTerminals/list",
            json!({"threadId": thread_id}),
        )
        .await;
    assert_eq!(listed["result"]["data"], json!([]));
}

#[tokio::test]
async fn a_turn_that_changes_the_settings_announces_them_before_its_response() {
    let setup = setup("").await;
    setup.upstream.push(answer("r1"));
    setup.upstream.push(answer("r2"));
    let mut client = setup.process.ws().await;
    let thread_id = start(&mut client, &setup, json!({"sandbox": "read-only"})).await;
    let cwd = setup.workspace.path().display().to_string();
    client.request(
        "t1",
        "turn/start",
        json!({"threadId": thread_id, "input": text("hi"), "approvalPolicy": "never",
               "sandboxPolicy": {"type": "workspaceWrite"}, "cwd": cwd}),
    );
    let updated = client.recv().await;
    assert_eq!(updated["method"], "thread/settings/updated", "{updated}");
    let settings = &updated["params"]["threadSettings"];
    assert_eq!(settings["approvalPolicy"], "never");
    assert_eq!(settings["sandboxPolicy"]["type"], "workspaceWrite");
    assert_eq!(settings["cwd"], cwd.as_str());
    assert_eq!(client.recv().await["id"], "t1");
    client.recv_until("turn/completed").await;
    // The same settings again change nothing, so nothing is announced.
    client.request(
        "t2",
        "turn/start",
        json!({"threadId": thread_id, "input": text("again"), "approvalPolicy": "never"}),
    );
    assert_eq!(client.recv().await["id"], "t2");
    let rest = client.recv_until("turn/completed").await;
    assert!(
        !rest
            .iter()
            .any(|m| m["method"] == "thread/settings/updated")
    );
}

#[tokio::test]
async fn config_approval_policy_and_sandbox_mode_are_the_defaults_of_new_threads() {
    let setup = setup("approval_policy = \"never\"\nsandbox_mode = \"workspace-write\"").await;
    setup.upstream.push(exec(
        "r1",
        "call_1",
        json!({"cmd": "touch made.txt", "sandbox_permissions": "require_escalated"}),
    ));
    setup.upstream.push(answer("r2"));
    let mut client = setup.process.ws().await;
    client.initialize("defaults", Value::Null).await;
    let started = client
        .call(
            "start",
            "thread/start",
            json!({"cwd": setup.workspace.path().display().to_string()}),
        )
        .await;
    assert_eq!(started["result"]["approvalPolicy"], "never");
    assert_eq!(started["result"]["sandbox"]["type"], "workspaceWrite");
    let thread_id = started["result"]["thread"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(client.recv().await["method"], "thread/started");
    let messages = run_turn(&mut client, &thread_id, "try").await;
    assert!(
        !messages
            .iter()
            .any(|m| m["method"] == "item/commandExecution/requestApproval"),
        "never asks"
    );
    let output = output_sent(&setup.upstream, 1, "call_1");
    assert!(
        output.starts_with("exec_command failed: CreateProcess"),
        "{output}"
    );
    assert!(!setup.workspace.path().join("made.txt").exists());
}
