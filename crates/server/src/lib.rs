//! The tether app-server: transports (stdio, WebSocket over TCP and over a unix socket), the
//! connection registry, the per-connection processor and the typed dispatcher that answer
//! requests, the home directory and configuration, the device-key wiring that the CLI shares,
//! and the answers of the client-facing catalog methods (account, model catalog, config layers
//! and edits, skills, feature flags) as plain functions over explicit inputs.
//!
//! Data flows one way: transport → processor → the component that serves the request; replies
//! flow back through each connection's single ordered outbound queue. This crate decides which
//! parts to connect; it must not know how keys are stored (`tether-device-key`), what SQL looks
//! like (`tether-state`), or how messages are spelled beyond the types of `tether-protocol`.

mod account;
mod attestation;
mod catalog;
mod client_catalog;
mod command_exec;
mod config;
mod config_rpc;
mod connection;
mod device_keys;
mod dispatch;
mod error;
mod home;
mod listen;
mod logging;
mod login_env;
mod models;
mod processor;
mod rate_limits;
mod reply;
mod schema;
mod serve;
mod server_requests;
mod skills;
mod status;
mod threads;
mod trace;
mod transport;
mod user_agent;

pub use account::{AccountError, AuthFile, AuthTokens, IdTokenClaims, login, logout, read_account};
pub use client_catalog::{
    FeatureListError, bedrock_gov_cloud_check, collaboration_modes, experimental_features, hooks,
    installed_plugins,
};
pub use config::{
    Config, ConfigError, ConfigOverrides, DeviceKeysConfig, OtelConfig, ProviderConfig,
};
pub use config_rpc::{ConfigLayers, ConfigReadError, ConfigWriteError, read_requirements};
pub use connection::{CloseReason, Connection, Origin, Registry, Session};
pub use device_keys::{DeviceKeys, open_device_keys};
pub use home::Home;
pub use listen::ListenAddress;
pub use logging::{LogFormat, Telemetry, init_logging};
pub use models::{
    ApplyPatchToolType, ModelCatalog, ModelInfo, ModelListError, ModelUpgrade, ReasoningLevel,
    RemoteModels, ShellType, TruncationMode, TruncationPolicy,
};
pub use rate_limits::{RateLimitStore, parse_rate_limit_headers};
pub use schema::write_schemas;
pub use serve::{Limits, ServeError, ServeOptions, Server, WsAuthFlags, WsAuthMode, serve};
pub use skills::{SkillHomes, list_skills};
pub use status::{StatusError, query as query_status, render as render_status};
