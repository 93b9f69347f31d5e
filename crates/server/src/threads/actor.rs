//! The task that owns one loaded thread. Every request about the thread and every upstream event
//! of its turns arrive in its one mailbox and are handled in order, and every message about the
//! thread leaves from here, so the order clients see is the order things happened: a resume's
//! response can never be overtaken by a live event, and all subscribers see the same sequence.

mod commands;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_protocol::server_requests::DynamicToolCall;
use tether_protocol::{
    AccountRateLimitsUpdatedNotification, RateLimitSnapshot, WarningNotification,
};
use tether_protocol::{
    AgentMessageDeltaNotification, ApprovalsReviewer, AskForApproval, CodexErrorInfo,
    CommandExecutionSource, DynamicToolCallOutputContentItem, DynamicToolCallParams,
    DynamicToolCallResponse, DynamicToolFunction, DynamicToolSpec, EmptyResponse,
    ErrorNotification, ItemCompletedNotification, ItemStartedNotification, ItemsView, Notification,
    Outgoing, ReasoningSummaryPartAddedNotification, ReasoningSummaryTextDeltaNotification,
    SandboxMode, ServerRequestResolvedNotification, Thread, ThreadClosedNotification,
    ThreadDeletedNotification, ThreadGoal, ThreadGoalClearResponse, ThreadGoalClearedNotification,
    ThreadGoalGetResponse, ThreadGoalSetParams, ThreadGoalSetResponse,
    ThreadGoalUpdatedNotification, ThreadItem, ThreadItemsListParams,
    ThreadNameUpdatedNotification, ThreadReadResponse, ThreadReadState,
    ThreadReadStateChangedNotification, ThreadReadStateOperation, ThreadReadStateUpdateParams,
    ThreadReadStateUpdateResponse, ThreadResponse, ThreadRevertResponse,
    ThreadSettingsUpdatedNotification, ThreadShellCommandParams, ThreadStartedNotification,
    ThreadStatus, ThreadStatusChangedNotification, ThreadTokenUsage,
    ThreadTokenUsageUpdatedNotification, ThreadTurnsListParams, ThreadUnreadPosition,
    ThreadUnsubscribeResponse, ThreadUnsubscribeStatus, TokenUsageBreakdown, Turn,
    TurnCompletedNotification, TurnError, TurnStartParams, TurnStartResponse,
    TurnStartedNotification, TurnStatus, TurnSteerParams, TurnSteerResponse, UserInput, methods,
    now_ms,
};
use tether_upstream::{
    ContentPart, InputItem, OutputItem, ResponseEvent, ResponsesRequest, Retry, Role, TextControls,
    TextFormat, Tool, UpstreamError, Usage,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant as Deadline;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::goals;
use super::history::HistoryLog;
use super::pages;
use super::sampler::{RoundHeaders, Sampled, sample};
use super::{Settings, Threads};
use crate::Server;
use crate::attestation::AttestationHook;
use crate::connection::{Connection, Frame};
use crate::error::ServerError;
use crate::reply::Reply;
use crate::server_requests::{Answer, Refusal};
use crate::trace::Trace;

/// Generates [`ThreadRequest`] from one list of the client requests an actor serves: each
/// variant carries the reply it must send, and `refuse` answers any of them with one error.
macro_rules! thread_requests {
    ($($(#[doc = $doc:literal])* $variant:ident($method:ident) { $($field:ident: $ty:ty),* })*) => {
        /// A client request served by the thread's actor, with the reply it must send.
        pub enum ThreadRequest {
            $($(#[doc = $doc])* $variant { reply: Reply<methods::$method>, $($field: $ty),* },)*
        }

        impl ThreadRequest {
            /// Answers with `error` instead of serving the request.
            pub async fn refuse(self, error: ServerError) {
                match self {
                    $(ThreadRequest::$variant { reply, .. } => reply.error(error).await,)*
                }
            }
        }
    };
}

thread_requests! {
    /// Answer the `thread/start` that created the thread.
    Started(ThreadStart) {}
    /// `thread/resume`; `cold` when this request loaded the thread.
    Resume(ThreadResume) {
        exclude_turns: bool,
        cold: bool,
        approval_policy: Option<AskForApproval>,
        approvals_reviewer: Option<ApprovalsReviewer>,
        sandbox: Option<SandboxMode>
    }
    /// Answer the `thread/fork` that created the thread.
    Forked(ThreadFork) { exclude_turns: bool }
    /// `thread/name/set`.
    NameSet(ThreadNameSet) { name: String }
    /// `thread/metadata/update`.
    MetadataUpdate(ThreadMetadataUpdate) { project_id: Option<Option<String>> }
    /// `thread/delete` of a loaded thread.
    Delete(ThreadDelete) {}
    /// `thread/readState/update`.
    ReadStateUpdate(ThreadReadStateUpdate) { params: ThreadReadStateUpdateParams }
    /// `thread/turns/list`.
    TurnsList(ThreadTurnsList) { params: ThreadTurnsListParams }
    /// `thread/items/list`.
    ItemsList(ThreadItemsList) { params: ThreadItemsListParams }
    /// `turn/steer`.
    Steer(TurnSteer) { params: TurnSteerParams, trace: Trace }
    /// `thread/unsubscribe`.
    Unsubscribe(ThreadUnsubscribe) {}
    /// `thread/read` of a loaded thread.
    Read(ThreadRead) { include_turns: bool }
    /// `turn/start`.
    TurnStart(TurnStart) { params: TurnStartParams, trace: Trace }
    /// `turn/interrupt`.
    Interrupt(TurnInterrupt) { turn_id: String }
    /// `thread/compact/start`.
    Compact(ThreadCompactStart) { trace: Trace }
    /// `thread/goal/set`.
    GoalSet(ThreadGoalSet) { params: ThreadGoalSetParams }
    /// `thread/goal/get`.
    GoalGet(ThreadGoalGet) {}
    /// `thread/goal/clear`.
    GoalClear(ThreadGoalClear) {}
    /// `thread/revert`.
    Revert(ThreadRevert) { before_turn_id: String }
    /// `thread/shellCommand`.
    ShellCommand(ThreadShellCommand) { params: ThreadShellCommandParams, trace: Trace }
    /// `thread/backgroundTerminals/list`.
    BackgroundTerminals(ThreadBackgroundTerminalsList) {}
    /// `thread/backgroundTerminals/terminate`.
    TerminateBackgroundTerminal(ThreadBackgroundTerminalsTerminate) { process_id: String }
    /// `thread/backgroundTerminals/clean`.
    CleanBackgroundTerminals(ThreadBackgroundTerminalsClean) {}
}

/// What the actor is asked to do.
pub enum Command {
    /// A client request about the thread.
    Request(ThreadRequest),
    /// A connection closed.
    ConnectionClosed(u64),
    /// An event of the sampling round `generation`.
    Sampled { generation: u64, sampled: Sampled },
    /// A client answered the tool call request `request_id`.
    ToolAnswered { request_id: i64, answer: Answer },
    /// An upstream answer reported the account's rate limits.
    RateLimits(Vec<RateLimitSnapshot>),
    /// A command session printed something or exited.
    Exec(tether_exec::ExecEvent),
    /// A built-in tool call's task finished.
    CallDone(Box<commands::CallDone>),
    /// A client answered the command approval request `request_id`.
    ApprovalAnswered { request_id: i64, answer: Answer },
    /// What a fork copies: the thread, its settings and its history.
    Snapshot(oneshot::Sender<(Thread, Settings, Vec<Turn>)>),
}

/// What the model input is built from, in order: an item, or the built-in calls made at that
/// point of the running turn. `true` marks items of earlier turns.
enum Entry<'a> {
    Item(&'a ThreadItem, bool),
    Exchanges(&'a [commands::ToolExchange]),
}

/// A tool call the model made, waiting for a client's answer.
struct PendingCall {
    request_id: i64,
    params: DynamicToolCallParams,
    item: ThreadItem,
    started: Instant,
}

struct ActiveTurn {
    turn: Turn,
    started: Instant,
    /// Items completed so far, in order.
    items: Vec<ThreadItem>,
    /// The agent message being streamed: id, text so far, start time.
    streaming: Option<(String, String, i64)>,
    /// The reasoning item announced as started: id, start time.
    reasoning: Option<(String, i64)>,
    generation: u64,
    cancel: CancellationToken,
    /// Tool calls of this round still waiting for an answer.
    pending_calls: Vec<PendingCall>,
    /// Tool calls the current round made; when there were any, the turn goes on with their
    /// outputs once all are answered and the round is over.
    calls_this_round: usize,
    round_over: bool,
    /// How many items the turn had when the current round started.
    round_start_items: usize,
    /// For a compaction turn: the item id and the summary received so far.
    compaction: Option<(String, String)>,
    /// Tokens the turn's rounds used, for goal accounting.
    tokens: i64,
    /// The turn's span (a child of the request that started it) and trace context.
    trace: Trace,
    /// The JSON Schema its final answer must follow, if the client gave one.
    output_schema: Option<Value>,
    /// Built-in calls of this turn and their outputs, replayed to the model in later rounds.
    exchanges: Vec<commands::ToolExchange>,
    /// Built-in calls waiting for the one in progress.
    builtin_queue: VecDeque<commands::BuiltinCall>,
    /// The built-in call in progress.
    current_call: Option<String>,
    /// The command waiting for the user's approval.
    approval: Option<commands::PendingApproval>,
    /// A turn started by `thread/shellCommand` alone: it ends with its commands, unsampled.
    shell_only: bool,
}

impl ActiveTurn {
    fn new(compaction_item: Option<String>, started_by: &Trace) -> ActiveTurn {
        let turn_id = uuid::Uuid::now_v7().to_string();
        let trace = started_by.child(|parent, context| {
            tracing::info_span!(parent: parent, "turn", turn = %turn_id, trace_id = %context.trace_id(), span_id = %context.span_id())
        });
        ActiveTurn {
            turn: Turn {
                id: turn_id.clone(),
                root_turn_id: Some(turn_id),
                items: Vec::new(),
                items_view: ItemsView::NotLoaded,
                status: TurnStatus::InProgress,
                error: None,
                started_at: None,
                completed_at: None,
                duration_ms: None,
            },
            started: Instant::now(),
            items: Vec::new(),
            streaming: None,
            reasoning: None,
            generation: 0,
            cancel: CancellationToken::new(),
            pending_calls: Vec::new(),
            calls_this_round: 0,
            round_over: false,
            round_start_items: 0,
            compaction: compaction_item.map(|id| (id, String::new())),
            tokens: 0,
            trace,
            output_schema: None,
            exchanges: Vec::new(),
            builtin_queue: VecDeque::new(),
            current_call: None,
            approval: None,
            shell_only: false,
        }
    }
}

const COMPACTION_PROMPT: &str = "Summarize the conversation so far for your own later use: the goals, \
     decisions, facts learned, open questions and the current state of the work. Be complete but concise.";

pub struct Actor {
    server: Arc<Server>,
    thread: Thread,
    settings: Settings,
    history: Vec<Turn>,
    log: Option<HistoryLog>,
    /// Published so a first-party request can pick the client to attest, when it is sent.
    subscribers: watch::Sender<BTreeSet<u64>>,
    active: Option<ActiveTurn>,
    generations: u64,
    /// Kept across restarts, so a resume can tell the caller where the thread stands.
    usage: Option<RecordedUsage>,
    goal: Option<ThreadGoal>,
    status: watch::Sender<ThreadStatus>,
    mailbox: mpsc::Receiver<Command>,
    myself: mpsc::Sender<Command>,
    /// Where the unread part starts; in memory only.
    read_state: ThreadReadState,
    /// Set when the thread was deleted: the actor leaves memory after this request.
    unload_now: bool,
    /// Completed turns the history log does not have yet (the disk was full), oldest first.
    unsaved: Vec<Turn>,
    /// Ids of turns an earlier run could not save; each resume reports them.
    lost_turns: Vec<String>,
    /// Command sessions and approvals of this thread.
    commands: commands::Commands,
}

impl Actor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        server: Arc<Server>,
        thread: Thread,
        settings: Settings,
        history: Vec<Turn>,
        log: Option<HistoryLog>,
        status: watch::Sender<ThreadStatus>,
        mailbox: mpsc::Receiver<Command>,
        myself: mpsc::Sender<Command>,
    ) -> Actor {
        Actor {
            commands: commands::Commands::new(Arc::clone(&server.sandbox)),
            server,
            thread,
            settings,
            history,
            log,
            subscribers: watch::Sender::new(BTreeSet::new()),
            active: None,
            generations: 0,
            usage: None,
            goal: None,
            status,
            mailbox,
            myself,
            read_state: ThreadReadState {
                first_unread: None,
                revision: uuid::Uuid::now_v7().to_string(),
            },
            unload_now: false,
            unsaved: Vec::new(),
            lost_turns: Vec::new(),
        }
    }

    /// Follows the subscriber set (for status and attestation).
    pub fn watch_subscribers(&self) -> watch::Receiver<BTreeSet<u64>> {
        self.subscribers.subscribe()
    }

    fn subscribe(&self, connection: u64) {
        self.subscribers.send_modify(|ids| {
            ids.insert(connection);
        });
    }

    fn unsubscribe(&self, connection: u64) -> bool {
        self.subscribers
            .send_if_modified(|ids| ids.remove(&connection))
    }

    fn subscriber_ids(&self) -> Vec<u64> {
        self.subscribers.borrow().iter().copied().collect()
    }

    fn threads(&self) -> &Threads {
        &self.server.threads
    }

    /// Serves commands until the thread unloads or the server shuts down.
    pub async fn run(mut self) {
        if !self.thread.ephemeral {
            match goals::load(&self.threads().state, &self.thread.id).await {
                Ok(goal) => self.goal = goal,
                Err(err) => {
                    tracing::error!(thread = %self.thread.id, "cannot read the goal: {}", err.message)
                }
            }
            self.usage = self.load_usage().await;
            self.lost_turns = self.load_lost_turns().await;
        }
        let delay = self.threads().unload_delay;
        let mut unload_at: Option<Deadline> = None;
        loop {
            let idle = self.subscribers.borrow().is_empty() && self.active.is_none();
            match (idle, unload_at) {
                (true, None) => unload_at = Some(Deadline::now() + delay),
                (false, Some(_)) => unload_at = None,
                _ => {}
            }
            tokio::select! {
                command = self.mailbox.recv() => match command {
                    Some(command) => {
                        self.handle(command).await;
                        if self.unload_now {
                            self.unload().await;
                            return;
                        }
                    }
                    None => return,
                },
                _ = sleep_until(unload_at) => {
                    self.unload().await;
                    return;
                }
                _ = self.server.shutdown.cancelled() => {
                    self.interrupt_for_shutdown().await;
                    return;
                }
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Request(request) => self.serve(request).await,
            Command::ConnectionClosed(connection) => {
                self.unsubscribe(connection);
            }
            Command::Sampled {
                generation,
                sampled,
            } => {
                if self
                    .active
                    .as_ref()
                    .is_some_and(|turn| turn.generation == generation)
                {
                    self.sampled(sampled).await;
                }
            }
            Command::ToolAnswered { request_id, answer } => {
                self.tool_answered(request_id, answer).await
            }
            Command::RateLimits(limits) => self.rate_limits(limits).await,
            Command::Exec(event) => self.exec_event(event).await,
            Command::CallDone(done) => self.call_done_received(done).await,
            Command::ApprovalAnswered { request_id, answer } => {
                self.approval_answered(request_id, answer).await
            }
            Command::Snapshot(sender) => {
                let history = self.thread_object(true).turns;
                let _ = sender.send((self.thread_object(false), self.settings.clone(), history));
            }
        }
    }

    async fn serve(&mut self, request: ThreadRequest) {
        match request {
            ThreadRequest::Started { reply } => {
                let connection = reply.connection().id();
                self.subscribe(connection);
                let response = self.threads().session_response(
                    self.thread_object(false),
                    &self.settings,
                    &self.history,
                );
                reply.ok(response).await;
                let thread = self.thread_object(false);
                self.broadcast(&ThreadStartedNotification { thread }).await;
            }
            ThreadRequest::Resume {
                reply,
                exclude_turns,
                cold,
                approval_policy,
                approvals_reviewer,
                sandbox,
            } => {
                self.settings
                    .update(approval_policy, approvals_reviewer, sandbox);
                self.resume(reply, exclude_turns, cold).await
            }
            ThreadRequest::Forked {
                reply,
                exclude_turns,
            } => {
                self.subscribe(reply.connection().id());
                let thread = self.thread_object(!exclude_turns);
                let response =
                    self.threads()
                        .session_response(thread, &self.settings, &self.history);
                reply.ok(response).await;
                let thread = self.thread_object(false);
                self.broadcast(&ThreadStartedNotification { thread }).await;
            }
            ThreadRequest::NameSet { reply, name } => {
                let name = Some(name.trim().to_owned()).filter(|name| !name.is_empty());
                self.thread.name = name.clone();
                match self.save_metadata().await {
                    Ok(()) => {
                        reply.ok(EmptyResponse {}).await;
                        let params = ThreadNameUpdatedNotification {
                            thread_id: self.thread.id.clone(),
                            thread_name: name,
                        };
                        self.broadcast(&params).await;
                    }
                    Err(error) => reply.error(error).await,
                }
            }
            ThreadRequest::MetadataUpdate { reply, project_id } => {
                if let Some(project_id) = project_id {
                    self.thread.project_id = project_id;
                }
                let result = self.save_metadata().await.map(|()| ThreadResponse {
                    thread: self.thread_object(false),
                });
                reply.send(result).await;
            }
            ThreadRequest::Delete { reply } => {
                if self.active.is_some() {
                    let error =
                        ServerError::invalid("cannot delete a thread while a turn is running");
                    return reply.error(error).await;
                }
                match super::delete_stored(self.threads(), &self.thread.id).await {
                    Ok(()) => {
                        reply.ok(EmptyResponse {}).await;
                        let thread_id = self.thread.id.clone();
                        self.broadcast(&ThreadDeletedNotification { thread_id })
                            .await;
                        self.log = None;
                        self.subscribers.send_replace(BTreeSet::new());
                        self.unload_now = true;
                    }
                    Err(error) => reply.error(error).await,
                }
            }
            ThreadRequest::ReadStateUpdate { reply, params } => {
                let result = self.update_read_state(params);
                let changed = result.is_ok();
                reply.send(result).await;
                if changed {
                    self.announce_read_state().await;
                }
            }
            ThreadRequest::TurnsList { reply, params } => {
                let running = self.running_turn();
                let turns: Vec<&Turn> = self.history.iter().chain(running.as_ref()).collect();
                let page = pages::turns(
                    &turns,
                    params.cursor.as_deref(),
                    params.limit,
                    params.sort_direction,
                    params.items_view,
                );
                reply.send(page).await;
            }
            ThreadRequest::ItemsList { reply, params } => {
                let running = self.running_turn();
                let turns: Vec<&Turn> = self.history.iter().chain(running.as_ref()).collect();
                let entries = pages::entries(&turns, params.turn_id.as_deref());
                let page = pages::items(
                    &entries,
                    params.cursor.as_deref(),
                    params.limit,
                    params.sort_direction,
                );
                reply.send(page).await;
            }
            ThreadRequest::Steer {
                reply,
                params,
                trace,
            } => self.steer(reply, params, trace).await,
            ThreadRequest::Unsubscribe { reply } => {
                let status = if self.unsubscribe(reply.connection().id()) {
                    ThreadUnsubscribeStatus::Unsubscribed
                } else {
                    ThreadUnsubscribeStatus::NotSubscribed
                };
                reply.ok(ThreadUnsubscribeResponse { status }).await;
            }
            ThreadRequest::Read {
                reply,
                include_turns,
            } => {
                let thread = self.thread_object(include_turns);
                reply.ok(ThreadReadResponse { thread }).await;
            }
            ThreadRequest::TurnStart {
                reply,
                params,
                trace,
            } => self.turn_start(reply, params, trace).await,
            ThreadRequest::Compact { reply, trace } => self.compact(reply, trace).await,
            ThreadRequest::GoalSet { reply, params } => match self.goal_set(params).await {
                Ok(goal) => {
                    reply.ok(ThreadGoalSetResponse { goal }).await;
                    self.announce_goal().await;
                }
                Err(error) => reply.error(error).await,
            },
            ThreadRequest::ShellCommand {
                reply,
                params,
                trace,
            } => {
                if let Some(error) = self.not_steerable() {
                    return reply.error(error).await;
                }
                reply.ok(EmptyResponse {}).await;
                self.shell_command(params, &trace).await;
            }
            ThreadRequest::BackgroundTerminals { reply } => {
                reply.ok(self.background_terminals()).await
            }
            ThreadRequest::TerminateBackgroundTerminal { reply, process_id } => {
                let terminated = self.terminate_session(&process_id).await;
                reply.ok(terminated).await
            }
            ThreadRequest::CleanBackgroundTerminals { reply } => {
                self.clean_sessions().await;
                reply.ok(Default::default()).await
            }
            ThreadRequest::GoalGet { reply } => {
                let goal = self.goal.clone();
                let result = self.goal_refusal().map(|()| ThreadGoalGetResponse { goal });
                reply.send(result).await;
            }
            ThreadRequest::GoalClear { reply } => match self.goal_clear().await {
                Ok(cleared) => {
                    reply.ok(ThreadGoalClearResponse { cleared }).await;
                    // A clear that removed nothing announces nothing.
                    if cleared {
                        let thread_id = self.thread.id.clone();
                        self.broadcast(&ThreadGoalClearedNotification { thread_id })
                            .await;
                    }
                }
                Err(error) => reply.error(error).await,
            },
            ThreadRequest::Revert {
                reply,
                before_turn_id,
            } => {
                let result = self
                    .revert(&before_turn_id)
                    .await
                    .map(|()| ThreadRevertResponse {
                        thread: self.thread_object(false),
                        turns_backwards_cursor: None,
                        items_backwards_cursor: None,
                    });
                reply.send(result).await;
            }
            ThreadRequest::Interrupt { reply, turn_id } => self.interrupt(reply, turn_id).await,
        }
    }

    async fn resume(
        &mut self,
        reply: Reply<methods::ThreadResume>,
        exclude_turns: bool,
        cold: bool,
    ) {
        if self.thread.ephemeral {
            let error =
                ServerError::invalid(format!("no rollout found for thread id {}", self.thread.id));
            return reply.error(error).await;
        }
        if cold {
            self.broadcast_status().await;
        }
        let connection = Arc::clone(reply.connection());
        let thread = self.thread_object(!exclude_turns);
        let response = self
            .threads()
            .session_response(thread, &self.settings, &self.history);
        reply.ok(response).await;
        self.report_lost_turns(&connection).await;
        if let Some(usage) = &self.usage {
            let params = usage.notification(&self.thread.id);
            connection.send(Outgoing::notify(&params)).await;
        }
        if !self.thread.ephemeral {
            self.announce_goal().await;
        }
        // Requests still waiting are asked again, with the same ids; the connection may now
        // answer them.
        for call in self
            .active
            .iter()
            .flat_map(|turn| turn.pending_calls.iter())
        {
            self.server
                .requests
                .add_recipient(call.request_id, connection.id());
            connection.send(tool_request(call)).await;
        }
        if let Some(approval) = self.active.as_ref().and_then(|turn| turn.approval.as_ref()) {
            self.server
                .requests
                .add_recipient(approval.request_id, connection.id());
            connection.send(approval.request.clone()).await;
        }
        // From here on the connection gets every live event, none before the response.
        self.subscribe(connection.id());
    }

    /// Writes the thread's metadata (name, project) to the index.
    async fn save_metadata(&self) -> Result<(), ServerError> {
        if self.thread.ephemeral {
            return Ok(());
        }
        let metadata = super::encode_metadata(&self.thread_object(false), &self.settings)?;
        self.threads()
            .state
            .set_thread_metadata(&self.thread.id, metadata)
            .await?;
        Ok(())
    }

    fn update_read_state(
        &mut self,
        params: ThreadReadStateUpdateParams,
    ) -> Result<ThreadReadStateUpdateResponse, ServerError> {
        if params.expected_revision != self.read_state.revision {
            return Err(ServerError::Invalid(format!(
                "the read state changed after revision {}; read it again",
                params.expected_revision
            )));
        }
        self.read_state = ThreadReadState {
            first_unread: match params.operation {
                ThreadReadStateOperation::Read => None,
                ThreadReadStateOperation::Unread => Some(ThreadUnreadPosition::ThreadStart),
            },
            revision: uuid::Uuid::now_v7().to_string(),
        };
        Ok(ThreadReadStateUpdateResponse {
            read_state: self.read_state.clone(),
        })
    }

    async fn announce_read_state(&self) {
        let params = ThreadReadStateChangedNotification {
            thread_id: self.thread.id.clone(),
            read_state: self.read_state.clone(),
        };
        self.notify_subscribers(&params).await;
    }

    /// A completed turn is unread until a client marks it read.
    async fn mark_unread(&mut self, turn_id: &str) {
        let first_unread =
            self.read_state
                .first_unread
                .take()
                .unwrap_or_else(|| ThreadUnreadPosition::Turn {
                    turn_id: turn_id.to_owned(),
                });
        self.read_state = ThreadReadState {
            first_unread: Some(first_unread),
            revision: uuid::Uuid::now_v7().to_string(),
        };
        self.announce_read_state().await;
    }

    fn goal_refusal(&self) -> Result<(), ServerError> {
        if self.thread.ephemeral {
            return Err(ServerError::invalid(format!(
                "ephemeral thread does not support goals: {}",
                self.thread.id
            )));
        }
        Ok(())
    }

    async fn goal_set(&mut self, params: ThreadGoalSetParams) -> Result<ThreadGoal, ServerError> {
        self.goal_refusal()?;
        // The canonical id, whatever spelling of the UUID the client used.
        let params = ThreadGoalSetParams {
            thread_id: self.thread.id.clone(),
            ..params
        };
        let goal = goals::apply(self.goal.clone(), &params, now_ms() / 1000)?;
        goals::store(&self.threads().state, &goal).await?;
        if self.thread.preview.is_empty() {
            self.thread.preview = goal.objective.clone();
            self.touch_index().await;
        }
        self.goal = Some(goal.clone());
        Ok(goal)
    }

    async fn goal_clear(&mut self) -> Result<bool, ServerError> {
        self.goal_refusal()?;
        let cleared = self.threads().state.delete_goal(&self.thread.id).await?;
        self.goal = None;
        Ok(cleared)
    }

    /// `thread/goal/updated` for the current goal, not caused by a turn.
    async fn announce_goal(&mut self) {
        self.announce_goal_for(None).await;
    }

    /// The goal's state as a broadcast: updated (with the turn that changed it) or cleared.
    async fn announce_goal_for(&mut self, turn_id: Option<&str>) {
        let thread_id = self.thread.id.clone();
        match self.goal.clone() {
            Some(goal) => {
                let turn_id = turn_id.map(str::to_owned);
                let params = ThreadGoalUpdatedNotification {
                    thread_id,
                    turn_id,
                    goal,
                };
                self.broadcast(&params).await;
            }
            None => {
                self.broadcast(&ThreadGoalClearedNotification { thread_id })
                    .await
            }
        }
    }

    /// Drops `before_turn_id` and every later turn from the history.
    /// The shorter history is written (and synced, on the blocking pool) before memory changes,
    /// so a failed write leaves both as they were.
    async fn revert(&mut self, before_turn_id: &str) -> Result<(), ServerError> {
        if self.active.is_some() {
            return Err(ServerError::invalid(
                "cannot revert while a turn is running",
            ));
        }
        let index = self
            .history
            .iter()
            .position(|turn| turn.id == before_turn_id)
            .ok_or_else(|| ServerError::invalid(format!("turn not found: {before_turn_id}")))?;
        if let Some(log) = self.log.clone() {
            let kept = self.history[..index].to_vec();
            let context = format!("cannot rewrite {}", log.path().display());
            tokio::task::spawn_blocking(move || log.rewrite(&kept))
                .await
                .map_err(|err| ServerError::internal(context.clone(), err))?
                .map_err(|err| ServerError::internal(context, err))?;
        }
        self.history.truncate(index);
        Ok(())
    }

    /// The thread as clients see it; `with_turns` adds the history and the running turn's
    /// completed items.
    fn thread_object(&self, with_turns: bool) -> Thread {
        let mut thread = self.thread.clone();
        thread.status = self.status.borrow().clone();
        if with_turns {
            let history = self.history.iter().cloned();
            thread.turns = history.chain(self.running_turn()).map(full_view).collect();
        }
        thread
    }

    /// The running turn with the items it has completed so far.
    fn running_turn(&self) -> Option<Turn> {
        self.active.as_ref().map(|active| {
            let mut turn = active.turn.clone();
            turn.items = active.items.clone();
            turn
        })
    }

    async fn set_status(&mut self, status: ThreadStatus) {
        self.status.send_replace(status);
        self.broadcast_status().await;
    }

    async fn broadcast_status(&self) {
        let params = ThreadStatusChangedNotification {
            thread_id: self.thread.id.clone(),
            status: self.status.borrow().clone(),
        };
        self.broadcast(&params).await;
    }

    /// `params` to every initialized connection.
    async fn broadcast(&self, params: &impl Notification) {
        self.server
            .registry
            .broadcast(Outgoing::notify(params))
            .await;
    }

    /// `params` to the thread's subscribers.
    async fn notify_subscribers(&self, params: &impl Notification) {
        self.send_to_subscribers(&Outgoing::notify(params)).await;
    }

    /// One serialization, every subscriber.
    async fn send_to_subscribers(&self, message: &Outgoing) {
        let frame = Frame::new(message);
        for connection in self.server.registry.connections(self.subscriber_ids()) {
            connection.send_frame(&frame).await;
        }
    }

    async fn turn_start(
        &mut self,
        reply: Reply<methods::TurnStart>,
        params: TurnStartParams,
        trace: Trace,
    ) {
        if let Some(error) = self.not_steerable() {
            return reply.error(error).await;
        }
        let before = self.settings.wire(&self.thread);
        self.settings.update_for_turn(&params);
        if let Some(cwd) = params
            .cwd
            .clone()
            .filter(|cwd| std::path::Path::new(cwd).is_absolute())
        {
            self.thread.cwd = cwd;
        }
        let after = self.settings.wire(&self.thread);
        if after != before {
            let params = ThreadSettingsUpdatedNotification {
                thread_id: self.thread.id.clone(),
                thread_settings: after,
            };
            self.notify_subscribers(&params).await;
        }
        let steering = self.active.is_some();
        let active = self.open_turn(&trace);
        if !steering {
            active.output_schema = params.output_schema.clone();
        }
        let mut turn = active.turn.clone();
        turn.started_at = None;
        reply.ok(TurnStartResponse { turn }).await;
        self.take_input(steering, params.input, params.client_user_message_id)
            .await;
    }

    /// `turn/steer`: input for the running turn, which must be the one the client expects.
    async fn steer(
        &mut self,
        reply: Reply<methods::TurnSteer>,
        params: TurnSteerParams,
        trace: Trace,
    ) {
        let refusal = match &self.active {
            None => Some(ServerError::invalid("no active turn to steer")),
            Some(active) if active.turn.id != params.expected_turn_id => {
                Some(ServerError::Invalid(format!(
                    "expected active turn id {} but found {}",
                    params.expected_turn_id, active.turn.id
                )))
            }
            Some(_) => self.not_steerable(),
        };
        if let Some(error) = refusal {
            return reply.error(error).await;
        }
        let turn_id = self.open_turn(&trace).turn.id.clone();
        reply.ok(TurnSteerResponse { turn_id }).await;
        self.take_input(true, params.input, params.client_user_message_id)
            .await;
    }

    /// A compaction turn takes no input: a message sent meanwhile would be lost in it.
    fn not_steerable(&self) -> Option<ServerError> {
        self.active
            .as_ref()
            .is_some_and(|active| active.compaction.is_some())
            .then(|| {
                ServerError::invalid(
                    "the running turn is a compaction and cannot take input; send it after the turn completes",
                )
            })
    }

    /// The running turn, started now when there is none.
    fn open_turn(&mut self, trace: &Trace) -> &mut ActiveTurn {
        self.active
            .get_or_insert_with(|| ActiveTurn::new(None, trace))
    }

    /// Records the user's input in the open turn (announcing the turn first when it is new) and
    /// samples again: new input replaces the round in flight, with the calls it waited on.
    async fn take_input(
        &mut self,
        steering: bool,
        input: Vec<UserInput>,
        client_id: Option<String>,
    ) {
        let Some(turn_id) = self.active.as_ref().map(|a| a.turn.id.clone()) else {
            return;
        };
        if self.thread.preview.is_empty()
            && let Some(text) = first_text(&input)
        {
            self.thread.preview = text;
        }
        let user_message = ThreadItem::UserMessage {
            id: uuid::Uuid::now_v7().to_string(),
            client_id,
            content: input,
            started_at_ms: Some(now_ms()),
            completed_at_ms: Some(now_ms()),
        };
        if !steering {
            self.announce_turn().await;
        }
        self.item_started(&turn_id, &user_message).await;
        self.item_completed(&turn_id, user_message).await;
        let abandoned = self
            .active
            .as_mut()
            .map(|a| std::mem::take(&mut a.pending_calls))
            .unwrap_or_default();
        self.resolve(abandoned).await;
        self.abandon_builtin_calls().await;
        self.sample().await;
    }

    /// `thread/compact/start`: a turn whose one round summarizes the history into a
    /// `contextCompaction` item that later rounds start from.
    async fn compact(&mut self, reply: Reply<methods::ThreadCompactStart>, trace: Trace) {
        if self.active.is_some() {
            let error = ServerError::invalid("cannot compact while a turn is running");
            return reply.error(error).await;
        }
        let item_id = uuid::Uuid::now_v7().to_string();
        let active = ActiveTurn::new(Some(item_id.clone()), &trace);
        let turn_id = active.turn.id.clone();
        self.active = Some(active);
        reply.ok(EmptyResponse {}).await;
        self.announce_turn().await;
        let item = ThreadItem::ContextCompaction {
            id: item_id,
            summary: None,
        };
        self.item_started(&turn_id, &item).await;
        self.sample().await;
    }

    /// Marks the new active turn started: status, then `turn/started`.
    async fn announce_turn(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        active.turn.started_at = Some(now_ms() / 1000);
        let started = active.turn.clone();
        self.set_status(ThreadStatus::Active {
            active_flags: vec![],
        })
        .await;
        let params = TurnStartedNotification {
            thread_id: self.thread.id.clone(),
            turn: started,
        };
        self.notify_subscribers(&params).await;
    }

    /// Starts a sampling round over the history and the running turn, replacing any round in
    /// flight (whose partial agent message is dropped).
    async fn sample(&mut self) {
        self.generations += 1;
        let generation = self.generations;
        let mut tools = self.threads().defaults.tools.declarations();
        tools.extend(self.settings.dynamic_tools.iter().map(model_tool));
        let text = self
            .active
            .as_ref()
            .and_then(|active| active.output_schema.clone())
            .map(|schema| TextControls {
                format: TextFormat::JsonSchema {
                    name: "codex_output_schema".to_owned(),
                    schema,
                    strict: true,
                },
            });
        let request = ResponsesRequest {
            model: self.settings.model.clone(),
            instructions: self.settings.base_instructions.clone(),
            input: self.model_input(),
            tools,
            tool_choice: "auto",
            parallel_tool_calls: false,
            store: false,
            stream: true,
            text,
        };
        let body = serde_json::to_value(&request).expect("a Responses request serializes");
        let provider = self.threads().providers.get(&self.thread.model_provider);
        let Some(active) = self.active.as_mut() else {
            return;
        };
        active.cancel.cancel();
        active.cancel = CancellationToken::new();
        active.generation = generation;
        active.streaming = None;
        active.reasoning = None;
        active.calls_this_round = 0;
        active.round_over = false;
        active.round_start_items = active.items.len();
        match provider {
            Ok(provider) => {
                let cancel = active.cancel.clone();
                let round = active.trace.child(|parent, context| {
                    tracing::info_span!(parent: parent, "upstream_request", generation, trace_id = %context.trace_id(), span_id = %context.span_id())
                });
                let attestation = provider.first_party.then(|| {
                    AttestationHook::new(Arc::clone(&self.server), self.subscribers.subscribe())
                });
                let originator = self.settings.originator.clone();
                let hook = Arc::new(RoundHeaders {
                    originator: originator.unwrap_or_else(|| "tether".to_owned()),
                    traceparent: round.traceparent(),
                    attestation,
                });
                let round_span = round.span;
                self.server.tasks.spawn(
                    sample(
                        provider,
                        hook,
                        body,
                        generation,
                        self.myself.clone(),
                        cancel,
                    )
                    .instrument(round_span),
                );
            }
            Err(message) => {
                // Reported through the mailbox like any other round's outcome.
                let sampled = Sampled::Failed(UpstreamError::Config(message));
                let myself = self.myself.clone();
                tokio::spawn(async move {
                    myself
                        .send(Command::Sampled {
                            generation,
                            sampled,
                        })
                        .await
                });
            }
        }
    }

    fn model_input(&self) -> Vec<InputItem> {
        let mut input = Vec::new();
        if let Some(developer) = &self.settings.developer_instructions {
            input.push(InputItem::text(Role::Developer, developer.clone()));
        }
        let history = self
            .history
            .iter()
            .flat_map(|turn| turn.items.iter())
            .map(|item| Entry::Item(item, true));
        let mut entries: Vec<Entry> = history.collect();
        if let Some(active) = &self.active {
            entries.extend(commands::current_entries(&active.items, &active.exchanges));
        }
        // The model continues from the latest summary, not from what it summarized.
        let from = entries
            .iter()
            .rposition(|entry| {
                matches!(
                    entry,
                    Entry::Item(
                        ThreadItem::ContextCompaction {
                            summary: Some(_),
                            ..
                        },
                        _
                    )
                )
            })
            .unwrap_or(0);
        for entry in &entries[from..] {
            let item = match entry {
                Entry::Exchanges(exchanges) => {
                    commands::replay_exchanges(exchanges, &mut input);
                    continue;
                }
                Entry::Item(item, past) => {
                    if let ThreadItem::CommandExecution { source, .. } = item {
                        if *source == CommandExecutionSource::UserShell {
                            commands::replay_user_shell(item, &mut input);
                        } else if *past {
                            commands::replay_past_command(item, &mut input);
                        }
                        continue;
                    }
                    item
                }
            };
            match item {
                ThreadItem::UserMessage { content, .. } => {
                    let content = content
                        .iter()
                        .map(|part| match part {
                            UserInput::Text { text, .. } => {
                                ContentPart::InputText { text: text.clone() }
                            }
                            UserInput::Image { url } => ContentPart::InputImage {
                                image_url: url.clone(),
                            },
                        })
                        .collect();
                    input.push(InputItem::Message {
                        role: Role::User,
                        content,
                    });
                }
                ThreadItem::AgentMessage { text, .. } => {
                    input.push(InputItem::text(Role::Assistant, text.clone()));
                }
                ThreadItem::DynamicToolCall {
                    id,
                    tool,
                    arguments,
                    content_items,
                    ..
                } => {
                    let arguments = match arguments {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    input.push(InputItem::FunctionCall {
                        call_id: id.clone(),
                        name: tool.clone(),
                        arguments,
                    });
                    input.push(InputItem::FunctionCallOutput {
                        call_id: id.clone(),
                        output: tool_output_text(content_items),
                    });
                }
                ThreadItem::ContextCompaction {
                    summary: Some(summary),
                    ..
                } => {
                    let text = format!("Summary of the conversation so far:\n{summary}");
                    input.push(InputItem::text(Role::User, text));
                }
                ThreadItem::ContextCompaction { summary: None, .. }
                | ThreadItem::Reasoning { .. }
                | ThreadItem::CommandExecution { .. } => {}
            }
        }
        if self.active.as_ref().is_some_and(|a| a.compaction.is_some()) {
            input.push(InputItem::text(Role::User, COMPACTION_PROMPT));
        }
        input
    }

    /// The model called a client tool: ask every subscriber, under one id.
    async fn call_tool(&mut self, turn_id: &str, call_id: String, tool: String, arguments: String) {
        let arguments = serde_json::from_str(&arguments).unwrap_or(Value::String(arguments));
        let started_at = now_ms();
        let namespace = namespace_of(&self.settings.dynamic_tools, &tool);
        let item = ThreadItem::DynamicToolCall {
            id: call_id.clone(),
            tool: tool.clone(),
            namespace: namespace.clone(),
            arguments: arguments.clone(),
            status: "inProgress".into(),
            content_items: None,
            success: None,
            duration_ms: None,
            started_at_ms: Some(started_at),
            completed_at_ms: None,
        };
        self.item_started(turn_id, &item).await;
        let (request_id, answer) = self.server.requests.register(self.subscriber_ids());
        let params = DynamicToolCallParams {
            thread_id: self.thread.id.clone(),
            turn_id: turn_id.to_owned(),
            call_id,
            tool,
            arguments,
            namespace,
        };
        let call = PendingCall {
            request_id,
            params,
            item,
            started: Instant::now(),
        };
        let request = tool_request(&call);
        let Some(active) = self.active.as_mut() else {
            return;
        };
        active.pending_calls.push(call);
        active.calls_this_round += 1;
        let myself = self.myself.clone();
        tokio::spawn(async move {
            if let Ok(answer) = answer.await {
                let _ = myself
                    .send(Command::ToolAnswered { request_id, answer })
                    .await;
            }
        });
        self.send_to_subscribers(&request).await;
    }

    async fn tool_answered(&mut self, request_id: i64, answer: Answer) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let Some(index) = active
            .pending_calls
            .iter()
            .position(|c| c.request_id == request_id)
        else {
            return;
        };
        let call = active.pending_calls.remove(index);
        let turn_id = active.turn.id.clone();
        self.announce_resolved(request_id).await;
        let (success, content) = match answer.decode::<DynamicToolCall>() {
            Ok(DynamicToolCallResponse {
                content_items,
                success,
            }) => (success, content_items),
            Err(Refusal::Malformed(_)) => (
                false,
                vec![DynamicToolCallOutputContentItem::text(
                    "the client returned a malformed tool result",
                )],
            ),
            Err(Refusal::Error(error)) => (
                false,
                vec![DynamicToolCallOutputContentItem::text(error.message)],
            ),
        };
        let ThreadItem::DynamicToolCall {
            id,
            tool,
            namespace,
            arguments,
            started_at_ms,
            ..
        } = call.item
        else {
            return;
        };
        let item = ThreadItem::DynamicToolCall {
            id,
            tool,
            namespace,
            arguments,
            status: if success { "completed" } else { "failed" }.into(),
            content_items: Some(content),
            success: Some(success),
            duration_ms: Some(call.started.elapsed().as_millis() as i64),
            started_at_ms,
            completed_at_ms: Some(now_ms()),
        };
        self.item_completed(&turn_id, item).await;
        self.continue_after_tools().await;
    }

    /// Once the round is over and every call it made is answered, the turn goes on.
    async fn continue_after_tools(&mut self) {
        let ready = self.active.as_ref().is_some_and(|a| {
            a.round_over
                && a.calls_this_round > 0
                && a.pending_calls.is_empty()
                && a.builtin_queue.is_empty()
                && a.current_call.is_none()
        });
        if ready {
            self.sample().await;
        }
    }

    /// Stops waiting for `calls` and tells the subscribers they are resolved.
    async fn resolve(&mut self, calls: Vec<PendingCall>) {
        for call in calls {
            self.server.requests.cancel(call.request_id);
            self.announce_resolved(call.request_id).await;
        }
    }

    async fn announce_resolved(&self, request_id: i64) {
        let params = ServerRequestResolvedNotification {
            thread_id: self.thread.id.clone(),
            request_id,
        };
        self.notify_subscribers(&params).await;
    }

    async fn item_started(&self, turn_id: &str, item: &ThreadItem) {
        let params = ItemStartedNotification {
            item: item.clone(),
            thread_id: self.thread.id.clone(),
            turn_id: turn_id.to_owned(),
            started_at_ms: now_ms(),
        };
        self.notify_subscribers(&params).await;
    }

    async fn item_completed(&mut self, turn_id: &str, item: ThreadItem) {
        let item = self.announce_item_completed(turn_id, item).await;
        if let Some(active) = self.active.as_mut() {
            active.items.push(item);
        }
    }

    /// `item/completed`, without adding the item to the running turn.
    async fn announce_item_completed(&self, turn_id: &str, item: ThreadItem) -> ThreadItem {
        let params = ItemCompletedNotification {
            item,
            thread_id: self.thread.id.clone(),
            turn_id: turn_id.to_owned(),
            content_token_count: None,
            completed_at_ms: now_ms(),
        };
        self.notify_subscribers(&params).await;
        params.item
    }

    /// Keeps the account's rate limits for `account/rateLimits/read` and tells every client.
    async fn rate_limits(&self, limits: Vec<RateLimitSnapshot>) {
        self.server.catalog.rate_limits.record(&limits);
        for rate_limits in limits {
            self.broadcast(&AccountRateLimitsUpdatedNotification { rate_limits })
                .await;
        }
    }

    /// `error` for the running turn.
    async fn notify_error(&self, turn_id: &str, error: TurnError, will_retry: bool) {
        let params = ErrorNotification {
            error,
            will_retry,
            thread_id: self.thread.id.clone(),
            turn_id: turn_id.to_owned(),
        };
        self.notify_subscribers(&params).await;
    }

    async fn sampled(&mut self, sampled: Sampled) {
        let Some(turn_id) = self.active.as_ref().map(|t| t.turn.id.clone()) else {
            return;
        };

        if self.active.as_ref().is_some_and(|a| a.compaction.is_some()) {
            return self.compaction_sampled(&turn_id, sampled).await;
        }
        match sampled {
            Sampled::Event(ResponseEvent::ItemAdded(OutputItem::Message { id, .. })) => {
                let started_at = now_ms();
                let item = agent_message(&id, "", Some(started_at), None);
                if let Some(active) = self.active.as_mut() {
                    active.streaming = Some((id, String::new(), started_at));
                }
                self.item_started(&turn_id, &item).await;
            }
            Sampled::Event(ResponseEvent::TextDelta { item_id, delta }) => {
                // Clients join deltas by item id: it is the open message's, whatever the
                // upstream put (or left out) in the delta.
                let mut item_id = item_id;
                if let Some((open, text, _)) =
                    self.active.as_mut().and_then(|a| a.streaming.as_mut())
                {
                    text.push_str(&delta);
                    item_id = open.clone();
                }
                let params = AgentMessageDeltaNotification {
                    thread_id: self.thread.id.clone(),
                    turn_id,
                    item_id,
                    delta,
                };
                self.notify_subscribers(&params).await;
            }
            Sampled::Event(ResponseEvent::ItemDone(OutputItem::Message { id, text })) => {
                let streamed = self.active.as_mut().and_then(|a| a.streaming.take());
                let started_at = streamed.map(|(_, _, at)| at).unwrap_or_else(now_ms);
                let item = agent_message(&id, &text, Some(started_at), Some(now_ms()));
                self.item_completed(&turn_id, item).await;
            }
            Sampled::Event(ResponseEvent::ItemAdded(OutputItem::Reasoning { id, summary })) => {
                let started_at = now_ms();
                let item = reasoning_item(&id, summary, started_at, None);
                if let Some(active) = self.active.as_mut() {
                    active.reasoning = Some((id, started_at));
                }
                self.item_started(&turn_id, &item).await;
            }
            Sampled::Event(ResponseEvent::ReasoningSummaryPartAdded {
                item_id,
                summary_index,
            }) => {
                let params = ReasoningSummaryPartAddedNotification {
                    thread_id: self.thread.id.clone(),
                    turn_id,
                    item_id,
                    summary_index,
                };
                self.notify_subscribers(&params).await;
            }
            Sampled::Event(ResponseEvent::ReasoningSummaryDelta {
                item_id,
                summary_index,
                delta,
            }) => {
                let params = ReasoningSummaryTextDeltaNotification {
                    thread_id: self.thread.id.clone(),
                    turn_id,
                    item_id,
                    summary_index,
                    delta,
                };
                self.notify_subscribers(&params).await;
            }
            Sampled::Event(ResponseEvent::ItemDone(OutputItem::Reasoning { id, summary })) => {
                let started = self
                    .active
                    .as_mut()
                    .and_then(|a| a.reasoning.take_if(|(started, _)| *started == id));
                // An item never announced as started (an upstream that skips `added`) is only
                // worth showing when it says something.
                let announced = started.is_some();
                if !announced && summary.is_empty() {
                    return;
                }
                let completed_at = now_ms();
                let started_at = started.map_or(completed_at, |(_, at)| at);
                let item = reasoning_item(&id, summary, started_at, Some(completed_at));
                if !announced {
                    self.item_started(&turn_id, &item).await;
                }
                self.item_completed(&turn_id, item).await;
            }
            Sampled::Event(ResponseEvent::ItemDone(OutputItem::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            })) => {
                let dynamic = namespace_of(&self.settings.dynamic_tools, &name).is_some()
                    || self.settings.dynamic_tools.iter().any(
                        |spec| matches!(spec, DynamicToolSpec::Function(tool) if tool.name == name),
                    );
                if !dynamic && self.threads().defaults.tools.is_builtin(&name) {
                    let call = commands::BuiltinCall {
                        call_id,
                        name,
                        arguments,
                    };
                    self.call_builtin(call).await;
                } else {
                    self.call_tool(&turn_id, call_id, name, arguments).await;
                }
            }
            Sampled::Event(ResponseEvent::Completed { usage, .. }) => {
                if let Some(usage) = usage {
                    self.token_usage(&turn_id, usage).await;
                }
                let called_tools = self.active.as_ref().is_some_and(|a| a.calls_this_round > 0);
                if called_tools {
                    if let Some(active) = self.active.as_mut() {
                        active.round_over = true;
                    }
                    self.continue_after_tools().await;
                } else {
                    self.finish(TurnStatus::Completed, None).await;
                }
            }
            Sampled::Event(_) => {}
            Sampled::Retrying(retry) => self.retrying(&turn_id, &retry).await,
            Sampled::Failed(error) => {
                let error = turn_error(&error);
                self.status.send_replace(ThreadStatus::SystemError);
                self.broadcast_status().await;
                self.notify_error(&turn_id, error.clone(), false).await;
                self.finish(TurnStatus::Failed, Some(error)).await;
            }
        }
    }

    /// A compaction round: its text is the summary, not an agent message.
    async fn compaction_sampled(&mut self, turn_id: &str, sampled: Sampled) {
        let Some((_, summary)) = self.active.as_mut().and_then(|a| a.compaction.as_mut()) else {
            return;
        };
        match sampled {
            Sampled::Event(ResponseEvent::TextDelta { delta, .. }) => summary.push_str(&delta),
            Sampled::Event(ResponseEvent::ItemDone(OutputItem::Message { text, .. })) => {
                *summary = text
            }
            Sampled::Event(ResponseEvent::Completed { usage, .. }) => {
                let (id, summary) = self
                    .active
                    .as_mut()
                    .and_then(|a| a.compaction.take())
                    .unwrap_or_default();
                let item = ThreadItem::ContextCompaction {
                    id,
                    summary: Some(summary),
                };
                self.item_completed(turn_id, item).await;
                if let Some(usage) = usage {
                    self.token_usage(turn_id, usage).await;
                }
                self.finish(TurnStatus::Completed, None).await;
            }
            Sampled::Event(_) => {}
            Sampled::Retrying(retry) => {
                summary.clear();
                self.retrying(turn_id, &retry).await;
            }
            failed @ Sampled::Failed(_) => {
                // A failure ends a compaction turn the way it ends any turn.
                if let Some(active) = self.active.as_mut() {
                    active.compaction = None;
                }
                Box::pin(self.sampled(failed)).await;
            }
        }
    }

    /// The round's request failed or its stream broke off, and it is sent again: what the
    /// broken attempt produced is dropped (the new attempt produces it again), and subscribers
    /// hear `willRetry: true` with codex's `Reconnecting... n/m`.
    async fn retrying(&mut self, turn_id: &str, retry: &Retry) {
        let (streaming, reasoning, abandoned) = match self.active.as_mut() {
            Some(active) => {
                active.items.truncate(active.round_start_items);
                active.calls_this_round = 0;
                (
                    active.streaming.take(),
                    active.reasoning.take(),
                    std::mem::take(&mut active.pending_calls),
                )
            }
            None => return,
        };
        // Every item the broken attempt started ends now, as far as it got; the new attempt
        // starts its own.
        let now = now_ms();
        let mut ended: Vec<ThreadItem> = Vec::new();
        if let Some((id, text, started_at)) = streaming {
            ended.push(agent_message(&id, &text, Some(started_at), Some(now)));
        }
        if let Some((id, started_at)) = reasoning {
            ended.push(reasoning_item(&id, Vec::new(), started_at, Some(now)));
        }
        for call in &abandoned {
            if let ThreadItem::DynamicToolCall { .. } = &call.item {
                ended.push(failed_call(call.item.clone(), call.started));
            }
        }
        for item in ended {
            let params = ItemCompletedNotification {
                item,
                thread_id: self.thread.id.clone(),
                turn_id: turn_id.to_owned(),
                content_token_count: None,
                completed_at_ms: now,
            };
            self.notify_subscribers(&params).await;
        }
        self.resolve(abandoned).await;
        self.notify_error(turn_id, retry_notice(retry), true).await;
    }

    async fn token_usage(&mut self, turn_id: &str, usage: Usage) {
        let last = TokenUsageBreakdown {
            total_tokens: usage.total_tokens,
            input_tokens: usage.input_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            output_tokens: usage.output_tokens,
            reasoning_output_tokens: usage.reasoning_output_tokens,
        };
        let mut total = self.usage.as_ref().map(|u| u.total).unwrap_or_default();
        total += last;
        if let Some(active) = self.active.as_mut() {
            active.tokens += last.total_tokens;
        }
        let usage = RecordedUsage {
            turn_id: turn_id.to_owned(),
            total,
            last,
        };
        // Subscribers hear it before the write, which only matters to a later resume.
        self.notify_subscribers(&usage.notification(&self.thread.id))
            .await;
        if !self.thread.ephemeral {
            let stored = serde_json::to_string(&usage).expect("token usage serializes");
            let state = &self.threads().state;
            if let Err(err) = state.put_token_usage(&self.thread.id, stored).await {
                tracing::error!(thread = %self.thread.id, "cannot store the token usage: {err}");
            }
        }
        self.usage = Some(usage);
    }

    /// The usage stored by an earlier run of this thread, if any.
    async fn load_usage(&self) -> Option<RecordedUsage> {
        let stored = match self.threads().state.token_usage(&self.thread.id).await {
            Ok(stored) => stored?,
            Err(err) => {
                tracing::error!(thread = %self.thread.id, "cannot read the token usage: {err}");
                return None;
            }
        };
        serde_json::from_str(&stored)
            .inspect_err(|err| {
                tracing::error!(thread = %self.thread.id, "ignoring unreadable token usage: {err}")
            })
            .ok()
    }

    /// Ends the running turn: the durable record, then status and `turn/completed`.
    async fn finish(&mut self, status: TurnStatus, error: Option<TurnError>) {
        let Some(turn_id) = self.active.as_ref().map(|active| active.turn.id.clone()) else {
            return;
        };
        self.end_commands(&turn_id, status).await;
        let Some(active) = self.active.take() else {
            return;
        };
        active.cancel.cancel();
        let mut turn = active.turn;
        turn.status = status;
        turn.error = error;
        turn.completed_at = Some(now_ms() / 1000);
        turn.duration_ms = Some(active.started.elapsed().as_millis() as i64);
        let mut announced = turn.clone();
        if status == TurnStatus::Completed {
            announced.items = active
                .items
                .iter()
                .filter(|item| matches!(item, ThreadItem::AgentMessage { .. }))
                .cloned()
                .collect();
            announced.items_view = ItemsView::Summary;
        }
        turn.items = active.items;
        turn.items_view = ItemsView::Full;
        // Durable before it is announced: a client that saw `turn/completed` finds the turn
        // after any crash, and one whose turn could not be saved is told so first.
        if let Err(message) = self.record(turn).await {
            let error = TurnError {
                message,
                codex_error_info: Some(CodexErrorInfo::Other),
                additional_details: None,
            };
            // The turn itself says it is not saved yet; it is written with the next one, or
            // reported lost at the next start.
            announced.error = Some(error.clone());
            self.notify_error(&announced.id, error, false).await;
        }
        if status != TurnStatus::Failed {
            self.set_status(ThreadStatus::Idle).await;
        }
        if status == TurnStatus::Completed {
            self.mark_unread(&announced.id).await;
        }
        let params = TurnCompletedNotification {
            thread_id: self.thread.id.clone(),
            turn: announced,
        };
        self.notify_subscribers(&params).await;
        let announced = params.turn;
        self.resolve(active.pending_calls).await;
        let seconds = active.started.elapsed().as_secs() as i64;
        self.account_goal(&announced.id, active.tokens, seconds)
            .await;
    }

    /// A finished turn counts towards an active goal; an exhausted budget stops the goal.
    async fn account_goal(&mut self, turn_id: &str, tokens: i64, seconds: i64) {
        let Some(goal) = self.goal.as_mut() else {
            return;
        };
        if !goals::account(goal, tokens, seconds, now_ms() / 1000) {
            return;
        }
        let goal = goal.clone();
        if let Err(err) = goals::store(&self.threads().state, &goal).await {
            tracing::error!(thread = %self.thread.id, "cannot store the goal: {}", err.message);
        }
        self.announce_goal_for(Some(turn_id)).await;
    }

    /// Writes the thread's `updated_at` and preview to the index.
    async fn touch_index(&self) {
        let touched = self
            .threads()
            .state
            .touch_thread(
                &self.thread.id,
                self.thread.updated_at,
                &self.thread.preview,
            )
            .await;
        if let Err(err) = touched {
            tracing::error!(thread = %self.thread.id, "cannot update the thread index: {err}");
        }
    }

    /// Appends the turn to the history log (synced) and updates the index. The turn stays in
    /// memory either way; the error says why it will not survive a restart.
    async fn record(&mut self, turn: Turn) -> Result<(), String> {
        self.thread.updated_at = now_ms() / 1000;
        self.unsaved.push(turn.clone());
        let saved = self.save_unsaved().await;
        if self.log.is_some() {
            self.touch_index().await;
        }
        self.history.push(turn);
        saved
    }

    /// Appends the turns not yet in the history log, oldest first (an earlier turn that could
    /// not be saved goes in before a later one); what still cannot be written stays queued.
    async fn save_unsaved(&mut self) -> Result<(), String> {
        let Some(log) = self.log.clone() else {
            self.unsaved.clear();
            return Ok(());
        };
        if self.unsaved.is_empty() {
            return Ok(());
        }
        // The writes end in an fsync: keep them off the async workers. The queue keeps its
        // turns until they are written, whatever happens to the task.
        let turns = self.unsaved.clone();
        let appended = tokio::task::spawn_blocking(move || {
            for (saved, turn) in turns.iter().enumerate() {
                if let Err(err) = log.append(turn) {
                    return (saved, Some(err));
                }
            }
            (turns.len(), None)
        })
        .await;
        let (saved, error) = match appended {
            Ok(outcome) => outcome,
            Err(err) => return Err(format!("the thread history task failed: {err}")),
        };
        self.unsaved.drain(..saved);
        match error {
            None => Ok(()),
            Some(err) => {
                let message = format!("cannot save the turn to the thread history: {err}");
                tracing::error!(thread = %self.thread.id, unsaved = self.unsaved.len(), "{message}");
                Err(message)
            }
        }
    }

    /// Before the thread leaves memory: a last try to save what is unsaved, and a durable note
    /// of what is lost, which the next resume reports.
    async fn settle_unsaved(&mut self) {
        if self.unsaved.is_empty() || self.save_unsaved().await.is_ok() {
            return;
        }
        let lost: Vec<String> = self.unsaved.iter().map(|turn| turn.id.clone()).collect();
        let note = serde_json::to_string(&lost).expect("turn ids serialize");
        let state = &self.threads().state;
        if let Err(err) = state.put_lost_turns(&self.thread.id, note).await {
            tracing::error!(thread = %self.thread.id, "cannot record the lost turns either: {err}");
        }
    }

    /// The turns of this thread recorded as lost at an earlier shutdown.
    async fn load_lost_turns(&self) -> Vec<String> {
        match self.threads().state.lost_turns(&self.thread.id).await {
            Ok(stored) => stored
                .and_then(|stored| serde_json::from_str(&stored).ok())
                .unwrap_or_default(),
            Err(err) => {
                tracing::error!(thread = %self.thread.id, "cannot read the lost turns: {err}");
                Vec::new()
            }
        }
    }

    /// Tells `connection` which turns of this thread were lost at an earlier shutdown.
    async fn report_lost_turns(&self, connection: &Connection) {
        if self.lost_turns.is_empty() {
            return;
        }
        let params = WarningNotification {
            thread_id: Some(self.thread.id.clone()),
            message: format!(
                "{} completed turn(s) of this thread could not be saved before tether stopped and are lost: {}",
                self.lost_turns.len(),
                self.lost_turns.join(", ")
            ),
        };
        connection.send(Outgoing::notify(&params)).await;
    }

    async fn interrupt(&mut self, reply: Reply<methods::TurnInterrupt>, turn_id: String) {
        let refusal = match &self.active {
            None => Some("no active turn to interrupt".to_owned()),
            Some(active) if active.turn.id != turn_id => Some(format!(
                "expected active turn id {turn_id} but found {}",
                active.turn.id
            )),
            Some(_) => None,
        };
        if let Some(message) = refusal {
            return reply.error(ServerError::Invalid(message)).await;
        }
        reply.ok(EmptyResponse {}).await;
        self.finish(TurnStatus::Interrupted, None).await;
    }

    async fn interrupt_for_shutdown(&mut self) {
        if self.active.is_some() {
            self.finish(TurnStatus::Interrupted, None).await;
        }
        self.commands.manager.terminate_all().await;
        self.settle_unsaved().await;
    }

    /// Leaves memory: stops being findable, tells everyone, and turns away what is still queued.
    async fn unload(&mut self) {
        self.commands.manager.terminate_all().await;
        self.settle_unsaved().await;
        // Closed before it is announced, and announced before it is forgotten: until then a
        // request for this thread gets "closing", after that it loads the thread afresh.
        self.mailbox.close();
        self.status.send_replace(ThreadStatus::NotLoaded);
        let thread_id = self.thread.id.clone();
        let emitted_at = now_ms();
        let status = ThreadStatusChangedNotification {
            thread_id: thread_id.clone(),
            status: ThreadStatus::NotLoaded,
        };
        let registry = &self.server.registry;
        registry
            .broadcast(Outgoing::notify_at(&status, emitted_at))
            .await;
        let closed = ThreadClosedNotification { thread_id };
        registry
            .broadcast(Outgoing::notify_at(&closed, emitted_at))
            .await;
        self.threads().forget(&self.thread.id, &self.myself);
        while let Some(command) = self.mailbox.recv().await {
            if let Command::Request(request) = command {
                request.refuse(super::closing(&self.thread.id)).await;
            }
        }
        tracing::info!(thread = %self.thread.id, "thread unloaded");
    }
}

async fn sleep_until(deadline: Option<Deadline>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn tool_request(call: &PendingCall) -> Outgoing {
    Outgoing::server_request::<DynamicToolCall>(call.request_id, &call.params)
}

/// What the model sees of a tool's answer: its text parts, in order.
fn tool_output_text(content_items: &Option<Vec<DynamicToolCallOutputContentItem>>) -> String {
    content_items
        .iter()
        .flatten()
        .filter_map(|item| match item {
            DynamicToolCallOutputContentItem::InputText { text } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn full_view(mut turn: Turn) -> Turn {
    turn.items_view = ItemsView::Full;
    turn
}

/// How the model sees a client tool or namespace.
fn model_tool(spec: &DynamicToolSpec) -> Tool {
    let function = |tool: &DynamicToolFunction| Tool::Function {
        name: tool.name.clone(),
        description: tool.description.clone(),
        parameters: tool.input_schema.clone(),
        strict: false,
    };
    match spec {
        DynamicToolSpec::Function(tool) => function(tool),
        DynamicToolSpec::Namespace(namespace) => Tool::Namespace {
            name: namespace.name.clone(),
            description: namespace.description.clone(),
            tools: namespace.tools.iter().map(function).collect(),
        },
    }
}

/// The namespace a called function was declared in, if any.
fn namespace_of(specs: &[DynamicToolSpec], function: &str) -> Option<String> {
    specs.iter().find_map(|spec| match spec {
        DynamicToolSpec::Namespace(namespace)
            if namespace.tools.iter().any(|tool| tool.name == function) =>
        {
            Some(namespace.name.clone())
        }
        _ => None,
    })
}

/// The text of a user message, for a preview.
pub(super) fn user_text(item: &ThreadItem) -> Option<String> {
    match item {
        ThreadItem::UserMessage { content, .. } => first_text(content),
        _ => None,
    }
}

fn first_text(input: &[UserInput]) -> Option<String> {
    input.iter().find_map(|part| match part {
        UserInput::Text { text, .. } if !text.is_empty() => Some(text.clone()),
        _ => None,
    })
}

fn agent_message(
    id: &str,
    text: &str,
    started_at_ms: Option<i64>,
    completed_at_ms: Option<i64>,
) -> ThreadItem {
    ThreadItem::AgentMessage {
        id: id.to_owned(),
        text: text.to_owned(),
        phase: None,
        memory_citation: None,
        started_at_ms,
        completed_at_ms,
    }
}

/// The thread's token usage after its latest round: what `thread/tokenUsage/updated` says.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordedUsage {
    turn_id: String,
    total: TokenUsageBreakdown,
    last: TokenUsageBreakdown,
}

impl RecordedUsage {
    fn notification(&self, thread_id: &str) -> ThreadTokenUsageUpdatedNotification {
        ThreadTokenUsageUpdatedNotification {
            thread_id: thread_id.to_owned(),
            turn_id: self.turn_id.clone(),
            token_usage: ThreadTokenUsage {
                total: self.total,
                last: self.last,
                model_context_window: None,
            },
        }
    }
}

/// A client tool call that will get no answer: failed, with what it had.
fn failed_call(item: ThreadItem, started: Instant) -> ThreadItem {
    match item {
        ThreadItem::DynamicToolCall {
            id,
            tool,
            namespace,
            arguments,
            started_at_ms,
            ..
        } => ThreadItem::DynamicToolCall {
            id,
            tool,
            namespace,
            arguments,
            status: "failed".into(),
            content_items: None,
            success: Some(false),
            duration_ms: Some(started.elapsed().as_millis() as i64),
            started_at_ms,
            completed_at_ms: Some(now_ms()),
        },
        other => other,
    }
}

fn reasoning_item(
    id: &str,
    summary: Vec<String>,
    started_at_ms: i64,
    completed_at_ms: Option<i64>,
) -> ThreadItem {
    ThreadItem::Reasoning {
        id: id.to_owned(),
        summary,
        content: vec![],
        started_at_ms: Some(started_at_ms),
        completed_at_ms,
    }
}

/// The protocol's view of an upstream failure (`TurnError` with `codexErrorInfo`).
/// The `error` of a `willRetry: true` notification, as codex words it.
fn retry_notice(retry: &Retry) -> TurnError {
    let status = match &retry.error {
        UpstreamError::Status { status, .. } => Some(*status),
        _ => None,
    };
    TurnError {
        message: format!("Reconnecting... {}/{}", retry.attempt, retry.max_retries),
        codex_error_info: Some(CodexErrorInfo::ResponseStreamDisconnected {
            http_status_code: status,
        }),
        additional_details: Some(retry.error.to_string()),
    }
}

fn turn_error(error: &UpstreamError) -> TurnError {
    let (message, info) = match error {
        UpstreamError::Status { status, body } => match status {
            401 => (body.clone(), CodexErrorInfo::Unauthorized),
            429 => (body.clone(), CodexErrorInfo::RateLimitExceeded),
            500..=599 => (
                "We’re currently experiencing high demand, which may cause temporary errors."
                    .to_owned(),
                CodexErrorInfo::InternalServerError,
            ),
            _ => (body.clone(), CodexErrorInfo::Other),
        },
        UpstreamError::Connect(_) => (
            error.to_string(),
            CodexErrorInfo::HttpConnectionFailed {
                http_status_code: None,
            },
        ),
        UpstreamError::Disconnected(_) => (error.to_string(), CodexErrorInfo::Other),
        UpstreamError::Failed { code, message } => {
            let info = match code.as_deref() {
                Some("context_length_exceeded") => CodexErrorInfo::ContextWindowExceeded,
                Some("insufficient_quota") => CodexErrorInfo::UsageLimitExceeded,
                Some("rate_limit_exceeded") => CodexErrorInfo::RateLimitExceeded,
                Some("server_error") => CodexErrorInfo::InternalServerError,
                _ => CodexErrorInfo::Other,
            };
            (message.clone(), info)
        }
        UpstreamError::Config(message) => (message.clone(), CodexErrorInfo::Other),
    };
    TurnError {
        message,
        codex_error_info: Some(info),
        additional_details: None,
    }
}
