//! The server's error type for requests. It keeps what caused it (for logs) and becomes the wire
//! error object only where the dispatcher answers.

use tether_device_key::DeviceKeyError;
use tether_protocol::ErrorObject;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The client asked for something it may not have: `-32600` with this exact text.
    #[error("{0}")]
    Invalid(String),
    /// The server could not do it: `-32603`, "`context`: `source`".
    #[error("{context}: {source}")]
    Internal {
        /// What the server was doing.
        context: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The state database failed: `-32603` with its text.
    #[error(transparent)]
    State(#[from] tether_state::StateError),
    /// A device-key operation failed; the error carries its own code.
    #[error(transparent)]
    DeviceKey(#[from] DeviceKeyError),
    /// An error already in wire form.
    #[error("{}", .0.message)]
    Wire(ErrorObject),
}

impl ServerError {
    /// `-32600` with `message`.
    pub fn invalid(message: impl Into<String>) -> ServerError {
        ServerError::Invalid(message.into())
    }

    /// `-32603`: `context` failed because of `source`.
    pub fn internal(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ServerError {
        ServerError::Internal {
            context: context.into(),
            source: source.into(),
        }
    }

    /// The error object the client receives.
    pub fn to_wire(&self) -> ErrorObject {
        match self {
            ServerError::Invalid(message) => ErrorObject::invalid_request(message.clone()),
            ServerError::Internal { .. } | ServerError::State(_) => {
                ErrorObject::internal(self.to_string())
            }
            ServerError::DeviceKey(error) => ErrorObject {
                code: error.jsonrpc_code(),
                message: error.to_string(),
                data: None,
            },
            ServerError::Wire(error) => error.clone(),
        }
    }
}

impl From<ErrorObject> for ServerError {
    fn from(error: ErrorObject) -> ServerError {
        ServerError::Wire(error)
    }
}
