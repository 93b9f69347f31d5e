//! Threads: the registry of loaded threads, and the requests that find, load, create or list
//! them. Each loaded thread is owned by one actor task ([`actor`]); this module only routes.

mod actor;
mod goals;
mod history;
mod pages;
mod providers;
mod sampler;
pub(crate) mod tools;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_protocol::{
    ApprovalsReviewer, AskForApproval, CwdFilter, DynamicToolSpec, EmptyResponse,
    LoadedThreadStatus, SandboxMode, SandboxPolicy, SortDirection, Thread,
    ThreadArchivedNotification, ThreadBackgroundTerminalsCleanParams,
    ThreadBackgroundTerminalsListParams, ThreadBackgroundTerminalsTerminateParams,
    ThreadDeletedNotification, ThreadForkParams, ThreadGoalSetParams, ThreadHistoryMode,
    ThreadIdParams, ThreadItemsListParams, ThreadListParams, ThreadListResponse,
    ThreadLoadedListParams, ThreadLoadedListResponse, ThreadMetadataUpdateParams, ThreadReadParams,
    ThreadReadResponse, ThreadReadStateUpdateParams, ThreadResponse, ThreadResumeParams,
    ThreadRevertParams, ThreadSessionResponse, ThreadSetNameParams, ThreadShellCommandParams,
    ThreadSortKey, ThreadStartParams, ThreadStatus, ThreadTurnsListParams,
    ThreadUnarchivedNotification, ThreadUnsubscribeResponse, ThreadUnsubscribeStatus,
    TurnInterruptParams, TurnStartParams, TurnSteerParams, methods, now_ms,
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
    #[serde(default)]
    approval_policy: Option<AskForApproval>,
    #[serde(default)]
    approvals_reviewer: Option<ApprovalsReviewer>,
    #[serde(default)]
    sandbox: Option<SandboxMode>,
}

impl Settings {
    /// Applies what a resume or fork asks to change.
    fn update(
        &mut self,
        approval_policy: Option<AskForApproval>,
        approvals_reviewer: Option<ApprovalsReviewer>,
        sandbox: Option<SandboxMode>,
    ) {
        self.approval_policy = approval_policy.or(self.approval_policy.take());
        self.approvals_reviewer = approvals_reviewer.or(self.approvals_reviewer);
        self.sandbox = sandbox.or(self.sandbox);
    }

    /// What a `turn/start` changes for this turn and later ones.
    fn update_for_turn(&mut self, params: &tether_protocol::TurnStartParams) {
        if let Some(model) = &params.model {
            self.model = model.clone();
        }
        if let Some(policy) = &params.approval_policy {
            self.approval_policy = Some(policy.clone());
        }
        // An external sandbox keeps tether's own: commands are never left unsandboxed by it.
        self.sandbox = match &params.sandbox_policy {
            Some(SandboxPolicy::ReadOnly { .. }) => Some(SandboxMode::ReadOnly),
            Some(SandboxPolicy::WorkspaceWrite { .. }) => Some(SandboxMode::WorkspaceWrite),
            Some(SandboxPolicy::DangerFullAccess) => Some(SandboxMode::DangerFullAccess),
            Some(SandboxPolicy::ExternalSandbox { .. }) | None => self.sandbox,
        };
    }

    /// The settings as `thread/settings/updated` shows them.
    fn wire(&self, thread: &tether_protocol::Thread) -> tether_protocol::ThreadSettings {
        tether_protocol::ThreadSettings {
            model: self.model.clone(),
            model_provider: thread.model_provider.clone(),
            cwd: thread.cwd.clone(),
            approval_policy: self.approval_policy(),
            approvals_reviewer: self.approvals_reviewer.unwrap_or(ApprovalsReviewer::User),
            sandbox_policy: self.sandbox_policy(),
            collaboration_mode: tether_protocol::CollaborationMode {
                mode: "default".to_owned(),
                settings: tether_protocol::CollaborationModeSettings {
                    model: self.model.clone(),
                    reasoning_effort: None,
                    developer_instructions: None,
                },
            },
        }
    }

    /// When commands ask first; on-request unless the thread says otherwise.
    fn approval_policy(&self) -> AskForApproval {
        self.approval_policy
            .clone()
            .unwrap_or(AskForApproval::OnRequest)
    }

