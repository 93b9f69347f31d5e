//! Connections and the registry that knows them. A connection is a transport-neutral endpoint:
//! an id, its origin, its capabilities once initialized, and one outbound queue, bounded in bytes,
//! that its transport's writer drains in order.
//!
//! Delivery never waits for a client. Queueing a frame is immediate whatever the transport, so a
//! broadcast or a thread's stream never waits on one recipient. A connection whose backlog would
//! pass its byte bound is closed as too slow instead: from then on nothing more is queued for it,
//! and its writer drops the frames still waiting, so a client that stops reading costs the others
//! neither time nor more memory than its bound. What closing means is the transport's business
//! (a WebSocket is closed with a close code; stdio ends the process, see `transport::stdio`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tether_protocol::{ConnectionStatus, InitializeCapabilities, Outgoing};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What a queued frame costs beyond its text: its queue slot and its shared allocation's header,
/// rounded up, so that a flood of tiny frames is bounded by the memory it really takes.
const FRAME_OVERHEAD_BYTES: usize = 64;

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

/// Why the server closed a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Its client stopped reading: more than `limit` bytes waited for it.
    TooSlow {
        /// The connection's outbound bound, in bytes.
        limit: usize,
    },
    /// Its client sent a frame larger than `limit` bytes.
    FrameTooLarge {
        /// `--max-frame-bytes`.
        limit: usize,
    },
    /// Its client broke the transport's protocol (the text says how).
    Protocol(String),
    /// Reading or writing the transport failed (the text says how).
    Transport(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::TooSlow { limit } => write!(
                f,
                "the client is not reading: more than {limit} bytes are queued for it"
            ),
            CloseReason::FrameTooLarge { limit } => {
                write!(f, "a frame is larger than the limit of {limit} bytes")
            }
            CloseReason::Protocol(how) | CloseReason::Transport(how) => f.write_str(how),
        }
    }
}

/// The close signal a connection shares with its transport's writer: a token, and why.
pub struct Closing {
    connection: u64,
    token: CancellationToken,
    reason: OnceLock<CloseReason>,
}

impl Closing {
    /// Closes the connection for `reason`; the first reason given is the one that counts (and
    /// the one logged).
    pub fn close(&self, reason: CloseReason) {
        if self.reason.set(reason).is_ok()
            && let Some(reason) = self.reason.get()
        {
            tracing::warn!(connection = self.connection, "closing connection: {reason}");
        }
        self.token.cancel();
    }

    /// Cancelled once the connection is closed.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Why it was closed, once it was.
    pub fn reason(&self) -> Option<&CloseReason> {
        self.reason.get()
    }
}

/// The writer's end of a connection's outbound queue. Dropping it drops every frame still
/// waiting, at once.
pub struct OutboundQueue {
    frames: mpsc::UnboundedReceiver<Arc<str>>,
    queued_bytes: Arc<AtomicUsize>,
    closing: Arc<Closing>,
}

impl OutboundQueue {
    /// The next frame; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Arc<str>> {
        let frame = self.frames.recv().await;
        self.taken(frame)
    }

    /// [`OutboundQueue::recv`] for a writer on a thread of its own.
    pub fn blocking_recv(&mut self) -> Option<Arc<str>> {
        let frame = self.frames.blocking_recv();
        self.taken(frame)
    }

    /// Nothing is waiting right now.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The connection's close signal.
    pub fn closing(&self) -> &Arc<Closing> {
        &self.closing
    }

    fn taken(&self, frame: Option<Arc<str>>) -> Option<Arc<str>> {
        if let Some(frame) = &frame {
            self.queued_bytes
                .fetch_sub(frame.len() + FRAME_OVERHEAD_BYTES, Ordering::Relaxed);
        }
        frame
    }
}

/// One client connection.
pub struct Connection {
    id: u64,
    origin: Origin,
    outbound: mpsc::UnboundedSender<Arc<str>>,
    queued_bytes: Arc<AtomicUsize>,
    max_queued_bytes: usize,
    closing: Arc<Closing>,
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
    /// or its transport failed ([`Connection::close`] says why).
    pub fn closed(&self) -> &CancellationToken {
        self.closing.token()
    }

    /// Closes the connection now for `reason` (logged); nothing more is queued for it.
    pub fn close(&self, reason: CloseReason) {
        self.closing.close(reason);
    }

    /// The connection's close signal, shared with its writer.
    pub fn closing(&self) -> &Arc<Closing> {
        &self.closing
    }

    /// Cancelled once the client is done (its stream ended, or the connection was closed).
    pub fn gone(&self) -> &CancellationToken {
        &self.gone
    }

    /// Queues `message` for the client, applying its notification opt-outs and the queue bound.
    /// Never waits for the client. False when it could not be queued (the connection is closing,
    /// or is closed now because its client stopped reading).
    pub async fn send(&self, message: Outgoing) -> bool {
        self.send_now(message)
    }

