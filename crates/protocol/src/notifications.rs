//! The params of the notifications tether sends, named like codex's `…Notification` types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::table::server_notifications;
use crate::{
    AccountRateLimitsUpdatedNotification, AccountUpdatedNotification,
    CommandExecOutputDeltaNotification, CommandExecutionOutputDeltaNotification,
    ConfigWarningNotification, TerminalInteractionNotification, ThreadArchivedNotification,
    ThreadDeletedNotification, ThreadNameUpdatedNotification, ThreadReadStateChangedNotification,
    ThreadSettingsUpdatedNotification, ThreadUnarchivedNotification, TurnPlanUpdatedNotification,
    WarningNotification,
};
use crate::{Thread, ThreadGoal, ThreadItem, ThreadStatus, TokenUsageBreakdown, Turn, TurnError};

/// `error`: a turn failed, or a broken stream or request is being retried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorNotification {
    /// What went wrong.
    pub error: TurnError,
    /// True when the server retries on its own.
    pub will_retry: bool,
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
}

/// `thread/started`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThreadStartedNotification {
    /// The new thread, without turns.
    pub thread: Thread,
}

/// `thread/status/changed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadStatusChangedNotification {
    /// The thread.
    pub thread_id: String,
    /// Its new status.
    pub status: ThreadStatus,
}

/// `thread/closed`: the thread left memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadClosedNotification {
    /// The thread.
    pub thread_id: String,
}

/// `thread/goal/cleared`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadGoalClearedNotification {
    /// The thread.
    pub thread_id: String,
}

/// `thread/goal/updated`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadGoalUpdatedNotification {
    /// The thread.
    pub thread_id: String,
    /// The turn that changed it, if one did.
    pub turn_id: Option<String>,
    /// The goal now.
    pub goal: ThreadGoal,
}

/// The token usage of a thread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadTokenUsage {
    /// Since the thread started.
    pub total: TokenUsageBreakdown,
    /// The latest round.
    pub last: TokenUsageBreakdown,
    /// The model's context window, when known.
    pub model_context_window: Option<i64>,
}

/// `thread/tokenUsage/updated`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadTokenUsageUpdatedNotification {
    /// The thread.
    pub thread_id: String,
    /// The turn of the latest round.
    pub turn_id: String,
    /// The usage.
    pub token_usage: ThreadTokenUsage,
}

/// `turn/started`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnStartedNotification {
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn: Turn,
}

/// `turn/completed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnCompletedNotification {
    /// The thread.
    pub thread_id: String,
    /// The turn, with its final status.
    pub turn: Turn,
}

/// `item/started`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemStartedNotification {
    /// The item as it starts.
    pub item: ThreadItem,
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
    /// Unix milliseconds.
    pub started_at_ms: i64,
}

/// `item/completed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemCompletedNotification {
    /// The finished item.
    pub item: ThreadItem,
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
    /// Not counted by tether: always `null`.
    pub content_token_count: Option<i64>,
    /// Unix milliseconds.
    pub completed_at_ms: i64,
}

/// `item/agentMessage/delta`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentMessageDeltaNotification {
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
    /// The open agent-message item.
    pub item_id: String,
    /// The text added.
    pub delta: String,
}

/// `item/reasoning/summaryPartAdded`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningSummaryPartAddedNotification {
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
    /// The reasoning item.
    pub item_id: String,
    /// The new part's index.
    pub summary_index: i64,
}

/// `item/reasoning/summaryTextDelta`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningSummaryTextDeltaNotification {
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
    /// The reasoning item.
    pub item_id: String,
    /// The part the text belongs to.
    pub summary_index: i64,
    /// The text added.
    pub delta: String,
}

/// `serverRequest/resolved`: a server request needs no answer any more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerRequestResolvedNotification {
    /// The thread it belonged to.
    pub thread_id: String,
    /// The server request's id.
    pub request_id: i64,
}

server_notifications! {
    ErrorNotification => "error";
    ThreadStartedNotification => "thread/started";
    ThreadStatusChangedNotification => "thread/status/changed";
    ThreadClosedNotification => "thread/closed";
    ThreadGoalUpdatedNotification => "thread/goal/updated";
    ThreadGoalClearedNotification => "thread/goal/cleared";
    ThreadTokenUsageUpdatedNotification => "thread/tokenUsage/updated";
    TurnStartedNotification => "turn/started";
    TurnCompletedNotification => "turn/completed";
    ItemStartedNotification => "item/started";
    ItemCompletedNotification => "item/completed";
    AgentMessageDeltaNotification => "item/agentMessage/delta";
    ServerRequestResolvedNotification => "serverRequest/resolved";
    ReasoningSummaryTextDeltaNotification => "item/reasoning/summaryTextDelta";
    ReasoningSummaryPartAddedNotification => "item/reasoning/summaryPartAdded";
    ThreadNameUpdatedNotification => "thread/name/updated";
    ThreadArchivedNotification => "thread/archived";
    ThreadUnarchivedNotification => "thread/unarchived";
    ThreadDeletedNotification => "thread/deleted";
    ThreadReadStateChangedNotification => "thread/readState/changed";
    AccountUpdatedNotification => "account/updated";
    AccountRateLimitsUpdatedNotification => "account/rateLimits/updated";
    WarningNotification => "warning";
    ConfigWarningNotification => "configWarning";
    CommandExecutionOutputDeltaNotification => "item/commandExecution/outputDelta";
    TerminalInteractionNotification => "item/commandExecution/terminalInteraction";
    TurnPlanUpdatedNotification => "turn/plan/updated";
    ThreadSettingsUpdatedNotification => "thread/settings/updated";
    CommandExecOutputDeltaNotification => "command/exec/outputDelta";
}
