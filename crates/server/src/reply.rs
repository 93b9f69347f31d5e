//! The answer to one client request. A [`Reply`] is created by the dispatcher for every request
//! and consumed by answering it, so a request is answered at most once by construction; one that
//! is dropped unanswered (a bug) still gets an internal error, so it is answered exactly once.

use std::marker::PhantomData;
use std::sync::Arc;

use tether_protocol::{ErrorObject, Method, Outgoing, RequestId};

use crate::connection::Connection;
use crate::error::ServerError;

/// Where the answer to a request goes: its id and its connection.
pub struct Responder {
    id: RequestId,
    connection: Arc<Connection>,
}

impl Responder {
    /// The answer to request `id` of `connection`.
    pub fn new(id: RequestId, connection: Arc<Connection>) -> Responder {
        Responder { id, connection }
    }

    /// Sends the error `error`.
    pub async fn error(self, error: &ServerError) {
        log_failure(&self.id, error);
        let message = Outgoing::Error {
            id: self.id,
            error: error.to_wire(),
        };
        self.connection.send(message).await;
    }
}

fn log_failure(id: &RequestId, error: &ServerError) {
    if let ServerError::Internal { .. } | ServerError::State(_) = error {
        tracing::error!(%id, "request failed: {error}");
    }
}

/// The one answer to a request of method `M`.
#[must_use = "a request must be answered"]
pub struct Reply<M: Method> {
    responder: Option<Responder>,
    method: PhantomData<fn() -> M>,
}

impl<M: Method> Reply<M> {
    /// The answer to the request `responder` names.
    pub fn new(responder: Responder) -> Reply<M> {
        Reply {
            responder: Some(responder),
            method: PhantomData,
        }
    }

    /// The connection that sent the request.
    pub fn connection(&self) -> &Arc<Connection> {
        &self
            .responder
            .as_ref()
            .expect("a reply is only taken by answering it")
            .connection
    }

    /// Sends `result`.
    pub async fn send(self, result: Result<M::Response, ServerError>) {
        match result {
            Ok(response) => self.ok(response).await,
            Err(error) => self.error(error).await,
        }
    }

    /// Sends the successful result `response`.
    pub async fn ok(mut self, response: M::Response) {
        let Responder { id, connection } = self.take();
        connection.send(Outgoing::response(id, &response)).await;
    }

    /// Sends `error`.
    pub async fn error(mut self, error: impl Into<ServerError>) {
        self.take().error(&error.into()).await;
    }

    fn take(&mut self) -> Responder {
        self.responder
            .take()
            .expect("a reply is only taken by answering it")
    }
}

impl<M: Method> Drop for Reply<M> {
    fn drop(&mut self) {
        let Some(Responder { id, connection }) = self.responder.take() else {
            return;
        };
        tracing::error!(%id, method = M::NAME, "a request was dropped without an answer");
        let error = ErrorObject::internal(format!("{} was not answered", M::NAME));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { connection.send(Outgoing::Error { id, error }).await });
        }
    }
}
