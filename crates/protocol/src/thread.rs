//! Threads, turns and items: the v2 shapes tether emits and the params it accepts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A conversation thread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Thread {
    pub id: String,
    pub session_id: String,
    pub forked_from_id: Option<String>,
    pub parent_thread_id: Option<String>,
    /// The first user message, or empty.
    pub preview: String,
    pub ephemeral: bool,
    pub project_id: Option<String>,
    pub model_provider: String,
    pub model: Option<String>,
    pub reasoning_effort: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    pub status: ThreadStatus,
    /// The history log; `null` for ephemeral threads.
    pub path: Option<String>,
    pub cwd: String,
    pub cli_version: String,
    /// `clientInfo.name` of the creating client.
    pub originator: Option<String>,
    pub source: String,
    pub name: Option<String>,
    /// How clients page its history: always `paginated` for tether's threads.
    #[serde(default)]
    pub history_mode: ThreadHistoryMode,
    /// Filled only by `thread/resume` and `thread/read` with turns.
    pub turns: Vec<Turn>,
}

impl ThreadStatus {
    /// The wire `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ThreadStatus::NotLoaded => "notLoaded",
            ThreadStatus::Idle => "idle",
            ThreadStatus::SystemError => "systemError",
            ThreadStatus::Active { .. } => "active",
        }
    }
}

/// How a thread's history is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ThreadHistoryMode {
    /// Whole, with `thread/read`.
    Legacy,
    /// In pages, with `thread/turns/list` and `thread/items/list`.
    #[default]
    Paginated,
}

/// A loaded thread's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ThreadStatus {
    /// Not in memory.
    NotLoaded,
    /// Loaded, no turn running.
    Idle,
    /// The last turn failed.
    SystemError,
    /// A turn is running.
    Active {
        /// `waitingOnApproval`, `waitingOnUserInput`.
        active_flags: Vec<String>,
    },
}

/// How much of a turn's items a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ItemsView {
    /// None loaded.
    NotLoaded,
    /// The display summary.
    Summary,
    /// Every item.
    Full,
}

/// Where a turn is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TurnStatus {
    /// Finished normally.
    Completed,
    /// Stopped by `turn/interrupt`.
    Interrupted,
    /// Ended by an error.
    Failed,
    /// Running.
    InProgress,
}

/// One model round trip (or several, with tools) started by user input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Turn {
    pub id: String,
    pub root_turn_id: Option<String>,
    pub items: Vec<ThreadItem>,
    pub items_view: ItemsView,
    pub status: TurnStatus,
    pub error: Option<TurnError>,
    /// Unix seconds.
    pub started_at: Option<i64>,
    /// Unix seconds.
    pub completed_at: Option<i64>,
    pub duration_ms: Option<i64>,
}

/// Why a turn failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnError {
    /// Human-readable.
    pub message: String,
    /// What kind of failure it was.
    pub codex_error_info: Option<CodexErrorInfo>,
    /// More detail, if any.
    pub additional_details: Option<String>,
}

/// The kind of a turn's failure, for clients that react to it (`CodexErrorInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
#[allow(missing_docs)]
pub enum CodexErrorInfo {
    ContextWindowExceeded,
    UsageLimitExceeded,
    RateLimitExceeded,
    InternalServerError,
    Unauthorized,
    BadRequest,
    SandboxError,
    Other,
    /// The upstream could not be reached (or answered with `http_status_code`).
    HttpConnectionFailed {
        http_status_code: Option<u16>,
    },
    /// The stream broke off.
    ResponseStreamDisconnected {
        http_status_code: Option<u16>,
    },
}

/// An item of a turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[allow(missing_docs)]
pub enum ThreadItem {
    /// What the user sent.
    UserMessage {
        id: String,
        client_id: Option<String>,
        content: Vec<UserInput>,
        started_at_ms: Option<i64>,
        completed_at_ms: Option<i64>,
    },
    /// What the model answered.
    AgentMessage {
        id: String,
        text: String,
        phase: Option<String>,
        memory_citation: Option<Value>,
        started_at_ms: Option<i64>,
        completed_at_ms: Option<i64>,
    },
    /// A call of a client-provided tool.
    DynamicToolCall {
        id: String,
        tool: String,
        namespace: Option<String>,
        arguments: Value,
        /// `inProgress`, `completed` or `failed`.
        status: String,
        content_items: Option<Vec<crate::DynamicToolCallOutputContentItem>>,
        success: Option<bool>,
        duration_ms: Option<i64>,
        started_at_ms: Option<i64>,
        completed_at_ms: Option<i64>,
    },
    /// A command the agent (or the user's `!`) ran.
    CommandExecution {
        id: String,
        /// The shell line, as rendered (`/bin/bash -lc 'echo hi'`).
        command: String,
        cwd: String,
        /// The session id while it runs; None before it starts.
        process_id: Option<String>,
        source: crate::CommandExecutionSource,
        status: crate::CommandExecutionStatus,
        command_actions: Vec<crate::CommandAction>,
        aggregated_output: Option<String>,
        exit_code: Option<i32>,
        duration_ms: Option<i64>,
        started_at_ms: Option<i64>,
        completed_at_ms: Option<i64>,
    },
    /// The history before this point was summarized.
    ContextCompaction {
        id: String,
        /// What the model continues from: the summary of everything before this item.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
    },
    /// The model's reasoning summary.
    Reasoning {
        id: String,
        summary: Vec<String>,
        content: Vec<String>,
        started_at_ms: Option<i64>,
        completed_at_ms: Option<i64>,
    },
}

