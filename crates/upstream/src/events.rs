use serde_json::Value;

/// One decoded event of a streamed response.
#[derive(Clone, Debug, PartialEq)]
pub enum ResponseEvent {
    /// `response.created`.
    Created {
        /// The upstream response id.
        response_id: String,
    },
    /// `response.output_item.added`: an output item begins.
    ItemAdded(OutputItem),
    /// `response.output_text.delta`.
    TextDelta {
        /// The message item the text belongs to.
        item_id: String,
        /// The new text.
        delta: String,
    },
    /// `response.reasoning_summary_part.added`: a new part of a reasoning summary begins.
    ReasoningSummaryPartAdded {
        /// The reasoning item.
        item_id: String,
        /// Which part of the summary.
        summary_index: i64,
    },
    /// `response.reasoning_summary_text.delta`.
    ReasoningSummaryDelta {
        /// The reasoning item.
        item_id: String,
        /// Which part of the summary the text extends.
        summary_index: i64,
        /// The new summary text.
        delta: String,
    },
    /// `response.output_item.done`: an output item is complete.
    ItemDone(OutputItem),
    /// `response.completed`: the last event of a successful response.
    Completed {
        /// The upstream response id.
        response_id: String,
        /// Token counts, when the upstream reports them.
        usage: Option<Usage>,
    },
}

/// An output item, as far as tether uses it.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputItem {
    /// An assistant message.
    Message {
        /// Item id.
        id: String,
        /// Its text so far (complete in `ItemDone`).
        text: String,
    },
    /// A call of a client-provided function.
    FunctionCall {
        /// Item id.
        id: String,
        /// The id the output must be returned under.
        call_id: String,
        /// The function.
        name: String,
        /// JSON-encoded arguments.
        arguments: String,
    },
    /// Reasoning, with its summary parts.
    Reasoning {
        /// Item id.
        id: String,
        /// Summary texts.
        summary: Vec<String>,
    },
    /// Any other item type, kept so callers can ignore it knowingly.
    Other {
        /// Item id.
        id: String,
        /// Its `type`.
        item_type: String,
    },
}

/// Token counts of one response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens.
    pub input_tokens: i64,
    /// Of which served from cache.
    pub cached_input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Of which reasoning.
    pub reasoning_output_tokens: i64,
    /// Input plus output.
    pub total_tokens: i64,
}

