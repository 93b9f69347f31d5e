//! A byte tap for benches: a TCP forwarder on 127.0.0.1 between tether and an upstream (such as a
//! [`ResponsesServer`](crate::ResponsesServer)) that timestamps every read in either direction.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Which way the bytes of a [`TapRead`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Read from the client (tether), forwarded to the upstream.
    ToUpstream,
    /// Read from the upstream, forwarded to the client.
    FromUpstream,
}

/// One read through a [`Tap`], recorded once its bytes were forwarded.
#[derive(Clone, Debug)]
pub struct TapRead {
    /// When the read returned, before the bytes were forwarded.
    pub at: Instant,
    /// Which way the bytes went.
    pub direction: Direction,
    /// The connection through the tap, numbered from 0 in the order they were accepted: a
    /// stream's bytes continue only in reads of the same connection and direction.
    pub connection: usize,
    /// The bytes read.
    pub bytes: Vec<u8>,
}

/// A TCP forwarder on 127.0.0.1 to an upstream `http://HOST:PORT/v1`, recording every read with
/// its time. Each accepted connection gets its own connection to the upstream; both sockets have
/// `TCP_NODELAY`. Stops accepting when dropped.
pub struct Tap {
    address: SocketAddr,
    reads: Arc<Mutex<Vec<TapRead>>>,
    task: JoinHandle<()>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tap {
    /// Starts a tap in front of the upstream at `upstream_base_url`, of the form
    /// `http://127.0.0.1:PORT/v1` (as [`ResponsesServer::base_url`](crate::ResponsesServer::base_url)
    /// returns).
    pub async fn start(upstream_base_url: &str) -> Tap {
        let target: SocketAddr = upstream_base_url
            .strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix("/v1"))
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("unexpected upstream URL {upstream_base_url}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let reads = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&reads);
        let task = tokio::spawn(async move {
            let mut connection = 0;
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(target).await else {
                    continue;
                };
                for stream in [&client, &upstream] {
                    let _ = stream.set_nodelay(true);
                }
                let (from_client, to_client) = client.into_split();
                let (from_upstream, to_upstream) = upstream.into_split();
                let link = Link {
                    connection,
                    reads: Arc::clone(&shared),
                };
                tokio::spawn(
                    link.clone()
                        .forward(from_client, to_upstream, Direction::ToUpstream),
                );
                tokio::spawn(link.forward(from_upstream, to_client, Direction::FromUpstream));
                connection += 1;
            }
        });
        Tap {
            address,
            reads,
            task,
        }
    }

    /// The tap's own base URL, `http://127.0.0.1:PORT/v1`, to give the client in place of the
    /// upstream's.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// Every read recorded since the last call, in the order they were recorded.
    pub fn take(&self) -> Vec<TapRead> {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

/// One connection through the tap and where its reads are recorded.
#[derive(Clone)]
struct Link {
    connection: usize,
    reads: Arc<Mutex<Vec<TapRead>>>,
}

impl Link {
    /// Copies one direction, timestamping each read as it returns and recording it once
    /// forwarded.
    async fn forward(self, mut from: OwnedReadHalf, mut to: OwnedWriteHalf, direction: Direction) {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            let at = Instant::now();
            if to.write_all(&buffer[..read]).await.is_err() {
                break;
            }
            self.reads.lock().unwrap().push(TapRead {
                at,
                direction,
                connection: self.connection,
                bytes: buffer[..read].to_vec(),
            });
        }
        let _ = to.shutdown().await;
    }
}
