//! `tether status` against a live server with clients connected.

use std::path::Path;

use serde_json::{Value, json};
use tether_testkit::{Client, TetherProcess};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

#[tokio::test]
async fn status_shows_connections_threads_and_device_keys() {
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("control.sock");
    let unix = format!("unix://{}", socket.display());
    let process = TetherProcess::start(
        Path::new(TETHER),
        home.path(),
        &["--listen", "ws://127.0.0.1:0", "--listen", &unix],
        &[("TETHER_TPM_TCTI", "device:/dev/no-tpm-here")],
    )
    .await;
    let mut remote = process.ws().await;
    remote
        .initialize("remote-ide", json!({"requestAttestation": true}))
        .await;
    let mut local = Client::unix(&socket).await.unwrap();
    local
        .initialize("local-app", json!({"experimentalApi": true}))
        .await;
    let thread_id = remote.start_thread(json!({"ephemeral": true})).await;

    // Only the owner may ask: not over ws.
    let refused = remote.call(2, "tether/status", json!({})).await;
    assert_eq!(
        refused["error"]["message"],
        "tether/status is not available over remote transports"
    );

    let output = std::process::Command::new(TETHER)
        .arg("--home")
        .arg(home.path())
        .args(["status", "--json", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    let connections = status["connections"].as_array().unwrap();
    let find = |client: &str| {
        connections
            .iter()
            .find(|c| c["client"] == client)
            .unwrap_or_else(|| panic!("{client}: {status}"))
    };
    let ide = find("remote-ide");
    assert_eq!(ide["transport"], "websocket");
    assert_eq!(ide["requestAttestation"], true);
    let app = find("local-app");
    assert_eq!(app["transport"], "unix");
    assert_eq!(app["experimentalApi"], true);
    assert!(
        connections.iter().any(|c| c["client"] == "tether-status"),
        "the asking connection too"
    );
    assert_eq!(
        status["threads"],
        json!([{"id": thread_id, "status": {"type": "idle"}, "subscribers": 1}])
    );
    assert_eq!(status["pendingServerRequests"], 0);
    assert_eq!(status["deviceKeys"]["available"], false);
    assert!(status["uptimeSeconds"].is_u64());

    let human = std::process::Command::new(TETHER)
        .arg("--home")
        .arg(home.path())
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("device keys: unavailable"), "{text}");
    assert!(
        text.contains("websocket remote-ide [requestAttestation]"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{thread_id} idle 1 subscriber(s)")),
        "{text}"
    );
}

#[test]
fn status_without_a_server_says_so() {
    let home = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(TETHER)
        .arg("--home")
        .arg(home.path())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8(output.stderr).unwrap();
    assert!(
        message.starts_with("cannot get the status from ")
            && message.contains("app-server-control.sock"),
        "{message}"
    );
}
