//! Approval and sandbox policies as the wire spells them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// When the agent asks the user before acting (`AskForApproval`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AskForApproval {
    /// Every command asks unless it is trusted.
    #[serde(rename = "untrusted")]
    Untrusted,
    /// The model asks when it needs to leave the sandbox.
    #[serde(rename = "on-request")]
    OnRequest,
    /// Never ask; what the sandbox refuses fails.
    #[serde(rename = "never")]
    Never,
    /// Per-kind switches.
    #[serde(rename = "granular")]
    Granular(GranularApproval),
}

/// The switches of a granular approval policy: true means "ask".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub struct GranularApproval {
    pub sandbox_approval: bool,
    pub rules: bool,
    pub mcp_elicitations: bool,
    #[serde(default)]
    pub request_permissions: bool,
    #[serde(default)]
    pub skill_approval: bool,
}

/// Who reviews approval requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalsReviewer {
    /// The user, through the client.
    #[default]
    User,
    /// A reviewing subagent.
    AutoReview,
    /// The legacy name of `auto_review`.
    GuardianSubagent,
}

/// Whether network access is allowed under an external sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkAccess {
    /// No network.
    #[default]
    Restricted,
    /// Network allowed.
    Enabled,
}

/// What the sandbox lets commands do (`SandboxPolicy`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum SandboxPolicy {
    /// No sandbox at all.
    DangerFullAccess,
    /// Read anything, write nothing.
    ReadOnly {
        /// Whether network access is allowed.
        #[serde(default)]
        network_access: bool,
    },
    /// Something outside tether sandboxes the commands.
    ExternalSandbox {
        /// Whether network access is allowed.
        #[serde(default)]
        network_access: NetworkAccess,
    },
    /// Write the workspace (and the temporary directories unless excluded).
    WorkspaceWrite {
        /// More writable directories, absolute.
        #[serde(default)]
        writable_roots: Vec<String>,
        /// Whether network access is allowed.
        #[serde(default)]
        network_access: bool,
        /// `$TMPDIR` is not writable.
        #[serde(default)]
        exclude_tmpdir_env_var: bool,
        /// `/tmp` is not writable.
        #[serde(default)]
        exclude_slash_tmp: bool,
    },
}

impl SandboxPolicy {
    /// Read-only without network: the default.
    pub fn read_only() -> SandboxPolicy {
        SandboxPolicy::ReadOnly {
            network_access: false,
        }
    }
}

/// The sandbox as `thread/start`'s `sandbox` param and `sandbox_mode` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Read only.
    ReadOnly,
    /// The workspace is writable.
    WorkspaceWrite,
    /// No sandbox.
    DangerFullAccess,
}
