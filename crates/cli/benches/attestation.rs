//! Client attestation of `tether serve` measured end to end: two real processes over stdio, both
//! with first-party ChatGPT auth, each reaching its own loopback Responses server
//! (`tether_testkit::ResponsesServer`) through a byte tap that timestamps the request bytes tether
//! sends. One process's client declares `requestAttestation` and answers every
//! `attestation/generate` at once; the other's does not, so nobody is asked. Turns alternate
//! between the two; the difference of the medians of `turn/start` → first upstream request byte is
//! the latency attestation adds to each upstream request (target: under 1 ms p50 over stdio).
//! Turn latency (`turn/start` → `turn/completed`) is compared the same way.
//! Run: `cargo bench -p tether-cli --bench attestation`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_testkit::bench::{self, LatencyTable, ms};
use tether_testkit::{
    Client, Direction, Frame, ResponsesServer, Script, Tap, TetherProcess, message_response,
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
/// The whole bench fails past this.
const LIMIT: Duration = Duration::from_secs(120);
/// Turns per side before measuring (connection pool, caches, allocator).
const WARMUP_TURNS: usize = 20;
/// Measured turns per side.
const TURNS: usize = 300;
const TOKEN: &str = "v1.bench-attestation-token";
const HEADER: &str = "x-oai-attestation";
/// The issue's budget for the added latency, p50 over stdio.
const TARGET: Duration = Duration::from_millis(1);
const LATENCY: LatencyTable = LatencyTable::new(58, 10);

/// A fresh home under `scratch` whose one provider, at `base_url`, requires OpenAI auth, with a
/// ChatGPT login in `auth.json`: every request to it is first-party.
fn home(scratch: &Path, name: &str, base_url: &str) -> PathBuf {
    let home = scratch.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let config = format!(
        "model = \"mock-model\"\nmodel_provider = \"mock\"\n[model_providers.mock]\n\
         name = \"Mock\"\nbase_url = \"{base_url}\"\nwire_api = \"responses\"\n\
         requires_openai_auth = true\nsupports_websockets = false\nrequest_max_retries = 0\n\
         stream_max_retries = 0\nstream_idle_timeout_ms = 5000\n"
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
    let auth = json!({"auth_mode": "chatgpt", "tokens": {"access_token": "at-bench", "account_id": "acct-bench"}});
    std::fs::write(home.join("auth.json"), auth.to_string()).unwrap();
    home
}

/// The next message and when it arrived (before decoding). Raw frames, no schema check: the
/// bench's own work stays small next to what it measures.
async fn next(client: &mut Client) -> (Instant, Value) {
    let Frame::Text(text) = client.frame().await else {
        panic!("tether closed the connection");
    };
    let at = Instant::now();
    (at, serde_json::from_str(&text).unwrap())
}

/// Sends a request and returns its result, skipping notifications; an error fails the bench.
async fn call(client: &mut Client, id: &str, method: &str, params: Value) -> Value {
    client.request(id, method, params);
    loop {
        let (_, message) = next(client).await;
        if message["id"] == id && message.get("method").is_none() {
            assert!(message["result"].is_object(), "{method}: {message}");
            return message["result"].clone();
        }
    }
}

/// One turn, timed at the client and at the tap.
struct TurnTimes {
    /// `turn/start` sent → `turn/completed` received.
    total: Duration,
    /// `turn/start` sent → the first request byte through the tap.
    to_upstream: Duration,
    /// With attestation: `turn/start` sent → `attestation/generate` received.
    asked: Option<Duration>,
    /// With attestation: `attestation/generate` received → the first request byte at the tap
    /// (the answer's way back through the server, the header, and the HTTP send).
    answered: Option<Duration>,
}

/// One `tether serve` over stdio with its upstream, tap, client and thread.
struct Side {
    attest: bool,
    upstream: ResponsesServer,
    tap: Tap,
    client: Client,
    thread_id: String,
    // Killed on drop, so it lives as long as the side.
    _process: TetherProcess,
}

impl Side {
    async fn start(scratch: &Path, attest: bool) -> Side {
        let upstream = ResponsesServer::start().await;
        let tap = Tap::start(&upstream.base_url()).await;
        let name = if attest { "on" } else { "off" };
        let home = home(scratch, name, &tap.base_url());
        let mut process = TetherProcess::start(Path::new(TETHER), &home, &[], &[]).await;
        let mut client = process.stdio();
        let params = json!({
            "clientInfo": {"name": "bench", "version": "1.0"},
            "capabilities": {"requestAttestation": attest},
        });
        call(&mut client, "init", "initialize", params).await;
        let result = call(&mut client, "start", "thread/start", json!({})).await;
        let thread_id = result["thread"]["id"].as_str().unwrap().to_owned();
        Side {
            attest,
            upstream,
            tap,
            client,
            thread_id,
            _process: process,
        }
    }

    /// Runs one turn that the upstream answers at once, answering `attestation/generate` as soon
    /// as it arrives.
    async fn turn(&mut self, id: &str) -> TurnTimes {
        let chunks = ["Hello", " from", " the", " bench"];
        self.upstream
            .push(Script::Stream(message_response(id, &chunks)));
        self.tap.take();
        let params = json!({
            "threadId": self.thread_id,
            "input": [{"type": "text", "text": "go on", "text_elements": []}],
        });
        let sent = Instant::now();
        self.client.request(id, "turn/start", params);
        let mut asked = None;
        let done = loop {
            let (at, message) = next(&mut self.client).await;
            match message["method"].as_str() {
                Some("attestation/generate") => {
                    assert!(self.attest && asked.is_none(), "unexpected {message}");
                    let answer = json!({"id": message["id"], "result": {"token": TOKEN}});
                    self.client.send_raw(answer.to_string());
                    asked = Some(at);
                }
                Some("turn/completed") => break at,
                _ => assert!(message.get("error").is_none(), "turn/start: {message}"),
            }
        };
        assert_eq!(asked.is_some(), self.attest, "attestation/generate asked");
        let first_sent = self
            .tap
            .take()
            .into_iter()
            .filter(|read| read.direction == Direction::ToUpstream)
            .map(|read| read.at)
            .find(|&at| at >= sent)
            .expect("no upstream request in the turn");
        TurnTimes {
            total: done - sent,
            to_upstream: first_sent - sent,
            asked: asked.map(|at| at - sent),
            answered: asked.map(|at| first_sent.saturating_duration_since(at)),
        }
    }

    /// How many upstream requests carried each `x-oai-attestation` value (or none).
    fn headers(&self) -> BTreeMap<String, usize> {
        let mut tally = BTreeMap::new();
        for request in self.upstream.requests() {
            let value = request.header(HEADER).unwrap_or("(no header)").to_owned();
            *tally.entry(value).or_default() += 1;
        }
        tally
    }
}

fn column(turns: &[TurnTimes], value: impl Fn(&TurnTimes) -> Option<Duration>) -> Vec<Duration> {
    turns.iter().filter_map(value).collect()
}

/// `on − off`, signed, in ms.
fn difference(on: Duration, off: Duration) -> String {
    format!("{:+.3} ms", (on.as_secs_f64() - off.as_secs_f64()) * 1e3)
}

async fn run() {
    let scratch = tempfile::tempdir().unwrap();
    let mut on = Side::start(scratch.path(), true).await;
    let mut off = Side::start(scratch.path(), false).await;
    let (mut on_turns, mut off_turns) = (Vec::new(), Vec::new());
    for turn in 0..WARMUP_TURNS + TURNS {
        // Alternating which side goes first keeps any ordering effect out of the difference.
        let (on_times, off_times) = if turn % 2 == 0 {
            let on_times = on.turn(&format!("on{turn}")).await;
            (on_times, off.turn(&format!("off{turn}")).await)
        } else {
            let off_times = off.turn(&format!("off{turn}")).await;
            (on.turn(&format!("on{turn}")).await, off_times)
        };
        if turn >= WARMUP_TURNS {
            on_turns.push(on_times);
            off_turns.push(off_times);
        }
    }

    LATENCY.header(&format!(
        "added latency per upstream request: {TURNS} turns each, stdio"
    ));
    let off_upstream = LATENCY.row(
        "off: turn/start sent → first request byte at the tap",
        column(&off_turns, |t| Some(t.to_upstream)),
    );
    let on_upstream = LATENCY.row(
        "on: turn/start sent → first request byte at the tap",
        column(&on_turns, |t| Some(t.to_upstream)),
    );
    LATENCY.row(
        "on: turn/start sent → attestation/generate received",
        column(&on_turns, |t| t.asked),
    );
    LATENCY.row(
        "on: attestation/generate received → first request byte",
        column(&on_turns, |t| t.answered),
    );
    let added = on_upstream.saturating_sub(off_upstream);
    let verdict = if added < TARGET { "met" } else { "NOT met" };
    println!(
        "\nadded latency per upstream request (median on − median off): {}; target < {} p50: \
         {verdict}.",
        difference(on_upstream, off_upstream),
        ms(TARGET),
    );

    println!();
    LATENCY.header(&format!(
        "turn latency: {TURNS} turns each, stdio, instant upstream"
    ));
    let off_total = LATENCY.row(
        "off: turn/start sent → turn/completed received",
        column(&off_turns, |t| Some(t.total)),
    );
    let on_total = LATENCY.row(
        "on: turn/start sent → turn/completed received",
        column(&on_turns, |t| Some(t.total)),
    );
    println!(
        "\nadded turn latency (median on − median off): {}.",
        difference(on_total, off_total)
    );

    println!();
    for (name, side) in [("on", &on), ("off", &off)] {
        for (value, count) in side.headers() {
            println!("{name}: {count} upstream requests with {HEADER}: {value}");
        }
    }
    let expected = format!(r#"{{"v":1,"s":0,"t":"{TOKEN}"}}"#);
    assert_eq!(
        on.headers().get(&expected),
        Some(&(WARMUP_TURNS + TURNS)),
        "every attested request carries the token"
    );
    assert_eq!(
        off.headers().get("(no header)"),
        Some(&(WARMUP_TURNS + TURNS)),
        "no request without the capability carries the header"
    );
    println!(
        "\non: the client declared requestAttestation and answered each attestation/generate at \
         once; off: same ChatGPT auth, no capability, so nobody is asked. Both are separate \
         processes with their own upstream; turns alternate between them. tap: a TCP forwarder \
         between tether and the Responses server timestamping every read of request bytes."
    );
}

fn main() {
    bench::run_within(LIMIT, run());
}
