//! One sampling round of a turn: streams a Responses request and forwards its events to the
//! thread's actor, tagged with the round's generation so the actor can ignore a round it has
//! replaced (steering) or stopped (interrupt).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tether_upstream::{
    HeaderHook, HeadersFuture, NoticeFuture, ResponseEvent, Retry, RetryObserver, UpstreamError,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::actor::Command;
use super::providers::Provider;
use crate::attestation::AttestationHook;

/// The headers of one round's upstream requests: who is asking (`originator`, `user-agent`, as
/// codex sends them), the round's `traceparent`, and the attestation envelope when the provider
/// is first-party.
pub struct RoundHeaders {
    /// The client that created the thread (`clientInfo.name`).
    pub originator: String,
    /// The round span's context.
    pub traceparent: String,
    /// Asks a client for a token before each request.
    pub attestation: Option<AttestationHook>,
}

impl HeaderHook for RoundHeaders {
    fn headers(&self) -> HeadersFuture<'_> {
        Box::pin(async {
            let mut headers = vec![
                ("originator".to_owned(), self.originator.clone()),
                (
                    "user-agent".to_owned(),
                    crate::user_agent::upstream_user_agent(&self.originator),
                ),
                ("traceparent".to_owned(), self.traceparent.clone()),
            ];
            if let Some(attestation) = &self.attestation {
                headers.extend(attestation.headers().await);
            }
            headers
        })
    }
}

/// What a sampling round reports.
pub enum Sampled {
    /// An upstream event.
    Event(ResponseEvent),
    /// The request failed before streaming, or the stream broke off; it is being sent again.
    Retrying(Retry),
    /// The round failed for good.
    Failed(UpstreamError),
}

/// Runs one round until it completes, fails, or `cancel` fires (then it reports nothing more).
pub async fn sample(
    provider: Arc<Provider>,
    hook: Arc<dyn HeaderHook>,
    body: Value,
    generation: u64,
    actor: mpsc::Sender<Command>,
    cancel: CancellationToken,
) {
    let report = async |sampled| {
        let _ = actor
            .send(Command::Sampled {
                generation,
                sampled,
            })
            .await;
    };
    let mut retries = 0;
    loop {
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            outcome = stream_once(&provider, &*hook, &body, generation, &actor) => outcome,
        };
        match outcome {
            Ok(()) => return,
            Err(Phase::Request(err)) => return report(Sampled::Failed(err)).await,
            Err(Phase::Stream(err))
                if err.is_retryable() && retries < provider.stream_max_retries =>
            {
                retries += 1;
                let delay = Duration::from_millis(200) * 2u32.saturating_pow(retries - 1);
                let retry = Retry {
                    attempt: retries,
                    max_retries: provider.stream_max_retries,
                    error: err,
                    delay,
                };
                report(Sampled::Retrying(retry)).await;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(Phase::Stream(err)) => return report(Sampled::Failed(err)).await,
        }
    }
}

/// Tells the actor about each retry of the round's request, as it tells about stream retries.
struct ReportRetries<'a> {
    actor: &'a mpsc::Sender<Command>,
    generation: u64,
}

impl RetryObserver for ReportRetries<'_> {
    fn retrying(&self, retry: &Retry) -> NoticeFuture<'_> {
        let sampled = Sampled::Retrying(retry.clone());
        Box::pin(async move {
            let _ = self
                .actor
                .send(Command::Sampled {
                    generation: self.generation,
                    sampled,
                })
                .await;
        })
    }
}

/// Where a round failed: before streaming (the client already retried) or while streaming.
enum Phase {
    Request(UpstreamError),
    Stream(UpstreamError),
}

async fn stream_once(
    provider: &Provider,
    hook: &dyn HeaderHook,
    body: &Value,
    generation: u64,
    actor: &mpsc::Sender<Command>,
) -> Result<(), Phase> {
    tracing::debug!("sending the Responses request");
    let retries = ReportRetries { actor, generation };
    let mut stream = provider
        .upstream
        .stream_observed(body, hook, &retries)
        .await
        .map_err(Phase::Request)?;
    let limits = crate::rate_limits::parse_rate_limit_headers(stream.headers());
    if !limits.is_empty() {
        let _ = actor.send(Command::RateLimits(limits)).await;
    }
    while let Some(event) = stream.next().await {
        let event = event.map_err(Phase::Stream)?;
        let sampled = Sampled::Event(event);
        if actor
            .send(Command::Sampled {
                generation,
                sampled,
            })
            .await
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}
