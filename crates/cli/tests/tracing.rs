//! Request spans and W3C trace context, read from the JSON log of a real `tether serve` process:
//! the parent/child structure of `turn/start` and `device/key/sign`, the `traceparent` the
//! upstream receives, and no secret in the log at the most verbose level.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tether_testkit::{Client, ResponsesServer, Script, Swtpm, TetherProcess, message_response};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

async fn until(client: &mut Client, method: &str, attestation_token: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = client.recv().await;
        if message["method"] == "attestation/generate" {
            client.send(json!({"id": message["id"], "result": {"token": attestation_token}}));
        }
        let done =
            message["method"] == method || message.get("result").is_some() && method.is_empty();
        seen.push(message);
        if done {
            return seen;
        }
    }
}

/// The log events whose message is `message`, with the names of their span stack.
fn events<'a>(log: &'a [Value], message: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|event| event["fields"]["message"] == message)
        .collect()
}

fn span_names(event: &Value) -> Vec<&str> {
    event["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|span| span["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn spans_nest_under_their_request_and_the_trace_reaches_the_upstream() {
    let upstream = ResponsesServer::start().await;
    upstream.push(Script::Stream(message_response("r1", &["traced"])));
    let tpm = Swtpm::start();
    let home = tempfile::tempdir().unwrap();
    let config = format!(
        "model_provider = \"mock\"\n[model_providers.mock]\nname = \"Mock\"\nbase_url = \"{}\"\nwire_api = \"responses\"\n\
         requires_openai_auth = true\nrequest_max_retries = 0\nstream_max_retries = 0\n",
        upstream.base_url()
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let auth = json!({"auth_mode": "chatgpt", "tokens": {"access_token": "access-secret-value", "account_id": "acct"}});
    std::fs::write(home.path().join("auth.json"), auth.to_string()).unwrap();
    let tcti = tpm.tcti();
    let env = [
        (
            "RUST_LOG",
            "trace,hyper::proto=trace,reqwest::connect=trace,tungstenite::protocol=trace,[upstream_request]=trace",
        ),
        ("TETHER_TPM_TCTI", tcti.as_str()),
        ("TETHER_ALLOW_SOFTWARE_TPM", "1"),
    ];
    let mut process = TetherProcess::start(
        Path::new(TETHER),
        home.path(),
        &["--log-format", "json"],
        &env,
    )
    .await;
    let mut client = process.stdio();
    client
        .initialize("traced", json!({"requestAttestation": true}))
        .await;

    let started = client.call(1, "thread/start", json!({})).await;
    let thread_id = started["result"]["thread"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    client.send(json!({
        "id": 2,
        "method": "turn/start",
        "params": {"threadId": thread_id, "input": [{"type": "text", "text": "hello", "text_elements": []}]},
        "trace": {"traceparent": format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")}
    }));
    until(&mut client, "turn/completed", "attestation-secret-token").await;

    let key_id = client.create_device_key("acct", "cli").await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let nonce = "c2VjcmV0LW5vbmNlLXNlY3JldC1ub25jZS1zZWNyZXQtbm9uY2U";
    let payload = json!({
        "type": "remoteControlClientConnection", "nonce": nonce, "audience": "remote_control_client_websocket",
        "sessionId": "session-secret-value", "targetOrigin": "https://chatgpt.com", "targetPath": "/api/codex/remote/control/client",
        "accountUserId": "acct", "clientId": "cli", "tokenExpiresAt": now + 60,
        "tokenSha256Base64url": "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU", "scopes": ["remote_control_controller_websocket"]
    });
    let signed = client
        .call(
            4,
            "device/key/sign",
            json!({"keyId": key_id, "payload": payload}),
        )
        .await;
    let signature = signed["result"]["signatureDerBase64"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(client);
    process.wait(std::time::Duration::from_secs(5)).await;
    let stderr = process.stderr();
    let log: Vec<Value> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    assert!(!log.is_empty(), "{stderr}");

    // turn/start → turn → upstream_request, in the client's trace.
    let sending = events(&log, "sending the Responses request");
    assert_eq!(sending.len(), 1, "{stderr}");
    assert_eq!(
        span_names(sending[0]),
        ["request", "turn", "upstream_request"]
    );
    let spans = sending[0]["spans"].as_array().unwrap();
    assert_eq!(spans[0]["method"], "turn/start");
    assert_eq!(spans[0]["parent_span_id"], CLIENT_SPAN);
    for span in spans {
        assert_eq!(span["trace_id"], TRACE_ID, "{span}");
    }
    // The attestation is a child of the upstream request it is for.
    let attested = events(&log, "attestation attempted");
    assert_eq!(attested.len(), 1);
    assert_eq!(
        span_names(attested[0]),
        ["request", "turn", "upstream_request", "attestation"]
    );
    // The upstream request carries its own span's context.
    let upstream_span = spans[2]["span_id"].as_str().unwrap();
    let request = &upstream.requests()[0];
    assert_eq!(
        request.header("traceparent"),
        Some(format!("00-{TRACE_ID}-{upstream_span}-01").as_str())
    );
    // Device-key provider calls are children of their request.
    let provider_calls: Vec<_> = events(&log, "calling the provider")
        .into_iter()
        .filter(|event| event["spans"][0]["method"] == "device/key/sign")
        .collect();
    assert_eq!(provider_calls.len(), 1, "{stderr}");
    assert_eq!(
        span_names(provider_calls[0]),
        ["request", "device_key", "provider_call"]
    );

    // Nothing secret at trace level.
    for secret in [
        "attestation-secret-token",
        "access-secret-value",
        nonce,
        "session-secret-value",
        signature.as_str(),
    ] {
        assert!(!stderr.contains(secret), "{secret} is in the log");
    }
}
