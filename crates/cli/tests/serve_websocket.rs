//! `tether serve` over `ws://` and the unix control socket, with real sockets: framing, health
//! routes, Origin refusal, authentication, device-key refusal, slow clients and frame limits.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{SinkExt as _, StreamExt as _};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tether_testkit::{Client, Frame, TetherProcess};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

async fn start(home: &Path, args: &[&str]) -> TetherProcess {
    TetherProcess::start(Path::new(TETHER), home, args, &[]).await
}

/// One raw HTTP/1.1 request; returns the status code.
async fn http_status(address: &str, request: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 1024];
    let n = stream.read(&mut response).await.unwrap();
    let head = String::from_utf8_lossy(&response[..n]);
    head.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{head}"))
}

fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn two_clients_at_once_each_get_their_own_answers() {
    let home = tempfile::tempdir().unwrap();
    let process = start(home.path(), &["--listen", "ws://127.0.0.1:0"]).await;
    let mut first = process.ws().await;
    let mut second = process.ws().await;
    first.initialize("first", Value::Null).await;
    // The second client is not initialized yet: its requests are its own business.
    let not_yet = second
        .call(1, "device/key/public", json!({"keyId": "x"}))
        .await;
    assert_eq!(not_yet["error"]["message"], "Not initialized");
    second
        .initialize("second", json!({"requestAttestation": true}))
        .await;
    for round in 0..20 {
        first.request(round, "device/key/public", json!({"keyId": "x"}));
        second.request(
            format!("s{round}"),
            "device/key/public",
            json!({"keyId": "x"}),
        );
    }
    for round in 0..20 {
        assert_eq!(first.recv().await["id"], round);
        assert_eq!(second.recv().await["id"], format!("s{round}"));
    }
}

#[tokio::test]
async fn device_keys_are_refused_over_websocket_and_unix_before_any_validation() {
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("control.sock");
    let unix = format!("unix://{}", socket.display());
    let process = start(
        home.path(),
        &["--listen", "ws://127.0.0.1:0", "--listen", &unix],
    )
    .await;
    let mut ws = process.ws().await;
    let mut local = Client::unix(process.unix_path()).await.unwrap();
    for client in [&mut ws, &mut local] {
        client.initialize("remote", Value::Null).await;
        let requests = [
            (
                "device/key/create",
                json!({"accountUserId": "", "clientId": ""}),
            ),
            ("device/key/public", json!({"keyId": "not-a-key-id"})),
            (
                "device/key/sign",
                json!({"keyId": "../../etc", "payload": {"type": "remoteControlClientConnection", "nonce": "", "audience": "remote_control_client_websocket", "sessionId": "", "targetOrigin": "", "targetPath": "", "accountUserId": "", "clientId": "", "tokenExpiresAt": 0, "tokenSha256Base64url": "", "scopes": []}}),
            ),
        ];
        for (id, (method, params)) in requests.into_iter().enumerate() {
            let response = client.call(id, method, params).await;
            assert_eq!(
                response,
                json!({"error": {"code": -32600, "message": format!("{method} is not available over remote transports")}, "id": id})
            );
        }
    }
    assert!(
        !home.path().join("device-keys").exists(),
        "no provider was reached"
    );
}

