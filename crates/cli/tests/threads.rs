//! Threads and turns end to end: `tether serve` as a process, real clients, and a real loopback
//! Responses server speaking the SSE event format.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tether_testkit::{
    Client, ResponsesServer, Script, Step, TetherProcess, completed, message_response,
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

fn write_config(home: &Path, upstream: &ResponsesServer, unload_delay_secs: u64, websocket: bool) {
    write_config_with(home, upstream, unload_delay_secs, websocket, 0);
}

fn write_config_with(
    home: &Path,
    upstream: &ResponsesServer,
    unload_delay_secs: u64,
    websocket: bool,
    stream_retries: u32,
) {
    let config = format!(
        "model = \"mock-model\"\nmodel_provider = \"mock\"\nthread_unload_delay_secs = {unload_delay_secs}\n\
         [model_providers.mock]\nname = \"Mock\"\nbase_url = \"{}\"\nwire_api = \"responses\"\n\
         supports_websockets = {websocket}\nrequest_max_retries = 0\nstream_max_retries = {stream_retries}\nstream_idle_timeout_ms = 5000\n",
        upstream.base_url()
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
}

struct Setup {
    upstream: ResponsesServer,
    home: tempfile::TempDir,
    process: TetherProcess,
}

async fn setup(unload_delay_secs: u64, listen: &[&str]) -> Setup {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    write_config(home.path(), &upstream, unload_delay_secs, false);
    let mut args = Vec::new();
    for url in listen {
        args.extend(["--listen", url]);
    }
    let process = TetherProcess::start(Path::new(TETHER), home.path(), &args, &[]).await;
    Setup {
        upstream,
        home,
        process,
    }
}

/// Starts a turn with `input` and receives until it completes.
async fn run_turn(client: &mut Client, id: i64, thread_id: &str, input: &str) -> Vec<Value> {
    client.request(
        id,
        "turn/start",
        json!({"threadId": thread_id, "input": text(input)}),
    );
    client.recv_until("turn/completed").await
}

/// Starts tether on `home` with one ws listener and connects an initialized client.
async fn serve_ws(home: &Path) -> (TetherProcess, Client) {
    let process = TetherProcess::start(
        Path::new(TETHER),
        home,
        &["--listen", "ws://127.0.0.1:0"],
        &[],
    )
    .await;
    let mut client = process.ws().await;
    client.initialize("c", Value::Null).await;
    (process, client)
}

fn text(text: &str) -> Value {
    json!([{"type": "text", "text": text, "text_elements": []}])
}

fn methods(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match m["method"].as_str() {
            Some("thread/status/changed") => {
                format!("status:{}", m["params"]["status"]["type"].as_str().unwrap())
            }
            Some(method) => method.to_owned(),
            None => "response".to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn a_full_turn_over_stdio_streams_every_notification_in_order() {
    let mut setup = setup(60, &[]).await;
    setup.upstream.push(Script::Stream(message_response(
        "r1",
        &["Hello", " from", " mock"],
    )));
    let mut client = setup.process.stdio();
    client.initialize("probe", Value::Null).await;
    let start = client.call(1, "thread/start", json!({"cwd": "/tmp"})).await;
    let thread = &start["result"]["thread"];
    assert_eq!(thread["status"], json!({"type": "idle"}));
    assert_eq!(thread["modelProvider"], "mock");
    assert_eq!(start["result"]["model"], "mock-model");
    assert_eq!(thread["cwd"], "/tmp");
    let thread_id = thread["id"].as_str().unwrap().to_owned();
    assert_eq!(client.recv().await["method"], "thread/started");

    client.request(
        2,
        "turn/start",
        json!({"threadId": thread_id, "input": text("hi there"), "clientUserMessageId": "c-1"}),
    );
    let messages = client.recv_until("turn/completed").await;
    assert_eq!(
        methods(&messages),
        [
            "response",
            "status:active",
            "turn/started",
            "item/started",
            "item/completed",
            "item/started",
            "item/agentMessage/delta",
            "item/agentMessage/delta",
            "item/agentMessage/delta",
            "item/completed",
            "thread/tokenUsage/updated",
            "status:idle",
            "thread/readState/changed",
            "turn/completed",
        ]
    );
    let turn = &messages[0]["result"]["turn"];
    assert_eq!(turn["status"], "inProgress");
    assert_eq!(turn["itemsView"], "notLoaded");
    let user = &messages[4]["params"]["item"];
    assert_eq!(user["type"], "userMessage");
    assert_eq!(user["clientId"], "c-1");
    assert_eq!(user["content"], text("hi there"));
    let deltas: String = messages[6..9]
        .iter()
        .map(|m| m["params"]["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Hello from mock");
    let agent = &messages[9]["params"]["item"];
    assert_eq!(agent["type"], "agentMessage");
    assert_eq!(agent["text"], "Hello from mock");
    assert_eq!(
        messages[10]["params"]["tokenUsage"]["last"]["totalTokens"],
        17
    );
    assert_eq!(messages[12]["method"], "thread/readState/changed");
    assert_eq!(
        messages[12]["params"]["readState"]["firstUnread"],
        json!({"type": "turn", "turnId": messages[0]["result"]["turn"]["id"]})
    );
    let done = &messages[13]["params"]["turn"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["itemsView"], "summary");
    assert_eq!(done["items"][0]["text"], "Hello from mock");

    let request = &setup.upstream.requests()[0];
    assert_eq!(request.body["model"], "mock-model");
    assert_eq!(request.body["stream"], true);
    assert_eq!(
        request.body["input"],
        json!([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi there"}]}])
    );

    // The next turn sends the history.
    setup
        .upstream
        .push(Script::Stream(message_response("r2", &["again"])));
    run_turn(&mut client, 3, &thread_id, "more").await;
    let input = &setup.upstream.requests()[1].body["input"];
    assert_eq!(input.as_array().unwrap().len(), 3, "{input}");
    assert_eq!(input[1]["content"][0]["text"], "Hello from mock");

    let read = client
        .call(
            4,
            "thread/read",
            json!({"threadId": thread_id, "includeTurns": true}),
        )
        .await;
    let turns = read["result"]["thread"]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[0]["itemsView"], "full");
    assert_eq!(turns[0]["items"].as_array().unwrap().len(), 2);
    assert_eq!(read["result"]["thread"]["preview"], "hi there");
}

#[tokio::test]
async fn two_subscribers_see_identical_ordered_streams() {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    setup.upstream.push(Script::Stream(message_response(
        "r1",
        &["a", "b", "c", "d"],
    )));
    let mut first = setup.process.ws().await;
    let mut second = setup.process.ws().await;
    first.initialize("first", Value::Null).await;
    second.initialize("second", Value::Null).await;
    let thread_id = first.start_thread(json!({})).await;
    assert_eq!(
        second.recv().await["method"],
        "thread/started",
        "broadcast to everyone"
    );
    let resumed = second
        .call("r", "thread/resume", json!({"threadId": thread_id}))
        .await;
    assert_eq!(resumed["result"]["thread"]["id"], thread_id);
    // The resume's goal snapshot is a broadcast: both see it before the turn.
    assert_eq!(second.recv().await["method"], "thread/goal/cleared");
    assert_eq!(first.recv().await["method"], "thread/goal/cleared");
    first.request(
        2,
        "turn/start",
        json!({"threadId": thread_id, "input": text("go")}),
    );
    let mut seen_by_first = first.recv_until("turn/completed").await;
    seen_by_first.remove(0);
    let seen_by_second = second.recv_until("turn/completed").await;
    let strip = |messages: &[Value]| {
        messages
            .iter()
            .map(|m| {
                let mut m = m.clone();
                m.as_object_mut().unwrap().remove("emittedAtMs");
                m
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(methods(&seen_by_first), methods(&seen_by_second));
    assert_eq!(strip(&seen_by_first), strip(&seen_by_second));
    assert_eq!(seen_by_second.len(), 14);
}

#[tokio::test]
async fn resuming_a_running_thread_never_shows_a_live_event_before_the_response() {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    let mut owner = setup.process.ws().await;
    owner.initialize("owner", Value::Null).await;
    let thread_id = owner.start_thread(json!({})).await;
    for round in 0..10 {
        let mut steps = message_response(&format!("r{round}"), &[]);
        let done = steps.split_off(3);
        for i in 0..40 {
            steps.push(Step::Event(json!({"type": "response.output_text.delta", "item_id": format!("msg_r{round}"), "delta": format!("{i} ")})));
            steps.push(Step::Pause(Duration::from_millis(2)));
        }
        steps.extend(done);
        setup.upstream.push(Script::Stream(steps));
        owner.request(
            format!("t{round}"),
            "turn/start",
            json!({"threadId": thread_id, "input": text("stream")}),
        );
        // Let the stream get going, then join from a new connection.
        owner.recv_until("item/agentMessage/delta").await;
        let mut joiner = setup.process.ws().await;
        joiner.initialize("joiner", Value::Null).await;
        joiner.request("join", "thread/resume", json!({"threadId": thread_id}));
        let first = joiner.recv().await;
        assert_eq!(
            first["id"], "join",
            "round {round}: the response comes first, got {first}"
        );
        let thread = &first["result"]["thread"];
        assert_eq!(thread["status"]["type"], "active");
        let last = thread["turns"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["status"], "inProgress");
        assert_eq!(
            last["items"][0]["type"], "userMessage",
            "only completed items"
        );
        let rest = joiner.recv_until("turn/completed").await;
        assert!(rest.iter().all(|m| m.get("id").is_none()));
        owner.recv_until("turn/completed").await;
    }
}

#[tokio::test]
async fn interrupt_mid_stream_ends_the_turn_as_interrupted() {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    let mut steps = message_response("r1", &["partial"]);
    steps.truncate(3);
    steps.push(Step::Hang);
    setup.upstream.push(Script::Stream(steps));
    let mut client = setup.process.ws().await;
    client.initialize("c", Value::Null).await;
    let thread_id = client.start_thread(json!({})).await;
    let no_turn = client
        .call(
            1,
            "turn/interrupt",
            json!({"threadId": thread_id, "turnId": "x"}),
        )
        .await;
    assert_eq!(
        no_turn["error"],
        json!({"code": -32600, "message": "no active turn to interrupt"})
    );
    let started = client
        .call(
            2,
            "turn/start",
            json!({"threadId": thread_id, "input": text("wait")}),
        )
        .await;
    let turn_id = started["result"]["turn"]["id"].as_str().unwrap().to_owned();
    client.recv_until("item/agentMessage/delta").await;
    client.request(
        3,
        "turn/interrupt",
        json!({"threadId": thread_id, "turnId": turn_id}),
    );
    let after = client.recv_until("turn/completed").await;
    assert_eq!(
        methods(&after),
        ["response", "status:idle", "turn/completed"]
    );
    assert_eq!(after[0]["result"], json!({}));
    let turn = &after[2]["params"]["turn"];
    assert_eq!(turn["status"], "interrupted");
    assert_eq!(turn["error"], Value::Null);
    assert_eq!(turn["items"], json!([]));
    assert_eq!(turn["itemsView"], "notLoaded");
}

async fn failed_turn(script: Script) -> Value {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    setup.upstream.push(script);
    let mut client = setup.process.ws().await;
    client.initialize("c", Value::Null).await;
    let thread_id = client.start_thread(json!({})).await;
    let messages = run_turn(&mut client, 2, &thread_id, "fail").await;
    let tail: Vec<Value> = messages[messages.len() - 3..].to_vec();
    assert_eq!(
        methods(&tail),
        ["status:systemError", "error", "turn/completed"]
    );
    assert_eq!(tail[1]["params"]["willRetry"], false);
    assert_eq!(tail[2]["params"]["turn"]["status"], "failed");
    assert_eq!(
        tail[2]["params"]["turn"]["error"],
        tail[1]["params"]["error"]
    );
    tail[1]["params"]["error"].clone()
}

#[tokio::test]
async fn upstream_failures_map_to_turn_errors() {
    let server_error = failed_turn(Script::Status(500, "boom".into())).await;
    assert_eq!(server_error["codexErrorInfo"], "internalServerError");
    assert_eq!(
        server_error["message"],
        "We’re currently experiencing high demand, which may cause temporary errors."
    );
    let bad_request = failed_turn(Script::Status(400, "{\"error\":\"bad\"}".into())).await;
    assert_eq!(bad_request["codexErrorInfo"], "other");
    assert_eq!(bad_request["message"], "{\"error\":\"bad\"}");
    let mut cut = message_response("r1", &["x"]);
    cut.truncate(3);
    cut.push(Step::Cut);
    let disconnected = failed_turn(Script::Stream(cut)).await;
    assert_eq!(
        disconnected["message"],
        "stream disconnected before completion: stream closed before response.completed"
    );
}

#[tokio::test]
async fn input_during_a_turn_steers_it() {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    let mut first = message_response("r1", &["thinking"]);
    first.truncate(3);
    first.push(Step::Hang);
    setup.upstream.push(Script::Stream(first));
    setup
        .upstream
        .push(Script::Stream(message_response("r2", &["steered"])));
    let mut client = setup.process.ws().await;
    client.initialize("c", Value::Null).await;
    let thread_id = client.start_thread(json!({})).await;
    let started = client
        .call(
            2,
            "turn/start",
            json!({"threadId": thread_id, "input": text("one")}),
        )
        .await;
    let turn_id = started["result"]["turn"]["id"].clone();
    client.recv_until("item/agentMessage/delta").await;
    let rest = run_turn(&mut client, 3, &thread_id, "two").await;
    assert_eq!(rest[0]["result"]["turn"]["id"], turn_id, "same turn");
    assert!(!methods(&rest).contains(&"turn/started".to_owned()));
    let user = rest
        .iter()
        .find(|m| m["method"] == "item/completed")
        .unwrap();
    assert_eq!(user["params"]["item"]["content"], text("two"));
    let done = rest.last().unwrap();
    assert_eq!(done["params"]["turn"]["id"], turn_id);
    assert_eq!(done["params"]["turn"]["items"][0]["text"], "steered");
    let input = &setup.upstream.requests()[1].body["input"];
    assert_eq!(
        input.as_array().unwrap().len(),
        2,
        "both user messages, no partial answer: {input}"
    );
}

#[tokio::test]
async fn threads_survive_sigkill_and_resume_with_every_completed_turn() {
    let mut setup = setup(60, &["ws://127.0.0.1:0"]).await;
    setup
        .upstream
        .push(Script::Stream(message_response("r1", &["remembered"])));
    let mut client = setup.process.ws().await;
    client.initialize("c", Value::Null).await;
    let thread_id = client.start_thread(json!({})).await;
    let empty_id = client.start_thread(json!({})).await;
    run_turn(&mut client, 2, &thread_id, "remember this").await;
    setup.process.signal("KILL");
    setup.process.wait(Duration::from_secs(5)).await;
    // A torn line at the end of the log, as a crash mid-write would leave.
    let log = setup
        .home
        .path()
        .join("threads")
        .join(format!("{thread_id}.jsonl"));
    let mut text_so_far = std::fs::read_to_string(&log).unwrap();
    text_so_far.push_str("{\"id\":\"torn");
    std::fs::write(&log, text_so_far).unwrap();

    let (_process, mut client) = serve_ws(setup.home.path()).await;
    let listed = client.call(1, "thread/list", json!({})).await;
    let ids: Vec<&str> = listed["result"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    // The thread that never had a turn is not listed.
    assert_eq!(ids, [thread_id.as_str()]);
    assert_ne!(empty_id, thread_id);
    assert_eq!(listed["result"]["data"][0]["status"]["type"], "notLoaded");
    client.request(2, "thread/resume", json!({"threadId": thread_id}));
    let status = client.recv().await;
    assert_eq!(
        status["params"]["status"]["type"], "idle",
        "cold resume announces the load first: {status}"
    );
    let resumed = client.recv().await;
    let turns = resumed["result"]["thread"]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0]["items"][1]["text"], "remembered");
    assert_eq!(resumed["result"]["thread"]["preview"], "remember this");
    let usage = client.recv().await;
    assert_eq!(
        usage["method"], "thread/tokenUsage/updated",
        "the caller hears the usage stored before the kill: {usage}"
    );
    assert_eq!(usage["params"]["turnId"], turns[0]["id"]);
    assert_eq!(usage["params"]["tokenUsage"]["total"]["totalTokens"], 17);
    assert_eq!(
        usage["params"]["tokenUsage"]["last"]["cachedInputTokens"],
        2
    );
    assert_eq!(
        client.recv().await["method"],
        "thread/goal/cleared",
        "the goal snapshot"
    );
    // A thread that never had a turn resumes too.
    client.request(3, "thread/resume", json!({"threadId": empty_id}));
    let _status = client.recv().await;
    assert_eq!(client.recv().await["result"]["thread"]["turns"], json!([]));
    assert_eq!(client.recv().await["method"], "thread/goal/cleared");
    // And the history keeps growing after the restart.
    setup
        .upstream
        .push(Script::Stream(message_response("r2", &["still here"])));
    run_turn(&mut client, 4, &thread_id, "and now?").await;
    let input = &setup.upstream.requests()[1].body["input"];
    assert_eq!(input[1]["content"][0]["text"], "remembered");
}

#[tokio::test]
async fn a_reasoning_summary_streams_as_it_is_written_and_stays_out_of_the_model_input() {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    let reasoning = |kind: &str, extra: Value| {
        let mut event = json!({"type": kind, "item_id": "rs_1", "output_index": 0});
        event
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Step::Event(event)
    };
    let part = json!({"type": "summary_text", "text": ""});
    let mut steps = message_response("r1", &["answer"]);
    steps.splice(
        1..1,
        [
            Step::Event(
                json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning", "id": "rs_1", "summary": []}}),
            ),
            reasoning(
                "response.reasoning_summary_part.added",
                json!({"summary_index": 0, "part": part}),
            ),
            reasoning(
                "response.reasoning_summary_text.delta",
                json!({"summary_index": 0, "delta": "Weighing "}),
            ),
            reasoning(
                "response.reasoning_summary_text.delta",
                json!({"summary_index": 0, "delta": "options"}),
            ),
            reasoning(
                "response.reasoning_summary_part.added",
                json!({"summary_index": 1, "part": part}),
            ),
            reasoning(
                "response.reasoning_summary_text.delta",
                json!({"summary_index": 1, "delta": "Decided"}),
            ),
            Step::Event(
                json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Weighing options"}, {"type": "summary_text", "text": "Decided"}]}}),
            ),
        ],
    );
    setup.upstream.push(Script::Stream(steps));
    let mut client = setup.process.ws().await;
    client.initialize("c", Value::Null).await;
    let thread_id = client.start_thread(json!({})).await;
    let seen = run_turn(&mut client, 2, &thread_id, "think").await;
    let reasoning_messages: Vec<&Value> = seen
        .iter()
        .filter(|m| m["params"]["itemId"] == "rs_1" || m["params"]["item"]["id"] == "rs_1")
        .collect();
    let described: Vec<String> = reasoning_messages
        .iter()
        .map(|m| {
            let p = &m["params"];
            match m["method"].as_str().unwrap() {
                "item/reasoning/summaryPartAdded" => format!("part {}", p["summaryIndex"]),
                "item/reasoning/summaryTextDelta" => {
                    format!("delta {} {}", p["summaryIndex"], p["delta"])
                }
                other => format!("{other} {}", p["item"]["summary"]),
            }
        })
        .collect();
    assert_eq!(
        described,
        [
            "item/started []",
            "part 0",
            "delta 0 \"Weighing \"",
            "delta 0 \"options\"",
            "part 1",
            "delta 1 \"Decided\"",
            "item/completed [\"Weighing options\",\"Decided\"]",
        ]
    );
    for message in &reasoning_messages {
        assert_eq!(
            message["params"]["turnId"],
            seen.last().unwrap()["params"]["turn"]["id"]
        );
    }
    let completed = reasoning_messages.last().unwrap();
    assert!(
        completed["params"]["item"]["startedAtMs"].as_i64()
            <= completed["params"]["item"]["completedAtMs"].as_i64()
    );

    // The summary is history for clients, not input for the model.
    setup
        .upstream
        .push(Script::Stream(message_response("r2", &["next"])));
    run_turn(&mut client, 3, &thread_id, "again").await;
    let input = setup.upstream.requests()[1].body["input"].to_string();
    assert!(
        input.contains("answer") && !input.contains("Weighing"),
        "{input}"
    );
    let read = client
        .call(
            4,
            "thread/read",
            json!({"threadId": thread_id, "includeTurns": true}),
        )
        .await;
    assert_eq!(
        read["result"]["thread"]["turns"][0]["items"][1]["summary"],
        json!(["Weighing options", "Decided"])
    );
}

/// A thread whose history log is on a full disk: every write fails with ENOSPC. Returns the
/// setup, an initialized client, the thread and the log's path (a link to `/dev/full`).
async fn thread_on_a_full_disk() -> (Setup, Client, String, std::path::PathBuf) {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    let mut client = setup.process.ws().await;
    client.initialize("c", Value::Null).await;
    let thread_id = client.start_thread(json!({})).await;
    let log = setup
        .home
        .path()
        .join("threads")
        .join(format!("{thread_id}.jsonl"));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/dev/full", &log).unwrap();
    (setup, client, thread_id, log)
}

#[tokio::test]
async fn a_turn_that_cannot_be_saved_is_reported_and_the_log_stays_whole() {
    let (mut setup, mut client, thread_id, log) = thread_on_a_full_disk().await;
    setup
        .upstream
        .push(Script::Stream(message_response("r1", &["lost"])));
    let seen = run_turn(&mut client, 2, &thread_id, "first").await;
    let error = seen
        .iter()
        .position(|m| m["method"] == "error")
        .expect("an error notification before turn/completed");
    let error = &seen[error]["params"];
    assert_eq!(error["willRetry"], false);
    assert_eq!(error["threadId"], thread_id.as_str());
    assert_eq!(
        error["turnId"],
        seen.last().unwrap()["params"]["turn"]["id"]
    );
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("cannot save the turn to the thread history: ")
            && message.contains("No space left on device"),
        "{message}"
    );
    assert_eq!(
        seen.last().unwrap()["params"]["turn"]["status"],
        "completed",
        "the model's answer is not a failure"
    );
    assert_eq!(
        seen.last().unwrap()["params"]["turn"]["error"]["message"],
        message,
        "the turn says it is not saved"
    );

    // Space again: the unsaved turn is written first, then the next one; a restart finds both.
    std::fs::remove_file(&log).unwrap();
    setup
        .upstream
        .push(Script::Stream(message_response("r2", &["kept"])));
    let seen = run_turn(&mut client, 3, &thread_id, "second").await;
    assert!(!methods(&seen).contains(&"error".to_owned()), "{seen:?}");
    setup.process.signal("KILL");
    setup.process.wait(Duration::from_secs(5)).await;
    let (_process, mut client) = serve_ws(setup.home.path()).await;
    client.request(1, "thread/resume", json!({"threadId": thread_id}));
    let _status = client.recv().await;
    let resumed = client.recv().await;
    let turns = resumed["result"]["thread"]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "both turns, in order: {turns:?}");
    assert_eq!(turns[0]["items"][1]["text"], "lost");
    assert_eq!(turns[1]["items"][1]["text"], "kept");
}

#[tokio::test]
async fn a_turn_still_unsaved_at_shutdown_is_reported_lost_after_the_restart() {
    let (mut setup, mut client, thread_id, log) = thread_on_a_full_disk().await;
    setup
        .upstream
        .push(Script::Stream(message_response("r1", &["never written"])));
    let seen = run_turn(&mut client, 2, &thread_id, "first").await;
    let turn_id = seen.last().unwrap()["params"]["turn"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A graceful stop tries once more, and the disk is still full.
    setup.process.signal("TERM");
    setup.process.wait(Duration::from_secs(10)).await;
    std::fs::remove_file(&log).unwrap();
    let (_process, mut client) = serve_ws(setup.home.path()).await;
    client.request(1, "thread/resume", json!({"threadId": thread_id}));
    let warning = client.recv_until("warning").await.pop().unwrap();
    assert_eq!(warning["params"]["threadId"], thread_id.as_str());
    let text = warning["params"]["message"].as_str().unwrap();
    assert!(
        text.contains("1 completed turn(s)") && text.contains(&turn_id),
        "{text}"
    );
}

#[tokio::test]
async fn an_idle_thread_without_subscribers_unloads_after_the_delay() {
    let setup = setup(1, &["ws://127.0.0.1:0"]).await;
    let mut owner = setup.process.ws().await;
    let mut watcher = setup.process.ws().await;
    owner.initialize("owner", Value::Null).await;
    watcher.initialize("watcher", Value::Null).await;
    let thread_id = owner.start_thread(json!({})).await;
    assert_eq!(watcher.recv().await["method"], "thread/started");
    let loaded = owner.call(1, "thread/loaded/list", json!({})).await;
    assert_eq!(loaded["result"]["data"], json!([thread_id]));
    let unsubscribed = owner
        .call(2, "thread/unsubscribe", json!({"threadId": thread_id}))
        .await;
    assert_eq!(unsubscribed["result"]["status"], "unsubscribed");
    let again = owner
        .call(3, "thread/unsubscribe", json!({"threadId": thread_id}))
        .await;
    assert_eq!(again["result"]["status"], "notSubscribed");
    let started = std::time::Instant::now();
    let status = watcher.recv().await;
    let closed = watcher.recv().await;
    let waited = started.elapsed();
    assert_eq!(
        status["params"],
        json!({"threadId": thread_id, "status": {"type": "notLoaded"}})
    );
    assert_eq!(closed["method"], "thread/closed");
    assert_eq!(closed["emittedAtMs"], status["emittedAtMs"]);
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Broadcasts reach the owner too.
    assert_eq!(owner.recv().await, status);
    assert_eq!(owner.recv().await, closed);
    let gone = owner
        .call(4, "thread/unsubscribe", json!({"threadId": thread_id}))
        .await;
    assert_eq!(gone["result"]["status"], "notLoaded");
    let not_found = owner
        .call(5, "turn/start", json!({"threadId": thread_id, "input": []}))
        .await;
    assert_eq!(
        not_found["error"]["message"],
        format!("thread not found: {thread_id}")
    );
}

#[tokio::test]
async fn thread_errors_have_their_texts() {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    let mut client = setup.process.ws().await;
    client.initialize("c", Value::Null).await;
    let bad = client
        .call(1, "thread/resume", json!({"threadId": "abc"}))
        .await;
    assert_eq!(
        bad["error"]["message"],
        "invalid thread id: invalid length: expected length 32 for simple format, found 3"
    );
    let unknown = "00000000-0000-0000-0000-000000000000";
    let read = client
        .call(2, "thread/read", json!({"threadId": unknown}))
        .await;
    assert_eq!(
        read["error"]["message"],
        format!("thread not loaded: {unknown}")
    );
    let resume = client
        .call(3, "thread/resume", json!({"threadId": unknown}))
        .await;
    assert_eq!(
        resume["error"]["message"],
        format!("no rollout found for thread id {unknown}")
    );
    let unsubscribe = client
        .call(4, "thread/unsubscribe", json!({"threadId": unknown}))
        .await;
    assert_eq!(unsubscribe["result"]["status"], "notLoaded");
    let provider = client
        .call(5, "thread/start", json!({"modelProvider": "nope"}))
        .await;
    assert_eq!(provider["error"]["message"], "unknown model provider: nope");
}

#[tokio::test]
async fn a_turn_over_the_upstream_websocket() {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    write_config(home.path(), &upstream, 60, true);
    upstream.push(Script::Stream(vec![
        Step::Event(json!({"type": "response.created", "response": {"id": "w1"}})),
        Step::Event(json!({"type": "response.output_item.added", "item": {"type": "message", "id": "m", "content": []}})),
        Step::Event(json!({"type": "response.output_text.delta", "item_id": "m", "delta": "over ws"})),
        Step::Event(json!({"type": "response.output_item.done", "item": {"type": "message", "id": "m", "content": [{"type": "output_text", "text": "over ws"}]}})),
        completed("w1"),
    ]));
    let mut process = TetherProcess::start(Path::new(TETHER), home.path(), &[], &[]).await;
    let mut client = process.stdio();
    client.initialize("c", Value::Null).await;
    let thread_id = client.start_thread(json!({})).await;
    let messages = run_turn(&mut client, 2, &thread_id, "hello").await;
    assert_eq!(
        messages.last().unwrap()["params"]["turn"]["items"][0]["text"],
        "over ws"
    );
    assert_eq!(upstream.requests()[0].transport, "websocket");
}

fn tool_call_response(response_id: &str, call_id: &str) -> Vec<Step> {
    vec![
        Step::Event(json!({"type": "response.created", "response": {"id": response_id}})),
        Step::Event(
            json!({"type": "response.output_item.added", "item": {"type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id, "name": "lookup", "arguments": ""}}),
        ),
        Step::Event(
            json!({"type": "response.output_item.done", "item": {"type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id, "name": "lookup", "arguments": "{\"q\":\"answer\"}"}}),
        ),
        completed(response_id),
    ]
}

async fn start_tool_thread(client: &mut Client) -> String {
    let tools = json!([{"name": "lookup", "description": "Looks things up", "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}}]);
    client.start_thread(json!({"dynamicTools": tools})).await
}

#[tokio::test]
async fn dynamic_tools_need_the_experimental_capability() {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    let mut client = setup.process.ws().await;
    client.initialize("plain", Value::Null).await;
    let refused = client
        .call(1, "thread/start", json!({"dynamicTools": []}))
        .await;
    assert_eq!(
        refused["error"],
        json!({"code": -32600, "message": "thread/start.dynamicTools requires experimentalApi capability"})
    );
}

#[tokio::test]
async fn a_tool_call_goes_to_every_subscriber_and_the_first_answer_wins() {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    setup
        .upstream
        .push(Script::Stream(tool_call_response("r1", "call_1")));
    setup.upstream.push(Script::Stream(message_response(
        "r2",
        &["the answer is 42"],
    )));
    let mut first = setup.process.ws().await;
    let mut second = setup.process.ws().await;
    first
        .initialize("first", json!({"experimentalApi": true}))
        .await;
    second.initialize("second", Value::Null).await;
    let thread_id = start_tool_thread(&mut first).await;
    assert_eq!(second.recv().await["method"], "thread/started");
    second
        .call("join", "thread/resume", json!({"threadId": thread_id}))
        .await;
    first.request(
        1,
        "turn/start",
        json!({"threadId": thread_id, "input": text("use the tool")}),
    );
    let to_first = first.recv_until("item/tool/call").await;
    let to_second = second.recv_until("item/tool/call").await;
    let request = to_first.last().unwrap().clone();
    assert_eq!(to_second.last().unwrap(), &request, "same request, same id");
    assert_eq!(request["params"]["tool"], "lookup");
    assert_eq!(request["params"]["arguments"], json!({"q": "answer"}));
    assert_eq!(request["params"]["callId"], "call_1");
    let request_id = request["id"].clone();
    assert!(request_id.is_i64());
    // The second client answers first; the first client's later answer is ignored.
    second.send(json!({"id": request_id, "result": {"contentItems": [{"type": "inputText", "text": "42"}], "success": true}}));
    let rest = second.recv_until("turn/completed").await;
    first.send(json!({"id": request_id, "result": {"contentItems": [{"type": "inputText", "text": "late"}], "success": true}}));
    let names = methods(&rest);
    let resolved = names
        .iter()
        .position(|m| m == "serverRequest/resolved")
        .expect("resolved");
    let tool_done = rest
        .iter()
        .position(|m| {
            m["method"] == "item/completed" && m["params"]["item"]["type"] == "dynamicToolCall"
        })
        .unwrap();
    assert!(resolved < tool_done, "{names:?}");
    assert_eq!(
        rest[resolved]["params"],
        json!({"threadId": thread_id, "requestId": request_id})
    );
    let tool_item = &rest[tool_done]["params"]["item"];
    assert_eq!(tool_item["status"], "completed");
    assert_eq!(tool_item["success"], true);
    assert_eq!(
        rest.last().unwrap()["params"]["turn"]["items"][0]["text"],
        "the answer is 42"
    );
    let followup = &setup.upstream.requests()[1].body;
    let input = followup["input"].as_array().unwrap();
    assert_eq!(
        input[1],
        json!({"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{\"q\":\"answer\"}"})
    );
    assert_eq!(
        input[2],
        json!({"type": "function_call_output", "call_id": "call_1", "output": "42"})
    );
    let declared: Vec<&str> = followup["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert_eq!(declared, ["exec_command", "write_stdin", "lookup"]);
    let first_rest = first.recv_until("turn/completed").await;
    assert_eq!(methods(&first_rest), names);
    first.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(
        setup.upstream.requests().len(),
        2,
        "the late answer changed nothing"
    );
}

#[tokio::test]
async fn a_pending_tool_call_survives_its_clients_disconnect_and_is_replayed_on_resume() {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    setup
        .upstream
        .push(Script::Stream(tool_call_response("r1", "call_9")));
    setup
        .upstream
        .push(Script::Stream(message_response("r2", &["done"])));
    let mut first = setup.process.ws().await;
    first
        .initialize("first", json!({"experimentalApi": true}))
        .await;
    let thread_id = start_tool_thread(&mut first).await;
    first.request(
        1,
        "turn/start",
        json!({"threadId": thread_id, "input": text("call it")}),
    );
    let request = first.recv_until("item/tool/call").await.pop().unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = setup.process.ws().await;
    second.initialize("second", Value::Null).await;
    let resumed = second
        .call("r", "thread/resume", json!({"threadId": thread_id}))
        .await;
    assert_eq!(resumed["result"]["thread"]["status"]["type"], "active");
    assert_eq!(
        second.recv().await["method"],
        "thread/tokenUsage/updated",
        "the usage so far first"
    );
    assert_eq!(
        second.recv().await["method"],
        "thread/goal/cleared",
        "then the goal snapshot"
    );
    let replayed = second.recv().await;
    assert_eq!(replayed, request, "the same request, same id");
    second.send(json!({"id": request["id"], "result": {"contentItems": [{"type": "inputText", "text": "ok"}], "success": true}}));
    let rest = second.recv_until("turn/completed").await;
    assert_eq!(
        rest.last().unwrap()["params"]["turn"]["status"],
        "completed"
    );
}

#[tokio::test]
async fn interrupt_resolves_a_pending_tool_call() {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    setup
        .upstream
        .push(Script::Stream(tool_call_response("r1", "call_2")));
    let mut client = setup.process.ws().await;
    client
        .initialize("c", json!({"experimentalApi": true}))
        .await;
    let thread_id = start_tool_thread(&mut client).await;
    let started = client
        .call(
            1,
            "turn/start",
            json!({"threadId": thread_id, "input": text("call it")}),
        )
        .await;
    let turn_id = started["result"]["turn"]["id"].clone();
    let request = client.recv_until("item/tool/call").await.pop().unwrap();
    assert_eq!(client.recv().await["method"], "thread/tokenUsage/updated");
    client.request(
        2,
        "turn/interrupt",
        json!({"threadId": thread_id, "turnId": turn_id}),
    );
    let rest = client.recv_until("serverRequest/resolved").await;
    assert_eq!(
        methods(&rest),
        [
            "response",
            "status:idle",
            "turn/completed",
            "serverRequest/resolved"
        ]
    );
    assert_eq!(rest[3]["params"]["requestId"], request["id"]);
    client.send(json!({"id": request["id"], "result": {"contentItems": [], "success": true}}));
    client.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn thread_list_pages_sorts_and_filters() {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    let mut client = setup.process.ws().await;
    client.initialize("lister", Value::Null).await;
    let mut ids = Vec::new();
    for (n, cwd) in ["/a", "/b", "/a", "/c", "/a"].into_iter().enumerate() {
        let thread_id = client.start_thread(json!({"cwd": cwd})).await;
        // Only threads that had a turn are listed.
        setup
            .upstream
            .push(Script::Stream(message_response("r0", &["ok"])));
        let first_words = if n == 0 {
            "a needle in a haystack"
        } else {
            "hay"
        };
        run_turn(&mut client, 100 + n as i64, &thread_id, first_words).await;
        ids.push(thread_id);
    }
    let ephemeral = client
        .call("e", "thread/start", json!({"ephemeral": true}))
        .await;
    assert_eq!(ephemeral["result"]["thread"]["path"], Value::Null);
    assert_eq!(client.recv().await["method"], "thread/started");
    let page = |value: &Value| -> Vec<String> {
        value["result"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let first = client.call(1, "thread/list", json!({"limit": 2})).await;
    assert_eq!(page(&first), newest_first[..2]);
    let cursor = first["result"]["nextCursor"].as_str().unwrap().to_owned();
    let second = client
        .call(2, "thread/list", json!({"limit": 2, "cursor": cursor}))
        .await;
    assert_eq!(page(&second), newest_first[2..4]);
    let third = client
        .call(
            3,
            "thread/list",
            json!({"limit": 2, "cursor": second["result"]["nextCursor"]}),
        )
        .await;
    assert_eq!(page(&third), newest_first[4..]);
    assert_eq!(third["result"]["nextCursor"], Value::Null);
    let ascending = client
        .call(
            4,
            "thread/list",
            json!({"sortDirection": "asc", "sortKey": "created_at"}),
        )
        .await;
    assert_eq!(page(&ascending), ids);
    let in_a = client.call(5, "thread/list", json!({"cwd": "/a"})).await;
    assert_eq!(
        page(&in_a),
        [ids[4].clone(), ids[2].clone(), ids[0].clone()]
    );
    let in_b_or_c = client
        .call(6, "thread/list", json!({"cwd": ["/b", "/c"]}))
        .await;
    assert_eq!(page(&in_b_or_c), [ids[3].clone(), ids[1].clone()]);
    let other_provider = client
        .call(7, "thread/list", json!({"modelProviders": ["other"]}))
        .await;
    assert_eq!(page(&other_provider), Vec::<String>::new());
    // Loaded threads report their live status.
    assert_eq!(first["result"]["data"][0]["status"]["type"], "idle");
    // A turn makes a thread the most recently updated (timestamps are in seconds); its first
    // message is the preview searched.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    setup
        .upstream
        .push(Script::Stream(message_response("r1", &["ok"])));
    client.request(
        8,
        "turn/start",
        json!({"threadId": ids[0], "input": text("more")}),
    );
    client.recv_until("turn/completed").await;
    let by_update = client
        .call(
            9,
            "thread/list",
            json!({"sortKey": "updated_at", "limit": 1}),
        )
        .await;
    assert_eq!(page(&by_update), [ids[0].clone()]);
    let found = client
        .call(10, "thread/list", json!({"searchTerm": "needle"}))
        .await;
    assert_eq!(page(&found), [ids[0].clone()]);
}

#[tokio::test]
async fn a_broken_stream_is_retried_with_an_error_notification() {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    write_config_with(home.path(), &upstream, 60, false, 1);
    let mut cut = message_response("r1", &["lost"]);
    cut.truncate(3);
    cut.push(Step::Cut);
    upstream.push(Script::Stream(cut));
    upstream.push(Script::Stream(message_response("r2", &["second try"])));
    let (_process, mut client) = serve_ws(home.path()).await;
    let thread_id = client.start_thread(json!({})).await;
    let messages = run_turn(&mut client, 1, &thread_id, "try").await;
    let error = messages
        .iter()
        .find(|m| m["method"] == "error")
        .expect("an error notification");
    assert_eq!(error["params"]["willRetry"], true);
    assert_eq!(error["params"]["error"]["message"], "Reconnecting... 1/1");
    assert_eq!(
        error["params"]["error"]["additionalDetails"],
        "stream disconnected before completion: stream closed before response.completed"
    );
    assert_eq!(
        error["params"]["error"]["codexErrorInfo"],
        json!({"responseStreamDisconnected": {"httpStatusCode": null}})
    );
    let done = messages.last().unwrap();
    assert_eq!(done["params"]["turn"]["status"], "completed");
    assert_eq!(
        done["params"]["turn"]["items"],
        json!([messages
            .iter()
            .rev()
            .find(|m| m["method"] == "item/completed")
            .unwrap()["params"]["item"]])
    );
    assert_eq!(done["params"]["turn"]["items"][0]["text"], "second try");
    assert_eq!(upstream.requests().len(), 2);
    // Every item started, the broken attempt's included, ends before the turn does.
    let ids = |method: &str| -> Vec<String> {
        let mut ids: Vec<String> = messages
            .iter()
            .filter(|m| m["method"] == method)
            .map(|m| m["params"]["item"]["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids("item/started"), ids("item/completed"));
    assert!(ids("item/started").contains(&"msg_r1".to_owned()));
}

#[tokio::test]
async fn a_running_turn_keeps_its_thread_loaded_for_a_client_that_comes_back() {
    let setup = setup(1, &["ws://127.0.0.1:0"]).await;
    let mut steps = message_response("r1", &["slow"]);
    steps.insert(3, Step::Pause(Duration::from_millis(2500)));
    setup.upstream.push(Script::Stream(steps));
    let mut client = setup.process.ws().await;
    client.initialize("c", Value::Null).await;
    let thread_id = client.start_thread(json!({})).await;
    client.request(
        1,
        "turn/start",
        json!({"threadId": thread_id, "input": text("take your time")}),
    );
    client.recv_until("item/started").await;
    drop(client);
    // Longer than the unload delay, shorter than the turn.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let mut back = setup.process.ws().await;
    back.initialize("c", Value::Null).await;
    let resumed = back
        .call("r", "thread/resume", json!({"threadId": thread_id}))
        .await;
    assert_eq!(
        resumed["result"]["thread"]["status"]["type"], "active",
        "{resumed}"
    );
    let rest = back.recv_until("turn/completed").await;
    assert_eq!(
        rest.last().unwrap()["params"]["turn"]["status"],
        "completed"
    );
}

/// An intruder on another connection (initialized or not) answers a tool call it was never
/// sent: the answer is ignored and does not consume the request, so the subscriber's own answer
/// is the one the model gets.
#[tokio::test]
async fn only_a_tool_calls_recipients_can_answer_it() {
    let setup = setup(60, &["ws://127.0.0.1:0"]).await;
    setup
        .upstream
        .push(Script::Stream(tool_call_response("r1", "call_1")));
    setup
        .upstream
        .push(Script::Stream(message_response("r2", &["done"])));
    let mut owner = setup.process.ws().await;
    owner
        .initialize("owner", json!({"experimentalApi": true}))
        .await;
    let mut intruder = setup.process.ws().await;
    intruder.initialize("intruder", Value::Null).await;
    let mut stranger = setup.process.ws().await;
    let thread_id = start_tool_thread(&mut owner).await;
    owner.request(
        1,
        "turn/start",
        json!({"threadId": thread_id, "input": text("use the tool")}),
    );
    let request = owner.recv_until("item/tool/call").await.pop().unwrap();
    let spoof = json!({"id": request["id"], "result": {"contentItems": [{"type": "inputText", "text": "spoofed"}], "success": true}});
    // Each intruder's next request is answered after its spoof was processed (one connection's
    // messages are handled in order), so both spoofs are in before the owner answers.
    stranger.send(spoof.clone());
    let refused = stranger.call(2, "thread/loaded/list", json!({})).await;
    assert_eq!(refused["error"]["message"], "Not initialized");
    intruder.send(spoof);
    // The intruder also hears the thread's broadcasts; skip them up to its own answer.
    intruder.request(3, "thread/loaded/list", json!({}));
    while intruder.recv().await["id"] != 3 {}
    owner.send(json!({"id": request["id"], "result": {"contentItems": [{"type": "inputText", "text": "genuine"}], "success": true}}));
    let rest = owner.recv_until("turn/completed").await;
    let tool_item = rest
        .iter()
        .find(|m| {
            m["method"] == "item/completed" && m["params"]["item"]["type"] == "dynamicToolCall"
        })
        .expect("the tool call completes");
    assert_eq!(
        tool_item["params"]["item"]["contentItems"],
        json!([{"type": "inputText", "text": "genuine"}])
    );
    let followup = &setup.upstream.requests()[1].body;
    assert_eq!(followup["input"][2]["output"], "genuine");
    assert!(
        !setup.process.stderr().contains("spoofed"),
        "an ignored answer is never logged"
    );
}
