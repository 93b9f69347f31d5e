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

use tether_protocol::{
    ApprovalsReviewer, AskForApproval, CwdFilter, DynamicToolSpec, LoadedThreadStatus,
    SandboxPolicy, SortDirection, Thread, ThreadGoalSetParams, ThreadIdParams, ThreadListParams,
    ThreadListResponse, ThreadLoadedListParams, ThreadLoadedListResponse, ThreadReadParams,
    ThreadReadResponse, ThreadResumeParams, ThreadRevertParams, ThreadSessionResponse,
    ThreadSortKey, ThreadStartParams, ThreadStatus, ThreadUnsubscribeResponse,
    ThreadUnsubscribeStatus, TurnInterruptParams, TurnStartParams, methods, now_ms,
};
use tether_state::{SortKey, StateDb, ThreadQuery, ThreadRecord};
use tokio::sync::{mpsc, watch};

use self::actor::Actor;
pub use self::actor::Command;
use self::actor::ThreadRequest;
use self::history::HistoryLog;
pub use self::providers::Providers;
use crate::dispatch::Ctx;
use crate::error::ServerError;
use crate::reply::Reply;
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

fn invalid(message: String) -> ServerError {
    ServerError::Invalid(message)
}

/// A thread id must be a UUID; the error carries the parser's words.
fn parse_id(id: &str) -> Result<String, ServerError> {
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

    /// The result of `thread/start` and `thread/resume`.
    fn session_response(&self, thread: Thread, settings: &Settings) -> ThreadSessionResponse {
        ThreadSessionResponse {
            model: settings.model.clone(),
            model_provider: thread.model_provider.clone(),
            service_tier: None,
            cwd: thread.cwd.clone(),
            instruction_sources: Vec::new(),
            approval_policy: AskForApproval::Never,
            approvals_reviewer: ApprovalsReviewer::User,
            sandbox: SandboxPolicy::read_only(),
            reasoning_effort: None,
            thread,
        }
    }

    /// Creates, indexes (unless ephemeral) and loads a thread for `thread/start`.
    async fn create(
        &self,
        server: &Arc<Server>,
        originator: Option<String>,
        params: ThreadStartParams,
    ) -> Result<Handle, ServerError> {
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
            originator,
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
            let metadata = Metadata {
                thread: thread.clone(),
                settings: settings.clone(),
            };
            let record = ThreadRecord {
                id: thread_id.clone(),
                created_at: now,
                updated_at: now,
                preview: String::new(),
                model_provider: provider,
                cwd,
                metadata: serde_json::to_string(&metadata)
                    .map_err(|err| ServerError::internal("cannot encode the thread", err))?,
            };
            self.state.insert_thread(record).await?;
        }
        let handle = self.spawn(server, thread, settings, log, Vec::new());
        self.lock().insert(thread_id, handle.clone());
        Ok(handle)
    }

    /// The loaded thread `id`, loading it from the index if needed; `true` when this call loaded it.
    async fn load(
        &self,
        server: &Arc<Server>,
        id: &str,
    ) -> Result<Option<(Handle, bool)>, ServerError> {
        if let Some(handle) = self.handle(id) {
            return Ok(Some((handle, false)));
        }
        let Some(record) = self.state.thread(id).await? else {
            return Ok(None);
        };
        let (mut thread, settings) = decode_record(&record)?;
        thread.status = ThreadStatus::Idle;
        // Read before taking the lock: other threads' lookups must not wait for this file.
        let log = self.log_for(id);
        let reader = log.clone();
        let path = log.path().display().to_string();
        let history = tokio::task::spawn_blocking(move || reader.read())
            .await
            .map_err(|err| ServerError::internal(format!("cannot read {path}"), err))?
            .map_err(|err| ServerError::internal(format!("cannot read {path}"), err))?;
        let mut loaded = self.lock();
        if let Some(handle) = loaded.get(id) {
            return Ok(Some((handle.clone(), false)));
        }
        let handle = self.spawn(server, thread, settings, Some(log), history);
        loaded.insert(id.to_owned(), handle.clone());
        Ok(Some((handle, true)))
    }

    /// Hands `request` to the thread's actor; a thread that is closing refuses it.
    async fn deliver(&self, handle: &Handle, request: ThreadRequest, thread_id: &str) {
        if let Err(mpsc::error::SendError(Command::Request(request))) =
            handle.mailbox.send(Command::Request(request)).await
        {
            request.refuse(closing(thread_id)).await;
        }
    }

    /// The loaded thread `thread_id`.
    fn loaded(&self, thread_id: &str) -> Result<(String, Handle), ServerError> {
        let thread_id = parse_id(thread_id)?;
        let handle = self
            .handle(&thread_id)
            .ok_or_else(|| invalid(format!("thread not found: {thread_id}")))?;
        Ok((thread_id, handle))
    }

    /// A loaded thread, or a persisted one loaded now; `thread not found` otherwise.
    async fn loaded_or_load(
        &self,
        server: &Arc<Server>,
        thread_id: &str,
    ) -> Result<(String, Handle), ServerError> {
        let thread_id = parse_id(thread_id)?;
        match self.load(server, &thread_id).await? {
            Some((handle, _)) => Ok((thread_id, handle)),
            None => Err(invalid(format!("thread not found: {thread_id}"))),
        }
    }

    /// What `tether/status` shows of every loaded thread, by id.
    pub fn snapshot(&self) -> Vec<LoadedThreadStatus> {
        let mut threads: Vec<LoadedThreadStatus> = self
            .lock()
            .iter()
            .map(|(id, handle)| LoadedThreadStatus {
                id: id.clone(),
                status: handle.status.borrow().clone(),
                subscribers: handle.subscribers.borrow().len(),
            })
            .collect();
        threads.sort_by(|a, b| a.id.cmp(&b.id));
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

fn closing(thread_id: &str) -> ServerError {
    invalid(format!(
        "thread {thread_id} is closing; retry thread/resume after the thread is closed"
    ))
}

/// Sends `request(reply)` to the thread `found` names, or answers with `found`'s error.
async fn route<M: tether_protocol::Method>(
    threads: &Threads,
    found: Result<(String, Handle), ServerError>,
    reply: Reply<M>,
    request: impl FnOnce(Reply<M>) -> ThreadRequest,
) {
    match found {
        Ok((thread_id, handle)) => threads.deliver(&handle, request(reply), &thread_id).await,
        Err(error) => reply.error(error).await,
    }
}

/// `thread/start`: the new thread's actor answers.
pub async fn start(ctx: Ctx, params: ThreadStartParams, reply: Reply<methods::ThreadStart>) {
    let threads = &ctx.server.threads;
    let originator = ctx.connection.session().map(|s| s.client_name.clone());
    match threads.create(&ctx.server, originator, params).await {
        Ok(handle) => {
            let _ = handle
                .mailbox
                .send(Command::Request(ThreadRequest::Started { reply }))
                .await;
        }
        Err(error) => reply.error(error).await,
    }
}

/// `thread/resume`.
pub async fn resume(ctx: Ctx, params: ThreadResumeParams, reply: Reply<methods::ThreadResume>) {
    let threads = &ctx.server.threads;
    let found = match parse_id(&params.thread_id) {
        Ok(thread_id) => match threads.load(&ctx.server, &thread_id).await {
            Ok(Some((handle, cold))) => Ok((thread_id, handle, cold)),
            Ok(None) => Err(invalid(format!(
                "no rollout found for thread id {thread_id}"
            ))),
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    match found {
        Ok((thread_id, handle, cold)) => {
            let request = ThreadRequest::Resume {
                reply,
                exclude_turns: params.exclude_turns,
                cold,
            };
            threads.deliver(&handle, request, &thread_id).await
        }
        Err(error) => reply.error(error).await,
    }
}

/// `thread/unsubscribe`.
pub async fn unsubscribe(
    ctx: Ctx,
    params: ThreadIdParams,
    reply: Reply<methods::ThreadUnsubscribe>,
) {
    let threads = &ctx.server.threads;
    let thread_id = match parse_id(&params.thread_id) {
        Ok(thread_id) => thread_id,
        Err(error) => return reply.error(error).await,
    };
    match threads.handle(&thread_id) {
        Some(handle) => {
            let request = ThreadRequest::Unsubscribe { reply };
            threads.deliver(&handle, request, &thread_id).await
        }
        None => {
            let status = ThreadUnsubscribeStatus::NotLoaded;
            reply.ok(ThreadUnsubscribeResponse { status }).await
        }
    }
}

/// `thread/read`: from the actor when loaded, else from disk without loading.
pub async fn read(ctx: Ctx, params: ThreadReadParams, reply: Reply<methods::ThreadRead>) {
    let threads = &ctx.server.threads;
    let thread_id = match parse_id(&params.thread_id) {
        Ok(thread_id) => thread_id,
        Err(error) => return reply.error(error).await,
    };
    if let Some(handle) = threads.handle(&thread_id) {
        let request = ThreadRequest::Read {
            reply,
            include_turns: params.include_turns,
        };
        return threads.deliver(&handle, request, &thread_id).await;
    }
    let unloaded = async {
        let Some(record) = threads.state.thread(&thread_id).await? else {
            return Err(invalid(format!("thread not loaded: {thread_id}")));
        };
        let (mut thread, _) = decode_record(&record)?;
        if params.include_turns {
            thread.turns = threads
                .log_for(&thread_id)
                .read()
                .map_err(|err| ServerError::internal("cannot read the thread history", err))?;
        }
        Ok(ThreadReadResponse { thread })
    };
    reply.send(unloaded.await).await
}

/// `thread/list`.
pub async fn list(ctx: Ctx, params: ThreadListParams) -> Result<ThreadListResponse, ServerError> {
    let threads = &ctx.server.threads;
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
    let (records, next) = threads.state.list_threads(query).await?;
    let mut data = Vec::with_capacity(records.len());
    for record in &records {
        let (mut thread, _) = decode_record(record)?;
        thread.status = threads
            .handle(&thread.id)
            .map(|h| h.status.borrow().clone())
            .unwrap_or(ThreadStatus::NotLoaded);
        data.push(thread);
    }
    Ok(ThreadListResponse {
        data,
        next_cursor: next,
        backwards_cursor: None,
    })
}

/// `thread/loaded/list`: ids in order, paged by id.
pub async fn loaded_list(
    ctx: Ctx,
    params: ThreadLoadedListParams,
) -> Result<ThreadLoadedListResponse, ServerError> {
    let mut ids: Vec<String> = ctx.server.threads.lock().keys().cloned().collect();
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
    Ok(ThreadLoadedListResponse {
        data: ids,
        next_cursor: next,
    })
}

/// `turn/start`: the thread must be loaded.
pub async fn turn_start(ctx: Ctx, params: TurnStartParams, reply: Reply<methods::TurnStart>) {
    let threads = &ctx.server.threads;
    let found = threads.loaded(&params.thread_id);
    let trace = ctx.trace.clone();
    route(threads, found, reply, |reply| ThreadRequest::TurnStart {
        reply,
        params,
        trace,
    })
    .await
}

/// `thread/compact/start`: the thread must be loaded.
pub async fn compact(ctx: Ctx, params: ThreadIdParams, reply: Reply<methods::ThreadCompactStart>) {
    let threads = &ctx.server.threads;
    let found = threads.loaded(&params.thread_id);
    let trace = ctx.trace.clone();
    route(threads, found, reply, |reply| ThreadRequest::Compact {
        reply,
        trace,
    })
    .await
}

/// `turn/interrupt`.
pub async fn interrupt(
    ctx: Ctx,
    params: TurnInterruptParams,
    reply: Reply<methods::TurnInterrupt>,
) {
    let threads = &ctx.server.threads;
    let found = threads.loaded(&params.thread_id);
    let turn_id = params.turn_id;
    route(threads, found, reply, |reply| ThreadRequest::Interrupt {
        reply,
        turn_id,
    })
    .await
}

// Goals and revert are served by the thread's actor (loading the thread if needed), so their
// notifications are ordered with its other events.

/// `thread/goal/set`.
pub async fn goal_set(ctx: Ctx, params: ThreadGoalSetParams, reply: Reply<methods::ThreadGoalSet>) {
    let threads = &ctx.server.threads;
    let found = threads.loaded_or_load(&ctx.server, &params.thread_id).await;
    route(threads, found, reply, |reply| ThreadRequest::GoalSet {
        reply,
        params,
    })
    .await
}

/// `thread/goal/get`.
pub async fn goal_get(ctx: Ctx, params: ThreadIdParams, reply: Reply<methods::ThreadGoalGet>) {
    let threads = &ctx.server.threads;
    let found = threads.loaded_or_load(&ctx.server, &params.thread_id).await;
    route(threads, found, reply, |reply| ThreadRequest::GoalGet {
        reply,
    })
    .await
}

/// `thread/goal/clear`.
pub async fn goal_clear(ctx: Ctx, params: ThreadIdParams, reply: Reply<methods::ThreadGoalClear>) {
    let threads = &ctx.server.threads;
    let found = threads.loaded_or_load(&ctx.server, &params.thread_id).await;
    route(threads, found, reply, |reply| ThreadRequest::GoalClear {
        reply,
    })
    .await
}

/// `thread/revert`.
pub async fn revert(ctx: Ctx, params: ThreadRevertParams, reply: Reply<methods::ThreadRevert>) {
    let threads = &ctx.server.threads;
    let found = threads.loaded_or_load(&ctx.server, &params.thread_id).await;
    let before_turn_id = params.before_turn_id;
    route(threads, found, reply, |reply| ThreadRequest::Revert {
        reply,
        before_turn_id,
    })
    .await
}

/// What the index stores of a thread beyond its columns.
#[derive(serde::Serialize, serde::Deserialize)]
struct Metadata {
    thread: Thread,
    settings: Settings,
}

fn decode_record(record: &ThreadRecord) -> Result<(Thread, Settings), ServerError> {
    let metadata: Metadata = serde_json::from_str(&record.metadata).map_err(|err| {
        ServerError::internal(format!("thread {} has unreadable metadata", record.id), err)
    })?;
    let mut thread = metadata.thread;
    thread.preview = record.preview.clone();
    thread.updated_at = record.updated_at;
    thread.status = ThreadStatus::NotLoaded;
    Ok((thread, metadata.settings))
}