impl ThreadItem {
    /// The item id.
    pub fn id(&self) -> &str {
        match self {
            ThreadItem::UserMessage { id, .. }
            | ThreadItem::AgentMessage { id, .. }
            | ThreadItem::DynamicToolCall { id, .. }
            | ThreadItem::CommandExecution { id, .. }
            | ThreadItem::ContextCompaction { id, .. }
            | ThreadItem::Reasoning { id, .. } => id,
        }
    }

    /// When the item started and completed (Unix milliseconds), where it records that.
    pub fn times(&self) -> (Option<i64>, Option<i64>) {
        match self {
            ThreadItem::UserMessage {
                started_at_ms,
                completed_at_ms,
                ..
            }
            | ThreadItem::AgentMessage {
                started_at_ms,
                completed_at_ms,
                ..
            }
            | ThreadItem::DynamicToolCall {
                started_at_ms,
                completed_at_ms,
                ..
            }
            | ThreadItem::CommandExecution {
                started_at_ms,
                completed_at_ms,
                ..
            }
            | ThreadItem::Reasoning {
                started_at_ms,
                completed_at_ms,
                ..
            } => (*started_at_ms, *completed_at_ms),
            ThreadItem::ContextCompaction { .. } => (None, None),
        }
    }
}

/// One piece of user input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum UserInput {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// UI spans within the text; kept as given.
        #[serde(default)]
        text_elements: Vec<Value>,
    },
    /// An image by URL (or data URL).
    Image {
        /// The image.
        url: String,
    },
}

/// `thread/start` params: every member optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ThreadStartParams {
    pub model: Option<String>,
    pub model_provider: Option<String>,
    pub cwd: Option<String>,
    pub base_instructions: Option<String>,
    pub developer_instructions: Option<String>,
    /// In memory only: no history log, no index row.
    pub ephemeral: Option<bool>,
    /// Tools the client implements (experimental).
    pub dynamic_tools: Option<Vec<DynamicToolSpec>>,
    /// When to ask before acting; echoed in the response.
    pub approval_policy: Option<crate::AskForApproval>,
    /// Who reviews approvals; echoed in the response.
    pub approvals_reviewer: Option<crate::ApprovalsReviewer>,
    /// The sandbox; echoed in the response.
    pub sandbox: Option<crate::SandboxMode>,
}

/// A tool the client implements, or a namespace of them: the model calls it, the server asks
/// the client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DynamicToolSpec {
    /// Functions grouped under one name.
    Namespace(DynamicToolNamespace),
    /// One function (`type` may be left out).
    Function(DynamicToolFunction),
}

/// The tag of a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceTag {
    /// `"namespace"`.
    Namespace,
}

/// The tag of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FunctionTag {
    /// `"function"`.
    Function,
}

/// Client functions grouped under one name, as the model sees them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DynamicToolNamespace {
    /// `"namespace"`.
    pub r#type: NamespaceTag,
    /// The namespace's name.
    pub name: String,
    /// What its tools are for.
    #[serde(default)]
    pub description: String,
    /// Its functions.
    pub tools: Vec<DynamicToolFunction>,
}

/// One client function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DynamicToolFunction {
    /// `"function"`, or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<FunctionTag>,
    /// The function name the model sees.
    pub name: String,
    /// What it does, for the model.
    #[serde(default)]
    pub description: String,
    /// JSON Schema of its arguments.
    #[serde(default = "empty_object_schema")]
    pub input_schema: Value,
    /// Loaded only when the model searches for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defer_loading: Option<bool>,
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// Params naming a thread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadIdParams {
    /// The thread.
    pub thread_id: String,
}

/// `thread/resume` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadResumeParams {
    /// The thread.
    pub thread_id: String,
    /// Metadata only: `thread.turns` is empty.
    #[serde(default)]
    pub exclude_turns: bool,
    /// When to ask before acting, from now on; echoed in the response.
    #[serde(default)]
    pub approval_policy: Option<crate::AskForApproval>,
    /// Who reviews approvals, from now on; echoed in the response.
    #[serde(default)]
    pub approvals_reviewer: Option<crate::ApprovalsReviewer>,
    /// The sandbox from now on; echoed in the response.
    #[serde(default)]
    pub sandbox: Option<crate::SandboxMode>,
}