#[tokio::test]
async fn framing_rules_binary_dropped_pings_answered_two_documents_dropped() {
    let home = tempfile::tempdir().unwrap();
    let process = start(home.path(), &["--listen", "ws://127.0.0.1:0/"]).await;
    let mut client = Client::websocket(&format!("{}/any/path", process.ws_address()), &[])
        .await
        .unwrap();
    client.initialize("frames", Value::Null).await;
    client.send_binary(br#"{"id":1,"method":"device/key/public","params":{"keyId":"x"}}"#.to_vec());
    client.send_raw(r#"{"id":2,"method":"x"}{"id":3,"method":"y"}"#);
    client.ping(b"are you there".to_vec());
    assert_eq!(client.frame().await, Frame::Pong(b"are you there".to_vec()));
    client.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(
        client
            .call(4, "device/key/public", json!({"keyId": "x"}))
            .await["id"],
        4
    );
}

#[tokio::test]
async fn health_routes_origin_refusal_and_plain_get() {
    let home = tempfile::tempdir().unwrap();
    let process = start(home.path(), &["--listen", "ws://127.0.0.1:0"]).await;
    let address = process.ws_address();
    assert_eq!(
        http_status(&address, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await,
        200
    );
    assert_eq!(
        http_status(&address, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await,
        200
    );
    assert_eq!(
        http_status(
            &address,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n"
        )
        .await,
        403
    );
    assert_eq!(
        http_status(
            &address,
            &upgrade_request("/", "Origin: http://localhost\r\n")
        )
        .await,
        403
    );
    assert_eq!(
        http_status(&address, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await,
        400
    );
    assert_eq!(
        http_status(&address, &upgrade_request("/deep/path", "")).await,
        101
    );
    let refused = Client::websocket(&address, &[("Origin", "https://chatgpt.com")]).await;
    assert!(refused.is_err());
}

async fn start_fails(home: &Path, args: &[&str]) -> String {
    let output = tokio::process::Command::new(TETHER)
        .arg("--home")
        .arg(home)
        .arg("serve")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    String::from_utf8(output.stderr).unwrap()
}

#[tokio::test]
async fn non_loopback_listeners_need_auth_and_bad_auth_flags_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let stderr = start_fails(home.path(), &["--listen", "ws://0.0.0.0:0"]).await;
    assert!(
        stderr.contains("refusing to start non-loopback websocket listener 0.0.0.0:0 without auth"),
        "{stderr}"
    );
    let token = home.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let token = token.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--ws-token-file", token],
            "websocket auth flags require `--ws-auth capability-token` or `--ws-auth signed-bearer-token`",
        ),
        (
            &["--ws-auth", "capability-token"],
            "`--ws-token-file` or `--ws-token-sha256` is required when `--ws-auth capability-token` is set",
        ),
        (
            &[
                "--ws-auth",
                "capability-token",
                "--ws-token-file",
                token,
                "--ws-token-sha256",
                "00",
            ],
            "`--ws-token-file` and `--ws-token-sha256` are mutually exclusive",
        ),
        (
            &[
                "--ws-auth",
                "capability-token",
                "--ws-token-file",
                "relative/token",
            ],
            "--ws-token-file must be an absolute path",
        ),
        (
            &[
                "--ws-auth",
                "signed-bearer-token",
                "--ws-shared-secret-file",
                token,
            ],
            "must be at least 32 bytes",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["--listen", "ws://127.0.0.1:0"];
        args.extend_from_slice(flags);
        let stderr = start_fails(home.path(), &args).await;
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
    }
}

async fn handshake_status(address: &str, authorization: Option<&str>) -> u16 {
    let extra = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    http_status(address, &upgrade_request("/", &extra)).await
}

#[tokio::test]
async fn capability_token_from_a_file_or_its_hash() {
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("token");
    std::fs::write(&token_file, "  correct-horse\n").unwrap();
    let hash: String = Sha256::digest(b"correct-horse")
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let by_file = [
        "--ws-auth",
        "capability-token",
        "--ws-token-file",
        token_file.to_str().unwrap(),
    ];
    let by_hash = ["--ws-auth", "capability-token", "--ws-token-sha256", &hash];
    for flags in [&by_file[..], &by_hash[..]] {
        let mut args = vec!["--listen", "ws://0.0.0.0:0"];
        args.extend_from_slice(flags);
        let process = start(home.path(), &args).await;
        let address = format!(
            "127.0.0.1:{}",
            process.ws_address().rsplit(':').next().unwrap()
        );
        assert_eq!(handshake_status(&address, None).await, 401);
        assert_eq!(handshake_status(&address, Some("Bearer wrong")).await, 401);
        assert_eq!(
            handshake_status(&address, Some("Basic Y29ycmVjdC1ob3JzZQ==")).await,
            401
        );
        assert_eq!(
            handshake_status(&address, Some("Bearer correct-horse")).await,
            101
        );
        assert_eq!(
            http_status(&address, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await,
            200,
            "health needs no token"
        );
        let mut client = Client::websocket(&address, &[("Authorization", "Bearer correct-horse")])
            .await
            .unwrap();
        client.initialize("authed", Value::Null).await;
        assert!(
            !process.stderr().contains("correct-horse"),
            "the token is never logged"
        );
    }
}

fn jwt(secret: &[u8], claims: Value) -> String {
    let encode = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!(
        "{}.{}",
        encode(json!({"alg": "HS256", "typ": "JWT"})),
        encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn signed_bearer_token_checks_signature_expiry_issuer_and_audience() {
    let home = tempfile::tempdir().unwrap();
    let secret = "0123456789abcdef0123456789abcdef-secret";
    let secret_file = home.path().join("secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let process = start(
        home.path(),
        &[
            "--listen",
            "ws://127.0.0.1:0",
            "--ws-auth",
            "signed-bearer-token",
            "--ws-shared-secret-file",
            secret_file.to_str().unwrap(),
            "--ws-issuer",
            "issuer",
            "--ws-audience",
            "tether",
            "--ws-max-clock-skew-seconds",
            "5",
        ],
    )
    .await;
    let address = process.ws_address();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let good = jwt(
        secret.as_bytes(),
        json!({"exp": now + 60, "iss": "issuer", "aud": "tether"}),
    );
    let cases = [
        (good.clone(), 101),
        (
            jwt(
                b"another secret of sufficient length!!",
                json!({"exp": now + 60, "iss": "issuer", "aud": "tether"}),
            ),
            401,
        ),
        (
            jwt(
                secret.as_bytes(),
                json!({"exp": now - 60, "iss": "issuer", "aud": "tether"}),
            ),
            401,
        ),
        (
            jwt(
                secret.as_bytes(),
                json!({"exp": now + 60, "nbf": now + 60, "iss": "issuer", "aud": "tether"}),
            ),
            401,
        ),
        (
            jwt(
                secret.as_bytes(),
                json!({"exp": now + 60, "iss": "other", "aud": "tether"}),
            ),
            401,
        ),
        (
            jwt(
                secret.as_bytes(),
                json!({"exp": now + 60, "iss": "issuer", "aud": ["a", "tether"]}),
            ),
            101,
        ),
        (
            jwt(
                secret.as_bytes(),
                json!({"exp": now + 60, "iss": "issuer", "aud": "other"}),
            ),
            401,
        ),
    ];
    for (token, status) in cases {
        assert_eq!(
            handshake_status(&address, Some(&format!("Bearer {token}"))).await,
            status,
            "{token}"
        );
    }
    let mut client = Client::websocket(&address, &[("Authorization", &format!("Bearer {good}"))])
        .await
        .unwrap();
    client.initialize("jwt", Value::Null).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_without_slowing_others() {
    let home = tempfile::tempdir().unwrap();
    let process = start(
        home.path(),
        &[
            "--listen",
            "ws://127.0.0.1:0",
            "--outbound-queue-bytes",
            "65536",
        ],
    )
    .await;
    // The slow client: a raw socket that completes the handshake, floods requests, never reads.
    let mut slow = tokio::net::TcpStream::connect(process.ws_address())
        .await
        .unwrap();
    slow.write_all(upgrade_request("/", "").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 256];
    let _ = slow.read(&mut head).await.unwrap();
    let mut fast = process.ws().await;
    fast.initialize("fast", Value::Null).await;
    let frame =
        masked_text_frame(br#"{"id":1,"method":"device/key/public","params":{"keyId":"x"}}"#);
    let flood = tokio::spawn(async move {
        let started = Instant::now();
        // Until the server gives up on this client, or 20 s.
        while started.elapsed() < Duration::from_secs(20) {
            if slow.write_all(&frame.repeat(256)).await.is_err() {
                return true;
            }
        }
        false
    });
    let mut worst = Duration::ZERO;
    for id in 0..50 {
        let started = Instant::now();
        fast.call(id, "device/key/public", json!({"keyId": "x"}))
            .await;
        worst = worst.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(flood.await.unwrap(), "the slow client was disconnected");
    assert!(
        worst < Duration::from_secs(2),
        "the other client waited {worst:?}"
    );
    assert!(
        process
            .stderr()
            .contains("closing connection: the client is not reading: more than 65536 bytes"),
        "{}",
        process.stderr()
    );
}

/// A client-to-server text frame (clients must mask).
fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test]
async fn a_websocket_message_over_the_limit_closes_that_connection_only_with_1009() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let home = tempfile::tempdir().unwrap();
    let process = start(
        home.path(),
        &["--listen", "ws://127.0.0.1:0", "--max-frame-bytes", "4096"],
    )
    .await;
    let (mut big, _) = tokio_tungstenite::connect_async(format!("ws://{}/", process.ws_address()))
        .await
        .unwrap();
    let mut other = process.ws().await;
    other.initialize("other", Value::Null).await;
    let request =
        json!({"id": 1, "method": "device/key/public", "params": {"keyId": "k".repeat(10_000)}});
    big.send(Message::Text(request.to_string().into()))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(15), big.next())
        .await
        .expect("an answer to the big frame");
    let Some(Ok(Message::Close(Some(close)))) = first else {
        panic!("expected a close frame with a code, got {first:?}")
    };
    assert_eq!(close.code, CloseCode::Size);
    assert_eq!(close.reason, "message too big: the limit is 4096 bytes");
    assert_eq!(
        other
            .call(2, "device/key/public", json!({"keyId": "x"}))
            .await["id"],
        2
    );
    assert!(
        process
            .stderr()
            .contains("closing connection: a frame is larger than the limit of 4096 bytes"),
        "{}",
        process.stderr()
    );
}

#[tokio::test]
async fn unix_socket_is_private_replaces_a_stale_socket_and_refuses_a_live_one() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = tempfile::tempdir().unwrap();
    let default_socket = home
        .path()
        .join("app-server-control/app-server-control.sock");
    // A stale socket file: bound once, nobody listening.
    std::fs::create_dir_all(default_socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&default_socket).unwrap());
    let process = start(home.path(), &["--listen", "unix://"]).await;
    assert_eq!(process.unix_path(), default_socket);
    let mode = std::fs::metadata(&default_socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let mut client = Client::unix(&default_socket).await.unwrap();
    client.initialize("local", Value::Null).await;
    let stderr = start_fails(home.path(), &["--listen", "unix://"]).await;
    assert!(
        stderr.contains("app-server control socket is already in use at"),
        "{stderr}"
    );
    // The live server still works.
    assert_eq!(
        client
            .call(1, "device/key/public", json!({"keyId": "x"}))
            .await["id"],
        1
    );
}

#[tokio::test]
async fn sigterm_closes_websocket_clients_and_removes_the_socket() {
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("s.sock");
    let unix = format!("unix://{}", socket.display());
    let mut process = start(
        home.path(),
        &["--listen", "ws://127.0.0.1:0", "--listen", &unix],
    )
    .await;
    let mut ws = process.ws().await;
    ws.initialize("ws", Value::Null).await;
    let mut local = Client::unix(&socket).await.unwrap();
    local.initialize("unix", Value::Null).await;
    process.signal("TERM");
    ws.closed().await;
    local.closed().await;
    assert_eq!(process.wait(Duration::from_secs(5)).await.code(), Some(0));
    assert!(!socket.exists());
}

#[tokio::test]
async fn opted_out_notifications_are_never_delivered_to_that_connection() {
    let home = tempfile::tempdir().unwrap();
    let process = start(home.path(), &["--listen", "ws://127.0.0.1:0"]).await;
    let mut quiet = process.ws().await;
    let mut loud = process.ws().await;
    quiet
        .initialize(
            "quiet",
            json!({"optOutNotificationMethods": ["thread/started", "thread/*"]}),
        )
        .await;
    loud.initialize("loud", Value::Null).await;
    let started = loud
        .call(1, "thread/start", json!({"ephemeral": true}))
        .await;
    assert!(started["result"]["thread"]["id"].is_string());
    assert_eq!(loud.recv().await["method"], "thread/started");
    // Exact names only: the opted-out method never arrives, responses always do.
    quiet.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(
        quiet.call(2, "thread/loaded/list", json!({})).await["result"]["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
