//! `tether serve` measured end to end as a real process over loopback: cold start to the
//! `initialize` response, request round trips and sustained requests/s over stdio and WebSocket,
//! and resident memory idle and with many WebSocket connections.
//! Run: `cargo bench -p tether-cli --bench serve`.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _, future, sink, stream};
use serde_json::Value;
use tether_testkit::bench::{self, LatencyTable, Table};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::{self, Message};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
/// Any single step (start, connect, one response, exit) slower than this fails the bench.
const WAIT: Duration = Duration::from_secs(10);
const COLD_STARTS: usize = 50;
const ROUND_TRIPS: usize = 5_000;
/// Requests in flight per connection when pipelining; the server answers "overloaded" past 128.
const WINDOW: usize = 64;
const SUSTAIN: Duration = Duration::from_secs(3);
const MANY: usize = 100;
const IDLE_CONNECTIONS: usize = 1_000;
const INITIALIZE: &str = r#"{"id":"init","method":"initialize","params":{"clientInfo":{"name":"bench","version":"1.0"}}}"#;
const INVALID_REQUEST: i64 = -32600;
const OVERLOADED: i64 = -32001;
const LATENCY: LatencyTable = LatencyTable::new(46, 9);
const SUSTAINED: Table<4> = Table::new([46, 9, 10, 10]);
const MEMORY: Table<2> = Table::new([46, 12]);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
}

/// A running `tether serve`, killed on drop.
struct Server {
    child: Child,
    ws: Option<String>,
}

impl Server {
    /// Starts `tether --home HOME serve ARGS…`; with a `ws://` listener, waits until it is bound.
    async fn start(home: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(TETHER)
            .arg("--home")
            .arg(home)
            .arg("serve")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start tether");
        let (bound, listening) = oneshot::channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        // Reads stderr to the end so the server never blocks on a full pipe.
        tokio::spawn(async move {
            let mut bound = Some(bound);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(address) = line.strip_prefix("tether: listening on ws://")
                    && let Some(bound) = bound.take()
                {
                    let _ = bound.send(address.to_owned());
                }
            }
        });
        let ws = if args.iter().any(|arg| arg.starts_with("ws://")) {
            Some(
                within("ws listener", listening)
                    .await
                    .expect("tether exited"),
            )
        } else {
            None
        };
        Server { child, ws }
    }

    /// The connection on the process's stdin/stdout (once).
    fn stdio(&mut self) -> Connection {
        let stdin = self.child.stdin.take().unwrap();
        let stdout = self.child.stdout.take().unwrap();
        let tx = sink::unfold(stdin, |mut stdin, mut line: String| async move {
            line.push('\n');
            stdin.write_all(line.as_bytes()).await?;
            Ok::<_, io::Error>(stdin)
        });
        let rx = stream::unfold(BufReader::new(stdout).lines(), |mut lines| async move {
            let line = lines.next_line().await.ok()??;
            Some((line, lines))
        });
        Connection::new(Box::pin(tx), Box::pin(rx))
    }

    /// A new WebSocket connection.
    async fn connect(&self) -> Connection {
        let url = format!("ws://{}/", self.ws.as_deref().expect("a ws:// listener"));
        let (socket, _) = within("ws connect", tokio_tungstenite::connect_async(url))
            .await
            .expect("ws connect");
        let (tx, rx) = socket.split();
        let tx = tx
            .with(|text: String| future::ready(Ok::<_, tungstenite::Error>(Message::text(text))))
            .sink_map_err(io::Error::other);
        let rx = rx
            .take_while(|message| future::ready(message.is_ok()))
            .filter_map(|message| {
                future::ready(match message {
                    Ok(Message::Text(text)) => Some(text.as_str().to_owned()),
                    _ => None,
                })
            });
        Connection::new(Box::pin(tx), Box::pin(rx))
    }

    /// `n` new WebSocket connections, each past `initialize`.
    async fn connect_initialized(&self, n: usize) -> Vec<Connection> {
        stream::iter(0..n)
            .map(|_| async {
                let mut connection = self.connect().await;
                connection.initialize().await;
                connection
            })
            .buffer_unordered(32)
            .collect()
            .await
    }

    /// VmRSS in KiB.
    fn rss_kib(&self) -> u64 {
        bench::rss_kib(self.child.id().expect("still running"))
    }
}

type Outbound = Pin<Box<dyn Sink<String, Error = io::Error> + Send>>;
type Inbound = Pin<Box<dyn Stream<Item = String> + Send>>;

/// One client connection sending and receiving JSON text messages, whatever the transport.
struct Connection {
    tx: Outbound,
    rx: Inbound,
    next_id: u64,
}

#[derive(Default)]
struct Counts {
    answered: u64,
    overloaded: u64,
}

impl Connection {
    fn new(tx: Outbound, rx: Inbound) -> Connection {
        Connection { tx, rx, next_id: 0 }
    }

    async fn send(&mut self, text: String) {
        within("send", self.tx.send(text)).await.expect("send");
    }

    async fn recv(&mut self) -> String {
        within("a response", self.rx.next())
            .await
            .expect("tether closed the connection")
    }

    async fn initialize(&mut self) {
        self.send(INITIALIZE.to_owned()).await;
        let response: Value = serde_json::from_str(&self.recv().await).unwrap();
        assert!(response["result"].is_object(), "{response}");
    }

