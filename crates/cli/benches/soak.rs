//! A bounded soak of delivery under back-pressure: one `tether serve` process, 50 WebSocket
//! subscribers of one thread (readers, slow readers, stalled readers) and turns that stream large
//! deltas from a loopback upstream. Prints the server's peak resident memory, how late healthy
//! readers got each delta compared with the first reader to get it, and who was disconnected.
//! Runs twice, the healthy readers alone and then beside slow and stalled readers, and compares
//! their p99. Run: `cargo bench -p tether-cli --bench soak` (about a minute).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tether_testkit::bench::{self, LatencyTable, Table};
use tether_testkit::{ResponsesServer, Script, Step, TetherProcess, completed};
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const READERS: usize = 30;
const SLOW_READERS: usize = 10;
const STALLED: usize = 10;
/// How long a slow reader sleeps after each message.
const SLOW_READ: Duration = Duration::from_millis(1);
const TURNS: usize = 3;
const DELTAS: usize = 1_000;
const DELTA_BYTES: usize = 4 * 1024;
/// The upstream pauses this long after every [`BURST`] deltas: a model streams at a rate (here at
/// most 4 MiB/s), not all at once.
const PAUSE: Duration = Duration::from_millis(10);
const BURST: usize = 10;
const QUEUE_BYTES: usize = 2 * 1024 * 1024;
const WAIT: Duration = Duration::from_secs(20);
const LATENCY: LatencyTable = LatencyTable::new(46, 9);
const RESULTS: Table<2> = Table::new([46, 16]);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Reader,
    Slow,
    Stalled,
}

/// What one subscriber saw: when each delta arrived (by turn and index), and whether the server
/// closed it.
struct Seen {
    kind: Kind,
    arrivals: Vec<Vec<Option<Instant>>>,
    closed: bool,
}

/// Each delta starts with `d{index};` so a reader finds its index without decoding the frame.
fn stream(turn: usize) -> Script {
    let item = format!("msg_{turn}");
    let mut steps = vec![
        Step::Event(json!({"type": "response.created", "response": {"id": item}})),
        Step::Event(
            json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": item, "role": "assistant", "content": []}}),
        ),
    ];
    for index in 0..DELTAS {
        let mut delta = format!("d{index};");
        delta.extend(std::iter::repeat_n('x', DELTA_BYTES - delta.len()));
        steps.push(Step::Event(
            json!({"type": "response.output_text.delta", "item_id": item, "output_index": 0, "content_index": 0, "delta": delta}),
        ));
        if index % BURST == BURST - 1 {
            steps.push(Step::Pause(PAUSE));
        }
    }
    steps.push(Step::Event(
        json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "message", "id": item, "role": "assistant", "content": [{"type": "output_text", "text": "done"}]}}),
    ));
    steps.push(completed(&item));
    Script::Stream(steps)
}

fn delta_index(text: &str) -> Option<usize> {
    let start = text.find("\"delta\":\"d")? + "\"delta\":\"d".len();
    let end = start + text[start..].find(';')?;
    text[start..end].parse().ok()
}

async fn connect(address: &str) -> Socket {
    tokio_tungstenite::connect_async(format!("ws://{address}/"))
        .await
        .unwrap()
        .0
}

async fn call(socket: &mut Socket, request: Value) -> Value {
    socket
        .send(Message::Text(request.to_string().into()))
        .await
        .unwrap();
    loop {
        let next = tokio::time::timeout(WAIT, socket.next()).await;
        let Ok(Some(Ok(Message::Text(text)))) = next else {
            panic!("no response to {request}")
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["id"] == request["id"] {
            return message;
        }
    }
}

async fn subscriber(address: String, thread_id: String, kind: Kind, ready: Arc<Barrier>) -> Seen {
    let mut socket = connect(&address).await;
    call(
        &mut socket,
        json!({"id": 0, "method": "initialize", "params": {"clientInfo": {"name": "soak", "version": "1"}}}),
    )
    .await;
    call(
        &mut socket,
        json!({"id": 1, "method": "thread/resume", "params": {"threadId": thread_id}}),
    )
    .await;
    ready.wait().await;
    let mut seen = Seen {
        kind,
        arrivals: vec![vec![None; DELTAS]; TURNS],
        closed: false,
    };
    if kind == Kind::Stalled {
        // Never reads again; the socket stays open until the bench aborts this task.
        std::future::pending::<()>().await;
    }
    let mut turn = 0;
    while turn < TURNS {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let at = Instant::now();
                if let Some(index) = delta_index(&text) {
                    seen.arrivals[turn][index] = Some(at);
                } else if text[..text.len().min(80)].contains("\"turn/completed\"") {
                    turn += 1;
                }
                if kind == Kind::Slow {
                    tokio::time::sleep(SLOW_READ).await;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                seen.closed = true;
                break;
            }
        }
    }
    seen
}

/// Who subscribes besides the `READERS` healthy readers.
#[derive(Clone, Copy)]
struct Mix {
    slow: usize,
    stalled: usize,
}

