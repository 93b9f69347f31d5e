use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::Schemas;

/// What a client can receive.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// One JSON text message.
    Text(String),
    /// A WebSocket pong.
    Pong(Vec<u8>),
    /// The server closed the connection.
    Closed,
}

enum Outbound {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
}

/// A protocol client over any transport. Every message it receives is checked against the codex
/// 0.169 schema before the test sees it.
pub struct Client {
    outbound: mpsc::UnboundedSender<Outbound>,
    inbound: mpsc::UnboundedReceiver<Frame>,
    methods: HashMap<String, String>,
}

const WAIT: Duration = Duration::from_secs(15);

impl Client {
    /// A client on a byte stream pair speaking newline-delimited JSON (a process's stdio).
    pub fn over_lines(
        reader: impl AsyncRead + Unpin + Send + 'static,
        mut writer: impl AsyncWrite + Unpin + Send + 'static,
    ) -> Client {
        let (outbound, mut to_send) = mpsc::unbounded_channel::<Outbound>();
        let (received, inbound) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(message) = to_send.recv().await {
                let bytes = match message {
                    Outbound::Text(text) => text.into_bytes(),
                    Outbound::Binary(bytes) => bytes,
                    Outbound::Ping(_) => continue,
                };
                if writer.write_all(&bytes).await.is_err() || writer.write_all(b"\n").await.is_err()
                {
                    return;
                }
                let _ = writer.flush().await;
            }
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if received.send(Frame::Text(line)).is_err() {
                    return;
                }
            }
            let _ = received.send(Frame::Closed);
        });
        Client {
            outbound,
            inbound,
            methods: HashMap::new(),
        }
    }

    /// Connects to `ws://address/` with extra handshake headers.
    pub async fn websocket(
        address: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, tungstenite::Error> {
        let mut request = format!("ws://{address}/").into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client::over_websocket(socket))
    }

    /// Connects to the WebSocket server on a unix socket.
    pub async fn unix(path: &Path) -> Result<Client, tungstenite::Error> {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(tungstenite::Error::Io)?;
        let (socket, _) = tokio_tungstenite::client_async("ws://localhost/", stream).await?;
        Ok(Client::over_websocket(socket))
    }

    fn over_websocket<S>(socket: tokio_tungstenite::WebSocketStream<S>) -> Client
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sink, mut stream) = socket.split();
        let (outbound, mut to_send) = mpsc::unbounded_channel::<Outbound>();
        let (received, inbound) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(message) = to_send.recv().await {
                let message = match message {
                    Outbound::Text(text) => Message::Text(text.into()),
                    Outbound::Binary(bytes) => Message::Binary(bytes.into()),
                    Outbound::Ping(bytes) => Message::Ping(bytes.into()),
                };
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            // The client was dropped: close the connection like a real client going away.
            let _ = sink.close().await;
        });
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let frame = match message {
                    Message::Text(text) => Frame::Text(text.to_string()),
                    Message::Pong(bytes) => Frame::Pong(bytes.to_vec()),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if received.send(frame).is_err() {
                    return;
                }
            }
            let _ = received.send(Frame::Closed);
        });
        Client {
            outbound,
            inbound,
            methods: HashMap::new(),
        }
    }

    /// Sends one text frame as is.
    pub fn send_raw(&self, text: impl Into<String>) {
        let _ = self.outbound.send(Outbound::Text(text.into()));
    }

    /// Sends a binary WebSocket frame (raw bytes plus newline on stdio).
    pub fn send_binary(&self, bytes: Vec<u8>) {
        let _ = self.outbound.send(Outbound::Binary(bytes));
    }

    /// Sends a WebSocket ping.
    pub fn ping(&self, payload: Vec<u8>) {
        let _ = self.outbound.send(Outbound::Ping(payload));
    }

    /// Sends a message, remembering the method of a request so its response can be checked.
    pub fn send(&mut self, message: Value) {
        if let (Some(id), Some(method)) = (
            message.get("id"),
            message.get("method").and_then(Value::as_str),
        ) {
            self.methods.insert(id.to_string(), method.to_owned());
        }
        self.send_raw(message.to_string());
    }

    /// Sends a request.
    pub fn request(&mut self, id: impl Into<Value>, method: &str, params: Value) {
        self.send(json!({"id": id.into(), "method": method, "params": params}));
    }

    /// The next frame, or a panic after 15 s.
    pub async fn frame(&mut self) -> Frame {
        match tokio::time::timeout(WAIT, self.inbound.recv()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => Frame::Closed,
            Err(_) => panic!("no message from tether within {WAIT:?}"),
        }
    }

    /// The next message, schema-checked; panics if the connection closes instead.
    pub async fn recv(&mut self) -> Value {
        match self.frame().await {
            Frame::Text(text) => {
                let message: Value =
                    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{err}: {text}"));
                let method = message
                    .get("id")
                    .and_then(|id| self.methods.get(&id.to_string()));
                Schemas::get().check(&message, method.map(String::as_str));
                message
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Nothing arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Ok(Some(frame)) = tokio::time::timeout(quiet, self.inbound.recv()).await {
            panic!("expected silence, got {frame:?}");
        }
    }

    /// Waits until the server closes the connection, skipping messages.
    pub async fn closed(&mut self) {
        while self.frame().await != Frame::Closed {}
    }

    /// Sends `initialize` and returns its result.
    pub async fn initialize(&mut self, name: &str, capabilities: Value) -> Value {
        self.request(
            "init",
            "initialize",
            json!({"clientInfo": {"name": name, "version": "1.0"}, "capabilities": capabilities}),
        );
        let response = self.recv().await;
        assert_eq!(response["id"], "init", "{response}");
        response["result"].clone()
    }

    /// Sends a request and returns the response with its id (other messages first are a failure).
    pub async fn call(&mut self, id: impl Into<Value>, method: &str, params: Value) -> Value {
        let id = id.into();
        self.request(id.clone(), method, params);
        let response = self.recv().await;
        assert_eq!(response["id"], id, "{response}");
        response
    }

    /// `device/key/create` for the pair; returns the new key's id.
    pub async fn create_device_key(&mut self, account_user_id: &str, client_id: &str) -> String {
        let params = json!({"accountUserId": account_user_id, "clientId": client_id});
        let created = self.call("create", "device/key/create", params).await;
        created["result"]["keyId"]
            .as_str()
            .unwrap_or_else(|| panic!("a key id: {created}"))
            .to_owned()
    }

    /// Receives until a message with `method` arrives; returns everything received, in order.
    pub async fn recv_until(&mut self, method: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let message = self.recv().await;
            let done = message["method"] == method;
            seen.push(message);
            if done {
                return seen;
            }
        }
    }

    /// `thread/start` with `params`; checks that `thread/started` follows for the same thread and
    /// returns its id.
    pub async fn start_thread(&mut self, params: Value) -> String {
        let response = self.call("start", "thread/start", params).await;
        let thread_id = response["result"]["thread"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a thread id: {response}"))
            .to_owned();
        let started = self.recv().await;
        assert_eq!(started["method"], "thread/started", "{started}");
        assert_eq!(started["params"]["thread"]["id"], thread_id.as_str());
        thread_id
    }
}
