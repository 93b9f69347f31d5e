//! The tether app-server: transports (stdio, WebSocket over TCP and over a unix socket), the
//! connection registry, the per-connection processor that decodes and answers requests, the
//! home directory and configuration, and the device-key wiring that the CLI shares.
//!
//! Data flows one way: transport → processor → the component that serves the request; replies
//! flow back through each connection's single ordered outbound queue. This crate decides which
//! parts to connect; it must not know how keys are stored (`tether-device-key`), what SQL looks
//! like (`tether-state`), or how messages are spelled beyond the types of `tether-protocol`.

mod attestation;
mod config;
mod connection;
mod device_keys;
mod home;
mod listen;
mod logging;
mod processor;
mod schema;
mod serve;
mod server_requests;
mod status;
mod threads;
mod trace;
mod transport;
mod user_agent;

pub use config::{Config, ConfigError, DeviceKeysConfig, OtelConfig, ProviderConfig};
pub use connection::{CloseReason, Connection, Origin, Registry, Session};
pub use device_keys::{DeviceKeys, open_device_keys};
pub use home::Home;
pub use listen::ListenAddress;
pub use logging::{LogFormat, Telemetry, init_logging};
pub use schema::write_schemas;
pub use serve::{Limits, ServeError, ServeOptions, Server, WsAuthFlags, WsAuthMode, serve};
pub use status::{StatusError, query as query_status, render as render_status};
