//! The task that owns one loaded thread. Every request about the thread and every upstream event
//! of its turns arrive in its one mailbox and are handled in order, and every message about the
//! thread leaves from here, so the order clients see is the order things happened: a resume's
//! response can never be overtaken by a live event, and all subscribers see the same sequence.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tether_protocol::{
    ErrorObject, ItemsView, Outgoing, RequestId, Thread, ThreadGoal, ThreadGoalSetParams,
    ThreadItem, ThreadStatus, TokenUsageBreakdown, Turn, TurnError, TurnStartParams, TurnStatus,
    UserInput, now_ms,
};
use tether_upstream::{OutputItem, ResponseEvent, Retry, UpstreamError, Usage};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant as Deadline;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::goals;
use super::history::HistoryLog;
use super::sampler::{RoundHeaders, Sampled, sample};
use super::{Settings, Threads};
use crate::Server;
use crate::attestation::AttestationHook;
use crate::connection::{Connection, Frame};
use crate::server_requests::Answer;
use crate::trace::Trace;

/// What the actor is asked to do.
pub enum Command {
    /// Answer the `thread/start` that created the thread.
    Started {
        connection: Arc<Connection>,
        id: RequestId,
    },
    /// `thread/resume`; `cold` when this request loaded the thread.
    Resume {
        connection: Arc<Connection>,
        id: RequestId,
        exclude_turns: bool,
        cold: bool,
    },
    /// `thread/unsubscribe`.
    Unsubscribe {
        connection: Arc<Connection>,
        id: RequestId,
    },
    /// `thread/read` of a loaded thread.
    Read {
        connection: Arc<Connection>,
        id: RequestId,
        include_turns: bool,
    },
    /// `turn/start`.
    TurnStart {
        connection: Arc<Connection>,
        id: RequestId,
        params: TurnStartParams,
        trace: Trace,
    },
    /// `turn/interrupt`.
    Interrupt {
        connection: Arc<Connection>,
        id: RequestId,
        turn_id: String,
    },
    /// A connection closed.
    ConnectionClosed(u64),
    /// An event of the sampling round `generation`.
    Sampled { generation: u64, sampled: Sampled },
    /// `thread/compact/start`.
    Compact {
        connection: Arc<Connection>,
        id: RequestId,
        trace: Trace,
    },
    /// `thread/goal/set`.
    GoalSet {
        connection: Arc<Connection>,
        id: RequestId,
        params: ThreadGoalSetParams,
    },
    /// `thread/goal/get`.
    GoalGet {
        connection: Arc<Connection>,
        id: RequestId,
    },
    /// `thread/goal/clear`.
    GoalClear {
        connection: Arc<Connection>,
        id: RequestId,
    },
    /// `thread/revert`.
    Revert {
        connection: Arc<Connection>,
        id: RequestId,
        before_turn_id: String,
    },
    /// A client answered the tool call request `request_id`.
    ToolAnswered { request_id: i64, answer: Answer },
}

