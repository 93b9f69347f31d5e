//! Connections and the registry that knows them. A connection is a transport-neutral endpoint:
//! an id, its origin, its capabilities once initialized, and one bounded outbound queue that its
//! transport's writer drains in order.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tether_protocol::{ConnectionStatus, InitializeCapabilities, Outgoing};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

/// How a connection reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The process's own stdin/stdout.
    Stdio,
    /// The unix control socket (owner-only).
    Unix,
    /// The `ws://` listener.
    WebSocket,
}

impl Origin {
    /// Device-key methods are for the local process that owns this server, never a socket.
    pub fn allows_device_keys(self) -> bool {
        self == Origin::Stdio
    }

    /// Server introspection (`tether/status`) is for the owner: stdio and the 0600 unix socket.
    pub fn allows_status(self) -> bool {
        self != Origin::WebSocket
    }

    /// A short name for logs and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Stdio => "stdio",
            Origin::Unix => "unix",
            Origin::WebSocket => "websocket",
        }
    }
}

/// What to do when a connection's outbound queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room: the stdio client is never dropped.
    Wait,
    /// Disconnect the slow client, so it never slows anyone else.
    Disconnect,
}

/// What a connection declared in `initialize`.
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// `clientInfo.name`.
    pub client_name: String,
    /// Experimental methods and fields are allowed.
    pub experimental_api: bool,
    /// May be asked for `attestation/generate`.
    pub request_attestation: bool,
    opted_out: HashSet<String>,
}

impl Session {
    /// From the `capabilities` of `initialize`.
    pub fn new(client_name: &str, capabilities: Option<InitializeCapabilities>) -> Session {
        let capabilities = capabilities.unwrap_or_default();
        Session {
            client_name: client_name.to_owned(),
            experimental_api: capabilities.experimental_api,
            request_attestation: capabilities.request_attestation,
            opted_out: capabilities
                .opt_out_notification_methods
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }
}

/// One client connection.
pub struct Connection {
    id: u64,
    origin: Origin,
    outbound: mpsc::Sender<String>,
    when_full: WhenFull,
    closed: CancellationToken,
    gone: CancellationToken,
    session: OnceLock<Session>,
}

impl Connection {
    /// Process-wide unique, increasing from 0 in accept order.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Where it comes from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The session, once `initialize` succeeded.
    pub fn session(&self) -> Option<&Session> {
        self.session.get()
    }

    /// Records a successful `initialize`; false if one already happened.
    pub fn initialize(&self, session: Session) -> bool {
        self.session.set(session).is_ok()
    }

    /// Cancelled when the connection must close now: its client is too slow, its frame too big,
    /// or its transport failed.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// Cancelled once the client is done (its stream ended, or the connection was closed).
    pub fn gone(&self) -> &CancellationToken {
        &self.gone
    }

    /// Queues `message` for the client, applying its notification opt-outs and the queue policy.
    /// False when it could not be queued (the connection is closing, or was too slow).
    pub async fn send(&self, message: Outgoing) -> bool {
        self.send_frame(&Frame::new(&message)).await
    }

    /// [`Connection::send`] of a message serialized once for many connections.
    pub async fn send_frame(&self, frame: &Frame) -> bool {
        let opted_out = frame.notification_method.as_deref().is_some_and(|method| {
            self.session()
                .is_some_and(|session| session.opted_out.contains(method))
        });
        if opted_out {
            return true;
        }
        let frame = frame.json.clone();
        match self.when_full {
            // An error means the writer is gone: the connection is closing anyway.
            WhenFull::Wait => self.outbound.send(frame).await.is_ok(),
            WhenFull::Disconnect => match self.outbound.try_send(frame) {
                Ok(()) => true,
                Err(TrySendError::Closed(_)) => false,
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(
                        connection = self.id,
                        "closing connection: its outbound queue is full"
                    );
                    self.closed.cancel();
                    false
                }
            },
        }
    }
}

/// A message serialized once, to be sent to any number of connections.
pub struct Frame {
    json: String,
    notification_method: Option<String>,
}

impl Frame {
    /// Serializes `message`.
    pub fn new(message: &Outgoing) -> Frame {
        Frame {
            json: message.to_json(),
            notification_method: message.notification_method().map(str::to_owned),
        }
    }
}

/// Every open connection, by id.
#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    connections: Mutex<BTreeMap<u64, Arc<Connection>>>,
}

