use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::Client;

/// A running `tether serve` process. Killed on drop.
pub struct TetherProcess {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
    ws: Option<SocketAddr>,
    unix: Option<PathBuf>,
}

impl TetherProcess {
    /// Starts `binary --home home serve ARGS…` and waits until every listener it was given is
    /// listening (a `ws://` listener on port 0 reports its real port).
    pub async fn start(
        binary: &Path,
        home: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> TetherProcess {
        TetherProcess::start_command(binary, home, "serve", args, env).await
    }

    /// [`TetherProcess::start`] with the command codex clients use, `app-server`.
    pub async fn start_app_server(
        binary: &Path,
        home: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> TetherProcess {
        TetherProcess::start_command(binary, home, "app-server", args, env).await
    }

    async fn start_command(
        binary: &Path,
        home: &Path,
        command: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> TetherProcess {
        let mut child = Command::new(binary)
            .arg("--home")
            .arg(home)
            .arg(command)
            .args(args)
            .envs(env.iter().copied())
            .env("TSS2_LOG", "all+none")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start tether");
        let expected = args
            .iter()
            .filter(|a| a.starts_with("ws://") || a.starts_with("unix://"))
            .count();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (listening, mut listeners) = watch::channel(Vec::<String>::new());
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::clone(&stderr);
        let stderr_reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("tether: listening on ") {
                    let url = url.to_owned();
                    listening.send_modify(|urls| urls.push(url));
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut process = TetherProcess {
            child,
            stderr,
            stderr_reader: Some(stderr_reader),
            ws: None,
            unix: None,
        };
        let ready = tokio::time::timeout(
            Duration::from_secs(15),
            listeners.wait_for(|urls| urls.len() >= expected),
        )
        .await;
        let urls = match ready {
            Ok(Ok(urls)) => urls.clone(),
            _ => panic!("tether did not start listening: {}", process.stderr()),
        };
        for url in urls {
            if let Some(address) = url.strip_prefix("ws://") {
                process.ws = Some(address.parse().unwrap());
            } else if let Some(path) = url.strip_prefix("unix://") {
                process.unix = Some(PathBuf::from(path));
            }
        }
        process
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The bound `ws://` address.
    pub fn ws_address(&self) -> String {
        self.ws.expect("no ws:// listener").to_string()
    }

    /// The bound unix socket.
    pub fn unix_path(&self) -> &Path {
        self.unix.as_deref().expect("no unix:// listener")
    }

    /// A client on the process's stdin/stdout (once).
    pub fn stdio(&mut self) -> Client {
        Client::over_lines(
            self.child.stdout.take().unwrap(),
            self.child.stdin.take().unwrap(),
        )
    }

    /// The process's raw stdin and stdout (once), for a stdio client the test reads, or does not
    /// read, itself.
    pub fn stdio_pipes(&mut self) -> (tokio::process::ChildStdin, tokio::process::ChildStdout) {
        (
            self.child.stdin.take().unwrap(),
            self.child.stdout.take().unwrap(),
        )
    }

    /// The process's resident memory in bytes, now and at its peak (`VmRSS`, `VmHWM`).
    pub fn resident_memory(&self) -> (u64, u64) {
        let pid = self.pid();
        (
            crate::bench::status_kib(pid, "VmRSS") * 1024,
            crate::bench::status_kib(pid, "VmHWM") * 1024,
        )
    }

    /// A new WebSocket client.
    pub async fn ws(&self) -> Client {
        Client::websocket(&self.ws_address(), &[])
            .await
            .expect("websocket connect")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// Sends a signal by name (`TERM`, `INT`, `STOP`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        send_signal(self.pid(), name);
    }

    /// Waits for the process to exit, and for [`TetherProcess::stderr`] to hold all it wrote.
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("tether still running after {limit:?}: {}", self.stderr()),
        };
        if let Some(reader) = self.stderr_reader.take() {
            // Ends at the pipe's end, which an exited process no longer holds open.
            let _ = tokio::time::timeout(limit, reader).await;
        }
        status
    }
}

/// Sends a signal by name to any process.
pub fn send_signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill(1)");
    assert!(status.success(), "kill -{name} {pid}");
}
