//! The Codex app-server wire protocol as tether speaks it: the JSON-RPC envelopes (without the
//! `"jsonrpc"` member), the typed client requests with their params and results, and the error
//! codes and texts clients match on.
//!
//! Types and pure encoding/decoding only: no I/O, no connections, no knowledge of how a request
//! is served. Device-key payloads and results are the device-key crate's own wire types, used here
//! without its providers.

mod account;
mod config;
mod envelope;
mod goal;
mod initialize;
mod model;
mod requests;
mod schema;
mod skills;
mod thread;

pub use account::{
    Account, AccountRateLimitsUpdatedNotification, AccountUpdatedNotification, AuthMode,
    BedrockCheckGovCloudRequirementsParams, BedrockCheckGovCloudRequirementsResponse,
    CreditsSnapshot, GetAccountParams, GetAccountRateLimitsParams, GetAccountRateLimitsResponse,
    GetAccountResponse, LoginAccountParams, LoginAccountResponse, LogoutAccountResponse, PlanType,
    RateLimitReachedType, RateLimitSnapshot, RateLimitWindow,
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
pub use goal::{ThreadGoal, ThreadGoalSetParams, ThreadGoalStatus, ThreadRevertParams};
pub use initialize::{ClientInfo, InitializeCapabilities, InitializeParams, InitializeResponse};
pub use model::{
    CollaborationModeListParams, CollaborationModeListResponse, CollaborationModeMask,
    ExperimentalFeature, ExperimentalFeatureListParams, ExperimentalFeatureListResponse,
    ExperimentalFeatureStage, InputModality, ModeKind, Model, ModelAvailabilityNux,
    ModelListParams, ModelListResponse, ModelServiceTier, ModelUpgradeInfo, MultiAgentVersion,
    ReasoningEffortOption,
};
pub use requests::{
    ClientRequest, DeviceKeyCreateParams, DeviceKeyPublicParams, DeviceKeySignParams,
};
pub use schema::schemas;
pub use skills::{
    HookErrorInfo, HooksListEntry, HooksListParams, HooksListResponse, MarketplaceLoadErrorInfo,
    PluginInstalledParams, PluginInstalledResponse, SkillErrorInfo, SkillInterface, SkillMetadata,
    SkillScope, SkillsListEntry, SkillsListParams, SkillsListResponse,
};
pub use tether_device_key::{DeviceKeyInfo, DeviceKeySignature};
pub use thread::{
    CwdFilter, DynamicToolSpec, ItemsView, SortDirection, Thread, ThreadIdParams, ThreadItem,
    ThreadListParams, ThreadLoadedListParams, ThreadReadParams, ThreadResumeParams, ThreadSortKey,
    ThreadStartParams, ThreadStatus, TokenUsageBreakdown, Turn, TurnError, TurnInterruptParams,
    TurnStartParams, TurnStatus, UserInput,
};
