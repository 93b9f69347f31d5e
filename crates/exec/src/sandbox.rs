//! The Linux sandbox: bubblewrap builds the filesystem view and namespaces, then the
//! in-sandbox helper (`sandbox_exec_main`) sets `no_new_privs`, installs a seccomp filter
//! and execs the command. It fails closed: a command that needs the sandbox is refused
//! with the probe's error when bubblewrap cannot run.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::spawn::ExitCleanup;

/// The hidden subcommand of the tether binary that runs [`sandbox_exec_main`].
pub const SANDBOX_EXEC_SUBCOMMAND: &str = "__sandbox-exec";

/// The helper flag that turns on the network-off seccomp rules.
const SECCOMP_NET_OFF_FLAG: &str = "--seccomp-net-off";

/// Directories under every writable root that stay read-only (the observed codex 0.169
/// binary protects `.git`, `.agents`, `.codex` and `.aws`).
pub const PROTECTED_SUBPATHS: [&str; 4] = [".git", ".agents", ".codex", ".aws"];

/// What a command may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxPolicy {
    /// The whole filesystem read-only.
    ReadOnly {
        /// Whether the network stays reachable.
        network_access: bool,
    },
    /// Read-only except the cwd, `writable_roots`, `/tmp` and `$TMPDIR`.
    WorkspaceWrite {
        /// Extra writable directories (absolute).
        writable_roots: Vec<PathBuf>,
        /// Whether the network stays reachable.
        network_access: bool,
        /// Do not make `$TMPDIR` writable.
        exclude_tmpdir_env_var: bool,
        /// Do not make `/tmp` writable.
        exclude_slash_tmp: bool,
    },
    /// No sandbox at all.
    DangerFullAccess,
}

impl SandboxPolicy {
    /// True when commands run unsandboxed.
    pub fn has_full_disk_write_access(&self) -> bool {
        matches!(self, Self::DangerFullAccess)
    }

    /// True when commands may use the network.
    pub fn has_network_access(&self) -> bool {
        match self {
            Self::ReadOnly { network_access } | Self::WorkspaceWrite { network_access, .. } => {
                *network_access
            }
            Self::DangerFullAccess => true,
        }
    }

    /// The writable roots for a command in `cwd`, without duplicates, in mount order.
    pub fn writable_roots(&self, cwd: &Path) -> Vec<PathBuf> {
        let Self::WorkspaceWrite {
            writable_roots,
            exclude_tmpdir_env_var,
            exclude_slash_tmp,
            ..
        } = self
        else {
            return Vec::new();
        };
        let mut roots = Vec::new();
        if !exclude_slash_tmp {
            roots.push(PathBuf::from("/tmp"));
        }
        if !exclude_tmpdir_env_var
            && let Some(tmpdir) = std::env::var_os("TMPDIR").filter(|v| !v.is_empty())
        {
            roots.push(PathBuf::from(tmpdir));
        }
        roots.push(cwd.to_path_buf());
        roots.extend(writable_roots.iter().map(|r| cwd.join(r)));
        let mut unique = Vec::with_capacity(roots.len());
        for root in roots {
            if !unique.contains(&root) {
                unique.push(root);
            }
        }
        unique
    }
}

/// Why a sandboxed command cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// bubblewrap is missing or cannot create the sandbox; the text says how to fix it.
    #[error("{0}")]
    Unavailable(String),
    /// A writable root of the policy does not exist.
    #[error("Sandbox expected writable root {0}, but it does not exist.")]
    MissingWritableRoot(PathBuf),
    /// The command or a path cannot be passed to bubblewrap.
    #[error("invalid sandboxed command: {0}")]
    InvalidCommand(String),
}

/// Builds sandboxed command lines: where bubblewrap is and which binary runs the
/// in-sandbox helper (the server passes `std::env::current_exe()`).
#[derive(Debug)]
pub struct Sandbox {
    bwrap: Option<PathBuf>,
    helper: PathBuf,
    probed: OnceLock<Result<(), SandboxError>>,
}

