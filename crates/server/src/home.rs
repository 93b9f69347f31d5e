use std::path::{Path, PathBuf};

/// tether's home directory and the files in it.
#[derive(Clone, Debug)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// `explicit` (from `--home` or `TETHER_HOME`), else `CODEX_HOME` (clients set it to choose
    /// the home of the server they start), else `~/.tether`.
    pub fn resolve(explicit: Option<PathBuf>) -> Home {
        let dir = explicit
            .or_else(|| {
                std::env::var_os("CODEX_HOME")
                    .filter(|dir| !dir.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| {
                std::env::home_dir()
                    .unwrap_or_else(|| PathBuf::from("/"))
                    .join(".tether")
            });
        Home { dir }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// The SQLite state database.
    pub fn state_db(&self) -> PathBuf {
        self.dir.join("state.sqlite")
    }

    /// The default unix control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.dir
            .join("app-server-control")
            .join("app-server-control.sock")
    }

    /// Per-thread history logs.
    pub fn threads_dir(&self) -> PathBuf {
        self.dir.join("threads")
    }

    /// Credentials, as Codex writes them.
    pub fn auth_json(&self) -> PathBuf {
        self.dir.join("auth.json")
    }

    /// Blobs of TPM-wrapped device keys.
    pub fn tpm_key_dir(&self) -> PathBuf {
        self.dir.join("device-keys").join("tpm")
    }
}
