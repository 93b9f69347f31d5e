//! Threads: the registry of loaded threads, and the requests that find, load, create or list
//! them. Each loaded thread is owned by one actor task ([`actor`]); this module only routes.

mod actor;
mod goals;
mod history;
mod providers;
mod sampler;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tether_protocol::{
    CwdFilter, DynamicToolSpec, ErrorObject, Outgoing, RequestId, SortDirection, Thread,
    ThreadListParams, ThreadLoadedListParams, ThreadReadParams, ThreadResumeParams, ThreadSortKey,
    ThreadStartParams, ThreadStatus, TurnInterruptParams, TurnStartParams, now_ms,
};
use tether_state::{SortKey, StateDb, ThreadQuery, ThreadRecord};
use tokio::sync::{mpsc, watch};

use self::actor::Actor;
pub use self::actor::Command;
use self::history::HistoryLog;
pub use self::providers::Providers;
use crate::connection::Connection;
use crate::trace::Trace;
use crate::{Home, Server};

const MAILBOX: usize = 256;
const DEFAULT_PAGE: usize = 50;

/// What a thread runs with, beyond its `Thread` object; persisted in the index's metadata.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    model: String,
    base_instructions: Option<String>,
    developer_instructions: Option<String>,
    originator: Option<String>,
    #[serde(default)]
    dynamic_tools: Vec<DynamicToolSpec>,
}

#[derive(Clone)]
struct Handle {
    mailbox: mpsc::Sender<Command>,
    status: watch::Receiver<ThreadStatus>,
    subscribers: watch::Receiver<BTreeSet<u64>>,
}

/// Every loaded thread, and what is needed to load more.
pub struct Threads {
    loaded: Mutex<HashMap<String, Handle>>,
    state: StateDb,
    home: Home,
    providers: Providers,
    unload_delay: Duration,
}

type Reply = Result<(), ErrorObject>;

fn invalid(message: String) -> ErrorObject {
    ErrorObject::invalid_request(message)
}

/// A thread id must be a UUID; the error carries the parser's words.
fn parse_id(id: &str) -> Result<String, ErrorObject> {
    uuid::Uuid::parse_str(id)
        .map(|uuid| uuid.to_string())
        .map_err(|err| invalid(format!("invalid thread id: {err}")))
}

