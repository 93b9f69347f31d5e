//! The official Python SDK (`openai-codex` 0.163.0, in the virtualenv scripts/setup-clients.sh
//! creates) launched as a user would, `CodexConfig(codex_bin=<tether>)`, against a loopback
//! Responses upstream that echoes the user's text. Each scenario is a script under `python/`;
//! it exits non-zero with the failed check on stderr.

use std::time::Duration;

use serde_json::{Value, json};
use tether_testkit::{
    Clients, ResponsesServer, Script, Step, codex_config, last_user_text, message_response,
    run_python,
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const PRELUDE: &str = include_str!("python/prelude.py");

/// `Echo: <the user's last text>`; a text containing `hang` starts a response that never ends.
fn echo(body: &Value) -> Script {
    let text = last_user_text(body).unwrap_or_default();
    if text.contains("hang") {
        return Script::Stream(vec![
            Step::Event(json!({"type": "response.created", "response": {"id": "r-hang"}})),
            Step::Hang,
        ]);
    }
    Script::Stream(message_response("r-echo", &[&format!("Echo: {text}")]))
}

/// Runs `script` (after the prelude) against tether with a fresh home; panics with both output
/// streams unless it prints `ok`.
async fn run_scenario(script: &str) {
    let clients = Clients::require();
    let upstream = ResponsesServer::start().await;
    upstream.respond_with(echo);
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("config.toml"),
        codex_config(&upstream.base_url()),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let output = run_python(
        &clients,
        &format!("{PRELUDE}\n{script}"),
        work.path(),
        &[
            ("TETHER_BIN", TETHER),
            ("TETHER_WORK", work.path().to_str().unwrap()),
            ("CODEX_HOME", home.path().to_str().unwrap()),
            ("MOCK_API_KEY", "mock-key"),
        ],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(output.expect_success().trim_end(), "ok", "{output:?}");
}

#[tokio::test]
async fn start_run_stream_read_list_name_and_resume() {
    run_scenario(include_str!("python/threads_and_turns.py")).await;
}

#[tokio::test]
async fn model_list_and_account() {
    run_scenario(include_str!("python/models_and_account.py")).await;
}

#[tokio::test]
async fn fork_archive_and_unarchive() {
    run_scenario(include_str!("python/fork_and_archive.py")).await;
}

#[tokio::test]
async fn steer_and_interrupt() {
    run_scenario(include_str!("python/steer_and_interrupt.py")).await;
}
