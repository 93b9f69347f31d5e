//! W3C trace context (`traceparent`): a request's context becomes the parent of its span, and
//! every upstream request carries the context of its own span. Ids are kept here, in the span
//! fields, so logs and upstream headers agree without an OpenTelemetry pipeline.

use std::fmt::Write as _;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rand::RngCore as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// A trace id, the id of the current span, and the sampled flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(out)
}

fn random_span_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    while id == [0; 8] {
        rand::thread_rng().fill_bytes(&mut id);
    }
    id
}

impl TraceContext {
    /// Parses a version-00 `traceparent`; `None` for anything invalid (all-zero ids included).
    pub fn parse(traceparent: &str) -> Option<TraceContext> {
        let mut parts = traceparent.trim().split('-');
        let (Some(version), Some(trace), Some(span), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if version != "00" {
            return None;
        }
        let trace_id = unhex::<16>(trace).filter(|id| *id != [0; 16])?;
        let span_id = unhex::<8>(span).filter(|id| *id != [0; 8])?;
        let flags = unhex::<1>(flags)?[0];
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// A new trace, for requests that came without one.
    pub fn root() -> TraceContext {
        let mut trace_id = [0u8; 16];
        while trace_id == [0; 16] {
            rand::thread_rng().fill_bytes(&mut trace_id);
        }
        TraceContext {
            trace_id,
            span_id: random_span_id(),
            sampled: true,
        }
    }

    /// The context of a span whose parent has this one.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            span_id: random_span_id(),
            ..*self
        }
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            u8::from(self.sampled)
        )
    }

    /// The trace id, lowercase hex.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id, lowercase hex.
    pub fn span_id(&self) -> String {
        hex(&self.span_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_children_and_writes_traceparent() {
        let parent =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            parent.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let child = parent.child();
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        let root = TraceContext::root();
        assert_eq!(TraceContext::parse(&root.traceparent()), Some(root));
    }
}

/// A request's span and trace context, carried to the task that does the work.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The request's span: the parent of the work's spans.
    pub span: tracing::Span,
    /// The request's trace context.
    pub context: TraceContext,
}

impl Trace {
    /// The span and context of a request that arrived with `traceparent` (or none).
    pub fn for_request(
        method: &str,
        connection: u64,
        id: &impl std::fmt::Display,
        traceparent: Option<&str>,
    ) -> Trace {
        let parent = traceparent.and_then(TraceContext::parse);
        let context = parent.map(|p| p.child()).unwrap_or_else(TraceContext::root);
        let span = tracing::info_span!(
            "request",
            method,
            connection,
            id = %id,
            trace_id = %context.trace_id(),
            span_id = %context.span_id(),
            parent_span_id = parent.map(|p| p.span_id()),
        );
        if let Some(traceparent) = traceparent {
            // With span export on, the client's trace is the exported span's parent too.
            let carrier = std::collections::HashMap::from([(
                "traceparent".to_owned(),
                traceparent.to_owned(),
            )]);
            let parent = TraceContextPropagator::new().extract(&carrier);
            let _ = span.set_parent(parent);
        }
        Trace { span, context }
    }

    /// The `traceparent` for a request made within this span: the exported span's context when
    /// span export is on, else this trace's own.
    pub fn traceparent(&self) -> String {
        let exported = self.span.context().span().span_context().clone();
        if exported.is_valid() {
            format!(
                "00-{}-{}-{:02x}",
                exported.trace_id(),
                exported.span_id(),
                exported.trace_flags().to_u8()
            )
        } else {
            self.context.traceparent()
        }
    }

    /// A child span `name` of this one, with its own context.
    pub fn child(
        &self,
        span: impl FnOnce(&tracing::Span, &TraceContext) -> tracing::Span,
    ) -> Trace {
        let context = self.context.child();
        Trace {
            span: span(&self.span, &context),
            context,
        }
    }
}
