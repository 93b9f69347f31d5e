//! The protocol's methods, one table per direction. Each table entry names a method's wire name,
//! its params type and (where one is answered) its response type; the client-request table also
//! says how the server must treat the request before any handler runs. Everything that depends on
//! the list of methods (the `ClientRequest` enum and its decode errors, method names, the
//! experimental gate, routing, the exported schemas) is generated from these tables, so adding a
//! method is one entry here plus its types.

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Which part of the server a client request concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Server-wide: no thread, no hardware.
    Global,
    /// The loaded thread named by `params.threadId`.
    Thread,
    /// Only for clients on the transports named: the server's owner.
    Local(Transports),
}

/// The transports a [`Route::Local`] request is served on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transports {
    /// stdio and the owner-only unix socket.
    Owner,
    /// Only the process's own stdio.
    Stdio,
}

/// When a request runs relative to the connection's other requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serialization {
    /// In arrival order with the connection's other requests.
    InOrder,
    /// On a task of its own, answered whenever it is done: for requests that wait on hardware, a
    /// process or a client, so they never hold up the requests behind them.
    Concurrent,
}

/// A client request method: what the table says of it.
pub trait Method: 'static {
    /// The wire name.
    const NAME: &'static str;
    /// How it is routed.
    const ROUTE: Route;
    /// Whether it runs in order or on its own.
    const SERIALIZATION: Serialization;
    /// Whether it needs the `experimentalApi` capability.
    const EXPERIMENTAL: bool;
    /// Its params.
    type Params: DeserializeOwned + JsonSchema + Send + 'static;
    /// Its successful result.
    type Response: Serialize + JsonSchema + Send + 'static;
}

/// A server notification's params type.
pub trait Notification: Serialize {
    /// The wire name.
    const METHOD: &'static str;
}

/// A request the server sends to clients.
pub trait ServerRequest {
    /// The wire name.
    const METHOD: &'static str;
    /// Its params.
    type Params: Serialize + JsonSchema;
    /// What the client answers.
    type Response: DeserializeOwned + JsonSchema;
}

/// What the table says of one client request method, for listings and checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodSpec {
    /// The wire name.
    pub name: &'static str,
    /// The type-name stem of its schema files (`<stem>Params.json`, `<stem>Response.json`).
    pub stem: &'static str,
    /// How it is routed.
    pub route: Route,
    /// Whether it runs in order or on its own.
    pub serialization: Serialization,
    /// Whether it needs the `experimentalApi` capability.
    pub experimental: bool,
}

/// Generates, from one list of client request methods: the `ClientRequest` enum (serde's
/// `unknown variant` texts list the methods in table order), one marker type per method in
/// `methods` implementing [`Method`], the per-request accessors and the method list.
macro_rules! client_requests {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident => $wire:literal ($params:ty) -> $response:ty,
            $route:expr, $serialization:ident $(, $experimental:ident)?;
    )*) => {
        /// Every request a client may send, tagged by method with its params.
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        #[serde(tag = "method", content = "params")]
        pub enum ClientRequest {
            $(
                $(#[doc = $doc])*
                #[serde(rename = $wire)]
                $variant($params),
            )*
        }

        /// One uninhabited marker type per client request method, implementing [`Method`].
        pub mod methods {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[doc = $doc])*
                #[derive(Debug)]
                pub enum $variant {}

                impl $variant {
                    /// What the table says of this method.
                    pub const SPEC: $crate::table::MethodSpec = $crate::table::MethodSpec {
                        name: $wire,
                        stem: stringify!($variant),
                        route: $route,
                        serialization: $crate::table::Serialization::$serialization,
                        experimental: client_requests!(@experimental $($experimental)?),
                    };
                }

                impl $crate::table::Method for $variant {
                    const NAME: &'static str = $wire;
                    const ROUTE: $crate::table::Route = $route;
                    const SERIALIZATION: $crate::table::Serialization =
                        $crate::table::Serialization::$serialization;
                    const EXPERIMENTAL: bool = client_requests!(@experimental $($experimental)?);
                    type Params = $params;
                    type Response = $response;
                }
            )*
        }

        /// Every client request method in table order.
        pub const CLIENT_METHODS: &[$crate::table::MethodSpec] = &[$(methods::$variant::SPEC),*];

        impl ClientRequest {
            /// What the table says of this request's method.
            pub fn spec(&self) -> &'static $crate::table::MethodSpec {
                match self {
                    $(ClientRequest::$variant(_) => &methods::$variant::SPEC,)*
                }
            }
        }

        /// `(file name, schema)` of every client request's params and response.
        pub(crate) fn client_request_schemas() -> Vec<(String, serde_json::Value)> {
            vec![
                $(
                    (format!("{}/{}Params.json", $crate::schema::version_dir($wire), stringify!($variant)), $crate::schema::of::<$params>()),
                    (format!("{}/{}Response.json", $crate::schema::version_dir($wire), stringify!($variant)), $crate::schema::of::<$response>()),
                )*
            ]
        }
    };
    (@experimental experimental) => { true };
    (@experimental) => { false };
}

/// Generates, from one list of server notifications, the [`Notification`] impls of their params
/// types and the list of notification methods.
macro_rules! server_notifications {
    ($($params:ident => $wire:literal;)*) => {
        $(
            impl $crate::table::Notification for $params {
                const METHOD: &'static str = $wire;
            }
        )*

        /// Every server notification method in table order.
        pub const SERVER_NOTIFICATIONS: &[&str] = &[$($wire),*];

        /// `(file name, schema)` of every notification's params.
        pub(crate) fn notification_schemas() -> Vec<(String, serde_json::Value)> {
            vec![$((format!("v2/{}.json", stringify!($params)), $crate::schema::of::<$params>()),)*]
        }
    };
}

/// Generates, from one list of server requests, their marker types implementing
/// [`ServerRequest`] and the list of their methods.
macro_rules! server_requests {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident => $wire:literal ($params:ty) -> $response:ty;
    )*) => {
        /// One uninhabited marker type per server request method, implementing [`ServerRequest`].
        pub mod server_requests {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[doc = $doc])*
                #[derive(Debug)]
                pub enum $variant {}

                impl $crate::table::ServerRequest for $variant {
                    const METHOD: &'static str = $wire;
                    type Params = $params;
                    type Response = $response;
                }
            )*
        }

        /// Every server request method in table order.
        pub const SERVER_REQUESTS: &[&str] = &[$($wire),*];

        /// `(file name, schema)` of every server request's params and response.
        pub(crate) fn server_request_schemas() -> Vec<(String, serde_json::Value)> {
            vec![
                $(
                    (format!("{}Params.json", stringify!($variant)), $crate::schema::of::<$params>()),
                    (format!("{}Response.json", stringify!($variant)), $crate::schema::of::<$response>()),
                )*
            ]
        }
    };
}

pub(crate) use {client_requests, server_notifications, server_requests};
