//! The Codex app-server wire protocol as tether speaks it: the JSON-RPC envelopes (without the
//! `"jsonrpc"` member), one table per direction (client requests with their params and results,
//! server notifications, server requests with the answers clients give), and the error codes and
//! texts clients match on.
//!
//! Types and pure encoding/decoding only: no I/O, no connections, no knowledge of how a request
//! is served. Device-key payloads and results are the device-key crate's own wire types, used here
//! without its providers.

/// The codex app-server protocol version tether implements, as clients read it from
/// `initialize.userAgent`.
pub const CODEX_PROTOCOL_VERSION: &str = "0.169.0";

mod account;
mod client_asks;
mod command_exec;
mod config;
mod envelope;
mod goal;
mod initialize;
mod model;
mod notifications;
mod policy;
mod requests;
mod schema;
mod skills;
mod status;
mod table;
mod thread;
mod thread_ops;
mod tools;

pub use account::{
    Account, AccountRateLimitsUpdatedNotification, AccountUpdatedNotification, AuthMode,
    BedrockCheckGovCloudRequirementsParams, BedrockCheckGovCloudRequirementsResponse,
    CreditsSnapshot, GetAccountParams, GetAccountRateLimitsParams, GetAccountRateLimitsResponse,
    GetAccountResponse, LoginAccountParams, LoginAccountResponse, LogoutAccountResponse, PlanType,
    RateLimitReachedType, RateLimitSnapshot, RateLimitWindow,
};
pub use client_asks::{
    AttestationGenerateParams, AttestationGenerateResponse, DynamicToolCallOutputContentItem,
    DynamicToolCallParams, DynamicToolCallResponse, SERVER_REQUESTS, server_requests,
};
pub use command_exec::{
    CommandExecOutputDeltaNotification, CommandExecOutputStream, CommandExecParams,
    CommandExecResizeParams, CommandExecResponse, CommandExecTerminalSize,
    CommandExecTerminateParams, CommandExecWriteParams,
};
pub use config::{
    ConfigBatchWriteParams, ConfigEdit, ConfigLayer, ConfigLayerMetadata, ConfigLayerSource,
    ConfigReadParams, ConfigReadResponse, ConfigRequirementsReadResponse, ConfigValueWriteParams,
    ConfigWarningNotification, ConfigWriteErrorCode, ConfigWriteResponse, MergeStrategy,
    OverriddenMetadata, TextPosition, TextRange, WarningNotification, WriteStatus,
};
pub use envelope::{
    ErrorObject, Incoming, Outgoing, RequestId, error_codes, now_ms, parse_incoming,
};
pub use goal::{
    ThreadGoal, ThreadGoalClearResponse, ThreadGoalGetResponse, ThreadGoalSetParams,
    ThreadGoalSetResponse, ThreadGoalStatus, ThreadRevertParams, ThreadRevertResponse,
};
pub use initialize::{ClientInfo, InitializeCapabilities, InitializeParams, InitializeResponse};
pub use model::{
    CollaborationModeListParams, CollaborationModeListResponse, CollaborationModeMask,
    ExperimentalFeature, ExperimentalFeatureListParams, ExperimentalFeatureListResponse,
    ExperimentalFeatureStage, InputModality, ModeKind, Model, ModelAvailabilityNux,
    ModelListParams, ModelListResponse, ModelServiceTier, ModelUpgradeInfo, MultiAgentVersion,
    ReasoningEffortOption,
};
pub use notifications::*;
pub use policy::{
    ApprovalsReviewer, AskForApproval, GranularApproval, NetworkAccess, SandboxMode, SandboxPolicy,
};
pub use requests::{
    CLIENT_METHODS, ClientRequest, DeviceKeyCreateParams, DeviceKeyPublicParams,
    DeviceKeySignParams, methods,
};
pub use schema::schemas;
pub use skills::{
    HookErrorInfo, HooksListEntry, HooksListParams, HooksListResponse, MarketplaceLoadErrorInfo,
    PluginInstalledParams, PluginInstalledResponse, SkillErrorInfo, SkillInterface, SkillMetadata,
    SkillScope, SkillsListEntry, SkillsListParams, SkillsListResponse,
};
pub use status::{
    ConnectionStatus, DeviceKeyAvailability, LoadedThreadStatus, TetherStatusParams,
    TetherStatusResponse,
};
pub use table::{
    Method, MethodSpec, Notification, Route, Serialization, ServerRequest, Transports,
};
pub use tether_device_key::{DeviceKeyInfo, DeviceKeySignature};
pub use thread::{
    CodexErrorInfo, CwdFilter, DynamicToolFunction, DynamicToolNamespace, DynamicToolSpec,
    EmptyParams, EmptyResponse, FunctionTag, ItemsView, NamespaceTag, SortDirection, Thread,
    ThreadHistoryMode, ThreadIdParams, ThreadItem, ThreadListParams, ThreadListResponse,
    ThreadLoadedListParams, ThreadLoadedListResponse, ThreadReadParams, ThreadReadResponse,
    ThreadResumeParams, ThreadSessionResponse, ThreadSortKey, ThreadStartParams, ThreadStatus,
    ThreadUnsubscribeResponse, ThreadUnsubscribeStatus, TokenUsageBreakdown, Turn, TurnError,
    TurnInterruptParams, TurnStartParams, TurnStartResponse, TurnStatus, UserInput,
};
pub use thread_ops::{
    ThreadArchivedNotification, ThreadBackgroundTerminal, ThreadBackgroundTerminalsListParams,
    ThreadBackgroundTerminalsListResponse, ThreadDeletedNotification, ThreadForkParams,
    ThreadItemEntry, ThreadItemsListParams, ThreadItemsListResponse, ThreadMetadataUpdateParams,
    ThreadNameUpdatedNotification, ThreadReadState, ThreadReadStateChangedNotification,
    ThreadReadStateOperation, ThreadReadStateUpdateParams, ThreadReadStateUpdateResponse,
    ThreadResponse, ThreadSetNameParams, ThreadTurnsListParams, ThreadTurnsListResponse,
    ThreadUnarchivedNotification, ThreadUnreadPosition, TurnItemsView, TurnSteerParams,
    TurnSteerResponse,
};
pub use tools::{
    CollaborationMode, CollaborationModeSettings, CommandAction, CommandExecutionApprovalDecision,
    CommandExecutionApprovalKind, CommandExecutionOutputDeltaNotification,
    CommandExecutionRequestApprovalParams, CommandExecutionRequestApprovalResponse,
    CommandExecutionSource, CommandExecutionStatus, TerminalInteractionNotification,
    ThreadBackgroundTerminalsCleanParams, ThreadBackgroundTerminalsCleanResponse,
    ThreadBackgroundTerminalsTerminateParams, ThreadBackgroundTerminalsTerminateResponse,
    ThreadSettings, ThreadSettingsUpdatedNotification, ThreadShellCommandParams, TurnPlanStep,
    TurnPlanStepStatus, TurnPlanUpdatedNotification,
};
