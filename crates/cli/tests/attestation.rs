//! Client attestation end to end: real client connections, a real loopback Responses server that
//! records the `x-oai-attestation` header of every request.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tether_testkit::{
    Client, RecordedRequest, ResponsesServer, Script, TetherProcess, message_response,
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const HEADER: &str = "x-oai-attestation";

enum Auth {
    ChatGpt,
    ApiKey,
}

async fn start(auth: Auth, websocket: bool) -> (ResponsesServer, tempfile::TempDir, TetherProcess) {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let config = format!(
        "model = \"mock-model\"\nmodel_provider = \"mock\"\n[model_providers.mock]\nname = \"Mock\"\n\
         base_url = \"{}\"\nwire_api = \"responses\"\nrequires_openai_auth = true\nsupports_websockets = {websocket}\n\
         request_max_retries = 0\nstream_max_retries = 0\n",
        upstream.base_url()
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let auth_json = match auth {
        Auth::ChatGpt => {
            json!({"auth_mode": "chatgpt", "tokens": {"access_token": "at-secret", "account_id": "acct-9"}})
        }
        Auth::ApiKey => json!({"auth_mode": "apikey", "OPENAI_API_KEY": "sk-secret"}),
    };
    std::fs::write(home.path().join("auth.json"), auth_json.to_string()).unwrap();
    let process = TetherProcess::start(
        Path::new(TETHER),
        home.path(),
        &["--listen", "ws://127.0.0.1:0"],
        &[("RUST_LOG", "trace,hyper::proto=trace,reqwest::connect=trace,tungstenite::protocol=trace,[upstream_request]=trace")],
    )
    .await;
    (upstream, home, process)
}

async fn client(process: &TetherProcess, attest: bool) -> Client {
    let mut client = process.ws().await;
    client
        .initialize("attester", json!({"requestAttestation": attest}))
        .await;
    client
}

fn turn(client: &mut Client, thread_id: &str) {
    client.request(format!("turn-{thread_id}"), "turn/start", json!({"threadId": thread_id, "input": [{"type": "text", "text": "hi", "text_elements": []}]}));
}

/// Receives until a message with `method` arrives and returns it.
async fn next_with(client: &mut Client, method: &str) -> Value {
    let mut seen = client.recv_until(method).await;
    seen.pop()
        .expect("recv_until returns the message it waited for")
}

async fn header_after(upstream: &ResponsesServer, count: usize) -> Option<String> {
    let requests = upstream.wait_for_requests(count).await;
    requests[count - 1].header(HEADER).map(str::to_owned)
}

/// One turn in which the client answers `attestation/generate` with `answer` (None: no answer).
async fn attested_turn(
    answer: impl FnOnce(&Value) -> Option<Value>,
) -> (Option<String>, Client, TetherProcess) {
    let (upstream, _home, process) = start(Auth::ChatGpt, false).await;
    upstream.push(Script::Stream(message_response("r1", &["ok"])));
    let mut client = client(&process, true).await;
    let thread_id = client.start_thread(json!({})).await;
    turn(&mut client, &thread_id);
    let request = next_with(&mut client, "attestation/generate").await;
    assert_eq!(request["params"], json!({}));
    assert!(request["id"].is_i64());
    if let Some(reply) = answer(&request) {
        client.send(reply);
    }
    let header = header_after(&upstream, 1).await;
    let rest = {
        let mut seen = Vec::new();
        loop {
            let message = client.recv().await;
            let done = message["method"] == "turn/completed";
            seen.push(message);
            if done {
                break seen;
            }
        }
    };
    assert!(
        rest.iter().all(|m| m["method"] != "serverRequest/resolved"),
        "attestation never resolves"
    );
    let log = process.stderr();
    if let Some(at) = log.find("v1.token-value") {
        panic!(
            "the token is logged: {}",
            &log[at.saturating_sub(300)..(at + 100).min(log.len())]
        );
    }
    (header, client, process)
}

#[tokio::test]
async fn a_token_is_forwarded_as_status_zero_with_the_chatgpt_headers() {
    let (header, _client, _process) = attested_turn(|request| {
        Some(json!({"id": request["id"], "result": {"token": "v1.token-value"}}))
    })
    .await;
    assert_eq!(
        header.as_deref(),
        Some(r#"{"v":1,"s":0,"t":"v1.token-value"}"#)
    );
}

#[tokio::test]
async fn a_late_answer_is_status_one_and_is_ignored_silently() {
    let late = std::sync::Arc::new(std::sync::Mutex::new(None));
    let keep = late.clone();
    let (header, mut client, _process) = attested_turn(move |request| {
        *keep.lock().unwrap() = Some(request["id"].clone());
        None
    })
    .await;
    assert_eq!(header.as_deref(), Some(r#"{"v":1,"s":1}"#));
    let id = late.lock().unwrap().clone().unwrap();
    client.send(json!({"id": id, "result": {"token": "too late"}}));
    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn an_error_answer_is_status_two() {
    let (header, _c, _p) = attested_turn(|request| {
        Some(json!({"id": request["id"], "error": {"code": -32000, "message": "nope"}}))
    })
    .await;
    assert_eq!(header.as_deref(), Some(r#"{"v":1,"s":2}"#));
}

#[tokio::test]
async fn a_malformed_answer_is_status_four() {
    let (header, _c, _p) =
        attested_turn(|request| Some(json!({"id": request["id"], "result": {"token": 5}}))).await;
    assert_eq!(header.as_deref(), Some(r#"{"v":1,"s":4}"#));
}

#[tokio::test]
async fn a_token_that_is_not_a_header_value_sends_no_header() {
    let (header, _c, _p) =
        attested_turn(|request| Some(json!({"id": request["id"], "result": {"token": "tök"}})))
            .await;
    assert_eq!(header, None);
}

#[tokio::test]
async fn the_connection_closing_while_pending_is_status_three() {
    let (upstream, _home, process) = start(Auth::ChatGpt, false).await;
    upstream.push(Script::Stream(message_response("r1", &["ok"])));
    let mut client = client(&process, true).await;
    let thread_id = client.start_thread(json!({})).await;
    turn(&mut client, &thread_id);
    next_with(&mut client, "attestation/generate").await;
    drop(client);
    assert_eq!(
        header_after(&upstream, 1).await.as_deref(),
        Some(r#"{"v":1,"s":3}"#)
    );
}

#[tokio::test]
async fn without_the_capability_or_with_api_key_auth_nobody_is_asked() {
    // Capability off.
    let request = turn_without_attestation(Auth::ChatGpt, false).await;
    assert_eq!(request.header("authorization"), Some("Bearer at-secret"));
    assert_eq!(request.header("chatgpt-account-id"), Some("acct-9"));

    // API-key auth: never first-party.
    let request = turn_without_attestation(Auth::ApiKey, true).await;
    assert_eq!(request.header("authorization"), Some("Bearer sk-secret"));
}

/// One turn on a fresh server with `auth`, from a client that declares the capability or not,
/// in which nobody may be asked to attest; returns the upstream request, which has no header.
async fn turn_without_attestation(auth: Auth, capable: bool) -> RecordedRequest {
    let (upstream, _home, process) = start(auth, false).await;
    upstream.push(Script::Stream(message_response("r1", &["ok"])));
    let mut client = client(&process, capable).await;
    let thread_id = client.start_thread(json!({})).await;
    turn(&mut client, &thread_id);
    let messages = client.recv_until("turn/completed").await;
    assert!(
        messages
            .iter()
            .all(|m| m["method"] != "attestation/generate")
    );
    let request = upstream.requests().remove(0);
    assert_eq!(request.header(HEADER), None);
    request
}

#[tokio::test]
async fn the_lowest_id_subscribed_capable_connection_is_asked() {
    let (upstream, _home, process) = start(Auth::ChatGpt, false).await;
    let mut owner = client(&process, false).await; // not capable
    let mut low = client(&process, true).await;
    let mut high = client(&process, true).await;
    let mut bystander = client(&process, true).await; // capable, never subscribed
    let thread_id = owner.start_thread(json!({})).await;
    for joiner in [&mut low, &mut high] {
        assert_eq!(joiner.recv().await["method"], "thread/started");
        // Earlier joiners' goal snapshots are broadcast: skip them.
        joiner.request("join", "thread/resume", json!({"threadId": thread_id}));
        while joiner.recv().await["id"] != "join" {}
    }
    assert_eq!(bystander.recv().await["method"], "thread/started");

    upstream.push(Script::Stream(message_response("r1", &["one"])));
    turn(&mut owner, &thread_id);
    let asked = next_with(&mut low, "attestation/generate").await;
    low.send(json!({"id": asked["id"], "result": {"token": "from-low"}}));
    assert_eq!(
        header_after(&upstream, 1).await.as_deref(),
        Some(r#"{"v":1,"s":0,"t":"from-low"}"#)
    );
    low.recv_until("turn/completed").await;
    let seen_by_high = high.recv_until("turn/completed").await;
    assert!(
        seen_by_high
            .iter()
            .all(|m| m["method"] != "attestation/generate")
    );

    // After the lowest unsubscribes, the next one is asked.
    low.call(
        "leave",
        "thread/unsubscribe",
        json!({"threadId": thread_id}),
    )
    .await;
    upstream.push(Script::Stream(message_response("r2", &["two"])));
    turn(&mut owner, &thread_id);
    let asked = next_with(&mut high, "attestation/generate").await;
    high.send(json!({"id": asked["id"], "result": {"token": "from-high"}}));
    assert_eq!(
        header_after(&upstream, 2).await.as_deref(),
        Some(r#"{"v":1,"s":0,"t":"from-high"}"#)
    );
    high.recv_until("turn/completed").await;
    // The bystander gets the broadcasts, never a request.
    while let Ok(frame) = tokio::time::timeout(Duration::from_millis(200), bystander.frame()).await
    {
        assert!(
            !format!("{frame:?}").contains("attestation/generate"),
            "{frame:?}"
        );
    }
}

#[tokio::test]
async fn the_websocket_upstream_carries_it_on_the_handshake_and_compaction_carries_its_own() {
    let (upstream, _home, process) = start(Auth::ChatGpt, true).await;
    let mut client = client(&process, true).await;
    let thread_id = client.start_thread(json!({})).await;
    upstream.push(Script::Stream(message_response("r1", &["hello"])));
    turn(&mut client, &thread_id);
    let asked = next_with(&mut client, "attestation/generate").await;
    client.send(json!({"id": asked["id"], "result": {"token": "ws-token"}}));
    let request = &upstream.wait_for_requests(1).await[0];
    assert_eq!(request.transport, "websocket");
    assert_eq!(
        request.header(HEADER),
        Some(r#"{"v":1,"s":0,"t":"ws-token"}"#)
    );
    client.recv_until("turn/completed").await;

    upstream.push(Script::Stream(message_response("r2", &["a summary"])));
    let compact = client
        .call(
            "compact",
            "thread/compact/start",
            json!({"threadId": thread_id}),
        )
        .await;
    assert_eq!(compact["result"], json!({}));
    let asked = next_with(&mut client, "attestation/generate").await;
    client.send(json!({"id": asked["id"], "result": {"token": "compaction-token"}}));
    assert_eq!(
        header_after(&upstream, 2).await.as_deref(),
        Some(r#"{"v":1,"s":0,"t":"compaction-token"}"#)
    );
    let messages = client.recv_until("turn/completed").await;
    let item = messages
        .iter()
        .find(|m| m["method"] == "item/completed")
        .unwrap();
    assert_eq!(item["params"]["item"]["type"], "contextCompaction");
    assert_eq!(item["params"]["item"]["summary"], "a summary");
    // The next turn starts from the summary.
    upstream.push(Script::Stream(message_response("r3", &["after"])));
    turn(&mut client, &thread_id);
    let asked = next_with(&mut client, "attestation/generate").await;
    client.send(json!({"id": asked["id"], "result": {"token": "t3"}}));
    let input = &upstream.wait_for_requests(3).await[2].body["input"];
    assert_eq!(
        input[0]["content"][0]["text"],
        "Summary of the conversation so far:\na summary"
    );
    assert_eq!(input.as_array().unwrap().len(), 2, "{input}");
}

#[tokio::test]
async fn twenty_threads_attest_at_once_through_one_client() {
    let (upstream, _home, process) = start(Auth::ChatGpt, false).await;
    let mut client = client(&process, true).await;
    let mut threads = Vec::new();
    for _ in 0..20 {
        threads.push(client.start_thread(json!({})).await);
        upstream.push(Script::Stream(message_response("r", &["ok"])));
    }
    for thread_id in &threads {
        turn(&mut client, thread_id);
    }
    // All twenty requests are outstanding at the same time: nothing waits for another's answer.
    let mut asked = Vec::new();
    while asked.len() < 20 {
        let message = client.recv().await;
        if message["method"] == "attestation/generate" {
            asked.push(message["id"].clone());
        }
    }
    for (n, id) in asked.iter().rev().enumerate() {
        client.send(json!({"id": id, "result": {"token": format!("t{n}")}}));
    }
    let requests = upstream.wait_for_requests(20).await;
    for request in &requests {
        let header = request.header(HEADER).unwrap();
        assert!(header.starts_with(r#"{"v":1,"s":0,"t":"t"#), "{header}");
    }
}

/// Another local client, initialized or not, answers the attestation request meant for the
/// thread's client: its token never reaches the upstream.
#[tokio::test]
async fn only_the_asked_client_can_answer_an_attestation() {
    let (upstream, _home, process) = start(Auth::ChatGpt, false).await;
    upstream.push(Script::Stream(message_response("r1", &["ok"])));
    let mut owner = client(&process, true).await;
    let mut intruder = process.ws().await;
    intruder
        .initialize("intruder", json!({"requestAttestation": true}))
        .await;
    let mut stranger = process.ws().await;
    let thread_id = owner.start_thread(json!({})).await;
    turn(&mut owner, &thread_id);
    let request = next_with(&mut owner, "attestation/generate").await;
    let spoof = |token: &str| json!({"id": request["id"], "result": {"token": token}});
    stranger.send(spoof("v1.spoofed-by-stranger"));
    intruder.send(spoof("v1.spoofed-by-intruder"));
    // The owner never answers: with the spoofs ignored, the request times out.
    let header = header_after(&upstream, 1).await;
    assert_eq!(header.as_deref(), Some(r#"{"v":1,"s":1}"#));
    next_with(&mut owner, "turn/completed").await;
}
