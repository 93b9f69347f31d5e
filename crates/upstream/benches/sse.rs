//! Large upstream events over HTTP + SSE, end to end through the client: a real loopback
//! Responses server (`tether_testkit::ResponsesServer`) sends one `response.output_text.delta`
//! of 5, 10, 20 and 50 MiB, then `response.completed`; the time from the request to the last
//! event gives MiB/s. Linear decoding shows as a flat MiB/s across sizes.
//! Run: `cargo bench -p tether-upstream --bench sse`.

use std::time::{Duration, Instant};

use serde_json::json;
use tether_testkit::{ResponsesServer, Script, Step, completed};
use tether_upstream::{DEFAULT_MAX_RETRY_AFTER, Endpoint, NoExtraHeaders, ResponseEvent, Upstream};

const SIZES_MIB: [usize; 4] = [5, 10, 20, 50];
/// Each size is measured this many times; the best run is reported.
const RUNS: usize = 3;

#[tokio::main]
async fn main() {
    let server = ResponsesServer::start().await;
    let upstream = Upstream::new(Endpoint {
        base_url: server.base_url(),
        headers: Vec::new(),
        websocket: false,
        request_max_retries: 0,
        retry_base_delay: Duration::from_millis(10),
        max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        idle_timeout: Duration::from_secs(60),
    })
    .expect("a client");
    println!("{:>10} {:>12} {:>10}", "event MiB", "seconds", "MiB/s");
    for mib in SIZES_MIB {
        let event = json!({"type": "response.output_text.delta", "item_id": "m", "delta": "x".repeat(mib << 20)});
        let framed = format!("event: response.output_text.delta\ndata: {event}\n\n");
        let mut best = Duration::MAX;
        for _ in 0..RUNS {
            server.push(Script::Stream(vec![
                Step::Raw(framed.clone()),
                completed("r1"),
            ]));
            let started = Instant::now();
            let mut stream = upstream
                .stream(&json!({}), &NoExtraHeaders)
                .await
                .expect("a stream");
            let mut received = 0;
            while let Some(event) = stream.next().await {
                match event.expect("no upstream error") {
                    ResponseEvent::TextDelta { delta, .. } => received = delta.len(),
                    ResponseEvent::Completed { .. } => break,
                    _ => {}
                }
            }
            assert_eq!(received, mib << 20, "the whole event arrived");
            best = best.min(started.elapsed());
        }
        let seconds = best.as_secs_f64();
        println!("{mib:>10} {seconds:>12.3} {:>10.1}", mib as f64 / seconds);
    }
}