impl Sandbox {
    /// Uses `bwrap` from `PATH` and `helper` as the binary answering
    /// `helper __sandbox-exec …`.
    pub fn new(helper: impl Into<PathBuf>) -> Self {
        Self {
            bwrap: find_on_path("bwrap"),
            helper: helper.into(),
            probed: OnceLock::new(),
        }
    }

    /// Uses the given bubblewrap binary instead of the one on `PATH`.
    pub fn with_bwrap(helper: impl Into<PathBuf>, bwrap: impl Into<PathBuf>) -> Self {
        Self {
            bwrap: Some(bwrap.into()),
            helper: helper.into(),
            probed: OnceLock::new(),
        }
    }

    /// Checks once (the result is kept) that bubblewrap exists and can create the user,
    /// pid, ipc and network namespaces the sandbox uses, by running `true` inside one.
    pub fn probe(&self) -> Result<(), SandboxError> {
        self.probed.get_or_init(|| self.run_probe()).clone()
    }

    fn run_probe(&self) -> Result<(), SandboxError> {
        let Some(bwrap) = &self.bwrap else {
            return Err(SandboxError::Unavailable(format!(
                "tether could not find bubblewrap (bwrap) on PATH, and commands that need the sandbox are refused. {INSTALL_HINT}"
            )));
        };
        let output = std::process::Command::new(bwrap)
            .args([
                "--new-session",
                "--die-with-parent",
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
                "--unshare-user",
                "--unshare-pid",
                "--unshare-ipc",
                "--unshare-net",
                "--proc",
                "/proc",
                "--",
                "true",
            ])
            .stdin(std::process::Stdio::null())
            .output();
        match output {
            Err(err) => Err(SandboxError::Unavailable(format!(
                "tether could not run bubblewrap at {}: {err}. {INSTALL_HINT}",
                bwrap.display()
            ))),
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(SandboxError::Unavailable(format!(
                "bubblewrap at {} could not create the sandbox ({}): {}. tether's Linux sandbox uses bubblewrap and needs access to create user namespaces. {USERNS_HINT}",
                bwrap.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }

    /// The argv that runs `argv` in `cwd` under `policy`, and the mount points to remove
    /// once it exited. Danger-full-access returns `argv` unchanged; anything else needs
    /// a successful [`Sandbox::probe`].
    pub(crate) fn wrap(
        &self,
        policy: &SandboxPolicy,
        cwd: &Path,
        argv: &[String],
    ) -> Result<(Vec<String>, ExitCleanup), SandboxError> {
        if policy.has_full_disk_write_access() {
            return Ok((argv.to_vec(), Vec::new()));
        }
        self.probe()?;
        let bwrap = self.bwrap.as_ref().ok_or_else(|| {
            SandboxError::Unavailable("bubblewrap (bwrap) was not found".to_string())
        })?;
        let (mut args, cleanup) = bwrap_args(policy, cwd)?;
        args.push("--".to_string());
        args.push(path_text(&self.helper)?);
        args.push(SANDBOX_EXEC_SUBCOMMAND.to_string());
        if !policy.has_network_access() {
            args.push(SECCOMP_NET_OFF_FLAG.to_string());
        }
        args.push("--".to_string());
        args.extend(argv.iter().cloned());
        let mut full = vec![path_text(bwrap)?];
        full.extend(args);
        Ok((full, cleanup))
    }
}

const INSTALL_HINT: &str = "Install bubblewrap with your OS package manager (Debian/Ubuntu: `apt-get install bubblewrap`).";
const USERNS_HINT: &str = "Enable unprivileged user namespaces (`sysctl -w kernel.unprivileged_userns_clone=1`; on Ubuntu 24.04+ also `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; check `user.max_user_namespaces` is not 0), or run tether in a container that allows creating namespaces.";

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn path_text(path: &Path) -> Result<String, SandboxError> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| SandboxError::InvalidCommand(format!("{} is not UTF-8", path.display())))
}

/// The bubblewrap flags before `--` for `policy` (and the mount points it will create).
///
/// Order matters: `/` read-only, then the writable roots bound writable, then the
/// protected subpaths re-mounted read-only so they win; a missing protected path gets an
/// empty read-only tmpfs so it cannot be created.
pub fn bwrap_args(
    policy: &SandboxPolicy,
    cwd: &Path,
) -> Result<(Vec<String>, Vec<PathBuf>), SandboxError> {
    let writable_roots = policy.writable_roots(cwd);
    for root in &writable_roots {
        if !root.exists() {
            return Err(SandboxError::MissingWritableRoot(root.clone()));
        }
    }
    let mut args: Vec<String> = [
        "--new-session",
        "--die-with-parent",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
    ]
    .map(String::from)
    .to_vec();
    for root in &writable_roots {
        let root = path_text(root)?;
        args.extend(["--bind".to_string(), root.clone(), root]);
    }
    let mut created = Vec::new();
    for root in &writable_roots {
        for name in PROTECTED_SUBPATHS {
            let path = root.join(name);
            let text = path_text(&path)?;
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    // Pin the link itself so it cannot be re-pointed at a decoy.
                    args.extend(["--ro-bind".to_string(), "/dev/null".to_string(), text]);
                }
                Ok(_) => args.extend(["--ro-bind".to_string(), text.clone(), text]),
                Err(_) => {
                    args.extend([
                        "--perms".to_string(),
                        "555".to_string(),
                        "--tmpfs".to_string(),
                        text.clone(),
                        "--remount-ro".to_string(),
                        text,
                    ]);
                    created.push(path);
                }
            }
        }
    }
    args.extend(["--unshare-user", "--unshare-pid", "--unshare-ipc"].map(String::from));
    if !policy.has_network_access() {
        args.push("--unshare-net".to_string());
    }
    args.extend(["--proc", "/proc", "--cap-drop", "ALL"].map(String::from));
    args.extend(["--chdir".to_string(), path_text(cwd)?]);
    Ok((args, created))
}