    /// [`Connection::send`] for callers that cannot await (a process's output callback).
    pub fn send_now(&self, message: Outgoing) -> bool {
        self.queue(&Frame::new(&message))
    }

    /// [`Connection::send`] of a message serialized once for many connections.
    pub async fn send_frame(&self, frame: &Frame) -> bool {
        self.queue(frame)
    }

    fn queue(&self, frame: &Frame) -> bool {
        let opted_out = frame.notification_method.as_deref().is_some_and(|method| {
            self.session()
                .is_some_and(|session| session.opted_out.contains(method))
        });
        if opted_out {
            return true;
        }
        if self.closed().is_cancelled() {
            return false;
        }
        let cost = frame.json.len() + FRAME_OVERHEAD_BYTES;
        let before = self.queued_bytes.fetch_add(cost, Ordering::Relaxed);
        // The bound is on the backlog: one frame larger than the bound still goes to a client
        // that has read everything else.
        if before > 0 && before + cost > self.max_queued_bytes {
            self.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
            self.close(CloseReason::TooSlow {
                limit: self.max_queued_bytes,
            });
            return false;
        }
        if self.outbound.send(Arc::clone(&frame.json)).is_err() {
            // The writer is gone: the connection is closing anyway.
            self.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// A message serialized once, to be sent to any number of connections (which share its text).
pub struct Frame {
    json: Arc<str>,
    notification_method: Option<String>,
}

impl Frame {
    /// Serializes `message`.
    pub fn new(message: &Outgoing) -> Frame {
        Frame {
            json: message.to_json().into(),
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
    /// Registers a new connection whose outbound backlog may reach `max_queued_bytes` before it
    /// is closed as too slow; the queue's other end is for the transport's writer.
    pub fn register(
        &self,
        origin: Origin,
        max_queued_bytes: usize,
    ) -> (Arc<Connection>, OutboundQueue) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (outbound, frames) = mpsc::unbounded_channel();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let closing = Arc::new(Closing {
            connection: id,
            token: CancellationToken::new(),
            reason: OnceLock::new(),
        });
        let connection = Arc::new(Connection {
            id,
            origin,
            outbound,
            queued_bytes: Arc::clone(&queued_bytes),
            max_queued_bytes,
            closing: Arc::clone(&closing),
            gone: CancellationToken::new(),
            session: OnceLock::new(),
        });
        self.lock().insert(id, Arc::clone(&connection));
        let queue = OutboundQueue {
            frames,
            queued_bytes,
            closing,
        };
        (connection, queue)
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

    /// Sends `message` to every initialized connection; waits for none of them.
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
        let (a, _ra) = registry.register(Origin::Stdio, 1024);
        let (b, _rb) = registry.register(Origin::WebSocket, 1024);
        let (c, _rc) = registry.register(Origin::WebSocket, 1024);
        let (d, _rd) = registry.register(Origin::WebSocket, 1024);
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
        let (connection, mut receiver) = registry.register(Origin::Stdio, 1024);
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
        assert_eq!(&*receiver.recv().await.unwrap(), r#"{"id":1,"result":{}}"#);
        assert!(receiver.is_empty());
    }

    #[tokio::test]
    async fn a_backlog_over_the_byte_bound_closes_the_connection_at_once() {
        let registry = Registry::default();
        let (slow, mut queue) = registry.register(Origin::WebSocket, 600);
        let frame = |bytes: usize| {
            Frame::new(&Outgoing::response(
                tether_protocol::RequestId::Integer(1),
                &json!("x".repeat(bytes)),
            ))
        };
        // Larger than the bound, but nothing else waits: it goes through.
        assert!(slow.send_frame(&frame(1000)).await);
        assert!(queue.recv().await.is_some(), "taken by the writer");
        assert!(slow.send_frame(&frame(200)).await);
        assert!(slow.send_frame(&frame(200)).await);
        assert!(!slow.closed().is_cancelled());
        assert!(!slow.send_frame(&frame(200)).await, "over the bound");
        assert!(slow.closed().is_cancelled());
        assert_eq!(
            queue.closing().reason(),
            Some(&CloseReason::TooSlow { limit: 600 })
        );
        assert!(!slow.send_frame(&frame(1)).await, "nothing after closing");
    }

    #[tokio::test]
    async fn the_writer_taking_frames_makes_room_again() {
        let registry = Registry::default();
        let (connection, mut queue) = registry.register(Origin::Stdio, 2_000);
        let frame = Frame::new(&Outgoing::response(
            tether_protocol::RequestId::Integer(1),
            &json!("x".repeat(500)),
        ));
        for _ in 0..100 {
            assert!(connection.send_frame(&frame).await);
            assert!(connection.send_frame(&frame).await);
            queue.recv().await.unwrap();
            queue.recv().await.unwrap();
        }
        assert!(queue.is_empty());
        assert!(!connection.closed().is_cancelled());
    }
}
