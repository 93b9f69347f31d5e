//! `exec_command` side by side: tether and the real `codex app-server` 0.169.0, each with a
//! loopback upstream scripting the model's call of `true`, driven by one JSON client.
//! Prints, per server and sandbox, the time from the upstream request that got the tool call
//! to the follow-up request carrying its output (p50/p99); the throughput of `yes | head -c
//! 100M` streamed to the client as output deltas; and tether's processes and memory after
//! 1,000 commands. Run: `cargo bench -p tether-cli --bench exec`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_testkit::bench::{self, LatencyTable, mib, rss_kib};
use tether_testkit::{
    Client, Clients, CodexAppServer, ResponsesServer, Script, Step, TetherProcess, codex_config,
    completed, message_response,
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const RUNS: usize = 40;
const LEAK_RUNS: usize = 1_000;
const STREAM_BYTES: usize = 100 * 1024 * 1024;
const TABLE: LatencyTable = LatencyTable::new(44, 9);

fn exec_call(call_id: &str, cmd: &str) -> Script {
    let arguments = json!({"cmd": cmd, "yield_time_ms": 30000}).to_string();
    Script::Stream(vec![
        Step::Event(
            json!({"type": "response.created", "response": {"id": format!("r_{call_id}")}}),
        ),
        Step::Event(
            json!({"type": "response.output_item.done", "item": {"type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id, "name": "exec_command", "arguments": arguments}}),
        ),
        completed(&format!("r_{call_id}")),
    ])
}

async fn connect(url: &str) -> Client {
    let address = url.strip_prefix("ws://").unwrap_or(url);
    let mut client = Client::websocket(address, &[]).await.expect("connect");
    client.initialize("exec-bench", Value::Null).await;
    client
}

/// Starts a thread in `cwd` with `sandbox`; notifications before the response are skipped.
async fn thread(client: &mut Client, cwd: &Path, sandbox: &str) -> String {
    client.request(
        "start",
        "thread/start",
        json!({"cwd": cwd.display().to_string(), "sandbox": sandbox, "approvalPolicy": "never"}),
    );
    loop {
        let message = client.recv().await;
        if message["id"] == "start" {
            return message["result"]["thread"]["id"]
                .as_str()
                .expect("a thread id")
                .to_owned();
        }
    }
}

/// One turn whose model runs `cmd` once; returns what the client received.
async fn turn(
    client: &mut Client,
    upstream: &ResponsesServer,
    thread_id: &str,
    call_id: &str,
    cmd: &str,
) -> Vec<Value> {
    upstream.push(exec_call(call_id, cmd));
    upstream.push(Script::Stream(message_response(
        &format!("a_{call_id}"),
        &["ok"],
    )));
    client.request(
        call_id,
        "turn/start",
        json!({"threadId": thread_id, "input": [{"type": "text", "text": "run it", "text_elements": []}]}),
    );
    client.recv_until("turn/completed").await
}

/// Tool call → output upstream, `RUNS` times.
async fn round_trips(url: &str, upstream: &ResponsesServer, sandbox: &str) -> Vec<Duration> {
    let workspace = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut client = connect(url).await;
    let thread_id = thread(&mut client, workspace.path(), sandbox).await;
    let mut samples = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        let before = upstream.requests().len();
        turn(
            &mut client,
            upstream,
            &thread_id,
            &format!("call_{run}"),
            "true",
        )
        .await;
        let requests = upstream.requests();
        // Titles or other side requests would break the pairing: there are none here.
        let (call, output) = (&requests[before], &requests[before + 1]);
        samples.push(output.received_at - call.received_at);
    }
    samples
}

/// Bytes of `yes | head -c 100M` that reached the client as output deltas, and the time from
/// `turn/start` to `turn/completed`.
async fn throughput(url: &str, upstream: &ResponsesServer) -> (usize, Duration) {
    let workspace = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut client = connect(url).await;
    let thread_id = thread(&mut client, workspace.path(), "read-only").await;
    let started = Instant::now();
    let messages = turn(
        &mut client,
        upstream,
        &thread_id,
        "stream",
        &format!("yes | head -c {STREAM_BYTES}"),
    )
    .await;
    let elapsed = started.elapsed();
    let streamed: usize = messages
        .iter()
        .filter(|m| m["method"] == "item/commandExecution/outputDelta")
        .map(|m| m["params"]["delta"].as_str().unwrap_or_default().len())
        .sum();
    (streamed, elapsed)
}

fn print_throughput(name: &str, (streamed, elapsed): (usize, Duration)) {
    let streamed_mib = streamed as f64 / (1024.0 * 1024.0);
    println!(
        "  {name}: {streamed_mib:.1} MiB of deltas in {:.2} s = {:.1} MiB/s",
        elapsed.as_secs_f64(),
        streamed_mib / elapsed.as_secs_f64()
    );
}

fn children(pid: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // Field 4 (after the parenthesized name) is the parent pid.
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(1))
                .is_some_and(|ppid| ppid == pid.to_string())
        })
        .count()
}

fn main() {
    bench::run_within(Duration::from_secs(1500), async {
        let clients = Clients::require();
        let upstream = ResponsesServer::start().await;
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("config.toml"),
            codex_config(&upstream.base_url()),
        )
        .unwrap();
        let tether = TetherProcess::start_app_server(
            Path::new(TETHER),
            home.path(),
            &["--listen", "ws://127.0.0.1:0"],
            &[("MOCK_API_KEY", "mock-key")],
        )
        .await;
        let tether_url = format!("ws://{}", tether.ws_address());
        let codex = CodexAppServer::start(&clients, &upstream.base_url()).await;

        TABLE.header("exec_command `true`: tool call → output upstream");
        let mut medians = Vec::new();
        for sandbox in ["read-only", "danger-full-access"] {
            let codex_samples = round_trips(&codex.url(), &upstream, sandbox).await;
            let codex_median = TABLE.row(&format!("codex 0.169.0, {sandbox}"), codex_samples);
            let tether_samples = round_trips(&tether_url, &upstream, sandbox).await;
            let tether_median = TABLE.row(&format!("tether, {sandbox}"), tether_samples);
            medians.push((sandbox, tether_median, codex_median));
        }
        for (sandbox, tether_median, codex_median) in medians {
            println!(
                "median tether/codex, {sandbox}: {:.2}",
                tether_median.as_secs_f64() / codex_median.as_secs_f64()
            );
        }

        println!("\n`yes | head -c 100M` streamed to the client:");
        print_throughput("codex 0.169.0", throughput(&codex.url(), &upstream).await);
        print_throughput("tether       ", throughput(&tether_url, &upstream).await);
        codex.stop().await;

        let pid = tether.pid();
        let rss_before = rss_kib(pid);
        let workspace = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut client = connect(&tether_url).await;
        let thread_id = thread(&mut client, workspace.path(), "read-only").await;
        for run in 0..LEAK_RUNS {
            turn(
                &mut client,
                &upstream,
                &thread_id,
                &format!("leak_{run}"),
                "true",
            )
            .await;
        }
        bench::settle().await;
        println!(
            "\nafter {LEAK_RUNS} commands: tether has {} child processes; RSS {} → {}",
            children(pid),
            mib(rss_before),
            mib(rss_kib(pid))
        );
    });
}
