//! Delivery and back-pressure with real `tether serve` processes, real sockets and a real loopback
//! upstream: a client that stops reading never delays another, every outbound queue is bounded in
//! bytes, and a client past its bound is closed for real (its memory freed, the reason logged).

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tether_testkit::{Client, ResponsesServer, Script, Step, TetherProcess, completed};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const MIB: usize = 1024 * 1024;

async fn start(upstream: &ResponsesServer, home: &Path, args: &[&str]) -> TetherProcess {
    let config = format!(
        "model = \"mock-model\"\nmodel_provider = \"mock\"\n\
         [model_providers.mock]\nname = \"Mock\"\nbase_url = \"{}\"\nwire_api = \"responses\"\n\
         request_max_retries = 0\nstream_max_retries = 0\nstream_idle_timeout_ms = 15000\n",
        upstream.base_url()
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
    TetherProcess::start(Path::new(TETHER), home, args, &[]).await
}

/// A response of `items` assistant messages, each streamed as `deltas` deltas of `delta_bytes`
/// bytes, with `pause` after each message (a model streams at a rate, not all at once). Each
/// message's final text is short, so only the stream is large: the thread itself never holds
/// more than one message of it.
fn large_stream(items: usize, deltas: usize, delta_bytes: usize, pause: Duration) -> Script {
    let delta = "x".repeat(delta_bytes);
    let mut steps = vec![Step::Event(
        json!({"type": "response.created", "response": {"id": "big"}}),
    )];
    for item in 0..items {
        let id = format!("msg_{item}");
        steps.push(Step::Event(
            json!({"type": "response.output_item.added", "output_index": item, "item": {"type": "message", "id": id, "role": "assistant", "content": []}}),
        ));
        for _ in 0..deltas {
            steps.push(Step::Event(
                json!({"type": "response.output_text.delta", "item_id": id, "output_index": item, "content_index": 0, "delta": delta}),
            ));
        }
        steps.push(Step::Event(
            json!({"type": "response.output_item.done", "output_index": item, "item": {"type": "message", "id": id, "role": "assistant", "content": [{"type": "output_text", "text": format!("item {item}")}]}}),
        ));
        steps.push(Step::Pause(pause));
    }
    steps.push(completed("big"));
    Script::Stream(steps)
}

fn small_response(id: &str) -> Script {
    Script::Stream(tether_testkit::message_response(id, &["ok"]))
}

fn input(text: &str) -> Value {
    json!([{"type": "text", "text": text, "text_elements": []}])
}

/// Starts a turn and receives until it completes; returns how many deltas arrived and the
/// longest wait between two messages.
async fn run_turn(client: &mut Client, id: i64, thread_id: &str) -> (usize, Duration) {
    client.request(
        id,
        "turn/start",
        json!({"threadId": thread_id, "input": input("go")}),
    );
    let (mut deltas, mut worst, mut last) = (0, Duration::ZERO, Instant::now());
    loop {
        let message = client.recv().await;
        worst = worst.max(last.elapsed());
        last = Instant::now();
        match message["method"].as_str() {
            Some("item/agentMessage/delta") => deltas += 1,
            Some("turn/completed") => return (deltas, worst),
            _ => {}
        }
    }
}

/// Writes one request line to the stdio client's stdin.
async fn write_line(stdin: &mut tokio::process::ChildStdin, message: Value) {
    stdin
        .write_all(format!("{message}\n").as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
}

/// The stdio client (the process's parent, here the test) initializes and starts a thread, then
/// stops reading stdout; a WebSocket client learns the thread from the `thread/started`
/// broadcast. Returns the thread id.
async fn stalled_stdio_subscriber(
    stdin: &mut tokio::process::ChildStdin,
    ws: &mut Client,
) -> String {
    ws.initialize("ws", Value::Null).await;
    write_line(
        stdin,
        json!({"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "parent", "version": "1"}}}),
    )
    .await;
    write_line(
        stdin,
        json!({"id": 2, "method": "thread/start", "params": {"cwd": "/tmp"}}),
    )
    .await;
    let started = ws.recv_until("thread/started").await;
    let thread_id = started.last().unwrap()["params"]["thread"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.call("resume", "thread/resume", json!({"threadId": thread_id}))
        .await;
    thread_id
}

#[tokio::test]
async fn a_stdio_client_that_stops_reading_never_delays_websocket_clients() {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut process = start(
        &upstream,
        home.path(),
        &["--listen", "stdio://", "--listen", "ws://127.0.0.1:0"],
    )
    .await;
    let (mut stdin, stdout) = process.stdio_pipes();
    let mut ws = process.ws().await;
    let thread_id = stalled_stdio_subscriber(&mut stdin, &mut ws).await;
    // 4,000 deltas for a subscriber that reads none of them: far more frames than a pipe holds
    // (and than the 1,024 frames the stdio queue once held before everyone waited for it), far
    // fewer bytes than its 64 MiB bound.
    upstream.push(large_stream(4, 1000, 100, Duration::ZERO));
    let (deltas, _) = run_turn(&mut ws, 10, &thread_id).await;
    assert_eq!(deltas, 4000);
    // A new client's turn starts and completes too.
    upstream.push(small_response("r2"));
    let mut late = process.ws().await;
    late.initialize("late", Value::Null).await;
    let late_thread = late.start_thread(json!({})).await;
    let (deltas, _) = run_turn(&mut late, 20, &late_thread).await;
    assert_eq!(deltas, 1);
    // The stdio client was never dropped: once it reads, everything is there, in order.
    let mut lines = BufReader::new(stdout).lines();
    let mut stdio_deltas = 0;
    let mut completed_turns = 0;
    while completed_turns < 1 {
        let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .expect("stdout keeps coming")
            .unwrap()
            .expect("stdout is open");
        let message: Value = serde_json::from_str(&line).unwrap();
        if message["params"]["threadId"] == thread_id.as_str() {
            match message["method"].as_str() {
                Some("item/agentMessage/delta") => stdio_deltas += 1,
                Some("turn/completed") => completed_turns += 1,
                _ => {}
            }
        }
    }
    assert_eq!(stdio_deltas, 4000);
    assert!(
        !process.stderr().contains("closing connection"),
        "{}",
        process.stderr()
    );
}

#[tokio::test]
async fn a_stdio_client_past_its_bound_ends_the_process_non_zero_with_the_reason() {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut process = start(
        &upstream,
        home.path(),
        &[
            "--listen",
            "stdio://",
            "--listen",
            "ws://127.0.0.1:0",
            "--outbound-queue-bytes",
            "1000000",
            "--shutdown-grace-seconds",
            "5",
        ],
    )
    .await;
    let (mut stdin, _stdout_never_read) = process.stdio_pipes();
    let mut ws = process.ws().await;
    let thread_id = stalled_stdio_subscriber(&mut stdin, &mut ws).await;
    // 4 MiB of deltas: more than the pipe, the writer's buffer and the 1 MB bound together.
    upstream.push(large_stream(4, 64, 16 * 1024, Duration::ZERO));
    ws.request(
        10,
        "turn/start",
        json!({"threadId": thread_id, "input": input("go")}),
    );
    ws.closed().await;
    assert_eq!(process.wait(Duration::from_secs(15)).await.code(), Some(1));
    let stderr = process.stderr();
    assert!(
        stderr.contains(
            "closing connection: the client is not reading: more than 1000000 bytes are queued for it"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("stdio connection closed: the client is not reading"),
        "{stderr}"
    );
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client that reads only when told to, and cheaply: the test's own parsing and
/// schema checks must not be what makes a "healthy" reader slow.
async fn raw_client(process: &TetherProcess, name: &str) -> Socket {
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/", process.ws_address()))
            .await
            .unwrap();
    raw_call(
        &mut socket,
        json!({"id": "init", "method": "initialize", "params": {"clientInfo": {"name": name, "version": "1"}}}),
    )
    .await;
    socket
}

/// Sends a request and reads until its response, which it returns.
async fn raw_call(socket: &mut Socket, request: Value) -> Value {
    socket
        .send(Message::Text(request.to_string().into()))
        .await
        .unwrap();
    loop {
        let Some(Ok(Message::Text(text))) = socket.next().await else {
            panic!("the response to {request}")
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["id"] == request["id"] {
            return message;
        }
    }
}

#[tokio::test]
async fn a_websocket_client_that_stops_reading_is_closed_and_its_memory_freed() {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let process = start(
        &upstream,
        home.path(),
        &[
            "--listen",
            "ws://127.0.0.1:0",
            "--outbound-queue-bytes",
            &MIB.to_string(),
        ],
    )
    .await;
    let mut healthy = raw_client(&process, "healthy").await;
    let started = raw_call(
        &mut healthy,
        json!({"id": 1, "method": "thread/start", "params": {}}),
    )
    .await;
    let thread_id = started["result"]["thread"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The stalled client subscribes to the thread, then never reads again.
    let mut stalled = raw_client(&process, "stalled").await;
    raw_call(
        &mut stalled,
        json!({"id": 2, "method": "thread/resume", "params": {"threadId": thread_id}}),
    )
    .await;
    let (before, _) = process.resident_memory();
    // 16 MiB of deltas, 16 KiB each, at most 5 MiB/s: sixteen times the bound, and far more than
    // the socket buffers between the server and the stalled client hold.
    upstream.push(large_stream(64, 16, 16 * 1024, Duration::from_millis(50)));
    let turn_started = Instant::now();
    healthy
        .send(Message::Text(
            json!({"id": 3, "method": "turn/start", "params": {"threadId": thread_id, "input": input("go")}})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let (mut deltas, mut worst, mut last) = (0, Duration::ZERO, Instant::now());
    loop {
        let message = tokio::time::timeout(Duration::from_secs(15), healthy.next())
            .await
            .expect("the healthy client keeps receiving");
        let Some(Ok(Message::Text(text))) = message else {
            panic!("the healthy client was closed: {}", process.stderr())
        };
        worst = worst.max(last.elapsed());
        last = Instant::now();
        let head = &text[..text.len().min(64)];
        if head.contains("\"item/agentMessage/delta\"") {
            deltas += 1;
        } else if head.contains("\"turn/completed\"") {
            break;
        }
    }
    eprintln!("the turn took {:?}", turn_started.elapsed());
    assert_eq!(deltas, 64 * 16, "the healthy client got every delta");
    assert!(
        worst < Duration::from_secs(5),
        "the healthy client waited {worst:?}"
    );
    let stderr = process.stderr();
    assert!(
        stderr.contains("closing connection: the client is not reading"),
        "{stderr}"
    );
    assert!(
        stderr.lines().any(|line| line.contains("connection closed")
            && line.contains("connection=1")
            && line.contains("the client is not reading")),
        "the stalled connection ended for real: {stderr}"
    );
    // Its socket is closed: what the kernel still buffered, then the close frame, then the end.
    let close = tokio::time::timeout(Duration::from_secs(15), async {
        let mut close = None;
        while let Some(Ok(message)) = stalled.next().await {
            if let Message::Close(frame) = message {
                close = frame;
            }
        }
        close
    })
    .await
    .expect("the stalled client's socket ends");
    if let Some(close) = close {
        assert_eq!(close.code, CloseCode::Policy, "{close:?}");
    }
    let (after, peak) = process.resident_memory();
    eprintln!(
        "rss before {} MiB, peak {} MiB, after {} MiB",
        before / MIB as u64,
        peak / MIB as u64,
        after / MIB as u64
    );
    // Bounded by the one MiB that may wait for each client, not by the 16 MiB streamed.
    assert!(
        peak < before + 8 * MIB as u64,
        "peak {peak} bytes, {before} before the turn"
    );
    assert!(
        after < before + 6 * MIB as u64,
        "{after} bytes after the turn, {before} before"
    );
}
