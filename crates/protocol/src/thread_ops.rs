//! Thread housekeeping and paged history: names, archiving, deletion, forks, read state,
//! metadata, turn and item pages, background terminals, and the dedicated steer.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    ApprovalsReviewer, AskForApproval, SandboxMode, SortDirection, Thread, ThreadItem, Turn,
    UserInput,
};

/// `thread/name/set` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadSetNameParams {
    /// The thread.
    pub thread_id: String,
    /// The new name (trimmed; empty clears it).
    pub name: String,
}

/// `thread/name/updated`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadNameUpdatedNotification {
    /// The thread.
    pub thread_id: String,
    /// Its name now.
    pub thread_name: Option<String>,
}

/// `thread/archived`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadArchivedNotification {
    /// The thread.
    pub thread_id: String,
}

/// `thread/unarchived`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadUnarchivedNotification {
    /// The thread.
    pub thread_id: String,
}

/// `thread/deleted`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadDeletedNotification {
    /// The thread.
    pub thread_id: String,
}

/// The result of `thread/unarchive` and `thread/metadata/update`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThreadResponse {
    /// The thread now, without turns.
    pub thread: Thread,
}

/// `thread/fork` params: the source thread, where to cut, and the new thread's settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ThreadForkParams {
    pub thread_id: String,
    /// The fork keeps the turns before this one (all of them when absent).
    pub before_turn_id: Option<String>,
    /// The fork keeps the turns up to and including this one.
    pub last_turn_id: Option<String>,
    pub model: Option<String>,
    pub model_provider: Option<String>,
    pub cwd: Option<String>,
    pub approval_policy: Option<AskForApproval>,
    pub approvals_reviewer: Option<ApprovalsReviewer>,
    pub sandbox: Option<SandboxMode>,
    pub base_instructions: Option<String>,
    pub developer_instructions: Option<String>,
    #[serde(default)]
    pub ephemeral: bool,
    /// Metadata only: `thread.turns` is empty.
    #[serde(default)]
    pub exclude_turns: bool,
}

/// How a read-state update marks the thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ThreadReadStateOperation {
    /// Everything seen.
    Read,
    /// Unread again.
    Unread,
}

/// `thread/readState/update` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadReadStateUpdateParams {
    /// The thread.
    pub thread_id: String,
    /// What to mark.
    pub operation: ThreadReadStateOperation,
    /// The revision the client last saw; a stale one is refused.
    pub expected_revision: String,
}

/// Where the unread part of a thread starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ThreadUnreadPosition {
    /// Marked unread as a whole.
    ThreadStart,
    /// From this completed turn on.
    Turn {
        /// The turn.
        turn_id: String,
    },
}

/// A thread's read state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadReadState {
    /// `null` when everything is read.
    pub first_unread: Option<ThreadUnreadPosition>,
    /// Changes with every change of the state.
    pub revision: String,
}

/// The result of `thread/readState/update`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadReadStateUpdateResponse {
    /// The state now.
    pub read_state: ThreadReadState,
}

/// `thread/readState/changed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadReadStateChangedNotification {
    /// The thread.
    pub thread_id: String,
    /// The state now.
    pub read_state: ThreadReadState,
}

/// `thread/metadata/update` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadMetadataUpdateParams {
    /// The thread.
    pub thread_id: String,
    /// The project it belongs to (`null` clears it).
    #[serde(default, deserialize_with = "present")]
    pub project_id: Option<Option<String>>,
    /// Git information; accepted and not stored.
    #[serde(default)]
    pub git_info: Option<Value>,
}

/// Tells `"member": null` (clear) from an absent member (leave).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// How much of each turn's items a turn page carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TurnItemsView {
    /// No items.
    NotLoaded,
    /// The agent messages.
    Summary,
    /// Every item.
    Full,
}

/// `thread/turns/list` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadTurnsListParams {
    /// The thread.
    pub thread_id: String,
    /// Where the page starts (included); from an earlier page or `turnsBackwardsCursor`.
    #[serde(default)]
    pub cursor: Option<String>,
    /// At most this many turns (default 25, at most 200).
    #[serde(default)]
    pub limit: Option<u32>,
    /// `desc` (default) from the newest turn, `asc` from the oldest.
    #[serde(default)]
    pub sort_direction: Option<SortDirection>,
    /// How much of each turn's items to include (default `summary`).
    #[serde(default)]
    pub items_view: Option<TurnItemsView>,
}

/// A page of turns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadTurnsListResponse {
    /// The turns, in the requested direction.
    pub data: Vec<Turn>,
    /// The next page, if any.
    pub next_cursor: Option<String>,
    /// The page in the other direction, starting next to this page's first turn.
    pub backwards_cursor: Option<String>,
}

/// `thread/items/list` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadItemsListParams {
    /// The thread.
    pub thread_id: String,
    /// Only this turn's items.
    #[serde(default)]
    pub turn_id: Option<String>,
    /// Where the page starts (included).
    #[serde(default)]
    pub cursor: Option<String>,
    /// At most this many items (default 50, at most 500).
    #[serde(default)]
    pub limit: Option<u32>,
    /// `desc` (default) from the newest item, `asc` from the oldest.
    #[serde(default)]
    pub sort_direction: Option<SortDirection>,
}

/// An item with the turn it belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadItemEntry {
    /// The turn.
    pub turn_id: String,
    /// The item.
    pub item: ThreadItem,
    /// Unix milliseconds, when known.
    pub started_at_ms: Option<i64>,
    /// Unix milliseconds, when known.
    pub completed_at_ms: Option<i64>,
}

/// A page of items.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadItemsListResponse {
    /// The items, in the requested direction.
    pub data: Vec<ThreadItemEntry>,
    /// The next page, if any.
    pub next_cursor: Option<String>,
    /// The page in the other direction, starting next to this page's first item.
    pub backwards_cursor: Option<String>,
}

/// `thread/backgroundTerminals/list` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ThreadBackgroundTerminalsListParams {
    pub thread_id: String,
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A process a command left running.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ThreadBackgroundTerminal {
    pub item_id: String,
    pub process_id: String,
    pub command: String,
    pub cwd: String,
    pub os_pid: Option<u32>,
}

/// The result of `thread/backgroundTerminals/list`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadBackgroundTerminalsListResponse {
    /// The thread's running processes.
    pub data: Vec<ThreadBackgroundTerminal>,
    /// The next page, if any.
    pub next_cursor: Option<String>,
}

/// `turn/steer` params: more input for the running turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnSteerParams {
    /// The thread.
    pub thread_id: String,
    /// The turn the client believes is running.
    pub expected_turn_id: String,
    /// The input.
    pub input: Vec<UserInput>,
    /// Echoed as the user message item's `clientId`.
    #[serde(default)]
    pub client_user_message_id: Option<String>,
}

/// The result of `turn/steer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnSteerResponse {
    /// The turn that took the input.
    pub turn_id: String,
}
