//! Upstream faults end to end: `tether serve` as a process, a real client, and a real loopback
//! Responses server that refuses with `Retry-After` or sends a line that never ends.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_testkit::{Client, ResponsesServer, Script, Step, TetherProcess, message_response};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

/// Starts tether with one provider at `upstream` and connects an initialized client.
async fn serve(
    upstream: &ResponsesServer,
    request_retries: u32,
    idle_timeout_ms: u64,
) -> (tempfile::TempDir, TetherProcess, Client) {
    let home = tempfile::tempdir().unwrap();
    let config = format!(
        "model = \"mock-model\"\nmodel_provider = \"mock\"\n\
         [model_providers.mock]\nname = \"Mock\"\nbase_url = \"{}\"\nwire_api = \"responses\"\n\
         request_max_retries = {request_retries}\nstream_max_retries = 0\n\
         stream_idle_timeout_ms = {idle_timeout_ms}\n",
        upstream.base_url()
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let process = TetherProcess::start(
        Path::new(TETHER),
        home.path(),
        &["--listen", "ws://127.0.0.1:0"],
        &[],
    )
    .await;
    let mut client = process.ws().await;
    client.initialize("c", Value::Null).await;
    (home, process, client)
}

/// Starts a turn on a new thread and receives until it completes.
async fn run_turn(client: &mut Client) -> Vec<Value> {
    let thread_id = client.start_thread(json!({})).await;
    client.request(
        1,
        "turn/start",
        json!({"threadId": thread_id, "input": [{"type": "text", "text": "hi", "text_elements": []}]}),
    );
    client.recv_until("turn/completed").await
}

#[tokio::test]
async fn a_rate_limited_request_waits_for_retry_after_and_clients_hear_it_is_retried() {
    let upstream = ResponsesServer::start().await;
    upstream.push(Script::StatusWithHeaders(
        429,
        vec![("retry-after".into(), "1".into())],
        "{\"error\":{\"message\":\"slow down\"}}".into(),
    ));
    upstream.push(Script::Stream(message_response("r1", &["after the wait"])));
    let (_home, _process, mut client) = serve(&upstream, 1, 5000).await;
    let messages = run_turn(&mut client).await;

    let notices: Vec<&Value> = messages.iter().filter(|m| m["method"] == "error").collect();
    assert_eq!(
        notices.len(),
        1,
        "one notice for the one retry: {messages:?}"
    );
    let notice = &notices[0]["params"];
    assert_eq!(notice["willRetry"], true);
    assert_eq!(notice["error"]["message"], "Reconnecting... 1/1");
    assert_eq!(
        notice["error"]["additionalDetails"],
        "unexpected status 429: {\"error\":{\"message\":\"slow down\"}}"
    );
    assert_eq!(
        notice["error"]["codexErrorInfo"],
        json!({"responseStreamDisconnected": {"httpStatusCode": 429}})
    );
    let done = messages.last().unwrap();
    assert_eq!(done["params"]["turn"]["status"], "completed", "{done}");

    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].received_at - requests[0].received_at;
    assert!(
        gap >= Duration::from_secs(1),
        "the retry came {gap:?} after the 429, before its Retry-After of 1 s"
    );
}

#[tokio::test]
async fn a_data_line_that_never_ends_fails_the_turn_at_the_idle_timeout() {
    let upstream = ResponsesServer::start().await;
    upstream.push(Script::Stream(vec![
        Step::Raw("data: {\"type\":\"response.created\",\"response\":{\"id\":\"r1\"}}".into()),
        Step::Hang,
    ]));
    let (_home, _process, mut client) = serve(&upstream, 0, 1000).await;
    let started = Instant::now();
    let messages = run_turn(&mut client).await;
    let elapsed = started.elapsed();

    let done = messages.last().unwrap();
    assert_eq!(done["params"]["turn"]["status"], "failed", "{done}");
    assert_eq!(
        done["params"]["turn"]["error"]["message"],
        "stream disconnected before completion: idle timeout waiting for the stream after 1s"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "the turn took {elapsed:?} to fail with a 1 s idle timeout"
    );
}
