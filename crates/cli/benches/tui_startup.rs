//! The real Codex TUI (codex-cli 0.169.0 from scripts/setup-clients.sh) started in a
//! pseudo-terminal until its composer is ready for a prompt, `RUNS` times against `tether
//! app-server` and against the real `codex app-server`, each with a loopback upstream; prints
//! p50 and p99 of both and tether's ratio to codex.
//! Run: `cargo bench -p tether-cli --bench tui_startup`.

use std::path::Path;
use std::time::{Duration, Instant};

use tether_testkit::bench::{self, Samples, Table, ms};
use tether_testkit::{Clients, CodexAppServer, ResponsesServer, TetherProcess, Tui, codex_config};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const RUNS: usize = 10;
/// One start slower than this fails the bench.
const WAIT: Duration = Duration::from_secs(30);
const TABLE: Table<4> = Table::new([34, 5, 11, 11]);

fn row(name: &str, samples: &Samples) {
    TABLE.row([
        &name,
        &samples.count(),
        &ms(samples.at(0.5)),
        &ms(samples.at(0.99)),
    ]);
}

/// Starts a TUI against `url` `RUNS` times; the time from spawn to the ready composer.
async fn startups(clients: &Clients, url: &str) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let mut tui = Tui::start(clients, &["--remote", url]);
        tui.wait_for_composer("mock-model", WAIT)
            .await
            .unwrap_or_else(|screen| panic!("TUI against {url}: {screen}"));
        samples.push(started.elapsed());
    }
    samples
}

fn main() {
    bench::run_within(Duration::from_secs(600), async {
        let clients = Clients::require();
        let upstream = ResponsesServer::start().await;

        TABLE.header([&"TUI launch → composer ready", &"n", &"p50", &"p99"]);
        let codex = CodexAppServer::start(&clients, &upstream.base_url()).await;
        let codex_samples = Samples::new(startups(&clients, &codex.url()).await);
        codex.stop().await;
        row("real codex app-server 0.169.0", &codex_samples);

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
        let tether_samples =
            Samples::new(startups(&clients, &format!("ws://{}", tether.ws_address())).await);
        row("tether app-server", &tether_samples);
        let ratio = |quantile: f64| {
            tether_samples.at(quantile).as_secs_f64() / codex_samples.at(quantile).as_secs_f64()
        };
        println!(
            "\np50 tether/codex = {:.2}; p99 tether/codex = {:.2}",
            ratio(0.5),
            ratio(0.99)
        );
    });
}
