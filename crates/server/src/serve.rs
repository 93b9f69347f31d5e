//! `tether serve`: binds every listener, serves until SIGINT/SIGTERM (or the end of stdin), then
//! shuts down gracefully: stop accepting and reading, answer what was received, flush, close.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt as _;
use sha2::{Digest as _, Sha256};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection::{CloseReason, Origin, Registry};
use crate::transport::auth::WsAuth;
use crate::transport::{stdio, websocket};
use tether_protocol::ConfigWarningNotification;
use tether_state::StateDb;

use crate::device_keys::device_keys;
use crate::server_requests::ServerRequests;
use crate::threads::{Providers, Threads};
use crate::{Config, Home, ListenAddress};

/// Sizes of queues and frames.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The largest frame (a stdio line, a WebSocket message) a client may send.
    pub max_frame_bytes: usize,
    /// Requests waiting per connection before new ones are answered with "overloaded".
    pub inbound_queue: usize,
    /// Bytes that may wait for any one client (WebSocket, unix or stdio) before it is closed as
    /// too slow; nobody ever waits for a client.
    pub outbound_queue_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 16 * 1024 * 1024,
            inbound_queue: 128,
            outbound_queue_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `--ws-auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsAuthMode {
    /// A fixed bearer token.
    CapabilityToken,
    /// An HS256 JWT under a shared secret.
    SignedBearerToken,
}

/// The WebSocket auth flags exactly as given; [`serve`] checks that they fit together.
#[derive(Clone, Debug, Default)]
pub struct WsAuthFlags {
    /// `--ws-auth`.
    pub mode: Option<WsAuthMode>,
    /// `--ws-token-file`: holds the capability token.
    pub token_file: Option<PathBuf>,
    /// `--ws-token-sha256`: hex SHA-256 of the capability token.
    pub token_sha256: Option<String>,
    /// `--ws-shared-secret-file`: holds the HS256 secret.
    pub shared_secret_file: Option<PathBuf>,
    /// `--ws-issuer`: required `iss`.
    pub issuer: Option<String>,
    /// `--ws-audience`: required `aud`.
    pub audience: Option<String>,
    /// `--ws-max-clock-skew-seconds` (default 30).
    pub max_clock_skew_seconds: Option<u64>,
}

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The home directory.
    pub home: Home,
    /// Loaded configuration.
    pub config: Config,
    /// The `-c` overrides it was loaded with (`config/read` shows them as their own layer).
    pub overrides: crate::ConfigOverrides,
    /// The listeners; stdio at most once.
    pub listen: Vec<ListenAddress>,
    /// Queue and frame sizes.
    pub limits: Limits,
    /// WebSocket listener authentication.
    pub ws_auth: WsAuthFlags,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace: Duration,
    /// The binary that answers `__sandbox-exec` inside the sandbox (the running `tether`).
    pub sandbox_helper: std::path::PathBuf,
}

/// Why the server could not start, or stopped for a reason other than being told to.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be set up.
    #[error("{0}")]
    Listen(String),
    /// The state database or device-key wiring failed.
    #[error("{0}")]
    State(String),
    /// An auth option is unusable.
    #[error("{0}")]
    Auth(String),
    /// The stdio connection was closed by the server (the process's parent stopped reading, sent
    /// a frame over the limit, or its pipes failed); the server shut down.
    #[error("stdio connection closed: {0}")]
    Stdio(CloseReason),
}

/// State shared by every connection.
pub struct Server {
    pub(crate) registry: Registry,
    pub(crate) device_keys: crate::DeviceKeys,
    pub(crate) threads: Threads,
    pub(crate) requests: ServerRequests,
    pub(crate) started: std::time::Instant,
    pub(crate) home_dir: String,
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    pub(crate) limits: Limits,
    pub(crate) catalog: crate::catalog::Catalog,
    /// Wraps agent commands in bubblewrap; probed once at startup.
    pub(crate) sandbox: Arc<tether_exec::Sandbox>,
    /// Sent to each connection right after its `initialize` response.
    pub(crate) config_warnings: Vec<ConfigWarningNotification>,
    /// What login shells export, for commands run with login semantics.
    pub(crate) login_env: crate::login_env::LoginEnvironments,
    /// The running `command/exec` processes, by connection.
    pub(crate) command_execs: crate::command_exec::Processes,
}

enum Bound {
    Stdio,
    Tcp(TcpListener, Arc<WsAuth>),
    Unix(UnixListener, PathBuf),
}

/// A `configWarning` when the sandbox cannot be set up: commands that need it will be refused
/// (never run unsandboxed), and the summary says why and how to fix it.
fn sandbox_warning(sandbox: &tether_exec::Sandbox) -> Option<ConfigWarningNotification> {
    let err = sandbox.probe().err()?;
    tracing::error!("the sandbox is unavailable: {err}");
    Some(ConfigWarningNotification {
        summary: err.to_string(),
        details: Some(
            "Sandboxed commands are refused until this is fixed; danger-full-access still runs commands."
                .to_owned(),
        ),
        path: None,
        range: None,
    })
}

/// Runs the server until it is told to stop, then shuts down gracefully.
pub async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let state = StateDb::open(&options.home.state_db())
        .map_err(|err| ServeError::State(err.to_string()))?;
    let device_keys = device_keys(state.clone(), &options.home, &options.config.device_keys);
    let providers = Providers::new(&options.config, &options.home.auth_json(), |name| {
        std::env::var(name).ok()
    });
    let unload_delay = Duration::from_secs(options.config.thread_unload_delay_secs.unwrap_or(60));
    let defaults = crate::threads::tools::ThreadDefaults {
        tools: crate::threads::tools::ToolSwitches {
            shell_tool: options.config.features.shell_tool.unwrap_or(true),
            update_plan: options.config.tools.update_plan.enabled,
        },
        approval_policy: options.config.approval_policy.clone(),
        sandbox: options.config.sandbox_mode,
    };
    let threads = Threads::new(
        state,
        options.home.clone(),
        providers,
        unload_delay,
        defaults,
    );
    let home_dir = std::path::absolute(options.home.dir())
        .unwrap_or_else(|_| options.home.dir().to_owned())
        .display()
        .to_string();
    let auth = Arc::new(ws_auth(&options.ws_auth)?);
    let mut bound = Vec::new();
    for address in dedup(&options.listen) {
        bound.push(bind(&address, &options.home, &auth).await?);
    }
    let sandbox = Arc::new(tether_exec::Sandbox::new(&options.sandbox_helper));
    let config_warnings = sandbox_warning(&sandbox).into_iter().collect();
    let server = Arc::new(Server {
        registry: Registry::default(),
        device_keys,
        threads,
        requests: ServerRequests::default(),
        started: std::time::Instant::now(),
        home_dir,
        tasks: TaskTracker::new(),
        shutdown: CancellationToken::new(),
        limits: options.limits,
        catalog: crate::catalog::Catalog::new(&options.home, &options.overrides),
        sandbox,
        config_warnings,
        login_env: Default::default(),
        command_execs: Default::default(),
    });
    tokio::spawn(stop_on_signal(server.shutdown.clone()));
    let stdio_closed = Arc::new(std::sync::OnceLock::new());
    let mut sockets = Vec::new();
    for listener in bound {
        match listener {
            Bound::Stdio => {
                let server = Arc::clone(&server);
                let stdio_closed = Arc::clone(&stdio_closed);
                server.tasks.clone().spawn(async move {
                    if let Some(reason) = stdio::serve(Arc::clone(&server)).await {
                        let _ = stdio_closed.set(reason);
                    }
                    server.shutdown.cancel();
                });
            }
            Bound::Tcp(listener, auth) => {
                let app = websocket::router(Arc::clone(&server), auth, Origin::WebSocket);
                // Notifications are many small writes: Nagle would hold them for the peer's
                // delayed ACK (about 40 ms).
                let listener = listener.tap_io(|stream| {
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::warn!("cannot set TCP_NODELAY: {err}");
                    }
                });
                serve_http(&server, listener, app, "websocket listener");
            }
            Bound::Unix(listener, path) => {
                let app =
                    websocket::router(Arc::clone(&server), Arc::new(WsAuth::Open), Origin::Unix);
                sockets.push(path);
                serve_http(&server, listener, app, "unix socket listener");
            }
        }
    }
    server.shutdown.cancelled().await;
    tracing::info!("shutting down");
    server.tasks.close();
    if tokio::time::timeout(options.shutdown_grace, server.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period ended with work still in flight");
    }
    for path in sockets {
        let _ = std::fs::remove_file(path);
    }
    match stdio_closed.get() {
        Some(reason) => Err(ServeError::Stdio(reason.clone())),
        None => Ok(()),
    }
}

/// Serves `app` on `listener` until shutdown begins, on a tracked task.
fn serve_http<L>(server: &Arc<Server>, listener: L, app: axum::Router, what: &'static str)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let shutdown = server.shutdown.clone();
    server.tasks.spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::error!("{what} failed: {err}");
        }
    });
}

fn dedup(addresses: &[ListenAddress]) -> Vec<ListenAddress> {
    let mut unique: Vec<ListenAddress> = Vec::new();
    for address in addresses {
        if !unique.contains(address) {
            unique.push(address.clone());
        }
    }
    if unique.is_empty() {
        unique.push(ListenAddress::Stdio);
    }
    unique
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT"),
        _ = terminate.recv() => tracing::info!("SIGTERM"),
        _ = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}

const DEFAULT_MAX_CLOCK_SKEW_SECONDS: u64 = 30;
const MIN_SHARED_SECRET_BYTES: usize = 32;

fn ws_auth(flags: &WsAuthFlags) -> Result<WsAuth, ServeError> {
    let fail = |message: &str| Err(ServeError::Auth(message.to_owned()));
    let token_flags = flags.token_file.is_some() || flags.token_sha256.is_some();
    let jwt_flags = flags.shared_secret_file.is_some()
        || flags.issuer.is_some()
        || flags.audience.is_some()
        || flags.max_clock_skew_seconds.is_some();
    match flags.mode {
        None if token_flags || jwt_flags => fail(
            "websocket auth flags require `--ws-auth capability-token` or `--ws-auth signed-bearer-token`",
        ),
        None => Ok(WsAuth::Open),
        Some(WsAuthMode::CapabilityToken) => {
            if jwt_flags {
                return fail(
                    "`--ws-shared-secret-file`, `--ws-issuer`, `--ws-audience`, and `--ws-max-clock-skew-seconds` require `--ws-auth signed-bearer-token`",
                );
            }
            let sha256 = match (&flags.token_file, &flags.token_sha256) {
                (Some(_), Some(_)) => {
                    return fail(
                        "`--ws-token-file` and `--ws-token-sha256` are mutually exclusive",
                    );
                }
                (None, None) => {
                    return fail(
                        "`--ws-token-file` or `--ws-token-sha256` is required when `--ws-auth capability-token` is set",
                    );
                }
                (Some(file), None) => {
                    Sha256::digest(read_secret("--ws-token-file", file)?.as_bytes()).into()
                }
                (None, Some(hex)) => parse_sha256_hex(hex.trim()).ok_or_else(|| {
                    ServeError::Auth(
                        "--ws-token-sha256 must be a 64-character hex SHA-256 digest".into(),
                    )
                })?,
            };
            Ok(WsAuth::CapabilityToken { sha256 })
        }
        Some(WsAuthMode::SignedBearerToken) => {
            if token_flags {
                return fail(
                    "`--ws-token-file` and `--ws-token-sha256` require `--ws-auth capability-token`, not `signed-bearer-token`",
                );
            }
            let Some(file) = &flags.shared_secret_file else {
                return fail(
                    "`--ws-shared-secret-file` is required when `--ws-auth signed-bearer-token` is set",
                );
            };
            let secret = read_secret("--ws-shared-secret-file", file)?;
            if secret.len() < MIN_SHARED_SECRET_BYTES {
                return Err(ServeError::Auth(format!(
                    "signed websocket bearer secret {} must be at least 32 bytes",
                    file.display()
                )));
            }
            let non_empty = |value: &Option<String>| {
                value
                    .as_deref()
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
            };
            let skew = flags
                .max_clock_skew_seconds
                .unwrap_or(DEFAULT_MAX_CLOCK_SKEW_SECONDS);
            if i64::try_from(skew).is_err() {
                return fail("websocket auth clock skew must fit in a signed 64-bit integer");
            }
            Ok(WsAuth::SignedBearerToken {
                secret: secret.into_bytes(),
                issuer: non_empty(&flags.issuer),
                audience: non_empty(&flags.audience),
                max_clock_skew_seconds: skew,
            })
        }
    }
}

/// Reads a secret file once, at startup; surrounding whitespace is not part of the secret.
fn read_secret(flag: &str, path: &Path) -> Result<String, ServeError> {
    if !path.is_absolute() {
        return Err(ServeError::Auth(format!("{flag} must be an absolute path")));
    }
    let secret = std::fs::read_to_string(path).map_err(|err| {
        ServeError::Auth(format!(
            "failed to read websocket auth secret {}: {err}",
            path.display()
        ))
    })?;
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(ServeError::Auth(format!(
            "websocket auth secret {} must not be empty",
            path.display()
        )));
    }
    Ok(secret.to_owned())
}

fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

async fn bind(
    address: &ListenAddress,
    home: &Home,
    auth: &Arc<WsAuth>,
) -> Result<Bound, ServeError> {
    match address {
        ListenAddress::Stdio => Ok(Bound::Stdio),
        ListenAddress::WebSocket(socket) => bind_tcp(*socket, auth).await,
        ListenAddress::Unix(path) => {
            let path = path.clone().unwrap_or_else(|| home.control_socket());
            bind_unix(&path)
                .await
                .map(|listener| Bound::Unix(listener, path))
        }
    }
}

async fn bind_tcp(address: SocketAddr, auth: &Arc<WsAuth>) -> Result<Bound, ServeError> {
    if !address.ip().is_loopback() && auth.is_open() {
        return Err(ServeError::Listen(format!(
            "refusing to start non-loopback websocket listener {address} without auth; configure `--ws-auth capability-token` or `--ws-auth signed-bearer-token`"
        )));
    }
    let listener = TcpListener::bind(address)
        .await
        .map_err(|err| ServeError::Listen(format!("cannot listen on ws://{address}: {err}")))?;
    if let Ok(local) = listener.local_addr() {
        // Tests and scripts read the bound port from here when they asked for port 0.
        eprintln!("tether: listening on ws://{local}");
    }
    Ok(Bound::Tcp(listener, Arc::clone(auth)))
}

async fn bind_unix(path: &Path) -> Result<UnixListener, ServeError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let fail = |what: &str, err: std::io::Error| {
        ServeError::Listen(format!("{what} {}: {err}", path.display()))
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|err| fail("cannot create the directory of", err))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ServeError::Listen(format!(
                "app-server control socket is already in use at {}",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|err| fail("cannot remove the stale socket", err))?;
    }
    // Bound and restricted inside a private (0700) directory, then moved into place: nobody can
    // connect in the moment between bind and chmod, whatever directory `path` is in.
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = parent.join(format!(".tether-socket-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|err| fail("cannot create a private directory beside", err))?;
    let staged = private.join("socket");
    let bound = UnixListener::bind(&staged)
        .and_then(|listener| {
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&staged, path)?;
            Ok(listener)
        })
        .map_err(|err| fail("cannot listen on", err));
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    let listener = bound?;
    eprintln!("tether: listening on unix://{}", path.display());
    Ok(listener)
}