    /// The sandbox the thread's commands run in (read-only unless the thread says otherwise).
    fn exec_sandbox(&self) -> tether_exec::SandboxPolicy {
        match self.sandbox {
            None | Some(SandboxMode::ReadOnly) => tether_exec::SandboxPolicy::ReadOnly {
                network_access: false,
            },
            Some(SandboxMode::WorkspaceWrite) => tether_exec::SandboxPolicy::WorkspaceWrite {
                writable_roots: Vec::new(),
                network_access: false,
                exclude_tmpdir_env_var: false,
                exclude_slash_tmp: false,
            },
            Some(SandboxMode::DangerFullAccess) => tether_exec::SandboxPolicy::DangerFullAccess,
        }
    }

    fn sandbox_policy(&self) -> SandboxPolicy {
        match self.sandbox {
            None | Some(SandboxMode::ReadOnly) => SandboxPolicy::read_only(),
            Some(SandboxMode::WorkspaceWrite) => SandboxPolicy::WorkspaceWrite {
                writable_roots: Vec::new(),
                network_access: false,
                exclude_tmpdir_env_var: false,
                exclude_slash_tmp: false,
            },
            Some(SandboxMode::DangerFullAccess) => SandboxPolicy::DangerFullAccess,
        }
    }
}

/// What a new thread starts from: a `thread/start`, or a fork of another thread's history.
struct NewThread {
    settings: Settings,
    provider: String,
    cwd: String,
    ephemeral: bool,
    forked_from: Option<String>,
    history: Vec<tether_protocol::Turn>,
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
    pub(crate) providers: Providers,
    unload_delay: Duration,
    /// Tools, approval policy and sandbox of threads whose clients do not choose.
    pub(crate) defaults: tools::ThreadDefaults,
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
        defaults: tools::ThreadDefaults,
    ) -> Threads {
        Threads {
            loaded: Mutex::new(HashMap::new()),
            state,
            home,
            providers,
            unload_delay,
            defaults,
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
    /// `history` is the thread's whole history, for the cursors that start at its newest turn
    /// and item.
    fn session_response(
        &self,
        thread: Thread,
        settings: &Settings,
        history: &[tether_protocol::Turn],
    ) -> ThreadSessionResponse {
        ThreadSessionResponse {
            model: settings.model.clone(),
            model_provider: thread.model_provider.clone(),
            service_tier: None,
            cwd: thread.cwd.clone(),
            instruction_sources: Vec::new(),
            approval_policy: settings.approval_policy(),
            approvals_reviewer: settings
                .approvals_reviewer
                .unwrap_or(ApprovalsReviewer::User),
            sandbox: settings.sandbox_policy(),
            reasoning_effort: None,
            turns_backwards_cursor: pages::newest(history.len()),
            items_backwards_cursor: pages::newest(
                history.iter().map(|turn| turn.items.len()).sum(),
            ),
            thread,
        }
    }

    /// What `thread/start` asks for, validated.
    fn new_thread(
        &self,
        originator: Option<String>,
        params: ThreadStartParams,
    ) -> Result<NewThread, ServerError> {
        let provider = params
            .model_provider
            .unwrap_or_else(|| self.providers.default_provider.clone());
        if !self.providers.contains(&provider) {
            return Err(invalid(format!("unknown model provider: {provider}")));
        }
        let cwd = params
            .cwd
            .or_else(|| {
                std::env::current_dir()
                    .ok()
                    .map(|d| d.display().to_string())
            })
            .unwrap_or_else(|| "/".to_owned());
        let settings = Settings {
            model: params
                .model
                .unwrap_or_else(|| self.providers.default_model.clone()),
            base_instructions: params.base_instructions,
            developer_instructions: params.developer_instructions,
            originator,
            dynamic_tools: params.dynamic_tools.unwrap_or_default(),
            approval_policy: params
                .approval_policy
                .or_else(|| self.defaults.approval_policy.clone()),
            approvals_reviewer: params.approvals_reviewer,
            sandbox: params.sandbox.or(self.defaults.sandbox),
        };
        Ok(NewThread {
            settings,
            provider,
            cwd,
            ephemeral: params.ephemeral.unwrap_or(false),
            forked_from: None,
            history: Vec::new(),
        })
    }

    /// Creates, indexes (unless ephemeral), writes the history of (for a fork) and loads a thread.
    async fn create(&self, server: &Arc<Server>, new: NewThread) -> Result<Handle, ServerError> {
        let NewThread {
            settings,
            provider,
            cwd,
            ephemeral,
            forked_from,
            history,
        } = new;
        let thread_id = uuid::Uuid::now_v7().to_string();
        let log = (!ephemeral).then(|| self.log_for(&thread_id));
        let now = now_ms() / 1000;
        let preview = history
            .iter()
            .flat_map(|turn| turn.items.iter())
            .find_map(actor::user_text)
            .unwrap_or_default();
        let thread = Thread {
            id: thread_id.clone(),
            session_id: thread_id.clone(),
            forked_from_id: forked_from,
            parent_thread_id: None,
            preview: preview.clone(),
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
            history_mode: ThreadHistoryMode::Paginated,
            turns: Vec::new(),
        };
        if let Some(log) = &log {
            if !history.is_empty() {
                let (log, turns) = (log.clone(), history.clone());
                let context = format!("cannot write {}", log.path().display());
                tokio::task::spawn_blocking(move || log.rewrite(&turns))
                    .await
                    .map_err(|err| ServerError::internal(context.clone(), err))?
                    .map_err(|err| ServerError::internal(context, err))?;
            }
            let record = ThreadRecord {
                id: thread_id.clone(),
                created_at: now,
                updated_at: now,
                preview: preview.clone(),
                model_provider: provider,
                cwd,
                metadata: encode_metadata(&thread, &settings)?,
            };
            self.state.insert_thread(record).await?;
            if !history.is_empty() {
                self.state.touch_thread(&thread_id, now, &preview).await?;
            }
        }
        let handle = self.spawn(server, thread, settings, log, history);
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

/// Which threads a request may go to.
enum Find {
    /// Only a loaded thread (turns run in memory).
    Loaded,
    /// A loaded thread, or a stored one loaded now.
    Stored,
}

/// Sends `request(reply)` to the actor of thread `thread_id`, or answers with why there is none.
async fn route<M: tether_protocol::Method>(
    ctx: &Ctx,
    thread_id: &str,
    find: Find,
    reply: Reply<M>,
    request: impl FnOnce(Reply<M>) -> ThreadRequest,
) {
    let threads = &ctx.server.threads;
    let found = match find {
        Find::Loaded => threads.loaded(thread_id),
        Find::Stored => threads.loaded_or_load(&ctx.server, thread_id).await,
    };
    match found {
        Ok((thread_id, handle)) => threads.deliver(&handle, request(reply), &thread_id).await,
        Err(error) => reply.error(error).await,
    }
}

/// `thread/start`: the new thread's actor answers.
pub async fn start(ctx: Ctx, params: ThreadStartParams, reply: Reply<methods::ThreadStart>) {
    let threads = &ctx.server.threads;
    let originator = ctx.connection.session().map(|s| s.client_name.clone());
    let created = match threads.new_thread(originator, params) {
        Ok(new) => threads.create(&ctx.server, new).await,
        Err(error) => Err(error),
    };
    match created {
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
                approval_policy: params.approval_policy,
                approvals_reviewer: params.approvals_reviewer,
                sandbox: params.sandbox,
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
        archived: params.archived.unwrap_or(false),
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
    let thread_id = params.thread_id.clone();
    let find = Find::Loaded;
    let trace = ctx.trace.clone();
    route(&ctx, &thread_id, find, reply, |reply| {
        ThreadRequest::TurnStart {
            reply,
            params,
            trace,
        }
    })
    .await
}

/// `thread/compact/start`: the thread must be loaded.
pub async fn compact(ctx: Ctx, params: ThreadIdParams, reply: Reply<methods::ThreadCompactStart>) {
    let thread_id = params.thread_id.clone();
    let find = Find::Loaded;
    let trace = ctx.trace.clone();
    route(&ctx, &thread_id, find, reply, |reply| {
        ThreadRequest::Compact { reply, trace }
    })
    .await
}

/// `thread/shellCommand`.
pub async fn shell_command(
    ctx: Ctx,
    params: ThreadShellCommandParams,
    reply: Reply<methods::ThreadShellCommand>,
) {
    let thread_id = params.thread_id.clone();
    let trace = ctx.trace.clone();
    route(&ctx, &thread_id, Find::Loaded, reply, |reply| {
        ThreadRequest::ShellCommand {
            reply,
            params,
            trace,
        }
    })
    .await
}

/// `turn/interrupt`.
pub async fn interrupt(
    ctx: Ctx,
    params: TurnInterruptParams,
    reply: Reply<methods::TurnInterrupt>,
) {
    let thread_id = params.thread_id.clone();
    let find = Find::Loaded;
    let turn_id = params.turn_id;
    route(&ctx, &thread_id, find, reply, |reply| {
        ThreadRequest::Interrupt { reply, turn_id }
    })
    .await
}

// Goals and revert are served by the thread's actor (loading the thread if needed), so their
// notifications are ordered with its other events.

/// `thread/goal/set`.
pub async fn goal_set(ctx: Ctx, params: ThreadGoalSetParams, reply: Reply<methods::ThreadGoalSet>) {
    let thread_id = params.thread_id.clone();
    let find = Find::Stored;
    route(&ctx, &thread_id, find, reply, |reply| {
        ThreadRequest::GoalSet { reply, params }
    })
    .await
}

/// `thread/goal/get`.
pub async fn goal_get(ctx: Ctx, params: ThreadIdParams, reply: Reply<methods::ThreadGoalGet>) {
    let thread_id = params.thread_id.clone();
    let find = Find::Stored;
    route(&ctx, &thread_id, find, reply, |reply| {
        ThreadRequest::GoalGet { reply }
    })
    .await
}

/// `thread/goal/clear`.
pub async fn goal_clear(ctx: Ctx, params: ThreadIdParams, reply: Reply<methods::ThreadGoalClear>) {
    let thread_id = params.thread_id.clone();
    let find = Find::Stored;
    route(&ctx, &thread_id, find, reply, |reply| {
        ThreadRequest::GoalClear { reply }
    })
    .await
}

/// `thread/revert`.
pub async fn revert(ctx: Ctx, params: ThreadRevertParams, reply: Reply<methods::ThreadRevert>) {
    let thread_id = params.thread_id.clone();
    let find = Find::Stored;
    let before_turn_id = params.before_turn_id;
    route(&ctx, &thread_id, find, reply, |reply| {
        ThreadRequest::Revert {
            reply,
            before_turn_id,
        }
    })
    .await
}

fn encode_metadata(thread: &Thread, settings: &Settings) -> Result<String, ServerError> {
    let metadata = Metadata {
        thread: thread.clone(),
        settings: settings.clone(),
    };
    serde_json::to_string(&metadata)
        .map_err(|err| ServerError::internal("cannot encode the thread", err))
}

/// Removes a thread from the index and its history log from the disk.
async fn delete_stored(threads: &Threads, thread_id: &str) -> Result<(), ServerError> {
    if !threads.state.delete_thread(thread_id).await? {
        return Err(invalid(format!("thread not found: {thread_id}")));
    }
    let path = threads.log_for(thread_id).path().to_owned();
    match tokio::fs::remove_file(&path).await {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(ServerError::internal(
            format!("cannot remove {}", path.display()),
            err,
        )),
    }
}

/// `thread/fork`: a new thread with the source's history up to the cut, answered by its actor.
pub async fn fork(ctx: Ctx, params: ThreadForkParams, reply: Reply<methods::ThreadFork>) {
    let threads = &ctx.server.threads;
    let forked = async {
        let (source_id, handle) = threads
            .loaded_or_load(&ctx.server, &params.thread_id)
            .await?;
        let (snapshot, answer) = tokio::sync::oneshot::channel();
        handle
            .mailbox
            .send(Command::Snapshot(snapshot))
            .await
            .map_err(|_| closing(&source_id))?;
        let (source, mut settings, mut history) = answer.await.map_err(|_| closing(&source_id))?;
        if let Some(turn) = history.last()
            && turn.status == tether_protocol::TurnStatus::InProgress
        {
            history.pop();
        }
        let cut = match (&params.before_turn_id, &params.last_turn_id) {
            (Some(before), _) => Some((before, 0)),
            (None, Some(last)) => Some((last, 1)),
            (None, None) => None,
        };
        if let Some((turn_id, keep)) = cut {
            let position = history
                .iter()
                .position(|turn| &turn.id == turn_id)
                .ok_or_else(|| invalid(format!("turn not found: {turn_id}")))?;
            history.truncate(position + keep);
        }
        if let Some(model) = params.model.clone() {
            settings.model = model;
        }
        settings.base_instructions = params
            .base_instructions
            .clone()
            .or(settings.base_instructions);
        settings.developer_instructions = params
            .developer_instructions
            .clone()
            .or(settings.developer_instructions);
        settings.originator = ctx.connection.session().map(|s| s.client_name.clone());
        settings.update(
            params.approval_policy.clone(),
            params.approvals_reviewer,
            params.sandbox,
        );
        let provider = params
            .model_provider
            .clone()
            .unwrap_or(source.model_provider);
        if !threads.providers.contains(&provider) {
            return Err(invalid(format!("unknown model provider: {provider}")));
        }
        let new = NewThread {
            settings,
            provider,
            cwd: params.cwd.clone().unwrap_or(source.cwd),
            ephemeral: params.ephemeral,
            forked_from: Some(source_id),
            history,
        };
        threads.create(&ctx.server, new).await
    };
    match forked.await {
        Ok(handle) => {
            let request = ThreadRequest::Forked {
                reply,
                exclude_turns: params.exclude_turns,
            };
            let _ = handle.mailbox.send(Command::Request(request)).await;
        }
        Err(error) => reply.error(error).await,
    }
}

/// `thread/name/set`.
pub async fn name_set(ctx: Ctx, params: ThreadSetNameParams, reply: Reply<methods::ThreadNameSet>) {
    let thread_id = params.thread_id.clone();
    let find = Find::Stored;
    let name = params.name;
    route(&ctx, &thread_id, find, reply, |reply| {
        ThreadRequest::NameSet { reply, name }
    })
    .await
}

/// `thread/metadata/update`.
pub async fn metadata_update(
    ctx: Ctx,
    params: ThreadMetadataUpdateParams,
    reply: Reply<methods::ThreadMetadataUpdate>,
) {
    let thread_id = params.thread_id.clone();
    let find = Find::Stored;
    let project_id = params.project_id;
    route(&ctx, &thread_id, find, reply, |reply| {
        ThreadRequest::MetadataUpdate { reply, project_id }
    })
    .await
}

/// `thread/readState/update`.
pub async fn read_state_update(
    ctx: Ctx,
    params: ThreadReadStateUpdateParams,
    reply: Reply<methods::ThreadReadStateUpdate>,
) {
    let thread_id = params.thread_id.clone();
    let find = Find::Stored;
    route(&ctx, &thread_id, find, reply, |reply| {
        ThreadRequest::ReadStateUpdate { reply, params }
    })
    .await
}

/// `thread/turns/list`: pages of the history, from the thread's actor (loading it if needed).
pub async fn turns_list(
    ctx: Ctx,
    params: ThreadTurnsListParams,
    reply: Reply<methods::ThreadTurnsList>,
) {
    let thread_id = params.thread_id.clone();
    let find = Find::Stored;
    route(&ctx, &thread_id, find, reply, |reply| {
        ThreadRequest::TurnsList { reply, params }
    })
    .await
}

/// `thread/items/list`.
pub async fn items_list(
    ctx: Ctx,
    params: ThreadItemsListParams,
    reply: Reply<methods::ThreadItemsList>,
) {
    let thread_id = params.thread_id.clone();
    let find = Find::Stored;
    route(&ctx, &thread_id, find, reply, |reply| {
        ThreadRequest::ItemsList { reply, params }
    })
    .await
}

/// `turn/steer`.
pub async fn steer(ctx: Ctx, params: TurnSteerParams, reply: Reply<methods::TurnSteer>) {
    let thread_id = params.thread_id.clone();
    let find = Find::Loaded;
    let trace = ctx.trace.clone();
    route(&ctx, &thread_id, find, reply, |reply| {
        ThreadRequest::Steer {
            reply,
            params,
            trace,
        }
    })
    .await
}

/// `thread/delete`: through the actor when loaded (it leaves memory), else directly.
pub async fn delete(ctx: Ctx, params: ThreadIdParams, reply: Reply<methods::ThreadDelete>) {
    let threads = &ctx.server.threads;
    let thread_id = match parse_id(&params.thread_id) {
        Ok(thread_id) => thread_id,
        Err(error) => return reply.error(error).await,
    };
    if let Some(handle) = threads.handle(&thread_id) {
        return threads
            .deliver(&handle, ThreadRequest::Delete { reply }, &thread_id)
            .await;
    }
    match delete_stored(threads, &thread_id).await {
        Ok(()) => {
            reply.ok(EmptyResponse {}).await;
            let notice =
                tether_protocol::Outgoing::notify(&ThreadDeletedNotification { thread_id });
            ctx.server.registry.broadcast(notice).await;
        }
        Err(error) => reply.error(error).await,
    }
}

/// `thread/archive`.
pub async fn archive(ctx: Ctx, params: ThreadIdParams) -> Result<EmptyResponse, ServerError> {
    let thread_id = set_archived(&ctx, &params.thread_id, true).await?;
    let notice = tether_protocol::Outgoing::notify(&ThreadArchivedNotification { thread_id });
    ctx.server.registry.broadcast(notice).await;
    Ok(EmptyResponse {})
}

/// `thread/unarchive`.
pub async fn unarchive(ctx: Ctx, params: ThreadIdParams) -> Result<ThreadResponse, ServerError> {
    let thread_id = set_archived(&ctx, &params.thread_id, false).await?;
    let threads = &ctx.server.threads;
    let record = threads
        .state
        .thread(&thread_id)
        .await?
        .ok_or_else(|| invalid(format!("thread not found: {thread_id}")))?;
    let (mut thread, _) = decode_record(&record)?;
    if let Some(handle) = threads.handle(&thread_id) {
        thread.status = handle.status.borrow().clone();
    }
    let notice = tether_protocol::Outgoing::notify(&ThreadUnarchivedNotification { thread_id });
    ctx.server.registry.broadcast(notice).await;
    Ok(ThreadResponse { thread })
}

async fn set_archived(ctx: &Ctx, thread_id: &str, archived: bool) -> Result<String, ServerError> {
    let thread_id = parse_id(thread_id)?;
    if ctx
        .server
        .threads
        .state
        .set_thread_archived(&thread_id, archived)
        .await?
    {
        Ok(thread_id)
    } else {
        Err(invalid(format!("thread not found: {thread_id}")))
    }
}

/// `thread/backgroundTerminals/list`: the processes the thread's commands left running.
pub async fn background_terminals(
    ctx: Ctx,
    params: ThreadBackgroundTerminalsListParams,
    reply: Reply<methods::ThreadBackgroundTerminalsList>,
) {
    let thread_id = params.thread_id.clone();
    route(&ctx, &thread_id, Find::Stored, reply, |reply| {
        ThreadRequest::BackgroundTerminals { reply }
    })
    .await
}

/// `thread/backgroundTerminals/terminate`.
pub async fn terminate_background_terminal(
    ctx: Ctx,
    params: ThreadBackgroundTerminalsTerminateParams,
    reply: Reply<methods::ThreadBackgroundTerminalsTerminate>,
) {
    let thread_id = params.thread_id.clone();
    route(&ctx, &thread_id, Find::Stored, reply, |reply| {
        ThreadRequest::TerminateBackgroundTerminal {
            reply,
            process_id: params.process_id,
        }
    })
    .await
}

/// `thread/backgroundTerminals/clean`.
pub async fn clean_background_terminals(
    ctx: Ctx,
    params: ThreadBackgroundTerminalsCleanParams,
    reply: Reply<methods::ThreadBackgroundTerminalsClean>,
) {
    let thread_id = params.thread_id.clone();
    route(&ctx, &thread_id, Find::Stored, reply, |reply| {
        ThreadRequest::CleanBackgroundTerminals { reply }
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
