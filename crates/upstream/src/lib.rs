//! A client for OpenAI Responses-compatible model APIs: one streamed `responses` request at a time,
//! over HTTP with server-sent events or over a WebSocket, decoded into [`ResponseEvent`]s.
//!
//! It owns the wire format of the upstream API (typed request bodies and decoded events), the retry policy for requests that have not
//! started streaming, and the per-request header hook that callers use to add headers computed at
//! send time (attestation). It knows nothing of threads, turns, connections or JSON-RPC: callers
//! build the request body and decide what events mean.

mod events;
mod request;
mod sse;
mod stream;

pub use events::{OutputItem, ResponseEvent, Usage};
pub use request::{ContentPart, InputItem, ResponsesRequest, Role, TextControls, TextFormat, Tool};
pub use stream::{
    Endpoint, HeaderHook, HeadersFuture, NoExtraHeaders, ResponseStream, Upstream, UpstreamError,
};
