//! Requests from the server to clients: ids from one process-wide counter starting at 0, and the
//! table of requests still waiting for an answer. The first answer to an id wins; later ones,
//! and answers to ids that were cancelled, are ignored without a reply.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;
use tether_protocol::{ErrorObject, RequestId};
use tokio::sync::oneshot;

/// A client's answer to a server request.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// `{"id":…,"result":…}`.
    Result(Value),
    /// `{"id":…,"error":…}`.
    Error(ErrorObject),
}

/// Every server request awaiting an answer.
#[derive(Default)]
pub struct ServerRequests {
    next_id: AtomicI64,
    pending: Mutex<HashMap<i64, oneshot::Sender<Answer>>>,
}

impl ServerRequests {
    /// A fresh id and the receiver of its first answer.
    pub fn register(&self) -> (i64, oneshot::Receiver<Answer>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.lock().insert(id, sender);
        (id, receiver)
    }

    /// Delivers an answer; false when nobody waits for `id` (already answered, cancelled,
    /// unknown, or not one of ours).
    pub fn answer(&self, id: &RequestId, answer: Answer) -> bool {
        let RequestId::Integer(id) = id else {
            return false;
        };
        match self.lock().remove(id) {
            Some(waiting) => waiting.send(answer).is_ok(),
            None => false,
        }
    }

    /// How many requests wait for an answer.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Stops waiting for `id`; a later answer is ignored.
    pub fn cancel(&self, id: i64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, oneshot::Sender<Answer>>> {
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
        let (first, answered) = requests.register();
        let (second, _cancelled) = requests.register();
        assert_eq!((first, second), (0, 1));
        assert!(requests.answer(&RequestId::Integer(0), Answer::Result(json!({"ok": 1}))));
        assert!(!requests.answer(&RequestId::Integer(0), Answer::Result(json!({"late": 1}))));
        assert_eq!(answered.await.unwrap(), Answer::Result(json!({"ok": 1})));
        requests.cancel(1);
        assert!(!requests.answer(&RequestId::Integer(1), Answer::Result(json!({}))));
        assert!(!requests.answer(&RequestId::String("0".into()), Answer::Result(json!({}))));
        assert_eq!(requests.register().0, 2);
    }
}