/// Entry point of the in-sandbox helper: `[--seccomp-net-off] -- COMMAND [ARGS...]` (the
/// arguments after the `__sandbox-exec` subcommand). Sets `PR_SET_NO_NEW_PRIVS`, installs
/// the seccomp filter (network-off rules when the flag is given, otherwise only the
/// VM-socket and io_uring denials) and execs the command. Never returns: on any failure it
/// prints why and exits non-zero, so nothing runs without its filter.
///
/// Call it before starting any threads or async runtime.
pub fn sandbox_exec_main(args: impl IntoIterator<Item = OsString>) -> ! {
    let args: Vec<OsString> = args.into_iter().collect();
    let mut network_off = false;
    let mut rest = args.as_slice();
    loop {
        match rest.split_first() {
            Some((flag, tail)) if flag == SECCOMP_NET_OFF_FLAG => {
                network_off = true;
                rest = tail;
            }
            Some((dashes, tail)) if dashes == "--" => {
                rest = tail;
                break;
            }
            Some((other, _)) => helper_fail(&format!(
                "unexpected argument {:?}; usage: {SANDBOX_EXEC_SUBCOMMAND} [{SECCOMP_NET_OFF_FLAG}] -- COMMAND [ARGS...]",
                other
            )),
            None => helper_fail("missing `-- COMMAND`"),
        }
    }
    let Some((program, program_args)) = rest.split_first() else {
        helper_fail("missing COMMAND after `--`");
    };
    if let Err(err) = rustix::thread::set_no_new_privs(true) {
        helper_fail(&format!("could not set no_new_privs: {err}"));
    }
    if let Err(err) = install_seccomp_filter(network_off) {
        helper_fail(&format!("could not install the seccomp filter: {err}"));
    }
    let err = std::process::Command::new(program)
        .args(program_args)
        .exec();
    eprintln!(
        "tether sandbox: could not run {}: {err}",
        Path::new(program).display()
    );
    std::process::exit(127);
}

fn helper_fail(message: &str) -> ! {
    eprintln!("tether sandbox: {message}");
    std::process::exit(1);
}