impl Registry {
    /// Registers a new connection with an outbound queue of `capacity` frames; the receiver is
    /// for the transport's writer.
    pub fn register(
        &self,
        origin: Origin,
        when_full: WhenFull,
        capacity: usize,
    ) -> (Arc<Connection>, mpsc::Receiver<String>) {
        let (outbound, receiver) = mpsc::channel(capacity.max(1));
        let connection = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            origin,
            outbound,
            when_full,
            closed: CancellationToken::new(),
            gone: CancellationToken::new(),
            session: OnceLock::new(),
        });
        self.lock().insert(connection.id, Arc::clone(&connection));
        (connection, receiver)
    }

    /// Forgets a closed connection.
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// The open connection with the lowest id among `candidates` whose session satisfies `wants`:
    /// how a thread picks the one subscriber to ask for something.
    pub fn lowest_matching(
        &self,
        candidates: impl IntoIterator<Item = u64>,
        wants: impl Fn(&Session) -> bool,
    ) -> Option<Arc<Connection>> {
        let mut candidates: Vec<u64> = candidates.into_iter().collect();
        candidates.sort_unstable();
        let connections = self.lock();
        candidates.into_iter().find_map(|id| {
            connections
                .get(&id)
                .filter(|c| c.session().is_some_and(&wants))
                .cloned()
        })
    }

    /// The open connections among `ids`.
    pub fn connections(&self, ids: impl IntoIterator<Item = u64>) -> Vec<Arc<Connection>> {
        let connections = self.lock();
        ids.into_iter()
            .filter_map(|id| connections.get(&id).cloned())
            .collect()
    }

    /// Sends `message` to every initialized connection.
    pub async fn broadcast(&self, message: Outgoing) {
        let initialized: Vec<Arc<Connection>> = self
            .lock()
            .values()
            .filter(|c| c.session().is_some())
            .cloned()
            .collect();
        let frame = Frame::new(&message);
        for connection in initialized {
            connection.send_frame(&frame).await;
        }
    }

    /// What `tether/status` shows of every open connection.
    pub fn snapshot(&self) -> Vec<ConnectionStatus> {
        self.lock()
            .values()
            .map(|c| {
                let session = c.session();
                ConnectionStatus {
                    id: c.id,
                    transport: c.origin.as_str().to_owned(),
                    initialized: session.is_some(),
                    client: session.map(|s| s.client_name.clone()),
                    experimental_api: session.is_some_and(|s| s.experimental_api),
                    request_attestation: session.is_some_and(|s| s.request_attestation),
                }
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Connection>>> {
        // Critical sections never panic, so poisoning cannot happen; recover anyway.
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn capabilities(attestation: bool, opt_out: &[&str]) -> Option<InitializeCapabilities> {
        Some(InitializeCapabilities {
            experimental_api: false,
            request_attestation: attestation,
            opt_out_notification_methods: Some(opt_out.iter().map(|s| s.to_string()).collect()),
        })
    }

    #[test]
    fn ids_increase_and_lowest_matching_skips_closed_and_uninitialized() {
        let registry = Registry::default();
        let (a, _ra) = registry.register(Origin::Stdio, WhenFull::Wait, 4);
        let (b, _rb) = registry.register(Origin::WebSocket, WhenFull::Disconnect, 4);
        let (c, _rc) = registry.register(Origin::WebSocket, WhenFull::Disconnect, 4);
        let (d, _rd) = registry.register(Origin::WebSocket, WhenFull::Disconnect, 4);
        assert_eq!([a.id(), b.id(), c.id(), d.id()], [0, 1, 2, 3]);
        assert!(b.initialize(Session::new("test", capabilities(true, &[]))));
        assert!(
            !b.initialize(Session::new("test", None)),
            "a second initialize is refused"
        );
        assert!(c.initialize(Session::new("test", capabilities(true, &[]))));
        assert!(d.initialize(Session::new("test", capabilities(false, &[]))));
        let attesting = |s: &Session| s.request_attestation;
        let pick = |ids: &[u64]| {
            registry
                .lowest_matching(ids.iter().copied(), attesting)
                .map(|c| c.id())
        };
        assert_eq!(pick(&[3, 2, 1, 0]), Some(1));
        assert_eq!(pick(&[0, 3]), None, "0 is not initialized, 3 did not ask");
        registry.remove(1);
        assert_eq!(pick(&[3, 2, 1]), Some(2));
        assert_eq!(pick(&[9]), None);
        assert_eq!(registry.snapshot().len(), 3);
    }

    #[tokio::test]
    async fn opted_out_notifications_are_not_queued_but_responses_are() {
        let registry = Registry::default();
        let (connection, mut receiver) = registry.register(Origin::Stdio, WhenFull::Wait, 8);
        connection.initialize(Session::new(
            "test",
            capabilities(false, &["thread/started", "item/*"]),
        ));
        let notify = |method: &str| Outgoing::Notification {
            method: method.into(),
            params: json!({}),
            emitted_at_ms: 1,
        };
        connection.send(notify("thread/started")).await;
        connection.send(notify("item/started")).await;
        connection
            .send(Outgoing::response(
                tether_protocol::RequestId::Integer(1),
                &json!({}),
            ))
            .await;
        assert!(
            receiver.recv().await.unwrap().contains("item/started"),
            "no wildcards"
        );
        assert_eq!(receiver.recv().await.unwrap(), r#"{"id":1,"result":{}}"#);
        assert!(receiver.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_queue_disconnects_only_when_asked_to() {
        let registry = Registry::default();
        let (slow, _receiver) = registry.register(Origin::WebSocket, WhenFull::Disconnect, 1);
        let message = || Outgoing::response(tether_protocol::RequestId::Integer(1), &json!(null));
        slow.send(message()).await;
        assert!(!slow.closed().is_cancelled());
        slow.send(message()).await;
        assert!(slow.closed().is_cancelled());
    }
}
