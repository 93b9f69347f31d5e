//! Requests from the server to clients: ids from one process-wide counter starting at 0, and the
//! table of requests still waiting for an answer, each with the connections it was sent to. Only
//! those connections may answer; the first answer from one of them wins. Later answers, answers
//! to cancelled ids and answers from anyone else are ignored without a reply.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;
use tether_protocol::{ErrorObject, RequestId, ServerRequest};
use tokio::sync::oneshot;

/// A client's answer to a server request.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// `{"id":…,"result":…}`.
    Result(Value),
    /// `{"id":…,"error":…}`.
    Error(ErrorObject),
}

/// Why an answer is not a result of the request's type.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The client answered with an error.
    #[error("{}", .0.message)]
    Error(ErrorObject),
    /// The result does not have the request's response shape.
    #[error("malformed answer: {0}")]
    Malformed(serde_json::Error),
}

impl Answer {
    /// The typed result of request `R`, or why there is none.
    pub fn decode<R: ServerRequest>(self) -> Result<R::Response, Refusal> {
        match self {
            Answer::Result(result) => serde_json::from_value(result).map_err(Refusal::Malformed),
            Answer::Error(error) => Err(Refusal::Error(error)),
        }
    }
}

struct Pending {
    recipients: BTreeSet<u64>,
    waiting: oneshot::Sender<Answer>,
}

/// Every server request awaiting an answer.
#[derive(Default)]
pub struct ServerRequests {
    next_id: AtomicI64,
    pending: Mutex<HashMap<i64, Pending>>,
}

impl ServerRequests {
    /// A fresh id for a request sent to `recipients`, and the receiver of its first answer.
    pub fn register(
        &self,
        recipients: impl IntoIterator<Item = u64>,
    ) -> (i64, oneshot::Receiver<Answer>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (waiting, receiver) = oneshot::channel();
        let recipients = recipients.into_iter().collect();
        self.lock().insert(
            id,
            Pending {
                recipients,
                waiting,
            },
        );
        (id, receiver)
    }

    /// `connection` was sent request `id` too (a replay to a new subscriber).
    pub fn add_recipient(&self, id: i64, connection: u64) {
        if let Some(pending) = self.lock().get_mut(&id) {
            pending.recipients.insert(connection);
        }
    }

    /// Delivers `from`'s answer; false when it is not taken: nobody waits for `id` (already
    /// answered, cancelled, unknown, not one of ours), or `from` was not sent the request.
    pub fn answer(&self, from: u64, id: &RequestId, answer: Answer) -> bool {
        let RequestId::Integer(id) = id else {
            return false;
        };
        let mut pending = self.lock();
        if !pending
            .get(id)
            .is_some_and(|request| request.recipients.contains(&from))
        {
            return false;
        }
        let request = pending.remove(id).expect("checked above");
        request.waiting.send(answer).is_ok()
    }

    /// How many requests wait for an answer.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Stops waiting for `id`; a later answer is ignored.
    pub fn cancel(&self, id: i64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn ids_count_from_zero_and_the_first_answer_wins() {
        let requests = ServerRequests::default();
        let (first, answered) = requests.register([7]);
        let (second, _cancelled) = requests.register([7]);
        assert_eq!((first, second), (0, 1));
        assert!(requests.answer(7, &RequestId::Integer(0), Answer::Result(json!({"ok": 1}))));
        assert!(!requests.answer(
            7,
            &RequestId::Integer(0),
            Answer::Result(json!({"late": 1}))
        ));
        assert_eq!(answered.await.unwrap(), Answer::Result(json!({"ok": 1})));
        requests.cancel(1);
        assert!(!requests.answer(7, &RequestId::Integer(1), Answer::Result(json!({}))));
        assert!(!requests.answer(7, &RequestId::String("0".into()), Answer::Result(json!({}))));
        assert_eq!(requests.register([7]).0, 2);
    }

    #[tokio::test]
    async fn only_recipients_answer_and_an_intruder_does_not_consume_the_request() {
        let requests = ServerRequests::default();
        let (id, answered) = requests.register([1, 2]);
        let request = RequestId::Integer(id);
        assert!(!requests.answer(3, &request, Answer::Result(json!({"spoof": 1}))));
        assert_eq!(requests.pending(), 1);
        requests.add_recipient(id, 3);
        assert!(requests.answer(3, &request, Answer::Result(json!({"real": 1}))));
        assert_eq!(answered.await.unwrap(), Answer::Result(json!({"real": 1})));
    }
}