/// One soak run; returns the healthy readers' p99 lateness and the server's peak memory (KiB).
async fn soak(mix: Mix) -> (Duration, u64) {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let config = format!(
        "model = \"mock-model\"\nmodel_provider = \"mock\"\nthread_unload_delay_secs = 600\n\
         [model_providers.mock]\nname = \"Mock\"\nbase_url = \"{}\"\nwire_api = \"responses\"\n\
         request_max_retries = 0\nstream_max_retries = 0\nstream_idle_timeout_ms = 15000\n",
        upstream.base_url()
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let queue_bytes = QUEUE_BYTES.to_string();
    let process = TetherProcess::start(
        Path::new(TETHER),
        home.path(),
        &[
            "--listen",
            "ws://127.0.0.1:0",
            "--outbound-queue-bytes",
            &queue_bytes,
        ],
        &[("RUST_LOG", "warn")],
    )
    .await;
    let address = process.ws_address();
    let mut driver = connect(&address).await;
    call(
        &mut driver,
        json!({"id": 0, "method": "initialize", "params": {"clientInfo": {"name": "driver", "version": "1"}}}),
    )
    .await;
    let started = call(
        &mut driver,
        json!({"id": 1, "method": "thread/start", "params": {}}),
    )
    .await;
    let thread_id = started["result"]["thread"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let kinds = std::iter::repeat_n(Kind::Reader, READERS)
        .chain(std::iter::repeat_n(Kind::Slow, mix.slow))
        .chain(std::iter::repeat_n(Kind::Stalled, mix.stalled));
    let ready = Arc::new(Barrier::new(READERS + mix.slow + mix.stalled + 1));
    let subscribers: Vec<_> = kinds
        .map(|kind| {
            let task = tokio::spawn(subscriber(
                address.clone(),
                thread_id.clone(),
                kind,
                Arc::clone(&ready),
            ));
            (kind, task)
        })
        .collect();
    ready.wait().await;
    let before = bench::rss_kib(process.pid());
    let began = Instant::now();
    for turn in 0..TURNS {
        upstream.push(stream(turn));
        driver
            .send(Message::Text(
                json!({"id": 10 + turn, "method": "turn/start", "params": {"threadId": thread_id, "input": [{"type": "text", "text": "go", "text_elements": []}]}})
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
        loop {
            let next = tokio::time::timeout(WAIT, driver.next()).await;
            let Ok(Some(Ok(Message::Text(text)))) = next else {
                panic!("the driver stopped receiving")
            };
            if text[..text.len().min(80)].contains("\"turn/completed\"") {
                break;
            }
        }
        eprintln!("turn {turn} streamed after {:?}", began.elapsed());
    }
    let streamed = began.elapsed();
    let mut seen = Vec::new();
    for (kind, task) in subscribers {
        if kind == Kind::Stalled {
            // Never reads, so never ends.
            task.abort();
            continue;
        }
        let ended = tokio::time::timeout(WAIT, task).await;
        seen.push(ended.expect("a reading subscriber ends").unwrap());
    }
    let peak = bench::status_kib(process.pid(), "VmHWM");
    let after = bench::rss_kib(process.pid());
    // How late each healthy reader got each delta, compared with the first reader to get it.
    let healthy: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.kind == Kind::Reader && !s.closed)
        .collect();
    let mut lateness = Vec::new();
    for turn in 0..TURNS {
        for index in 0..DELTAS {
            let arrivals: Vec<Instant> = healthy
                .iter()
                .filter_map(|s| s.arrivals[turn][index])
                .collect();
            if let Some(first) = arrivals.iter().min() {
                lateness.extend(arrivals.iter().map(|at| *at - *first));
            }
        }
    }
    let closed = |kind: Kind| seen.iter().filter(|s| s.kind == kind && s.closed).count();
    // Stalled readers never read, so only the server's log says they were closed.
    let stalled_closed = process
        .stderr()
        .matches("closing connection: the client is not reading")
        .count()
        .saturating_sub(closed(Kind::Reader) + closed(Kind::Slow));
    let (slow, stalled) = (mix.slow, mix.stalled);
    println!(
        "{TURNS} turns of {DELTAS} deltas of {} KiB ({BURST} per {PAUSE:?}) to {READERS} readers, {slow} slow readers ({SLOW_READ:?} per message), {stalled} stalled readers; bound {} MiB per connection",
        DELTA_BYTES / 1024,
        QUEUE_BYTES / (1024 * 1024)
    );
    println!();
    lateness.sort();
    let p99 = lateness
        .get(lateness.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or_default();
    LATENCY.header("delivery, healthy readers");
    LATENCY.row("delta lateness behind the first reader", lateness);
    println!();
    RESULTS.header([&"soak", &"value"]);
    RESULTS.row([&"streaming time", &bench::ms(streamed)]);
    RESULTS.row([&"server VmRSS before", &bench::mib(before)]);
    RESULTS.row([&"server VmHWM (peak)", &bench::mib(peak)]);
    RESULTS.row([&"server VmRSS after", &bench::mib(after)]);
    RESULTS.row([
        &"readers disconnected",
        &format!("{} of {READERS}", closed(Kind::Reader)),
    ]);
    RESULTS.row([
        &"slow readers disconnected",
        &format!("{} of {slow}", closed(Kind::Slow)),
    ]);
    RESULTS.row([
        &"stalled readers disconnected",
        &format!("{stalled_closed} of {stalled}"),
    ]);
    (p99, peak)
}

/// The healthy readers alone, then with slow and stalled readers beside them.
async fn run() {
    let (alone, _) = soak(Mix {
        slow: 0,
        stalled: 0,
    })
    .await;
    println!();
    let (mixed, peak) = soak(Mix {
        slow: SLOW_READERS,
        stalled: STALLED,
    })
    .await;
    println!();
    let ratio = mixed.as_secs_f64() / alone.as_secs_f64().max(1e-9);
    println!(
        "healthy readers' p99 lateness: {} alone, {} beside slow and stalled readers ({ratio:.2}x; target under 2x); peak VmHWM {} (target under 256 MiB)",
        bench::ms(alone),
        bench::ms(mixed),
        bench::mib(peak)
    );
}

fn main() {
    bench::run_within(Duration::from_secs(120), run());
}
