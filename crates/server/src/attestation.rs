//! Client attestation for first-party upstream requests. Before each such request the thread asks
//! one client (the lowest-id live connection subscribed to the thread that declared
//! `requestAttestation`) for a token with `attestation/generate`, within one 100 ms budget that
//! covers queueing and the answer, and sends the outcome as the `x-oai-attestation` header.
//! The token and the header value are never logged.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tether_protocol::server_requests::AttestationGenerate;
use tether_protocol::{AttestationGenerateResponse, Outgoing};
use tether_upstream::{HeaderHook, HeadersFuture};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::Server;
use crate::server_requests::{Answer, Refusal};

/// The whole budget of one attestation.
pub const BUDGET: Duration = Duration::from_millis(100);
const HEADER: &str = "x-oai-attestation";

/// How an attestation attempt ended: the `s` of the envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `s: 0`, with the token.
    Token(String),
    /// `s: 1`: no answer within the budget.
    TimedOut,
    /// `s: 2`: the client answered with an error, or the request could not be queued.
    Failed,
    /// `s: 3`: the connection closed while the request was pending.
    ConnectionClosed,
    /// `s: 4`: the result was not `{"token": string}`.
    Malformed,
}

impl Outcome {
    /// The header value; `None` when it would not be a valid header value.
    pub fn header_value(&self) -> Option<String> {
        let value = match self {
            Outcome::Token(token) => {
                format!("{{\"v\":1,\"s\":0,\"t\":{}}}", Value::String(token.clone()))
            }
            Outcome::TimedOut => r#"{"v":1,"s":1}"#.to_owned(),
            Outcome::Failed => r#"{"v":1,"s":2}"#.to_owned(),
            Outcome::ConnectionClosed => r#"{"v":1,"s":3}"#.to_owned(),
            Outcome::Malformed => r#"{"v":1,"s":4}"#.to_owned(),
        };
        // Visible ASCII only: `http` also admits bytes above 0x7f, which are not a usable value.
        let valid = value
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
        valid.then_some(value)
    }
}

/// The header hook of a first-party thread: reads the thread's current subscribers when a
/// request is about to be sent.
pub struct AttestationHook {
    server: Arc<Server>,
    subscribers: watch::Receiver<BTreeSet<u64>>,
}

impl AttestationHook {
    /// A hook for the thread whose subscribers `subscribers` publishes.
    pub fn new(
        server: Arc<Server>,
        subscribers: watch::Receiver<BTreeSet<u64>>,
    ) -> AttestationHook {
        AttestationHook {
            server,
            subscribers,
        }
    }

    async fn outcome(&self) -> Option<Outcome> {
        let span = tracing::info_span!("attestation");
        self.ask().instrument(span).await
    }

    async fn ask(&self) -> Option<Outcome> {
        let candidates: Vec<u64> = self.subscribers.borrow().iter().copied().collect();
        let connection = self
            .server
            .registry
            .lowest_matching(candidates, |session| session.request_attestation)?;
        let (id, answer) = self.server.requests.register([connection.id()]);
        let asked = async {
            let request = Outgoing::server_request::<AttestationGenerate>(id, &Default::default());
            if !connection.send(request).await {
                return Outcome::Failed;
            }
            tokio::select! {
                answer = answer => match answer.map(Answer::decode::<AttestationGenerate>) {
                    Ok(Ok(AttestationGenerateResponse { token })) => Outcome::Token(token),
                    Ok(Err(Refusal::Malformed(_))) => Outcome::Malformed,
                    Ok(Err(Refusal::Error(_))) => Outcome::Failed,
                    Err(_) => Outcome::ConnectionClosed,
                },
                _ = connection.gone().cancelled() => Outcome::ConnectionClosed,
            }
        };
        let outcome = tokio::time::timeout(BUDGET, asked)
            .await
            .unwrap_or(Outcome::TimedOut);
        // Whatever happened, a later answer to this id is ignored.
        self.server.requests.cancel(id);
        tracing::debug!(connection = connection.id(), status = ?std::mem::discriminant(&outcome), "attestation attempted");
        Some(outcome)
    }
}

impl HeaderHook for AttestationHook {
    fn headers(&self) -> HeadersFuture<'_> {
        Box::pin(async {
            match self
                .outcome()
                .await
                .and_then(|outcome| outcome.header_value())
            {
                Some(value) => vec![(HEADER.to_owned(), value)],
                None => Vec::new(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_compact_json_with_the_token_only_on_success() {
        assert_eq!(
            Outcome::Token("v1.tok\"en".into()).header_value().unwrap(),
            r#"{"v":1,"s":0,"t":"v1.tok\"en"}"#
        );
        assert_eq!(
            Outcome::TimedOut.header_value().unwrap(),
            r#"{"v":1,"s":1}"#
        );
        assert_eq!(Outcome::Failed.header_value().unwrap(), r#"{"v":1,"s":2}"#);
        assert_eq!(
            Outcome::ConnectionClosed.header_value().unwrap(),
            r#"{"v":1,"s":3}"#
        );
        assert_eq!(
            Outcome::Malformed.header_value().unwrap(),
            r#"{"v":1,"s":4}"#
        );
        // JSON escapes control characters, so only what JSON writes raw can make it invalid.
        assert!(
            Outcome::Token("line\nbreak".into())
                .header_value()
                .is_some()
        );
        assert_eq!(Outcome::Token("tök".into()).header_value(), None);
        assert_eq!(Outcome::Token("del\u{7f}".into()).header_value(), None);
    }
}