    /// Sends `device/key/public` with an invalid key id: decoded, dispatched, answered at once.
    async fn send_request(&mut self) {
        self.next_id += 1;
        let id = self.next_id;
        let request =
            format!(r#"{{"id":{id},"method":"device/key/public","params":{{"keyId":"x"}}}}"#);
        self.send(request).await;
    }

    async fn round_trips(&mut self, n: usize) -> Vec<Duration> {
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            self.send_request().await;
            let response = self.recv().await;
            samples.push(started.elapsed());
            assert!(!is_overloaded(&response));
        }
        samples
    }

    /// Keeps `WINDOW` requests in flight until `until`, then collects the rest.
    async fn pipeline(mut self, until: Instant) -> Counts {
        let mut counts = Counts::default();
        for _ in 0..WINDOW {
            self.send_request().await;
        }
        let mut in_flight = WINDOW;
        while in_flight > 0 {
            if is_overloaded(&self.recv().await) {
                counts.overloaded += 1;
            } else {
                counts.answered += 1;
            }
            in_flight -= 1;
            if Instant::now() < until {
                self.send_request().await;
                in_flight += 1;
            }
        }
        counts
    }
}

/// Whether a response is "Server overloaded"; anything but that or the expected validation error
/// is a failure.
fn is_overloaded(response: &str) -> bool {
    let message: Value = serde_json::from_str(response).unwrap();
    match message["error"]["code"].as_i64() {
        Some(INVALID_REQUEST) => false,
        Some(OVERLOADED) => true,
        _ => panic!("unexpected response: {response}"),
    }
}

/// Time from spawning `tether serve` (stdio) to the `initialize` response; then closes stdin and
/// waits for the exit (not timed).
async fn cold_start(home: &Path) -> Duration {
    let started = Instant::now();
    let mut server = Server::start(home, &[]).await;
    let mut connection = server.stdio();
    connection.initialize().await;
    let elapsed = started.elapsed();
    drop(connection);
    within("exit at end of stdin", server.child.wait())
        .await
        .unwrap();
    elapsed
}

/// Runs every connection pipelined for `SUSTAIN`, concurrently.
async fn sustain(name: &str, connections: Vec<Connection>) {
    let started = Instant::now();
    let until = started + SUSTAIN;
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|connection| tokio::spawn(connection.pipeline(until)))
        .collect();
    let mut total = Counts::default();
    for task in tasks {
        let counts = task.await.unwrap();
        total.answered += counts.answered;
        total.overloaded += counts.overloaded;
    }
    let rate = (total.answered + total.overloaded) as f64 / started.elapsed().as_secs_f64();
    SUSTAINED.row([
        &name,
        &total.answered,
        &total.overloaded,
        &format!("{rate:.0}"),
    ]);
}

fn memory(name: &str, kib: u64) {
    MEMORY.row([&name, &bench::mib(kib)]);
}

/// The soft limit on open files, if there is one.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

async fn run() {
    let scratch = tempfile::tempdir().unwrap();
    let home = |name: &str| scratch.path().join(name);
    let ws_listen = ["--listen", "ws://127.0.0.1:0"];

    LATENCY.header("latency");
    let mut samples = Vec::new();
    for run in 0..COLD_STARTS {
        samples.push(cold_start(&home(&format!("fresh-{run}"))).await);
    }
    LATENCY.row("cold start → initialize, fresh home each run", samples);
    cold_start(&home("shared")).await;
    let mut samples = Vec::new();
    for _ in 0..COLD_STARTS {
        samples.push(cold_start(&home("shared")).await);
    }
    LATENCY.row("cold start → initialize, one existing home", samples);

    let mut stdio_server = Server::start(&home("stdio"), &[]).await;
    let mut stdio = stdio_server.stdio();
    stdio.initialize().await;
    bench::settle().await;
    let stdio_idle = stdio_server.rss_kib();
    let ws_server = Server::start(&home("ws"), &ws_listen).await;
    let mut ws = ws_server.connect().await;
    ws.initialize().await;
    for (name, connection) in [("stdio", &mut stdio), ("ws", &mut ws)] {
        connection.round_trips(ROUND_TRIPS / 10).await;
        let samples = connection.round_trips(ROUND_TRIPS).await;
        LATENCY.row(&format!("round trip, {name}, sequential"), samples);
    }

    println!();
    let header = format!("sustained, {WINDOW} in flight per connection, {SUSTAIN:?}");
    SUSTAINED.header([&header, &"responses", &"overloaded", &"requests/s"]);
    sustain("stdio, 1 connection", vec![stdio]).await;
    sustain("ws, 1 connection", vec![ws]).await;
    let many = ws_server.connect_initialized(MANY).await;
    sustain(&format!("ws, {MANY} connections"), many).await;
    drop((stdio_server, ws_server));

    println!();
    MEMORY.header([&"memory (VmRSS of the server)", &""]);
    memory("stdio, idle after initialize", stdio_idle);
    let limit = open_files_limit();
    let fit = limit.map_or(IDLE_CONNECTIONS, |soft| {
        IDLE_CONNECTIONS.min(soft.saturating_sub(64))
    });
    let ws_server = Server::start(&home("memory"), &ws_listen).await;
    bench::settle().await;
    let before = ws_server.rss_kib();
    memory("ws, listening, no connections", before);
    let open = ws_server.connect_initialized(fit).await;
    bench::settle().await;
    let after = ws_server.rss_kib();
    memory(&format!("ws, {fit} connections after initialize"), after);
    let per = (after.saturating_sub(before)) as f64 / fit.max(1) as f64;
    MEMORY.row([&"ws, per connection", &format!("{per:.1} KiB")]);
    if fit < IDLE_CONNECTIONS {
        println!(
            "\nnote: open-files soft limit {limit:?} allows only {fit} of {IDLE_CONNECTIONS} connections; raise `ulimit -n` and rerun"
        );
    }
    drop(open);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}
