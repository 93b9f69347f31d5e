//! The body of a Responses request, typed: the model input items and the tools the model may
//! call, as the upstream API spells them.

use serde::Serialize;
use serde_json::Value;

/// A `POST /responses` body (or a WebSocket `response.create`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResponsesRequest {
    /// The model slug.
    pub model: String,
    /// Base instructions, when not sent as input.
    pub instructions: Option<String>,
    /// The model input, in order.
    pub input: Vec<InputItem>,
    /// The tools the model may call.
    pub tools: Vec<Tool>,
    /// `auto`.
    pub tool_choice: &'static str,
    /// Whether the model may call several tools at once.
    pub parallel_tool_calls: bool,
    /// Whether the upstream keeps the response.
    pub store: bool,
    /// Always true: tether reads the event stream.
    pub stream: bool,
    /// The output format, when the final answer must follow a schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<TextControls>,
}

/// `text` of a request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TextControls {
    /// The format of the answer.
    pub format: TextFormat,
}

/// An answer format.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    /// JSON that follows `schema`.
    JsonSchema {
        /// The format's name.
        name: String,
        /// The JSON Schema.
        schema: Value,
        /// Whether the schema is enforced exactly.
        strict: bool,
    },
}

/// Who a message is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions from the application.
    Developer,
    /// The user.
    User,
    /// The model.
    Assistant,
}

/// One item of the model input.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InputItem {
    /// A message.
    Message {
        /// Who it is from.
        role: Role,
        /// Its parts.
        content: Vec<ContentPart>,
    },
    /// A function call the model made.
    FunctionCall {
        /// The model's call id.
        call_id: String,
        /// The function.
        name: String,
        /// The arguments as the model wrote them.
        arguments: String,
    },
    /// What a function call returned.
    FunctionCallOutput {
        /// The call it answers.
        call_id: String,
        /// The output text.
        output: String,
    },
}

impl InputItem {
    /// A message of one text part (`input_text`, or `output_text` for the assistant).
    pub fn text(role: Role, text: impl Into<String>) -> InputItem {
        let text = text.into();
        let part = match role {
            Role::Assistant => ContentPart::OutputText { text },
            Role::Developer | Role::User => ContentPart::InputText { text },
        };
        InputItem::Message {
            role,
            content: vec![part],
        }
    }
}

/// One part of a message.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text to the model.
    InputText {
        /// The text.
        text: String,
    },
    /// An image to the model.
    InputImage {
        /// A URL or data URL.
        image_url: String,
    },
    /// Text from the model.
    OutputText {
        /// The text.
        text: String,
    },
}

/// A tool the model may call.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Tool {
    /// A function with JSON arguments.
    Function {
        /// Its name.
        name: String,
        /// What it does.
        description: String,
        /// The JSON Schema of its arguments.
        parameters: Value,
        /// Whether the arguments must match the schema exactly.
        strict: bool,
    },
    /// Functions grouped under one name.
    Namespace {
        /// Its name.
        name: String,
        /// What its functions are for.
        description: String,
        /// Its functions.
        tools: Vec<Tool>,
    },
}