/// A tool call the model made, waiting for a client's answer.
struct PendingCall {
    request_id: i64,
    params: Value,
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
                    Some(command) => self.handle(command).await,
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
            Command::Started { connection, id } => {
                self.subscribe(connection.id());
                let response = self
                    .threads()
                    .session_response(&self.thread_object(false), &self.settings);
                connection.send(Outgoing::response(id, &response)).await;
                let thread = self.thread_object(false);
                self.broadcast("thread/started", json!({"thread": thread}))
                    .await;
            }
            Command::Resume {
                connection,
                id,
                exclude_turns,
                cold,
            } => {
                if self.thread.ephemeral {
                    let error = ErrorObject::invalid_request(format!(
                        "no rollout found for thread id {}",
                        self.thread.id
                    ));
                    connection.send(Outgoing::Error { id, error }).await;
                    return;
                }
                if cold {
                    self.broadcast_status().await;
                }
                let thread = self.thread_object(!exclude_turns);
                let response = self.threads().session_response(&thread, &self.settings);
                connection.send(Outgoing::response(id, &response)).await;
                if let Some(usage) = &self.usage {
                    let params = usage.notification(&self.thread.id);
                    connection
                        .send(Outgoing::notification("thread/tokenUsage/updated", params))
                        .await;
                }
                if !self.thread.ephemeral {
                    self.announce_goal().await;
                }
                // Requests still waiting are asked again, with the same ids.
                for call in self
                    .active
                    .iter()
                    .flat_map(|turn| turn.pending_calls.iter())
                {
                    connection.send(tool_request(call)).await;
                }
                // From here on the connection gets every live event, none before the response.
                self.subscribe(connection.id());
            }
            Command::Unsubscribe { connection, id } => {
                let status = if self.unsubscribe(connection.id()) {
                    "unsubscribed"
                } else {
                    "notSubscribed"
                };
                connection
                    .send(Outgoing::response(id, &json!({"status": status})))
                    .await;
            }
            Command::Read {
                connection,
                id,
                include_turns,
            } => {
                let thread = self.thread_object(include_turns);
                connection
                    .send(Outgoing::response(id, &json!({"thread": thread})))
                    .await;
            }
            Command::TurnStart {
                connection,
                id,
                params,
                trace,
            } => self.turn_start(connection, id, params, trace).await,
            Command::Compact {
                connection,
                id,
                trace,
            } => self.compact(connection, id, trace).await,
            Command::GoalSet {
                connection,
                id,
                params,
            } => {
                let reply = self.goal_set(params).await;
                self.reply_then(connection, id, reply, Self::announce_goal)
                    .await;
            }
            Command::GoalGet { connection, id } => {
                let reply = self.goal_refusal().map(|()| json!({"goal": self.goal}));
                self.reply_then(connection, id, reply, async |_| {}).await;
            }
            Command::GoalClear { connection, id } => {
                let reply = self.goal_clear().await;
                self.reply_then(connection, id, reply, async |actor: &mut Actor| {
                    let params = json!({"threadId": actor.thread.id});
                    actor.broadcast("thread/goal/cleared", params).await;
                })
                .await;
            }
            Command::Revert {
                connection,
                id,
                before_turn_id,
            } => {
                let reply = self.revert(&before_turn_id).await.map(|()| {
                    json!({"thread": self.thread_object(false), "turnsBackwardsCursor": null, "itemsBackwardsCursor": null})
                });
                self.reply_then(connection, id, reply, async |_| {}).await;
            }
            Command::Interrupt {
                connection,
                id,
                turn_id,
            } => self.interrupt(connection, id, turn_id).await,
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
        }
    }

    /// Sends `reply`; on success then runs `after` (a notification that must follow the
    /// response). A clear that removed nothing answers `cleared: false` and announces nothing.
    async fn reply_then(
        &mut self,
        connection: Arc<Connection>,
        id: RequestId,
        reply: Result<Value, ErrorObject>,
        after: impl AsyncFnOnce(&mut Actor),
    ) {
        match reply {
            Ok(result) => {
                let announce = result.get("cleared") != Some(&Value::Bool(false));
                connection.send(Outgoing::response(id, &result)).await;
                if announce {
                    after(self).await;
                }
            }
            Err(error) => {
                connection.send(Outgoing::Error { id, error }).await;
            }
        }
    }

    fn goal_refusal(&self) -> Result<(), ErrorObject> {
        if self.thread.ephemeral {
            return Err(ErrorObject::invalid_request(format!(
                "ephemeral thread does not support goals: {}",
                self.thread.id
            )));
        }
        Ok(())
    }

    async fn goal_set(&mut self, params: ThreadGoalSetParams) -> Result<Value, ErrorObject> {
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
        Ok(json!({"goal": goal}))
    }

    async fn goal_clear(&mut self) -> Result<Value, ErrorObject> {
        self.goal_refusal()?;
        let cleared = self
            .threads()
            .state
            .delete_goal(&self.thread.id)
            .await
            .map_err(|err| ErrorObject::internal(err.to_string()))?;
        self.goal = None;
        Ok(json!({"cleared": cleared}))
    }

    /// `thread/goal/updated` for the current goal, not caused by a turn.
    async fn announce_goal(&mut self) {
        self.announce_goal_for(None).await;
    }

    /// The goal's state as a broadcast: updated (with the turn that changed it) or cleared.
    async fn announce_goal_for(&mut self, turn_id: Option<&str>) {
        match &self.goal {
            Some(goal) => {
                let params = json!({"threadId": self.thread.id, "turnId": turn_id, "goal": goal});
                self.broadcast("thread/goal/updated", params).await;
            }
            None => {
                let params = json!({"threadId": self.thread.id});
                self.broadcast("thread/goal/cleared", params).await;
            }
        }
    }

    /// Drops `before_turn_id` and every later turn from the history.
    /// The shorter history is written (and synced, on the blocking pool) before memory changes,
    /// so a failed write leaves both as they were.
    async fn revert(&mut self, before_turn_id: &str) -> Result<(), ErrorObject> {
        if self.active.is_some() {
            return Err(ErrorObject::invalid_request(
                "cannot revert while a turn is running",
            ));
        }
        let index = self
            .history
            .iter()
            .position(|turn| turn.id == before_turn_id)
            .ok_or_else(|| {
                ErrorObject::invalid_request(format!("turn not found: {before_turn_id}"))
            })?;
        if let Some(log) = self.log.clone() {
            let kept = self.history[..index].to_vec();
            let path = log.path().display().to_string();
            tokio::task::spawn_blocking(move || log.rewrite(&kept))
                .await
                .map_err(|err| ErrorObject::internal(format!("cannot rewrite {path}: {err}")))?
                .map_err(|err| ErrorObject::internal(format!("cannot rewrite {path}: {err}")))?;
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
            thread.turns = self.history.iter().cloned().map(full_view).collect();
            if let Some(active) = &self.active {
                let mut turn = active.turn.clone();
                turn.items = active.items.clone();
                turn.items_view = ItemsView::Full;
                thread.turns.push(turn);
            }
        }
        thread
    }

    async fn set_status(&mut self, status: ThreadStatus) {
        self.status.send_replace(status);
        self.broadcast_status().await;
    }

    async fn broadcast_status(&self) {
        let status = self.status.borrow().clone();
        self.broadcast(
            "thread/status/changed",
            json!({"threadId": self.thread.id, "status": status}),
        )
        .await;
    }

    async fn broadcast(&self, method: &str, params: Value) {
        self.server
            .registry
            .broadcast(Outgoing::notification(method, params))
            .await;
    }

    async fn notify_subscribers(&self, method: &str, params: Value) {
        self.send_to_subscribers(&Outgoing::notification(method, params))
            .await;
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
        connection: Arc<Connection>,
        id: RequestId,
        params: TurnStartParams,
        trace: Trace,
    ) {
        if let Some(model) = params.model.clone() {
            self.settings.model = model;
        }
        let user_message = ThreadItem::UserMessage {
            id: uuid::Uuid::now_v7().to_string(),
            client_id: params.client_user_message_id.clone(),
            content: params.input.clone(),
            started_at_ms: Some(now_ms()),
            completed_at_ms: Some(now_ms()),
        };
        if self.thread.preview.is_empty()
            && let Some(text) = first_text(&params.input)
        {
            self.thread.preview = text;
        }
        let steering = self.active.is_some();
        if !steering {
            self.active = Some(ActiveTurn::new(None, &trace));
        }
        let active = self.active.as_mut().expect("set above");
        let mut response_turn = active.turn.clone();
        response_turn.started_at = None;
        connection
            .send(Outgoing::response(id, &json!({"turn": response_turn})))
            .await;
        let turn_id = active.turn.id.clone();
        if !steering {
            self.announce_turn().await;
        }
        self.item_started(&turn_id, &user_message).await;
        self.item_completed(&turn_id, user_message).await;
        // New input replaces the round in flight, and with it the calls it was waiting on.
        let abandoned = self
            .active
            .as_mut()
            .map(|a| std::mem::take(&mut a.pending_calls))
            .unwrap_or_default();
        self.resolve(abandoned).await;
        self.sample().await;
    }

    /// `thread/compact/start`: a turn whose one round summarizes the history into a
    /// `contextCompaction` item that later rounds start from.
    async fn compact(&mut self, connection: Arc<Connection>, id: RequestId, trace: Trace) {
        if self.active.is_some() {
            let error = ErrorObject::invalid_request("cannot compact while a turn is running");
            connection.send(Outgoing::Error { id, error }).await;
            return;
        }
        let item_id = uuid::Uuid::now_v7().to_string();
        let active = ActiveTurn::new(Some(item_id.clone()), &trace);
        let turn_id = active.turn.id.clone();
        self.active = Some(active);
        connection.send(Outgoing::response(id, &json!({}))).await;
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
        self.notify_subscribers(
            "turn/started",
            json!({"threadId": self.thread.id, "turn": started}),
        )
        .await;
    }

    /// Starts a sampling round over the history and the running turn, replacing any round in
    /// flight (whose partial agent message is dropped).
    async fn sample(&mut self) {
        self.generations += 1;
        let generation = self.generations;
        let input = self.model_input();
        let tools: Vec<Value> = self
            .settings
            .dynamic_tools
            .iter()
            .map(|tool| json!({"type": "function", "name": tool.name, "description": tool.description, "parameters": tool.input_schema, "strict": false}))
            .collect();
        let body = json!({
            "model": self.settings.model,
            "instructions": self.settings.base_instructions,
            "input": input,
            "tools": tools,
            "tool_choice": "auto",
            "parallel_tool_calls": false,
            "store": false,
            "stream": true,
        });
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
                let hook = Arc::new(RoundHeaders {
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

    fn model_input(&self) -> Vec<Value> {
        let mut input = Vec::new();
        if let Some(developer) = &self.settings.developer_instructions {
            input.push(json!({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": developer}]}));
        }
        let history = self.history.iter().flat_map(|turn| turn.items.iter());
        let current = self.active.iter().flat_map(|turn| turn.items.iter());
        let items: Vec<&ThreadItem> = history.chain(current).collect();
        // The model continues from the latest summary, not from what it summarized.
        let from = items
            .iter()
            .rposition(|item| {
                matches!(
                    item,
                    ThreadItem::ContextCompaction {
                        summary: Some(_),
                        ..
                    }
                )
            })
            .unwrap_or(0);
        for item in &items[from..] {
            match item {
                ThreadItem::UserMessage { content, .. } => {
                    let parts: Vec<Value> = content
                        .iter()
                        .map(|part| match part {
                            UserInput::Text { text, .. } => {
                                json!({"type": "input_text", "text": text})
                            }
                            UserInput::Image { url } => {
                                json!({"type": "input_image", "image_url": url})
                            }
                        })
                        .collect();
                    input.push(json!({"type": "message", "role": "user", "content": parts}));
                }
                ThreadItem::AgentMessage { text, .. } => {
                    input.push(json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}));
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
                    input.push(json!({"type": "function_call", "call_id": id, "name": tool, "arguments": arguments}));
                    input.push(json!({"type": "function_call_output", "call_id": id, "output": tool_output_text(content_items)}));
                }
                ThreadItem::ContextCompaction {
                    summary: Some(summary),
                    ..
                } => {
                    let text = format!("Summary of the conversation so far:\n{summary}");
                    input.push(json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}));
                }
                ThreadItem::ContextCompaction { summary: None, .. }
                | ThreadItem::Reasoning { .. } => {}
            }
        }
        if self.active.as_ref().is_some_and(|a| a.compaction.is_some()) {
            input.push(json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": COMPACTION_PROMPT}]}));
        }
        input
    }

    /// The model called a client tool: ask every subscriber, under one id.
    async fn call_tool(&mut self, turn_id: &str, call_id: String, tool: String, arguments: String) {
        let arguments = serde_json::from_str(&arguments).unwrap_or(Value::String(arguments));
        let started_at = now_ms();
        let item = ThreadItem::DynamicToolCall {
            id: call_id.clone(),
            tool: tool.clone(),
            namespace: None,
            arguments: arguments.clone(),
            status: "inProgress".into(),
            content_items: None,
            success: None,
            duration_ms: None,
            started_at_ms: Some(started_at),
            completed_at_ms: None,
        };
        self.item_started(turn_id, &item).await;
        let (request_id, answer) = self.server.requests.register();
        let params = json!({"threadId": self.thread.id, "turnId": turn_id, "callId": call_id, "tool": tool, "arguments": arguments, "namespace": null});
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
        let params = json!({"threadId": self.thread.id, "requestId": request_id});
        self.notify_subscribers("serverRequest/resolved", params)
            .await;
        let (success, content) = match answer {
            Answer::Result(result) => match (
                result.get("success").and_then(Value::as_bool),
                result.get("contentItems").and_then(Value::as_array),
            ) {
                (Some(success), Some(items)) => (success, items.clone()),
                _ => (
                    false,
                    vec![
                        json!({"type": "inputText", "text": "the client returned a malformed tool result"}),
                    ],
                ),
            },
            Answer::Error(error) => (
                false,
                vec![json!({"type": "inputText", "text": error.message})],
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
        let ready = self
            .active
            .as_ref()
            .is_some_and(|a| a.round_over && a.calls_this_round > 0 && a.pending_calls.is_empty());
        if ready {
            self.sample().await;
        }
    }

    /// Stops waiting for `calls` and tells the subscribers they are resolved.
    async fn resolve(&mut self, calls: Vec<PendingCall>) {
        for call in calls {
            self.server.requests.cancel(call.request_id);
            let params = json!({"threadId": self.thread.id, "requestId": call.request_id});
            self.notify_subscribers("serverRequest/resolved", params)
                .await;
        }
    }

    async fn item_started(&self, turn_id: &str, item: &ThreadItem) {
        let params = json!({"item": item, "threadId": self.thread.id, "turnId": turn_id, "startedAtMs": now_ms()});
        self.notify_subscribers("item/started", params).await;
    }

    async fn item_completed(&mut self, turn_id: &str, item: ThreadItem) {
        let params = json!({"item": item, "threadId": self.thread.id, "turnId": turn_id, "contentTokenCount": null, "completedAtMs": now_ms()});
        self.notify_subscribers("item/completed", params).await;
        if let Some(active) = self.active.as_mut() {
            active.items.push(item);
        }
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
                if let Some((_, text, _)) = self.active.as_mut().and_then(|a| a.streaming.as_mut())
                {
                    text.push_str(&delta);
                }
                let params = json!({"threadId": self.thread.id, "turnId": turn_id, "itemId": item_id, "delta": delta});
                self.notify_subscribers("item/agentMessage/delta", params)
                    .await;
            }
            Sampled::Event(ResponseEvent::ItemDone(OutputItem::Message { id, text })) => {
                let streamed = self.active.as_mut().and_then(|a| a.streaming.take());
                let started_at = streamed.map(|(_, _, at)| at).unwrap_or_else(now_ms);
                let item = agent_message(&id, &text, Some(started_at), Some(now_ms()));
                self.item_completed(&turn_id, item).await;
            }
            Sampled::Event(ResponseEvent::ItemAdded(OutputItem::Reasoning { id, summary })) => {
                let started_at = now_ms();
                let item = reasoning(&id, summary, started_at, None);
                if let Some(active) = self.active.as_mut() {
                    active.reasoning = Some((id, started_at));
                }
                self.item_started(&turn_id, &item).await;
            }
            Sampled::Event(ResponseEvent::ReasoningSummaryPartAdded {
                item_id,
                summary_index,
            }) => {
                let params = json!({"threadId": self.thread.id, "turnId": turn_id, "itemId": item_id, "summaryIndex": summary_index});
                self.notify_subscribers("item/reasoning/summaryPartAdded", params)
                    .await;
            }
            Sampled::Event(ResponseEvent::ReasoningSummaryDelta {
                item_id,
                summary_index,
                delta,
            }) => {
                let params = json!({"threadId": self.thread.id, "turnId": turn_id, "itemId": item_id, "summaryIndex": summary_index, "delta": delta});
                self.notify_subscribers("item/reasoning/summaryTextDelta", params)
                    .await;
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
                let item = reasoning(&id, summary, started_at, Some(completed_at));
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
                self.call_tool(&turn_id, call_id, name, arguments).await;
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
                let params = json!({"error": error, "willRetry": false, "threadId": self.thread.id, "turnId": turn_id});
                self.notify_subscribers("error", params).await;
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
        let abandoned = match self.active.as_mut() {
            Some(active) => {
                active.streaming = None;
                active.reasoning = None;
                active.items.truncate(active.round_start_items);
                active.calls_this_round = 0;
                std::mem::take(&mut active.pending_calls)
            }
            None => return,
        };
        self.resolve(abandoned).await;
        let params = json!({"error": retry_notice(retry), "willRetry": true, "threadId": self.thread.id, "turnId": turn_id});
        self.notify_subscribers("error", params).await;
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
        self.notify_subscribers(
            "thread/tokenUsage/updated",
            usage.notification(&self.thread.id),
        )
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
                codex_error_info: Some(json!("other")),
                additional_details: None,
            };
            let params = json!({"error": error, "willRetry": false, "threadId": self.thread.id, "turnId": announced.id});
            self.notify_subscribers("error", params).await;
        }
        if status != TurnStatus::Failed {
            self.set_status(ThreadStatus::Idle).await;
        }
        self.notify_subscribers(
            "turn/completed",
            json!({"threadId": self.thread.id, "turn": announced}),
        )
        .await;
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
        let mut saved = Ok(());
        if let Some(log) = self.log.clone() {
            // The write ends in an fsync: keep it off the async workers.
            let record = turn.clone();
            let appended = tokio::task::spawn_blocking(move || log.append(&record)).await;
            saved = match appended {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(format!("cannot save the turn to the thread history: {err}")),
                Err(err) => Err(format!("the thread history task failed: {err}")),
            };
            if let Err(message) = &saved {
                tracing::error!(thread = %self.thread.id, "{message}");
            }
            self.touch_index().await;
        }
        self.history.push(turn);
        saved
    }

    async fn interrupt(&mut self, connection: Arc<Connection>, id: RequestId, turn_id: String) {
        if self
            .active
            .as_ref()
            .is_none_or(|active| active.turn.id != turn_id)
        {
            let error = ErrorObject::invalid_request("no active turn to interrupt");
            connection.send(Outgoing::Error { id, error }).await;
            return;
        }
        connection.send(Outgoing::response(id, &json!({}))).await;
        self.finish(TurnStatus::Interrupted, None).await;
    }

    async fn interrupt_for_shutdown(&mut self) {
        if self.active.is_some() {
            self.finish(TurnStatus::Interrupted, None).await;
        }
    }

    /// Leaves memory: stops being findable, tells everyone, and turns away what is still queued.
    async fn unload(&mut self) {
        // Closed before it is announced, and announced before it is forgotten: until then a
        // request for this thread gets "closing", after that it loads the thread afresh.
        self.mailbox.close();
        self.status.send_replace(ThreadStatus::NotLoaded);
        let status = Outgoing::notification(
            "thread/status/changed",
            json!({"threadId": self.thread.id, "status": ThreadStatus::NotLoaded}),
        );
        let emitted_at = match &status {
            Outgoing::Notification { emitted_at_ms, .. } => *emitted_at_ms,
            _ => now_ms(),
        };
        self.server.registry.broadcast(status).await;
        let closed = Outgoing::Notification {
            method: "thread/closed".into(),
            params: json!({"threadId": self.thread.id}),
            emitted_at_ms: emitted_at,
        };
        self.server.registry.broadcast(closed).await;
        self.threads().forget(&self.thread.id, &self.myself);
        let closing = format!(
            "thread {} is closing; retry thread/resume after the thread is closed",
            self.thread.id
        );
        while let Some(command) = self.mailbox.recv().await {
            let reply = async |connection: Arc<Connection>, id| {
                let error = ErrorObject::invalid_request(closing.clone());
                connection.send(Outgoing::Error { id, error }).await;
            };
            match command {
                Command::Started { connection, id }
                | Command::Resume { connection, id, .. }
                | Command::Unsubscribe { connection, id }
                | Command::Read { connection, id, .. }
                | Command::TurnStart { connection, id, .. }
                | Command::Compact { connection, id, .. }
                | Command::GoalSet { connection, id, .. }
                | Command::GoalGet { connection, id }
                | Command::GoalClear { connection, id }
                | Command::Revert { connection, id, .. }
                | Command::Interrupt { connection, id, .. } => reply(connection, id).await,
                Command::ConnectionClosed(_)
                | Command::Sampled { .. }
                | Command::ToolAnswered { .. } => {}
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
    Outgoing::Request {
        method: "item/tool/call".into(),
        id: call.request_id,
        params: call.params.clone(),
    }
}

/// What the model sees of a tool's answer: its text parts, in order.
fn tool_output_text(content_items: &Option<Vec<Value>>) -> String {
    content_items
        .iter()
        .flatten()
        .filter_map(|item| item.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

fn full_view(mut turn: Turn) -> Turn {
    turn.items_view = ItemsView::Full;
    turn
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
    fn notification(&self, thread_id: &str) -> Value {
        json!({
            "threadId": thread_id,
            "turnId": self.turn_id,
            "tokenUsage": {"total": self.total, "last": self.last, "modelContextWindow": null},
        })
    }
}

fn reasoning(
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
        codex_error_info: Some(json!({"responseStreamDisconnected": {"httpStatusCode": status}})),
        additional_details: Some(retry.error.to_string()),
    }
}

fn turn_error(error: &UpstreamError) -> TurnError {
    let (message, info) = match error {
        UpstreamError::Status { status, body } => match status {
            401 => (body.clone(), json!("unauthorized")),
            429 => (body.clone(), json!("rateLimitExceeded")),
            500..=599 => (
                "We’re currently experiencing high demand, which may cause temporary errors."
                    .to_owned(),
                json!("internalServerError"),
            ),
            _ => (body.clone(), json!("other")),
        },
        UpstreamError::Connect(_) => (
            error.to_string(),
            json!({"httpConnectionFailed": {"httpStatusCode": null}}),
        ),
        UpstreamError::Disconnected(_) => (error.to_string(), json!("other")),
        UpstreamError::Failed { code, message } => {
            let info = match code.as_deref() {
                Some("context_length_exceeded") => json!("contextWindowExceeded"),
                Some("insufficient_quota") => json!("usageLimitExceeded"),
                Some("rate_limit_exceeded") => json!("rateLimitExceeded"),
                Some("server_error") => json!("internalServerError"),
                _ => json!("other"),
            };
            (message.clone(), info)
        }
        UpstreamError::Config(message) => (message.clone(), json!("other")),
    };
    TurnError {
        message,
        codex_error_info: Some(info),
        additional_details: None,
    }
}
