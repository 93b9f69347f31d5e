//! An isolated PKCS#11 token for tests: SoftHSM2 behind `p11-kit server`, running as its own
//! system user with a private (0700) token directory, reachable over a unix socket. Needs root
//! (to drop to that user), like CI on this machine kind.
//!
//! The system state every token shares (the user, the base directory) is made by
//! `scripts/setup.sh`, once; tests only check it (once per process) and fail with a clear message
//! if it is missing. They never create it: parallel tests creating one user race (concurrent
//! `useradd`s of one name all succeed, each renumbering the user). Everything else is private to
//! one token.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The system user that owns the token and runs the server (made by `scripts/setup.sh`).
pub const TOKEN_USER: &str = "tether-devkeyd";
/// Where each token's private directory is made (made by `scripts/setup.sh`: root's, mode 0755,
/// so the token user can reach its own directory in there whatever `TMPDIR` is).
pub const TOKEN_BASE_DIR: &str = "/var/lib/tether-test-tokens";
/// The token label.
pub const TOKEN_LABEL: &str = "tether";
const USER_PIN: &str = "1234";

/// A running isolated token. The server is killed on drop.
pub struct IsolatedToken {
    server: Child,
    dir: tempfile::TempDir,
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}; run scripts/setup.sh"));
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn first_existing(candidates: &[&str]) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("none of {candidates:?} exists; run scripts/setup.sh"))
}

/// The p11-kit client module tether loads.
pub fn client_module() -> PathBuf {
    first_existing(&[
        "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
        "/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
        "/usr/lib/pkcs11/p11-kit-client.so",
    ])
}

/// SoftHSM2 loaded directly (in-process: never honest as `os_protected_nonextractable`).
pub fn softhsm_module() -> PathBuf {
    first_existing(&[
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    ])
}

/// Checks, once per process, that `scripts/setup.sh` prepared what every token shares.
fn check_system_state() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let user = Command::new("id")
            .arg(TOKEN_USER)
            .output()
            .map_err(|err| format!("id(1): {err}"))?;
        if !user.status.success() {
            return Err(format!(
                "the system user {TOKEN_USER} does not exist: run scripts/setup.sh"
            ));
        }
        let base = std::fs::metadata(TOKEN_BASE_DIR)
            .map_err(|err| format!("{TOKEN_BASE_DIR}: {err}: run scripts/setup.sh"))?;
        if !base.is_dir() || base.uid() != 0 || base.permissions().mode() & 0o777 != 0o755 {
            return Err(format!(
                "{TOKEN_BASE_DIR} must be a directory owned by root with mode 0755: run scripts/setup.sh"
            ));
        }
        Ok(())
    });
    if let Err(message) = checked {
        panic!("{message}");
    }
}

impl IsolatedToken {
    /// Creates a fresh token and starts its server.
    pub fn start() -> IsolatedToken {
        use std::os::unix::fs::PermissionsExt as _;
        check_system_state();
        let dir = tempfile::Builder::new()
            .prefix("token-")
            .tempdir_in(TOKEN_BASE_DIR)
            .unwrap_or_else(|err| panic!("a directory in {TOKEN_BASE_DIR}: {err}"));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let tokens = dir.path().join("tokens");
        let socket_dir = dir.path().join("run");
        std::fs::create_dir(&tokens).unwrap();
        std::fs::create_dir(&socket_dir).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        run(Command::new("chown")
            .arg(format!("{TOKEN_USER}:"))
            .arg(&tokens)
            .arg(&socket_dir));
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o700)).unwrap();
        run(Command::new("runuser")
            .args(["-u", TOKEN_USER, "--", "env"])
            .arg(format!("SOFTHSM2_CONF={}", conf.display()))
            .args([
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                TOKEN_LABEL,
                "--so-pin",
                "0000",
                "--pin",
                USER_PIN,
            ]));
        let socket = socket_dir.join("pkcs11.sock");
        let server = Command::new("/usr/libexec/p11-kit/p11-kit-server")
            .env("SOFTHSM2_CONF", &conf)
            .arg("--foreground")
            .arg("--provider")
            .arg(softhsm_module())
            .args([
                "--run-as-user",
                TOKEN_USER,
                "--run-as-group",
                TOKEN_USER,
                "--user",
                "root",
                "--name",
            ])
            .arg(&socket)
            .arg(format!("pkcs11:token={TOKEN_LABEL}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("p11-kit server (package p11-kit): run scripts/setup.sh");
        let token = IsolatedToken { server, dir };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "p11-kit server did not create {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // p11-kit leaves the socket to the server user; the allowed client must be able to open it.
        run(Command::new("chown").arg("root").arg(&socket));
        std::fs::write(token.pin_file(), USER_PIN).unwrap();
        std::fs::set_permissions(token.pin_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
        token
    }

    /// The value of `P11_KIT_SERVER_ADDRESS` that reaches this token.
    pub fn server_address(&self) -> String {
        format!(
            "unix:path={}",
            self.dir.path().join("run/pkcs11.sock").display()
        )
    }

    /// A file holding the user PIN.
    pub fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin")
    }

    /// The token's own files (the keys are in there, readable only by the token user).
    pub fn token_dir(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// How many objects with a label the token holds, counted through the server.
    pub fn object_count(&self) -> usize {
        let output = Command::new("pkcs11-tool")
            .env("P11_KIT_SERVER_ADDRESS", self.server_address())
            .arg("--module")
            .arg(client_module())
            .args([
                "--token-label",
                TOKEN_LABEL,
                "--login",
                "--pin",
                USER_PIN,
                "--list-objects",
            ])
            .output()
            .expect("pkcs11-tool (package opensc): run scripts/setup.sh");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .matches("label:")
            .count()
    }

    /// The directory holding everything (for tests that check permissions).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for IsolatedToken {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
