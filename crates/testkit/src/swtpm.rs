use std::fs::{File, OpenOptions};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A swtpm process listening on a pair of loopback ports, with its own state directory. Killed
/// and removed on drop. One per test: swtpm has no resource manager and only three object slots,
/// so tests must never share one.
pub struct Swtpm {
    child: Child,
    _state: tempfile::TempDir,
    port: u16,
}

impl Swtpm {
    /// Starts a fresh TPM and waits until it accepts connections.
    pub fn start() -> Swtpm {
        let _lock = PortLock::take();
        for _ in 0..20 {
            let state = tempfile::tempdir().expect("temporary directory for swtpm state");
            let port = free_port_pair();
            let mut child = spawn(state.path(), port);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break; // lost a port race with another process: pick new ports
                }
                let listening = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
                if listening(port) && listening(port + 1) {
                    return Swtpm {
                        child,
                        _state: state,
                        port,
                    };
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("swtpm did not start after 20 attempts");
    }

    /// The emulator's process id (tests pause it with SIGSTOP to hold a TPM call in flight).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The TCTI string that reaches this TPM.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

fn spawn(state: &Path, port: u16) -> Child {
    Command::new("swtpm")
        .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
        .arg("--tpmstate")
        .arg(format!("dir={}", state.display()))
        .arg("--server")
        .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg("--ctrl")
        .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("cannot run swtpm ({err}); run scripts/setup.sh to install it")
        })
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two adjacent free loopback ports: the swtpm TCTI always dials the control channel at port + 1.
fn free_port_pair() -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = first.local_addr().expect("local address").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// Serializes port choice and start-up across processes (nextest runs each test in its own), so
/// two fixtures never pick the same free ports. Released when the file closes.
struct PortLock(#[allow(dead_code)] File);

impl PortLock {
    fn take() -> PortLock {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("tether-swtpm-fixture.lock"))
            .expect("open the swtpm fixture lock file");
        file.lock().expect("lock the swtpm fixture lock file");
        PortLock(file)
    }
}