fn string(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn int(value: &Value, path: &[&str]) -> i64 {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

impl OutputItem {
    fn decode(item: &Value) -> OutputItem {
        let id = string(item, "id");
        match item.get("type").and_then(Value::as_str).unwrap_or_default() {
            "message" => OutputItem::Message {
                id,
                text: item
                    .get("content")
                    .and_then(Value::as_array)
                    .map(|parts| {
                        parts
                            .iter()
                            .filter(|p| {
                                p.get("type").and_then(Value::as_str) == Some("output_text")
                            })
                            .map(|p| string(p, "text"))
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            "function_call" => OutputItem::FunctionCall {
                id,
                call_id: string(item, "call_id"),
                name: string(item, "name"),
                arguments: string(item, "arguments"),
            },
            "reasoning" => OutputItem::Reasoning {
                id,
                summary: item
                    .get("summary")
                    .and_then(Value::as_array)
                    .map(|parts| parts.iter().map(|p| string(p, "text")).collect())
                    .unwrap_or_default(),
            },
            other => OutputItem::Other {
                id,
                item_type: other.to_owned(),
            },
        }
    }
}

/// What an event means for the stream.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    Event(ResponseEvent),
    /// Known but of no interest (`response.in_progress`, `content_part.added`, …).
    Skip,
    /// `response.failed`, `response.incomplete` or `error`: the response ends with this message.
    Failed {
        code: Option<String>,
        message: String,
    },
}

/// Decodes one event object (the `data` of an SSE event, or a WebSocket text message).
pub(crate) fn decode(event: &Value) -> Decoded {
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match kind {
        "response.created" => Decoded::Event(ResponseEvent::Created {
            response_id: event
                .get("response")
                .map(|r| string(r, "id"))
                .unwrap_or_default(),
        }),
        "response.output_item.added" => match event.get("item") {
            Some(item) => Decoded::Event(ResponseEvent::ItemAdded(OutputItem::decode(item))),
            None => Decoded::Skip,
        },
        "response.output_item.done" => match event.get("item") {
            Some(item) => Decoded::Event(ResponseEvent::ItemDone(OutputItem::decode(item))),
            None => Decoded::Skip,
        },
        "response.output_text.delta" => Decoded::Event(ResponseEvent::TextDelta {
            item_id: string(event, "item_id"),
            delta: string(event, "delta"),
        }),
        "response.reasoning_summary_part.added" => {
            Decoded::Event(ResponseEvent::ReasoningSummaryPartAdded {
                item_id: string(event, "item_id"),
                summary_index: int(event, &["summary_index"]),
            })
        }
        "response.reasoning_summary_text.delta" => {
            Decoded::Event(ResponseEvent::ReasoningSummaryDelta {
                item_id: string(event, "item_id"),
                summary_index: int(event, &["summary_index"]),
                delta: string(event, "delta"),
            })
        }
        "response.completed" => {
            let response = event.get("response").cloned().unwrap_or_default();
            let usage = response
                .get("usage")
                .filter(|u| u.is_object())
                .map(|u| Usage {
                    input_tokens: int(u, &["input_tokens"]),
                    cached_input_tokens: int(u, &["input_tokens_details", "cached_tokens"]),
                    output_tokens: int(u, &["output_tokens"]),
                    reasoning_output_tokens: int(u, &["output_tokens_details", "reasoning_tokens"]),
                    total_tokens: int(u, &["total_tokens"]),
                });
            Decoded::Event(ResponseEvent::Completed {
                response_id: string(&response, "id"),
                usage,
            })
        }
        "response.failed" | "response.incomplete" => {
            let response = event.get("response").cloned().unwrap_or_default();
            let error = response.get("error").cloned().unwrap_or_default();
            let reason = response
                .get("incomplete_details")
                .map(|d| string(d, "reason"))
                .unwrap_or_default();
            let message = Some(string(&error, "message"))
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| {
                    format!(
                        "response {}: {reason}",
                        kind.trim_start_matches("response.")
                    )
                });
            Decoded::Failed {
                code: error.get("code").and_then(Value::as_str).map(str::to_owned),
                message,
            }
        }
        "error" => {
            let error = event.get("error").unwrap_or(event);
            Decoded::Failed {
                code: error.get("code").and_then(Value::as_str).map(str::to_owned),
                message: string(error, "message"),
            }
        }
        _ => Decoded::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_the_events_tether_uses() {
        let added = decode(
            &json!({"type": "response.output_item.added", "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}}),
        );
        assert!(
            matches!(added, Decoded::Event(ResponseEvent::ItemAdded(OutputItem::Message { ref id, ref text })) if id == "msg_1" && text.is_empty())
        );
        let done = decode(
            &json!({"type": "response.output_item.done", "item": {"type": "message", "id": "msg_1", "content": [{"type": "output_text", "text": "Hel"}, {"type": "output_text", "text": "lo"}]}}),
        );
        assert!(
            matches!(done, Decoded::Event(ResponseEvent::ItemDone(OutputItem::Message { ref text, .. })) if text == "Hello")
        );
        let call = decode(
            &json!({"type": "response.output_item.done", "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup", "arguments": "{\"q\":1}"}}),
        );
        assert!(
            matches!(call, Decoded::Event(ResponseEvent::ItemDone(OutputItem::FunctionCall { ref name, .. })) if name == "lookup")
        );
        assert_eq!(
            decode(
                &json!({"type": "response.reasoning_summary_part.added", "item_id": "rs_1", "output_index": 0, "summary_index": 1, "part": {"type": "summary_text", "text": ""}})
            ),
            Decoded::Event(ResponseEvent::ReasoningSummaryPartAdded {
                item_id: "rs_1".into(),
                summary_index: 1
            })
        );
        assert_eq!(
            decode(
                &json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 1, "delta": "Thinking"})
            ),
            Decoded::Event(ResponseEvent::ReasoningSummaryDelta {
                item_id: "rs_1".into(),
                summary_index: 1,
                delta: "Thinking".into()
            })
        );
        let completed = decode(
            &json!({"type": "response.completed", "response": {"id": "resp_1", "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 15}}}),
        );
        let Decoded::Event(ResponseEvent::Completed {
            response_id,
            usage: Some(usage),
        }) = completed
        else {
            panic!()
        };
        assert_eq!(response_id, "resp_1");
        assert_eq!(
            usage,
            Usage {
                input_tokens: 10,
                cached_input_tokens: 4,
                output_tokens: 5,
                reasoning_output_tokens: 2,
                total_tokens: 15
            }
        );
        let failed = decode(
            &json!({"type": "response.failed", "response": {"error": {"code": "rate_limit_exceeded", "message": "slow down"}}}),
        );
        assert!(
            matches!(failed, Decoded::Failed { code: Some(ref c), ref message } if c == "rate_limit_exceeded" && message == "slow down")
        );
        assert!(matches!(
            decode(&json!({"type": "response.in_progress"})),
            Decoded::Skip
        ));
    }
}
