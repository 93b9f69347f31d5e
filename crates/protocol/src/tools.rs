//! Wire types of the agent's built-in tools: command execution items, their streaming
//! notifications, command approvals, plans and background terminals.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What one part of a command does, for display (`commandActions`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[allow(missing_docs)]
pub enum CommandAction {
    /// Reads a file; `path` is absolute.
    Read {
        command: String,
        name: String,
        path: String,
    },
    /// Lists a directory.
    ListFiles {
        command: String,
        path: Option<String>,
    },
    /// Searches for a pattern.
    Search {
        command: String,
        query: Option<String>,
        path: Option<String>,
    },
    /// Anything else.
    Unknown { command: String },
}

/// Who started a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CommandExecutionSource {
    /// The model, before the command started (e.g. while it waits for approval).
    Agent,
    /// The user's `!command` (`thread/shellCommand`).
    UserShell,
    /// The model's `exec_command`.
    UnifiedExecStartup,
    /// The model's `write_stdin`.
    UnifiedExecInteraction,
}

/// Where a command execution stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CommandExecutionStatus {
    /// Waiting for approval or running.
    InProgress,
    /// Exited with code 0.
    Completed,
    /// Exited with another code, was killed, or could not start.
    Failed,
    /// The user declined it.
    Declined,
}

/// `item/commandExecution/outputDelta` params: output as it arrives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct CommandExecutionOutputDeltaNotification {
    pub thread_id: String,
    pub turn_id: String,
    pub item_id: String,
    /// UTF-8 text (a character split across chunks arrives whole in the later one).
    pub delta: String,
}

/// `item/commandExecution/terminalInteraction` params: the model wrote to a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct TerminalInteractionNotification {
    pub thread_id: String,
    pub turn_id: String,
    pub item_id: String,
    pub process_id: String,
    pub stdin: String,
}

/// What an approval request is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CommandExecutionApprovalKind {
    /// Running a command.
    Command,
    /// Writing to a running session.
    WriteStdin,
}

/// A choice the user can make about a command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CommandExecutionApprovalDecision {
    /// Run it.
    Accept,
    /// Run it, and the same command does not ask again in this thread.
    AcceptForSession,
    /// Run it and allow commands starting with the amendment's prefix.
    AcceptWithExecpolicyAmendment {
        /// The prefix.
        execpolicy_amendment: Vec<String>,
    },
    /// A network rule for a host.
    ApplyNetworkPolicyAmendment {
        /// The rule (kept as given).
        network_policy_amendment: serde_json::Value,
    },
    /// Do not run it; the turn goes on.
    Decline,
    /// Do not run it; the turn ends.
    Cancel,
}

/// `item/commandExecution/requestApproval` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct CommandExecutionRequestApprovalParams {
    pub kind: CommandExecutionApprovalKind,
    pub thread_id: String,
    pub turn_id: String,
    pub item_id: String,
    pub started_at_ms: i64,
    pub environment_id: Option<String>,
    /// The model's justification.
    pub reason: Option<String>,
    pub command: Option<String>,
    pub cwd: Option<String>,
    pub command_actions: Option<Vec<CommandAction>>,
    pub proposed_execpolicy_amendment: Option<Vec<String>>,
    pub available_decisions: Option<Vec<CommandExecutionApprovalDecision>>,
}

/// The client's answer to `item/commandExecution/requestApproval`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandExecutionRequestApprovalResponse {
    /// What the user chose.
    pub decision: CommandExecutionApprovalDecision,
}

/// How far a plan step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub enum TurnPlanStepStatus {
    Pending,
    InProgress,
    Completed,
}

/// One step of the model's plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub struct TurnPlanStep {
    pub step: String,
    pub status: TurnPlanStepStatus,
}

/// `turn/plan/updated` params: the model called `update_plan`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct TurnPlanUpdatedNotification {
    pub thread_id: String,
    pub turn_id: String,
    pub explanation: Option<String>,
    pub plan: Vec<TurnPlanStep>,
}

/// `thread/backgroundTerminals/terminate` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ThreadBackgroundTerminalsTerminateParams {
    pub thread_id: String,
    pub process_id: String,
}

/// `thread/backgroundTerminals/terminate` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThreadBackgroundTerminalsTerminateResponse {
    /// Whether a session of that id was running.
    pub terminated: bool,
}

/// `thread/backgroundTerminals/clean` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ThreadBackgroundTerminalsCleanParams {
    pub thread_id: String,
}

/// `thread/backgroundTerminals/clean` result: empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThreadBackgroundTerminalsCleanResponse {}

/// `thread/shellCommand` params: the TUI's `!command`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ThreadShellCommandParams {
    pub thread_id: String,
    /// Shell syntax, run by the user's shell.
    pub command: String,
    /// Default one hour; zero times out at once.
    #[serde(default)]
    pub timeout_ms: Option<i64>,
}

/// A thread's collaboration mode (`default` unless a client picked another).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub struct CollaborationMode {
    pub mode: String,
    pub settings: CollaborationModeSettings,
}

/// The settings of a collaboration mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub struct CollaborationModeSettings {
    pub model: String,
    pub reasoning_effort: Option<String>,
    pub developer_instructions: Option<String>,
}

/// What future turns of a thread run with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ThreadSettings {
    pub model: String,
    pub model_provider: String,
    pub cwd: String,
    pub approval_policy: crate::AskForApproval,
    pub approvals_reviewer: crate::ApprovalsReviewer,
    pub sandbox_policy: crate::SandboxPolicy,
    pub collaboration_mode: CollaborationMode,
}

/// `thread/settings/updated` params: a `turn/start` changed what future turns run with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ThreadSettingsUpdatedNotification {
    pub thread_id: String,
    pub thread_settings: ThreadSettings,
}
