//! The real Codex clients that `scripts/setup-clients.sh` installs into a cache directory, and
//! the real `codex app-server` of that installation (to compare tether with).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The codex-cli release whose TUI the tests drive.
pub const CODEX_CLI_VERSION: &str = "0.169.0";
/// The release of the official Python SDK (`openai-codex` on PyPI) the tests drive.
pub const PYTHON_SDK_VERSION: &str = "0.163.0";

/// Paths of the installed clients.
#[derive(Clone, Debug)]
pub struct Clients {
    dir: PathBuf,
}

impl Clients {
    /// The installation in `$TETHER_CLIENTS_DIR`, else `~/.cache/tether-clients`, checked against
    /// the versions stamp the script writes last. The error says to run the script.
    pub fn installed() -> Result<Clients, String> {
        let dir = std::env::var_os("TETHER_CLIENTS_DIR")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::home_dir().map(|home| home.join(".cache/tether-clients")))
            .ok_or("no TETHER_CLIENTS_DIR and no home directory")?;
        let clients = Clients { dir };
        let expected = format!("codex={CODEX_CLI_VERSION} openai-codex={PYTHON_SDK_VERSION}");
        let stamp = std::fs::read_to_string(clients.dir.join("versions")).unwrap_or_default();
        let missing = [clients.codex(), clients.python()]
            .into_iter()
            .find(|path| !path.exists());
        if stamp.trim() != expected || missing.is_some() {
            return Err(format!(
                "the Codex clients ({expected}) are not installed in {}: run scripts/setup-clients.sh \
                 (found stamp {:?}{})",
                clients.dir.display(),
                stamp.trim(),
                missing
                    .map(|path| format!(", missing {}", path.display()))
                    .unwrap_or_default()
            ));
        }
        Ok(clients)
    }

    /// [`Clients::installed`], panicking with its message: for tests, where a missing client is
    /// a failure.
    pub fn require() -> Clients {
        Clients::installed().unwrap_or_else(|message| panic!("{message}"))
    }

    /// The native codex executable (TUI and real app-server).
    pub fn codex(&self) -> PathBuf {
        self.dir.join("codex")
    }

    /// The python of the virtualenv that has the SDK.
    pub fn python(&self) -> PathBuf {
        self.dir.join("venv/bin/python")
    }
}

/// A running real `codex app-server --listen ws://127.0.0.1:0` whose home points a
/// `mock_provider` at a Responses upstream. Killed on drop.
pub struct CodexAppServer {
    child: Child,
    address: String,
    home: tempfile::TempDir,
}

impl CodexAppServer {
    /// Starts it with a fresh home whose provider is `upstream_base_url` (e.g.
    /// [`ResponsesServer::base_url`](crate::ResponsesServer::base_url)) and waits until it
    /// reports its address.
    pub async fn start(clients: &Clients, upstream_base_url: &str) -> CodexAppServer {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("config.toml"),
            codex_config(upstream_base_url),
        )
        .unwrap();
        let mut child = Command::new(clients.codex())
            .args(["app-server", "--listen", "ws://127.0.0.1:0"])
            .env("CODEX_HOME", home.path())
            .env("HOME", home.path())
            .env("MOCK_API_KEY", "mock-key")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start codex app-server");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        let address = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.trim().strip_prefix("listening on: ws://") {
                    return Some(url.to_owned());
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("codex app-server did not report its address: {seen}"));
        // Keep draining its log so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        CodexAppServer {
            child,
            address,
            home,
        }
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.address)
    }

    /// The server's home.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A codex `config.toml` with the loopback provider `mock_provider` (key from `MOCK_API_KEY`),
/// approvals off, a read-only sandbox, and no update check or analytics.
pub fn codex_config(upstream_base_url: &str) -> String {
    format!(
        "model = \"mock-model\"\nmodel_provider = \"mock_provider\"\napproval_policy = \"never\"\n\
         sandbox_mode = \"read-only\"\ncheck_for_update_on_startup = false\n\n\
         [analytics]\nenabled = false\n\n\
         [model_providers.mock_provider]\nname = \"Mock\"\nbase_url = \"{upstream_base_url}\"\n\
         wire_api = \"responses\"\nenv_key = \"MOCK_API_KEY\"\nrequest_max_retries = 0\n\
         stream_max_retries = 0\n"
    )
}
