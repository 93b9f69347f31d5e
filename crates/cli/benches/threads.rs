//! Threads and turns of `tether serve` measured end to end: real processes, real clients, and a
//! real loopback Responses server (`tether_testkit::ResponsesServer`) reached through a byte tap
//! that timestamps what passes between tether and the upstream. Measures the server's overhead
//! per turn, `item/agentMessage/delta` fan-out latency to 1, 10 and 100 subscribers, a thread of
//! 10,000 items (resume cold from disk and warm, and new turns on it), and resident memory per
//! loaded thread.
//! Run: `cargo bench -p tether-cli --bench threads`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, stream};
use serde_json::{Value, json};
use tether_testkit::bench::{self, LatencyTable, Samples, Table, ms};
use tether_testkit::{
    Client, Direction, Frame, ResponsesServer, Script, Step, Tap, TetherProcess, completed,
    message_response,
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const WS: [&str; 2] = ["--listen", "ws://127.0.0.1:0"];
/// The whole bench fails past this.
const LIMIT: Duration = Duration::from_secs(180);
/// A process exit slower than this fails the bench (each message has the client's own 15 s).
const EXIT: Duration = Duration::from_secs(10);

const WARMUP_TURNS: usize = 10;
const TURNS: usize = 200;

const SUBSCRIBERS: [usize; 3] = [1, 10, 100];
const DELTAS: usize = 50;
const DELTA_PAUSE: Duration = Duration::from_millis(5);
/// Delta `i` streams as `delta#i; `, so both the tap and the clients can tell which one it is.
const MARKER: &str = "delta#";

/// A long history: each turn is one user message and the model's answer in `ANSWERS_PER_TURN`
/// agent messages, written through `turn/start` like any other turn.
const HISTORY_TURNS: usize = 100;
const ANSWERS_PER_TURN: usize = 99;
/// Stops writing history once this is spent, and says so.
const HISTORY_BUDGET: Duration = Duration::from_secs(60);
const ANSWER: &str = "The change compiles and the tests pass; next I will look at the error \
                      paths and add a test for the torn line.";
const COLD_RESUMES: usize = 5;
const WARM_RESUMES_PER_START: usize = 4;
/// Turns timed on the long thread once it is resumed.
const LONG_THREAD_TURNS: usize = 10;

const LOADED_THREADS: usize = 1_000;
/// Requests timed per page method, catalog method and listing.
const PAGE_SAMPLES: usize = 200;
/// Threads with one turn each, for `thread/list`.
const LISTED_THREADS: usize = 1_000;

const LATENCY: LatencyTable = LatencyTable::new(58, 10);
const FAN_OUT: Table<6> = Table::new([36, 7, 19, 10, 16, 10]);
const MEMORY: Table<2> = Table::new([58, 12]);

/// Timestamps of the traffic through a [`Tap`] since it was last taken.
#[derive(Default)]
struct Traffic {
    /// Reads of request bytes from tether.
    sent: Vec<Instant>,
    /// Reads of response bytes from the upstream.
    received: Vec<Instant>,
    /// The first read from the upstream that completed marker `delta#i;`, by `i`.
    deltas: HashMap<usize, Instant>,
}

impl Traffic {
    /// Everything `tap` recorded since it was last taken.
    fn take(tap: &Tap) -> Traffic {
        let mut traffic = Traffic::default();
        // The end of each connection's previous read, in case a marker straddles two reads.
        let mut windows: HashMap<usize, Vec<u8>> = HashMap::new();
        for read in tap.take() {
            match read.direction {
                Direction::ToUpstream => traffic.sent.push(read.at),
                Direction::FromUpstream => {
                    traffic.received.push(read.at);
                    let window = windows.entry(read.connection).or_default();
                    window.extend_from_slice(&read.bytes);
                    for piece in String::from_utf8_lossy(window).split(MARKER).skip(1) {
                        if let Some(index) = marker_index(piece) {
                            traffic.deltas.entry(index).or_insert(read.at);
                        }
                    }
                    window.drain(..window.len().saturating_sub(2 * MARKER.len()));
                }
            }
        }
        traffic
    }
}

/// `i` from the text right after a [`MARKER`]: `i;…`.
fn marker_index(after_marker: &str) -> Option<usize> {
    after_marker.split_once(';')?.0.parse().ok()
}

/// A fresh home under `scratch` whose one model provider is at `base_url`.
fn home(scratch: &Path, name: &str, base_url: &str) -> PathBuf {
    let home = scratch.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let config = format!(
        "model = \"mock-model\"\nmodel_provider = \"mock\"\nthread_unload_delay_secs = 600\n\
         [model_providers.mock]\nname = \"Mock\"\nbase_url = \"{base_url}\"\n\
         wire_api = \"responses\"\nsupports_websockets = false\nrequest_max_retries = 0\n\
         stream_max_retries = 0\nstream_idle_timeout_ms = 5000\n"
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
    home
}

async fn serve(home: &Path, args: &[&str]) -> TetherProcess {
    TetherProcess::start(Path::new(TETHER), home, args, &[]).await
}

/// A client past `initialize`. Broadcasts may arrive before the response; they are skipped.
async fn initialized(mut client: Client) -> Client {
    let params = json!({"clientInfo": {"name": "bench", "version": "1.0"}});
    call(&mut client, "init", "initialize", params).await;
    client
}

async fn kill(mut process: TetherProcess) {
    process.signal("KILL");
    process.wait(EXIT).await;
}

/// A message as the bench received it: when (before decoding), how big, and what.
struct Received {
    at: Instant,
    bytes: usize,
    message: Value,
}

/// Receives until a message satisfies `wanted` and returns it. Raw frames, no schema check: the
/// bench's own work stays small next to what it measures.
async fn until(client: &mut Client, wanted: impl Fn(&Value) -> bool) -> Received {
    loop {
        let Frame::Text(text) = client.frame().await else {
            panic!("tether closed the connection");
        };
        let at = Instant::now();
        let message: Value = serde_json::from_str(&text).unwrap();
        if wanted(&message) {
            return Received {
                at,
                bytes: text.len(),
                message,
            };
        }
    }
}

fn is_method(method: &str) -> impl Fn(&Value) -> bool + '_ {
    move |message| message["method"] == method
}

/// Sends a request and waits for its response, skipping notifications; an error fails the bench.
/// Returns the time to the response and the response.
async fn call(client: &mut Client, id: &str, method: &str, params: Value) -> (Duration, Received) {
    let sent = Instant::now();
    client.request(id, method, params);
    let response = until(client, |m| m["id"] == id && m.get("method").is_none()).await;
    assert!(
        response.message["result"].is_object(),
        "{method}: {}",
        response.message
    );
    (response.at - sent, response)
}

/// `thread/start`, then its `thread/started`; returns the thread.
async fn start_thread(client: &mut Client) -> Value {
    let (_, response) = call(client, "start", "thread/start", json!({})).await;
    until(client, is_method("thread/started")).await;
    response.message["result"]["thread"].clone()
}

fn turn_params(thread_id: &str, text: &str) -> Value {
    json!({"threadId": thread_id, "input": [{"type": "text", "text": text, "text_elements": []}]})
}

/// The response of `message_response` with a `DELTA_PAUSE` after each of `DELTAS` deltas.
fn paced_deltas(response_id: &str) -> Vec<Step> {
    let chunks: Vec<String> = (0..DELTAS).map(|i| format!("{MARKER}{i}; ")).collect();
    let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
    message_response(response_id, &chunks)
        .into_iter()
        .flat_map(|step| {
            let pause = match &step {
                Step::Event(event) if event["type"] == "response.output_text.delta" => {
                    Some(Step::Pause(DELTA_PAUSE))
                }
                _ => None,
            };
            std::iter::once(step).chain(pause)
        })
        .collect()
}

/// A response of `count` agent messages, each added, streamed in one delta and done.
fn answers(response_id: &str, count: usize) -> Vec<Step> {
    let created = message_response(response_id, &[]).swap_remove(0);
    let messages = (0..count).flat_map(|index| {
        let text = format!("{index}: {ANSWER}");
        // [created, added, delta, done, completed] of a one-message response: the middle three.
        message_response(&format!("{response_id}-{index}"), &[&text])
            .into_iter()
            .skip(1)
            .take(3)
    });
    std::iter::once(created)
        .chain(messages)
        .chain([completed(response_id)])
        .collect()
}

/// One turn, timed at the client and at the tap.
struct TurnTimes {
    /// `turn/start` sent → `turn/completed` received.
    total: Duration,
    /// `turn/start` sent → the first request byte through the tap.
    to_upstream: Duration,
    /// The first request byte → the last response byte before `turn/completed`, at the tap.
    upstream: Duration,
}

/// Runs one turn on `thread_id` that the upstream answers at once.
async fn timed_turn(
    upstream: &ResponsesServer,
    tap: &Tap,
    client: &mut Client,
    thread_id: &str,
    id: &str,
) -> TurnTimes {
    let chunks = ["Hello", " from", " the", " bench"];
    upstream.push(Script::Stream(message_response(id, &chunks)));
    tap.take();
    let sent = Instant::now();
    client.request(id, "turn/start", turn_params(thread_id, "go on"));
    let done = until(client, is_method("turn/completed")).await.at;
    let traffic = Traffic::take(tap);
    let first_sent = *traffic.sent.iter().find(|&&at| at >= sent).unwrap();
    let last_received = *traffic.received.iter().rfind(|&&at| at <= done).unwrap();
    TurnTimes {
        total: done - sent,
        to_upstream: first_sent - sent,
        upstream: last_received - first_sent,
    }
}

fn column(turns: &[TurnTimes], value: impl Fn(&TurnTimes) -> Duration) -> Vec<Duration> {
    turns.iter().map(value).collect()
}

/// Part 1: `TURNS` turns on one thread over stdio, the upstream answering at once.
async fn turn_overhead(scratch: &Path) {
    let upstream = ResponsesServer::start().await;
    let tap = Tap::start(&upstream.base_url()).await;
    let mut process = serve(&home(scratch, "turns", &tap.base_url()), &[]).await;
    let mut client = initialized(process.stdio()).await;
    let thread = start_thread(&mut client).await;
    let thread_id = thread["id"].as_str().unwrap();
    let mut turns = Vec::with_capacity(TURNS);
    for turn in 0..WARMUP_TURNS + TURNS {
        let times = timed_turn(&upstream, &tap, &mut client, thread_id, &format!("t{turn}")).await;
        if turn >= WARMUP_TURNS {
            turns.push(times);
        }
    }
    LATENCY.header(&format!(
        "per turn: {TURNS} turns on one thread, stdio, instant upstream"
    ));
    LATENCY.row(
        "turn/start sent → turn/completed received",
        column(&turns, |t| t.total),
    );
    LATENCY.row(
        "turn/start sent → first request byte at the tap",
        column(&turns, |t| t.to_upstream),
    );
    LATENCY.row(
        "upstream: first request byte → last response byte",
        column(&turns, |t| t.upstream),
    );
    LATENCY.row(
        "server overhead: total − upstream",
        column(&turns, |t| t.total - t.upstream),
    );
    println!(
        "\ntap: a TCP forwarder between tether and the Responses server timestamping every read; \
         upstream: its first request byte to its last response byte of the turn."
    );
}

/// One subscriber's stream until `turn/completed`: when each delta arrived, by index. The owner
/// sends `turn` first, so every reader is running before the first delta.
async fn delta_arrivals(mut client: Client, turn: Option<Value>) -> Vec<Option<Instant>> {
    if let Some(turn) = turn {
        client.send(turn);
    }
    let mut arrivals = vec![None; DELTAS];
    loop {
        let received = until(&mut client, |m| {
            m["method"] == "item/agentMessage/delta" || m["method"] == "turn/completed"
        })
        .await;
        let params = &received.message["params"];
        let Some(delta) = params["delta"].as_str() else {
            return arrivals;
        };
        let index = delta
            .strip_prefix(MARKER)
            .and_then(marker_index)
            .unwrap_or_else(|| panic!("unexpected delta {delta:?}"));
        arrivals[index] = Some(received.at);
    }
}

/// Part 2: latencies of one streamed turn to `subscribers` WebSocket subscribers of one thread:
/// from the tap forwarding each delta to each client receiving it, and behind the first client.
async fn fan_out_run(scratch: &Path, subscribers: usize) -> (Vec<Duration>, Vec<Duration>) {
    let upstream = ResponsesServer::start().await;
    let tap = Tap::start(&upstream.base_url()).await;
    let home = home(scratch, &format!("fan-out-{subscribers}"), &tap.base_url());
    let process = serve(&home, &WS).await;
    let mut owner = initialized(process.ws().await).await;
    let thread = start_thread(&mut owner).await;
    let thread_id = thread["id"].as_str().unwrap();
    let others: Vec<Client> = stream::iter(1..subscribers)
        .map(|_| async {
            let mut client = initialized(process.ws().await).await;
            let params = json!({"threadId": thread_id});
            call(&mut client, "resume", "thread/resume", params).await;
            client
        })
        .buffer_unordered(16)
        .collect()
        .await;
    upstream.push(Script::Stream(paced_deltas("r1")));
    let mut readers: Vec<_> = others
        .into_iter()
        .map(|client| tokio::spawn(delta_arrivals(client, None)))
        .collect();
    let turn = json!({"id": "go", "method": "turn/start", "params": turn_params(thread_id, "go")});
    readers.push(tokio::spawn(delta_arrivals(owner, Some(turn))));
    let mut arrivals = Vec::new();
    for reader in readers {
        arrivals.push(reader.await.unwrap());
    }
    let forwarded = Traffic::take(&tap).deltas;
    let (mut from_tap, mut behind_first) = (Vec::new(), Vec::new());
    for index in 0..DELTAS {
        let seen: Vec<Instant> = arrivals
            .iter()
            .map(|a| a[index].unwrap_or_else(|| panic!("delta {index} never arrived")))
            .collect();
        let first = *seen.iter().min().unwrap();
        let tapped = forwarded[&index];
        for at in seen {
            from_tap.push(at.saturating_duration_since(tapped));
            behind_first.push(at - first);
        }
    }
    (from_tap, behind_first)
}

async fn fan_out(scratch: &Path) {
    FAN_OUT.header([
        &format!("fan-out: {DELTAS} deltas {DELTA_PAUSE:?} apart, ws"),
        &"samples",
        &"upstream→client p50",
        &"p99",
        &"behind first p50",
        &"p99",
    ]);
    for subscribers in SUBSCRIBERS {
        let (from_tap, behind_first) = fan_out_run(scratch, subscribers).await;
        let (from_tap, behind_first) = (Samples::new(from_tap), Samples::new(behind_first));
        let plural = if subscribers == 1 { "" } else { "s" };
        FAN_OUT.row([
            &format!("{subscribers} subscriber{plural}"),
            &from_tap.count(),
            &ms(from_tap.at(0.5)),
            &ms(from_tap.at(0.99)),
            &ms(behind_first.at(0.5)),
            &ms(behind_first.at(0.99)),
        ]);
    }
    println!(
        "\nupstream→client: from the tap forwarding a delta's bytes from the upstream to a client \
         receiving its notification; behind first: after the first subscriber to receive it."
    );
}

/// Writes up to `HISTORY_TURNS` turns (fewer if `HISTORY_BUDGET` runs out) of one user message
/// and `ANSWERS_PER_TURN` agent messages on a new thread over stdio, then kills the server.
/// Returns the thread, the turns written and the time it took.
async fn write_history(home: &Path, upstream: &ResponsesServer) -> (Value, usize, Duration) {
    let mut process = serve(home, &[]).await;
    let mut client = initialized(process.stdio()).await;
    let thread = start_thread(&mut client).await;
    let thread_id = thread["id"].as_str().unwrap();
    let writing = Instant::now();
    let mut turns = 0;
    while turns < HISTORY_TURNS && writing.elapsed() < HISTORY_BUDGET {
        let id = format!("h{turns}");
        upstream.push(Script::Stream(answers(&id, ANSWERS_PER_TURN)));
        let params = turn_params(thread_id, &format!("turn {turns}: go on"));
        client.request(id.as_str(), "turn/start", params);
        until(&mut client, is_method("turn/completed")).await;
        turns += 1;
    }
    let written = writing.elapsed();
    kill(process).await;
    (thread, turns, written)
}

/// Part 3: a thread with a long history written through real turns: `thread/resume` cold (after
/// a restart) and warm (from another connection while loaded), then new turns on it.
async fn long_thread(scratch: &Path) {
    let upstream = ResponsesServer::start().await;
    let tap = Tap::start(&upstream.base_url()).await;
    let home = home(scratch, "long", &tap.base_url());
    let (thread, turns, written) = write_history(&home, &upstream).await;
    let thread_id = thread["id"].as_str().unwrap();
    let items = turns * (1 + ANSWERS_PER_TURN);
    let resume = json!({"threadId": thread_id});
    let (mut cold, mut warm, mut bytes) = (Vec::new(), Vec::new(), 0);
    for _ in 0..COLD_RESUMES {
        let process = serve(&home, &WS).await;
        let mut first = initialized(process.ws().await).await;
        let (elapsed, response) = call(&mut first, "resume", "thread/resume", resume.clone()).await;
        cold.push(elapsed);
        let resumed: usize = response.message["result"]["thread"]["turns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|turn| turn["items"].as_array().unwrap().len())
            .sum();
        assert_eq!(resumed, items, "every item comes back");
        bytes = response.bytes;
        for _ in 0..WARM_RESUMES_PER_START {
            let mut other = initialized(process.ws().await).await;
            let (elapsed, _) = call(&mut other, "resume", "thread/resume", resume.clone()).await;
            warm.push(elapsed);
        }
        kill(process).await;
    }
    // New turns add items, so they come after the resumes.
    let mut process = serve(&home, &[]).await;
    let mut client = initialized(process.stdio()).await;
    call(&mut client, "resume", "thread/resume", resume).await;
    let (mut turn_pages, mut item_pages) = (Vec::new(), Vec::new());
    for page in 0..PAGE_SAMPLES {
        let params = json!({"threadId": thread_id, "limit": 25, "sortDirection": "desc", "itemsView": "summary"});
        turn_pages.push(
            call(
                &mut client,
                &format!("tp{page}"),
                "thread/turns/list",
                params,
            )
            .await
            .0,
        );
        let params = json!({"threadId": thread_id, "limit": 100, "sortDirection": "desc"});
        item_pages.push(
            call(
                &mut client,
                &format!("ip{page}"),
                "thread/items/list",
                params,
            )
            .await
            .0,
        );
    }
    let mut later = Vec::with_capacity(LONG_THREAD_TURNS);
    for turn in 0..LONG_THREAD_TURNS {
        let id = format!("l{turn}");
        later.push(timed_turn(&upstream, &tap, &mut client, thread_id, &id).await);
    }

    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    LATENCY.header(&format!(
        "long thread: {items} items, {turns} turns, {:.1} MiB resume",
        mib(bytes as u64)
    ));
    LATENCY.row(
        "cold resume (ws): restarted, thread/resume → response",
        cold,
    );
    LATENCY.row("warm resume (ws): loaded, thread/resume → response", warm);
    LATENCY.row("thread/turns/list, 25 newest turns (stdio)", turn_pages);
    LATENCY.row("thread/items/list, 100 newest items (stdio)", item_pages);
    LATENCY.row(
        "turn on it (stdio): turn/start → first request byte",
        column(&later, |t| t.to_upstream),
    );
    LATENCY.row(
        "turn on it (stdio): turn/start → turn/completed",
        column(&later, |t| t.total),
    );
    LATENCY.row(
        "turn on it (stdio): server overhead, total − upstream",
        column(&later, |t| t.total - t.upstream),
    );
    let log = std::fs::metadata(thread["path"].as_str().unwrap())
        .unwrap()
        .len();
    println!(
        "\nhistory: {turns} turns of 1 user message + {ANSWERS_PER_TURN} agent messages each \
         (one upstream response of {ANSWERS_PER_TURN} messages per turn), written through \
         turn/start over stdio in {:.1} s; log {:.1} MiB.",
        written.as_secs_f64(),
        mib(log)
    );
    if turns < HISTORY_TURNS {
        println!(
            "note: the {HISTORY_BUDGET:?} budget allowed only {turns} of {HISTORY_TURNS} turns: \
             {items} items, not {}.",
            HISTORY_TURNS * (1 + ANSWERS_PER_TURN)
        );
    }
}

/// Part 4: VmRSS before and after `LOADED_THREADS` `thread/start`s over one connection.
async fn memory(scratch: &Path) {
    let upstream = ResponsesServer::start().await;
    let mut process = serve(&home(scratch, "memory", &upstream.base_url()), &[]).await;
    let mut client = initialized(process.stdio()).await;
    // The first thread opens what every later one shares; it is not counted.
    start_thread(&mut client).await;
    bench::settle().await;
    let before = bench::rss_kib(process.pid());
    let mut starts = Vec::with_capacity(LOADED_THREADS);
    for _ in 0..LOADED_THREADS {
        let started = Instant::now();
        start_thread(&mut client).await;
        starts.push(started.elapsed());
    }
    bench::settle().await;
    let after = bench::rss_kib(process.pid());
    MEMORY.header([&"memory (VmRSS of the server), stdio", &""]);
    MEMORY.row([&"1 thread loaded", &bench::mib(before)]);
    MEMORY.row([
        &format!("{} threads loaded", LOADED_THREADS + 1),
        &bench::mib(after),
    ]);
    let per = after.saturating_sub(before) as f64 / LOADED_THREADS as f64;
    MEMORY.row([&"per loaded thread", &format!("{per:.1} KiB")]);
    println!();
    LATENCY.header("thread/start, sequential, one stdio connection");
    LATENCY.row("thread/start sent → thread/started received", starts);
}

/// Part 5: `model/list` and `thread/list` over `LISTED_THREADS` threads that each had a turn.
async fn listings(scratch: &Path) {
    let upstream = ResponsesServer::start().await;
    let mut process = serve(&home(scratch, "listings", &upstream.base_url()), &[]).await;
    let mut client = initialized(process.stdio()).await;
    for n in 0..LISTED_THREADS {
        let thread = start_thread(&mut client).await;
        let id = format!("t{n}");
        upstream.push(Script::Stream(answers(&id, 1)));
        client.request(
            id.as_str(),
            "turn/start",
            turn_params(thread["id"].as_str().unwrap(), "hi"),
        );
        until(&mut client, is_method("turn/completed")).await;
    }
    let (mut models, mut lists) = (Vec::new(), Vec::new());
    for n in 0..PAGE_SAMPLES {
        let params = json!({"includeHidden": true});
        models.push(
            call(&mut client, &format!("m{n}"), "model/list", params)
                .await
                .0,
        );
        let params = json!({"limit": 100, "sortKey": "updated_at"});
        lists.push(
            call(&mut client, &format!("l{n}"), "thread/list", params)
                .await
                .0,
        );
    }
    LATENCY.header(&format!("listings, stdio, {LISTED_THREADS} threads"));
    LATENCY.row(
        "model/list (bundled catalog, provider /models cached)",
        models,
    );
    LATENCY.row("thread/list, 100 of 1,000 threads", lists);
    kill(process).await;
}

async fn run() {
    let scratch = tempfile::tempdir().unwrap();
    listings(scratch.path()).await;
    println!();
    turn_overhead(scratch.path()).await;
    println!();
    fan_out(scratch.path()).await;
    println!();
    long_thread(scratch.path()).await;
    println!();
    memory(scratch.path()).await;
}

fn main() {
    bench::run_within(LIMIT, run());
}