/// `thread/read` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadReadParams {
    /// The thread.
    pub thread_id: String,
    /// Include every turn with its items.
    #[serde(default)]
    pub include_turns: bool,
}

/// `thread/list` sort key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ThreadSortKey {
    CreatedAt,
    UpdatedAt,
    RecencyAt,
    SectionPosition,
}

/// `thread/list` direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum SortDirection {
    Asc,
    Desc,
}

/// One working directory or several.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[allow(missing_docs)]
pub enum CwdFilter {
    One(String),
    Many(Vec<String>),
}

/// `thread/list` params: all optional, unknown members ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ThreadListParams {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
    pub sort_key: Option<ThreadSortKey>,
    pub sort_direction: Option<SortDirection>,
    pub model_providers: Option<Vec<String>>,
    pub cwd: Option<CwdFilter>,
    pub search_term: Option<String>,
    /// Archived threads instead of the others.
    pub archived: Option<bool>,
}

/// `thread/loaded/list` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ThreadLoadedListParams {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// `turn/start` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnStartParams {
    /// The thread.
    pub thread_id: String,
    /// The user's input (may be empty).
    pub input: Vec<UserInput>,
    /// Echoed as the user message item's `clientId`.
    #[serde(default)]
    pub client_user_message_id: Option<String>,
    /// Model for this turn and later ones.
    #[serde(default)]
    pub model: Option<String>,
    /// JSON Schema the final answer must follow (`text.format` upstream).
    #[serde(default)]
    pub output_schema: Option<Value>,
    /// When to ask, for this turn and later ones.
    #[serde(default)]
    pub approval_policy: Option<crate::AskForApproval>,
    /// The sandbox, for this turn and later ones.
    #[serde(default)]
    pub sandbox_policy: Option<crate::SandboxPolicy>,
    /// The working directory, for this turn and later ones.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// `turn/interrupt` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnInterruptParams {
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
}

/// Token counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct TokenUsageBreakdown {
    pub total_tokens: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_output_tokens: i64,
}

impl std::ops::AddAssign for TokenUsageBreakdown {
    fn add_assign(&mut self, other: Self) {
        self.total_tokens += other.total_tokens;
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.output_tokens += other.output_tokens;
        self.reasoning_output_tokens += other.reasoning_output_tokens;
    }
}

/// The result of `thread/start` and `thread/resume`: the thread and what it runs with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadSessionResponse {
    /// The thread (with turns on a resume that did not exclude them).
    pub thread: Thread,
    /// The model its turns use.
    pub model: String,
    /// The provider its turns go to.
    pub model_provider: String,
    /// Not used by tether: `null`.
    pub service_tier: Option<String>,
    /// The working directory.
    pub cwd: String,
    /// Where its instructions came from.
    pub instruction_sources: Vec<String>,
    /// When it asks before acting.
    pub approval_policy: crate::AskForApproval,
    /// Who reviews approvals.
    pub approvals_reviewer: crate::ApprovalsReviewer,
    /// What its commands may do.
    pub sandbox: crate::SandboxPolicy,
    /// The reasoning effort, if set.
    pub reasoning_effort: Option<String>,
    /// `thread/turns/list` cursor (descending) that starts at the newest turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns_backwards_cursor: Option<String>,
    /// `thread/items/list` cursor (descending) that starts at the newest item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_backwards_cursor: Option<String>,
}

/// What `thread/unsubscribe` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ThreadUnsubscribeStatus {
    /// The thread was not loaded.
    NotLoaded,
    /// The connection was not subscribed.
    NotSubscribed,
    /// The connection no longer receives the thread's events.
    Unsubscribed,
}

/// The result of `thread/unsubscribe`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThreadUnsubscribeResponse {
    /// What happened.
    pub status: ThreadUnsubscribeStatus,
}

/// The result of `thread/read`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThreadReadResponse {
    /// The thread.
    pub thread: Thread,
}

/// The result of `thread/list`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadListResponse {
    /// One page of threads.
    pub data: Vec<Thread>,
    /// The next page, if any.
    pub next_cursor: Option<String>,
    /// The previous page: not offered, `null`.
    pub backwards_cursor: Option<String>,
}

/// The result of `thread/loaded/list`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadLoadedListResponse {
    /// Loaded thread ids, in order.
    pub data: Vec<String>,
    /// The next page, if any.
    pub next_cursor: Option<String>,
}

/// The result of `turn/start`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TurnStartResponse {
    /// The new turn (or the running one, when the input steered it).
    pub turn: Turn,
}

/// An empty result: `{}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmptyResponse {}

/// Params of a method that takes none: absent, `null`, or any object (members are ignored).
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct EmptyParams {}

impl<'de> Deserialize<'de> for EmptyParams {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| EmptyParams {})
    }
}
