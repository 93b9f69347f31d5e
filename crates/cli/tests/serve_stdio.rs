//! `tether serve` over stdio, driven as a real process: the handshake, every generic error of
//! the protocol's table, overload, frame limits, device keys against a real swtpm, and shutdown.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_testkit::{Client, Schemas, Swtpm, TetherProcess, connection_payload, send_signal};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

async fn start(home: &Path, args: &[&str], env: &[(&str, &str)]) -> (TetherProcess, Client) {
    let mut process = TetherProcess::start(Path::new(TETHER), home, args, env).await;
    let client = process.stdio();
    (process, client)
}

fn tether_server_schema(out: &Path) {
    let status = std::process::Command::new(TETHER)
        .arg("schema")
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success());
}

fn error(code: i64, message: &str, id: Value) -> Value {
    json!({"error": {"code": code, "message": message}, "id": id})
}

#[tokio::test]
async fn initialize_answers_with_the_server_identity_and_eof_exits_zero() {
    let home = tempfile::tempdir().unwrap();
    let (mut process, mut client) = start(home.path(), &[], &[]).await;
    let result = client.initialize("probe", Value::Null).await;
    let schemas = tempfile::tempdir().unwrap();
    tether_server_schema(schemas.path());
    Schemas::check_file(&schemas.path().join("v1/InitializeResponse.json"), &result);
    assert_eq!(result["codexHome"], home.path().to_str().unwrap());
    assert_eq!(result["platformFamily"], "unix");
    assert_eq!(result["platformOs"], "linux");
    let agent = result["userAgent"].as_str().unwrap();
    assert!(agent.starts_with("probe/0.169.0 ("), "{agent}");
    assert!(agent.ends_with(" (probe; 1.0)"), "{agent}");
    drop(client);
    let started = Instant::now();
    let status = process.wait(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "exits promptly: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_generic_error_has_its_code_and_text() {
    let home = tempfile::tempdir().unwrap();
    let (_process, mut client) = start(home.path(), &[], &[]).await;

    // Before initialize: an undecodable request gets the decode error, a good one "Not initialized".
    client.request(1, "bogus/method", json!({}));
    let unknown = client.recv().await;
    assert_eq!(unknown["error"]["code"], -32600);
    assert_eq!(unknown["error"]["message"], unknown_variant("bogus/method"));
    client.request(2, "device/key/public", json!({"keyId": "dk_tpm_x"}));
    assert_eq!(
        client.recv().await,
        error(-32600, "Not initialized", json!(2))
    );
    // A failed initialize does not initialize.
    client.request(
        3,
        "initialize",
        json!({"clientInfo": {"name": "bad\u{1}name", "version": "1"}}),
    );
    assert_eq!(
        client.recv().await,
        error(
            -32600,
            "Invalid clientInfo.name: 'bad\u{1}name'. Must be a valid HTTP header value.",
            json!(3)
        )
    );
    client.request(4, "initialize", json!({"clientInfo": {"name": "probe"}}));
    assert_eq!(
        client.recv().await,
        error(-32600, "Invalid request: missing field `version`", json!(4))
    );
    client.request(5, "device/key/public", json!({"keyId": "dk_tpm_x"}));
    assert_eq!(
        client.recv().await,
        error(-32600, "Not initialized", json!(5))
    );

    // Notifications before initialize are ignored; so is "initialized" sent as a notification.
    client.send(json!({"method": "initialized"}));
    client.send(json!({"method": "anything", "params": {}}));
    client
        .initialize("probe", json!({"experimentalApi": false}))
        .await;
    client.send(json!({"method": "initialized"}));

    let cases: Vec<(Value, Value)> = vec![
        (
            json!({"id": 10, "method": "initialize", "params": {"clientInfo": {"name": "p", "version": "1"}}}),
            error(-32600, "Already initialized", json!(10)),
        ),
        (
            json!({"id": "s", "method": "device/key/public"}),
            error(
                -32600,
                "Invalid request: missing field `params`",
                json!("s"),
            ),
        ),
        (
            json!({"id": 11, "method": "device/key/public", "params": null}),
            error(-32600, "Invalid request: missing field `params`", json!(11)),
        ),
        (
            json!({"id": 12, "method": "device/key/public", "params": {}}),
            error(-32600, "Invalid request: missing field `keyId`", json!(12)),
        ),
        (
            json!({"id": 13, "method": "device/key/public", "params": {"keyId": 123}}),
            error(
                -32600,
                "Invalid request: invalid type: integer `123`, expected a string",
                json!(13),
            ),
        ),
        (
            json!({"id": 14, "method": "device/key/create", "params": {"accountUserId": "a", "clientId": "c", "protectionPolicy": "bogus"}}),
            error(
                -32600,
                "Invalid request: unknown variant `bogus`, expected `hardware_only` or `allow_os_protected_nonextractable`",
                json!(14),
            ),
        ),
        (
            json!({"id": 15, "method": "initialized"}),
            error(-32600, &unknown_variant("initialized"), json!(15)),
        ),
        (
            json!({"jsonrpc": "1.0", "id": i64::MAX, "method": "device/key/public", "params": {"keyId": "nope"}}),
            error(
                -32600,
                "invalid device key payload: keyId must be dk_hse_, dk_tpm_, or dk_osn_ followed by unpadded base64url-encoded 32 bytes",
                json!(i64::MAX),
            ),
        ),
    ];
    for (request, expected) in cases {
        client.send(request.clone());
        assert_eq!(client.recv().await, expected, "{request}");
    }

    // No reply at all: unparsable input, ids of other types (treated as notifications), stray answers.
    for silent in [
        "not json",
        "{\"id\":1",
        "[1,2]",
        "{\"id\":8.5,\"method\":\"initialize\"}",
        "{\"id\":null,\"method\":\"x\"}",
        "{\"id\":{},\"method\":\"x\"}",
        "{\"id\":99,\"result\":{}}",
        "{\"id\":98,\"error\":{\"code\":1,\"message\":\"m\"}}",
    ] {
        client.send_raw(silent);
    }
    client.expect_silence(Duration::from_millis(300)).await;
    // The connection still works afterwards.
    let response = client
        .call(20, "device/key/public", json!({"keyId": ""}))
        .await;
    assert_eq!(response["error"]["code"], -32600);
}

#[tokio::test]
async fn a_flood_beyond_the_inbound_queue_is_answered_with_overloaded_and_nothing_is_lost() {
    let home = tempfile::tempdir().unwrap();
    let (_process, mut client) = start(home.path(), &[], &[]).await;
    client.initialize("flood", Value::Null).await;
    // The client writes everything before reading anything: stdout fills, the server's writer
    // and processor wait (a stdio client is never dropped), and the inbound queue overflows.
    let total = 20_000;
    let mut batch = String::new();
    for id in 0..total {
        batch.push_str(
            &json!({"id": id, "method": "device/key/public", "params": {"keyId": "x"}}).to_string(),
        );
        batch.push('\n');
    }
    client.send_raw(batch.trim_end().to_owned());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut overloaded, mut answered) = (0, 0);
    let mut seen = vec![false; total];
    for _ in 0..total {
        let message = client.recv().await;
        let id = message["id"].as_u64().unwrap() as usize;
        assert!(!seen[id], "one reply per request: {id}");
        seen[id] = true;
        match message["error"]["code"].as_i64() {
            Some(-32001) => {
                assert_eq!(
                    message["error"]["message"],
                    "Server overloaded; retry later."
                );
                overloaded += 1;
            }
            Some(-32600) => answered += 1,
            _ => panic!("unexpected {message}"),
        }
    }
    assert!(
        overloaded > 0 && answered >= 128,
        "overloaded {overloaded}, answered {answered}"
    );
    client.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_the_connection_with_a_logged_reason() {
    let home = tempfile::tempdir().unwrap();
    let (mut process, mut client) = start(home.path(), &["--max-frame-bytes", "1024"], &[]).await;
    client.initialize("big", Value::Null).await;
    let big =
        json!({"id": 1, "method": "device/key/public", "params": {"keyId": "k".repeat(2000)}});
    client.send(big);
    client.closed().await;
    assert_eq!(process.wait(Duration::from_secs(5)).await.code(), Some(1));
    let stderr = process.stderr();
    assert!(
        stderr.contains("closing connection: a frame is larger than the limit of 1024 bytes"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stdio connection closed: a frame is larger than the limit of 1024 bytes"),
        "the last word on stderr says why the process ended: {stderr}"
    );
}

async fn with_tpm(home: &Path, tpm: &Swtpm) -> (TetherProcess, Client) {
    let tcti = tpm.tcti();
    let env = [
        ("TETHER_TPM_TCTI", tcti.as_str()),
        ("TETHER_ALLOW_SOFTWARE_TPM", "1"),
    ];
    let (process, mut client) = start(home, &[], &env).await;
    client.initialize("keys", Value::Null).await;
    (process, client)
}

#[tokio::test]
async fn device_keys_over_stdio_against_a_real_tpm() {
    let tpm = Swtpm::start();
    let home = tempfile::tempdir().unwrap();
    let (_process, mut client) = with_tpm(home.path(), &tpm).await;
    let created = client
        .call(
            1,
            "device/key/create",
            json!({"accountUserId": "acct", "clientId": "cli", "protectionPolicy": null}),
        )
        .await;
    let info = &created["result"];
    assert_eq!(info["protectionClass"], "hardware_tpm");
    assert_eq!(info["algorithm"], "ecdsa_p256_sha256");
    let key_id = info["keyId"].as_str().unwrap();
    let public = client
        .call(2, "device/key/public", json!({"keyId": key_id}))
        .await;
    assert_eq!(&public["result"], info);
    let signed = client
        .call(
            3,
            "device/key/sign",
            json!({"keyId": key_id, "payload": connection_payload("acct", "cli")}),
        )
        .await;
    assert_eq!(signed["result"]["algorithm"], "ecdsa_p256_sha256");
    let verify = std::process::Command::new(TETHER)
        .args(["device-key", "verify", "--public-key-spki-der-base64"])
        .arg(info["publicKeySpkiDerBase64"].as_str().unwrap())
        .arg("--signature-der-base64")
        .arg(signed["result"]["signatureDerBase64"].as_str().unwrap())
        .arg("--signed-payload-base64")
        .arg(signed["result"]["signedPayloadBase64"].as_str().unwrap())
        .status()
        .unwrap();
    assert!(verify.success());
    let mismatch = client
        .call(
            4,
            "device/key/sign",
            json!({"keyId": key_id, "payload": connection_payload("other", "cli")}),
        )
        .await;
    assert_eq!(
        mismatch,
        error(
            -32600,
            "invalid device key payload: payload accountUserId/clientId does not match device key binding",
            json!(4)
        )
    );
    let empty = client
        .call(
            5,
            "device/key/create",
            json!({"accountUserId": "", "clientId": "cli"}),
        )
        .await;
    assert_eq!(
        empty,
        error(
            -32600,
            "invalid device key payload: accountUserId must not be empty",
            json!(5)
        )
    );
}

/// Creates a key, stops the TPM process, and sends a sign (id 2) that is stuck until `CONT`.
async fn hold_a_sign_in_the_tpm(client: &mut Client, tpm: &Swtpm) {
    let key_id = client.create_device_key("acct", "cli").await;
    send_signal(tpm.pid(), "STOP");
    client.request(
        2,
        "device/key/sign",
        json!({"keyId": key_id, "payload": connection_payload("acct", "cli")}),
    );
}

#[tokio::test]
async fn a_sign_stuck_in_the_tpm_does_not_delay_other_requests() {
    let tpm = Swtpm::start();
    let home = tempfile::tempdir().unwrap();
    let (_process, mut client) = with_tpm(home.path(), &tpm).await;
    hold_a_sign_in_the_tpm(&mut client, &tpm).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let quick = client
        .call(3, "device/key/public", json!({"keyId": "not-a-key"}))
        .await;
    assert_eq!(quick["error"]["code"], -32600);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered in {:?}",
        started.elapsed()
    );
    send_signal(tpm.pid(), "CONT");
    let signed = client.recv().await;
    assert_eq!(signed["id"], 2);
    assert!(
        signed["result"]["signatureDerBase64"].is_string(),
        "{signed}"
    );
}

#[tokio::test]
async fn sigterm_answers_the_request_in_flight_then_exits_zero() {
    let tpm = Swtpm::start();
    let home = tempfile::tempdir().unwrap();
    let (mut process, mut client) = with_tpm(home.path(), &tpm).await;
    // Hold the sign inside the TPM, then ask the server to stop.
    hold_a_sign_in_the_tpm(&mut client, &tpm).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    process.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_signal(tpm.pid(), "CONT");
    let signed = client.recv().await;
    assert_eq!(signed["id"], 2);
    assert!(
        signed["result"]["signatureDerBase64"].is_string(),
        "{signed}"
    );
    client.closed().await;
    assert_eq!(process.wait(Duration::from_secs(5)).await.code(), Some(0));
}

/// serde's text for a method the table does not have: every method, in table order.
fn unknown_variant(method: &str) -> String {
    let expected: Vec<String> = tether_protocol::CLIENT_METHODS
        .iter()
        .map(|spec| format!("`{}`", spec.name))
        .collect();
    format!(
        "Invalid request: unknown variant `{method}`, expected one of {}",
        expected.join(", ")
    )
}