impl Threads {
    /// The registry for a server whose index is `state`.
    pub fn new(
        state: StateDb,
        home: Home,
        providers: Providers,
        unload_delay: Duration,
    ) -> Threads {
        Threads {
            loaded: Mutex::new(HashMap::new()),
            state,
            home,
            providers,
            unload_delay,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn handle(&self, id: &str) -> Option<Handle> {
        self.lock().get(id).cloned()
    }

    /// Removes `id` if its mailbox is `mailbox` (an actor that is unloading removes only itself).
    fn forget(&self, id: &str, mailbox: &mpsc::Sender<Command>) {
        let mut loaded = self.lock();
        if loaded
            .get(id)
            .is_some_and(|handle| handle.mailbox.same_channel(mailbox))
        {
            loaded.remove(id);
        }
    }

    fn spawn(
        &self,
        server: &Arc<Server>,
        thread: Thread,
        settings: Settings,
        log: Option<HistoryLog>,
        history: Vec<tether_protocol::Turn>,
    ) -> Handle {
        let (mailbox, commands) = mpsc::channel(MAILBOX);
        let (status_tx, status) = watch::channel(ThreadStatus::Idle);
        let actor = Actor::new(
            Arc::clone(server),
            thread,
            settings,
            history,
            log,
            status_tx,
            commands,
            mailbox.clone(),
        );
        let subscribers = actor.watch_subscribers();
        server.tasks.spawn(actor.run());
        Handle {
            mailbox,
            status,
            subscribers,
        }
    }

    fn log_for(&self, id: &str) -> HistoryLog {
        HistoryLog::new(self.home.threads_dir().join(format!("{id}.jsonl")))
    }

    /// The response body of `thread/start` and `thread/resume`.
    fn session_response(&self, thread: &Thread, settings: &Settings) -> Value {
        json!({
            "thread": thread,
            "model": settings.model,
            "modelProvider": thread.model_provider,
            "serviceTier": null,
            "cwd": thread.cwd,
            "instructionSources": [],
            "approvalPolicy": "never",
            "approvalsReviewer": "user",
            "sandbox": {"type": "readOnly", "networkAccess": false},
            "reasoningEffort": null,
        })
    }

    /// `thread/start`: creates, indexes (unless ephemeral) and loads a thread; its actor answers.
    pub async fn start(
        &self,
        server: &Arc<Server>,
        connection: &Arc<Connection>,
        id: RequestId,
        params: ThreadStartParams,
    ) -> Reply {
        let provider = params
            .model_provider
            .clone()
            .unwrap_or_else(|| self.providers.default_provider.clone());
        if !self.providers.contains(&provider) {
            return Err(invalid(format!("unknown model provider: {provider}")));
        }
        let ephemeral = params.ephemeral.unwrap_or(false);
        let thread_id = uuid::Uuid::now_v7().to_string();
        let cwd = params
            .cwd
            .clone()
            .or_else(|| {
                std::env::current_dir()
                    .ok()
                    .map(|d| d.display().to_string())
            })
            .unwrap_or_else(|| "/".to_owned());
        let log = (!ephemeral).then(|| self.log_for(&thread_id));
        let now = now_ms() / 1000;
        let settings = Settings {
            model: params
                .model
                .clone()
                .unwrap_or_else(|| self.providers.default_model.clone()),
            base_instructions: params.base_instructions.clone(),
            developer_instructions: params.developer_instructions.clone(),
            originator: connection.session().map(|s| s.client_name.clone()),
            dynamic_tools: params.dynamic_tools.clone().unwrap_or_default(),
        };
        let thread = Thread {
            id: thread_id.clone(),
            session_id: thread_id.clone(),
            forked_from_id: None,
            parent_thread_id: None,
            preview: String::new(),
            ephemeral,
            project_id: None,
            model_provider: provider.clone(),
            model: Some(settings.model.clone()),
            reasoning_effort: None,
            created_at: now,
            updated_at: now,
            status: ThreadStatus::Idle,
            path: log.as_ref().map(|log| log.path().display().to_string()),
            cwd: cwd.clone(),
            cli_version: env!("CARGO_PKG_VERSION").to_owned(),
            originator: settings.originator.clone(),
            source: "vscode".to_owned(),
            name: None,
            turns: Vec::new(),
        };
        if !ephemeral {
            let record = ThreadRecord {
                id: thread_id.clone(),
                created_at: now,
                updated_at: now,
                preview: String::new(),
                model_provider: provider,
                cwd,
                metadata: json!({"thread": thread, "settings": settings}).to_string(),
            };
            self.state
                .insert_thread(record)
                .await
                .map_err(|err| ErrorObject::internal(err.to_string()))?;
        }
        let handle = self.spawn(server, thread, settings, log, Vec::new());
        self.lock().insert(thread_id, handle.clone());
        let _ = handle
            .mailbox
            .send(Command::Started {
                connection: Arc::clone(connection),
                id,
            })
            .await;
        Ok(())
    }

    /// The loaded thread `id`, loading it from the index if needed; `true` when this call loaded it.
    async fn load(
        &self,
        server: &Arc<Server>,
        id: &str,
    ) -> Result<Option<(Handle, bool)>, ErrorObject> {
        if let Some(handle) = self.handle(id) {
            return Ok(Some((handle, false)));
        }
        let Some(record) = self
            .state
            .thread(id)
            .await
            .map_err(|err| ErrorObject::internal(err.to_string()))?
        else {
            return Ok(None);
        };
        let (mut thread, settings) = decode_record(&record)?;
        thread.status = ThreadStatus::Idle;
        // Read before taking the lock: other threads' lookups must not wait for this file.
        let log = self.log_for(id);
        let reader = log.clone();
        let history = tokio::task::spawn_blocking(move || reader.read())
            .await
            .map_err(|err| ErrorObject::internal(err.to_string()))?
            .map_err(|err| {
                ErrorObject::internal(format!("cannot read {}: {err}", log.path().display()))
            })?;
        let mut loaded = self.lock();
        if let Some(handle) = loaded.get(id) {
            return Ok(Some((handle.clone(), false)));
        }
        let handle = self.spawn(server, thread, settings, Some(log), history);
        loaded.insert(id.to_owned(), handle.clone());
        Ok(Some((handle, true)))
    }

    /// `thread/resume`.
    pub async fn resume(
        &self,
        server: &Arc<Server>,
        connection: &Arc<Connection>,
        id: RequestId,
        params: ThreadResumeParams,
    ) -> Reply {
        let thread_id = parse_id(&params.thread_id)?;
        let Some((handle, cold)) = self.load(server, &thread_id).await? else {
            return Err(invalid(format!(
                "no rollout found for thread id {thread_id}"
            )));
        };
        let command = Command::Resume {
            connection: Arc::clone(connection),
            id,
            exclude_turns: params.exclude_turns,
            cold,
        };
        self.deliver(&handle, command, &thread_id).await
    }

    async fn deliver(&self, handle: &Handle, command: Command, thread_id: &str) -> Reply {
        handle.mailbox.send(command).await.map_err(|_| {
            invalid(format!(
                "thread {thread_id} is closing; retry thread/resume after the thread is closed"
            ))
        })
    }

    /// `thread/unsubscribe`.
    pub async fn unsubscribe(
        &self,
        connection: &Arc<Connection>,
        id: RequestId,
        thread_id: &str,
    ) -> Reply {
        let thread_id = parse_id(thread_id)?;
        match self.handle(&thread_id) {
            Some(handle) => {
                self.deliver(
                    &handle,
                    Command::Unsubscribe {
                        connection: Arc::clone(connection),
                        id,
                    },
                    &thread_id,
                )
                .await
            }
            None => {
                connection
                    .send(Outgoing::response(id, &json!({"status": "notLoaded"})))
                    .await;
                Ok(())
            }
        }
    }

    /// `thread/read`: from the actor when loaded, else from disk without loading.
    pub async fn read(
        &self,
        connection: &Arc<Connection>,
        id: RequestId,
        params: ThreadReadParams,
    ) -> Reply {
        let thread_id = parse_id(&params.thread_id)?;
        if let Some(handle) = self.handle(&thread_id) {
            let command = Command::Read {
                connection: Arc::clone(connection),
                id,
                include_turns: params.include_turns,
            };
            return self.deliver(&handle, command, &thread_id).await;
        }
        let Some(record) = self
            .state
            .thread(&thread_id)
            .await
            .map_err(|err| ErrorObject::internal(err.to_string()))?
        else {
            return Err(invalid(format!("thread not loaded: {thread_id}")));
        };
        let (mut thread, _) = decode_record(&record)?;
        if params.include_turns {
            thread.turns = self
                .log_for(&thread_id)
                .read()
                .map_err(|err| ErrorObject::internal(err.to_string()))?;
        }
        connection
            .send(Outgoing::response(id, &json!({"thread": thread})))
            .await;
        Ok(())
    }

    /// `thread/list`.
    pub async fn list(
        &self,
        connection: &Arc<Connection>,
        id: RequestId,
        params: ThreadListParams,
    ) -> Reply {
        let query = ThreadQuery {
            sort_key: match params.sort_key {
                Some(ThreadSortKey::UpdatedAt | ThreadSortKey::RecencyAt) => SortKey::UpdatedAt,
                _ => SortKey::CreatedAt,
            },
            descending: params.sort_direction != Some(SortDirection::Asc),
            cursor: params.cursor,
            limit: params
                .limit
                .map(|l| l.clamp(1, 1000) as usize)
                .unwrap_or(DEFAULT_PAGE),
            model_providers: params.model_providers.unwrap_or_default(),
            cwds: match params.cwd {
                Some(CwdFilter::One(cwd)) => vec![cwd],
                Some(CwdFilter::Many(cwds)) => cwds,
                None => Vec::new(),
            },
            search: params.search_term.filter(|s| !s.is_empty()),
        };
        let (records, next) = self
            .state
            .list_threads(query)
            .await
            .map_err(|err| ErrorObject::internal(err.to_string()))?;
        let mut data = Vec::with_capacity(records.len());
        for record in &records {
            let (mut thread, _) = decode_record(record)?;
            thread.status = self
                .handle(&thread.id)
                .map(|h| h.status.borrow().clone())
                .unwrap_or(ThreadStatus::NotLoaded);
            data.push(thread);
        }
        connection
            .send(Outgoing::response(
                id,
                &json!({"data": data, "nextCursor": next, "backwardsCursor": null}),
            ))
            .await;
        Ok(())
    }

    /// `thread/loaded/list`: ids in order, paged by id.
    pub async fn loaded_list(
        &self,
        connection: &Arc<Connection>,
        id: RequestId,
        params: ThreadLoadedListParams,
    ) -> Reply {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        if let Some(cursor) = &params.cursor {
            ids.retain(|id| id > cursor);
        }
        let limit = params
            .limit
            .filter(|l| *l > 0)
            .map(|l| l as usize)
            .unwrap_or(usize::MAX);
        let next = (ids.len() > limit).then(|| ids[limit - 1].clone());
        ids.truncate(limit);
        connection
            .send(Outgoing::response(
                id,
                &json!({"data": ids, "nextCursor": next}),
            ))
            .await;
        Ok(())
    }

    /// `turn/start`: the thread must be loaded.
    pub async fn turn_start(
        &self,
        connection: &Arc<Connection>,
        id: RequestId,
        params: TurnStartParams,
        trace: Trace,
    ) -> Reply {
        let thread_id = params.thread_id.clone();
        let connection = Arc::clone(connection);
        self.deliver_to_loaded(
            &thread_id,
            Command::TurnStart {
                connection,
                id,
                params,
                trace,
            },
        )
        .await
    }

    /// `thread/compact/start`: the thread must be loaded.
    pub async fn compact(
        &self,
        connection: &Arc<Connection>,
        id: RequestId,
        thread_id: &str,
        trace: Trace,
    ) -> Reply {
        let connection = Arc::clone(connection);
        self.deliver_to_loaded(
            thread_id,
            Command::Compact {
                connection,
                id,
                trace,
            },
        )
        .await
    }

    async fn deliver_to_loaded(&self, thread_id: &str, command: Command) -> Reply {
        let thread_id = parse_id(thread_id)?;
        let handle = self
            .handle(&thread_id)
            .ok_or_else(|| invalid(format!("thread not found: {thread_id}")))?;
        self.deliver(&handle, command, &thread_id).await
    }

    /// A loaded thread, or a persisted one loaded now; `thread not found` otherwise.
    async fn loaded(
        &self,
        server: &Arc<Server>,
        thread_id: &str,
    ) -> Result<(String, Handle), ErrorObject> {
        let thread_id = parse_id(thread_id)?;
        match self.load(server, &thread_id).await? {
            Some((handle, _)) => Ok((thread_id, handle)),
            None => Err(invalid(format!("thread not found: {thread_id}"))),
        }
    }

    /// `thread/goal/set`, `thread/goal/get`, `thread/goal/clear` and `thread/revert`: served by
    /// the thread's actor, so their notifications are ordered with its other events.
    pub async fn goal_or_revert(
        &self,
        server: &Arc<Server>,
        thread_id: &str,
        command: impl FnOnce() -> Command,
    ) -> Reply {
        let (thread_id, handle) = self.loaded(server, thread_id).await?;
        self.deliver(&handle, command(), &thread_id).await
    }

    /// `turn/interrupt`.
    pub async fn interrupt(
        &self,
        connection: &Arc<Connection>,
        id: RequestId,
        params: TurnInterruptParams,
    ) -> Reply {
        let command = Command::Interrupt {
            connection: Arc::clone(connection),
            id,
            turn_id: params.turn_id,
        };
        self.deliver_to_loaded(&params.thread_id, command).await
    }

    /// What `tether/status` shows of every loaded thread, by id.
    pub fn snapshot(&self) -> Vec<Value> {
        let mut threads: Vec<Value> = self
            .lock()
            .iter()
            .map(|(id, handle)| {
                json!({
                    "id": id,
                    "status": *handle.status.borrow(),
                    "subscribers": handle.subscribers.borrow().len(),
                })
            })
            .collect();
        threads.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        threads
    }

    /// Unsubscribes a closed connection from every loaded thread.
    pub async fn connection_closed(&self, connection: u64) {
        let handles: Vec<Handle> = self.lock().values().cloned().collect();
        for handle in handles {
            let _ = handle
                .mailbox
                .send(Command::ConnectionClosed(connection))
                .await;
        }
    }
}

fn decode_record(record: &ThreadRecord) -> Result<(Thread, Settings), ErrorObject> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        thread: Thread,
        settings: Settings,
    }
    let metadata: Metadata = serde_json::from_str(&record.metadata).map_err(|err| {
        ErrorObject::internal(format!(
            "thread {} has unreadable metadata: {err}",
            record.id
        ))
    })?;
    let mut thread = metadata.thread;
    thread.preview = record.preview.clone();
    thread.updated_at = record.updated_at;
    thread.status = ThreadStatus::NotLoaded;
    Ok((thread, metadata.settings))
}