/// Installs the seccomp filter on the current thread (so the exec'd command inherits it).
/// Matching syscalls fail with EPERM.
fn install_seccomp_filter(network_off: bool) -> Result<(), String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let always_denied = [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ];
    for nr in always_denied {
        rules.insert(nr, Vec::new());
    }
    let domain = |op, family: i32| {
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, op, family as u64)
            .map_err(|e| e.to_string())
    };
    let rule = |condition| SeccompRule::new(vec![condition]).map_err(|e| e.to_string());
    if network_off {
        let denied = [
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_connect,
            libc::SYS_accept,
            libc::SYS_accept4,
            libc::SYS_bind,
            libc::SYS_listen,
            // getpeername and getsockname stay allowed: they tell nothing once no network
            // socket can be made, and bash takes an EPERM from getpeername on its stdin for a
            // remote shell and then runs the user's ~/.bashrc inside the sandbox.
            libc::SYS_shutdown,
            libc::SYS_sendto,
            libc::SYS_sendmmsg,
            libc::SYS_recvmmsg,
            libc::SYS_getsockopt,
            libc::SYS_setsockopt,
        ];
        for nr in denied {
            rules.insert(nr, Vec::new());
        }
        // Only AF_UNIX sockets may be created.
        let not_unix = rule(domain(SeccompCmpOp::Ne, libc::AF_UNIX)?)?;
        rules.insert(libc::SYS_socket, vec![not_unix.clone()]);
        rules.insert(libc::SYS_socketpair, vec![not_unix]);
    } else {
        // VM sockets reach host services outside the filesystem sandbox.
        let vsock = rule(domain(SeccompCmpOp::Eq, libc::AF_VSOCK)?)?;
        rules.insert(libc::SYS_socket, vec![vsock.clone()]);
        rules.insert(libc::SYS_socketpair, vec![vsock]);
    }
    let arch = if cfg!(target_arch = "x86_64") {
        TargetArch::x86_64
    } else if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        return Err("unsupported architecture".to_string());
    };
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    seccompiler::apply_filter(&program).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_binds_root_read_only_and_unshares_the_network() {
        let cwd = tempfile::tempdir().unwrap();
        let (args, created) = bwrap_args(
            &SandboxPolicy::ReadOnly {
                network_access: false,
            },
            cwd.path(),
        )
        .unwrap();
        let cwd_text = cwd.path().to_str().unwrap().to_string();
        let expected: Vec<String> = [
            "--new-session",
            "--die-with-parent",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-net",
            "--proc",
            "/proc",
            "--cap-drop",
            "ALL",
            "--chdir",
            &cwd_text,
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(args, expected);
        assert!(created.is_empty());
    }

    #[test]
    fn workspace_write_protects_metadata_directories() {
        let cwd = tempfile::tempdir().unwrap();
        std::fs::create_dir(cwd.path().join(".git")).unwrap();
        let policy = SandboxPolicy::WorkspaceWrite {
            writable_roots: Vec::new(),
            network_access: true,
            exclude_tmpdir_env_var: true,
            exclude_slash_tmp: true,
        };
        let (args, created) = bwrap_args(&policy, cwd.path()).unwrap();
        let root = cwd.path().to_str().unwrap();
        let joined = args.join(" ");
        assert!(joined.contains(&format!("--bind {root} {root}")));
        assert!(joined.contains(&format!("--ro-bind {root}/.git {root}/.git")));
        assert!(joined.contains(&format!(
            "--perms 555 --tmpfs {root}/.codex --remount-ro {root}/.codex"
        )));
        assert!(!joined.contains("--unshare-net"));
        assert_eq!(created.len(), 3, "{created:?}");
    }

    #[test]
    fn missing_writable_root_is_an_error() {
        let cwd = tempfile::tempdir().unwrap();
        let policy = SandboxPolicy::WorkspaceWrite {
            writable_roots: vec![PathBuf::from("/nonexistent/tether-root")],
            network_access: false,
            exclude_tmpdir_env_var: true,
            exclude_slash_tmp: true,
        };
        assert_eq!(
            bwrap_args(&policy, cwd.path()).unwrap_err().to_string(),
            "Sandbox expected writable root /nonexistent/tether-root, but it does not exist."
        );
    }
}
