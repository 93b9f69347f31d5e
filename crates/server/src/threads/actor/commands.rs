//! The actor's built-in tools: `exec_command`, `write_stdin` and `update_plan` calls of the
//! running turn, handled one at a time in the order the model made them. A command may first
//! wait for the user's approval (a server request to the subscribers), then runs in a task;
//! its output, exit and tool result come back through the mailbox, so everything about it
//! reaches clients in one order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tether_exec::{
    ExecEvent, ExecOutcome, ExecRequest, TruncationPolicy, UnifiedExecError, UnifiedExecManager,
    Utf8ChunkDecoder, WriteStdinRequest, render_command,
};
use tether_protocol::server_requests::CommandExecutionRequestApproval;
use tether_protocol::{
    CommandExecutionApprovalDecision, CommandExecutionApprovalKind,
    CommandExecutionOutputDeltaNotification, CommandExecutionRequestApprovalParams,
    CommandExecutionRequestApprovalResponse, CommandExecutionSource, CommandExecutionStatus,
    Outgoing, TerminalInteractionNotification, ThreadBackgroundTerminal,
    ThreadBackgroundTerminalsListResponse, ThreadBackgroundTerminalsTerminateResponse, ThreadItem,
    ThreadShellCommandParams, ThreadStatus, TurnPlanStep, TurnPlanUpdatedNotification, TurnStatus,
    now_ms,
};

use super::super::tools::{
    self, EXEC_COMMAND, ExecCommandArgs, ExecPlan, UPDATE_PLAN, UpdatePlanArgs, WRITE_STDIN,
    WriteStdinArgs,
};
use super::{Actor, Command};
use crate::server_requests::{Answer, Refusal};
use crate::trace::Trace;
use tether_upstream::InputItem;

/// The shell of the user's `!commands`.
const USER_SHELL: &str = "/bin/bash";
/// How long a `!command` may run unless the request says otherwise: one hour.
const SHELL_COMMAND_TIMEOUT_MS: u64 = 3_600_000;

/// Tool output texts are cut to this many tokens unless the call asks for fewer.
const TRUNCATION: TruncationPolicy = TruncationPolicy::Tokens(10_000);

/// A built-in tool call the model made, in the order it made them.
pub(super) struct BuiltinCall {
    pub call_id: String,
    pub name: String,
    pub arguments: String,
}

/// A built-in call and what went back to the model, replayed in later rounds of the turn.
pub(super) struct ToolExchange {
    /// How many items the turn had completed when the call was made.
    pub at: usize,
    pub call: BuiltinCall,
    /// None until the call is done.
    pub output: Option<String>,
}

/// A command waiting for the user's answer to the approval request `request_id`.
pub(super) struct PendingApproval {
    pub request_id: i64,
    /// The request as sent, for subscribers that join while it waits.
    pub request: Outgoing,
    command: PreparedCommand,
}

/// A command ready to run: its arguments resolved and its item announced.
pub(super) struct PreparedCommand {
    args: ExecCommandArgs,
    argv: Vec<String>,
    cwd: PathBuf,
    item: ThreadItem,
}

/// A command item that has started and not yet completed.
pub(super) struct OpenCommand {
    turn_id: String,
    item: ThreadItem,
    decoder: Utf8ChunkDecoder,
    /// The tool result of the call that saw the process exit, held until the exit (and with
    /// it the item's completion) has been handled, so the item completes first.
    result_after_exit: Option<String>,
    /// A user's `!command` (not the model's).
    user_shell: bool,
}

/// A tool call's task finished.
pub struct CallDone {
    generation: u64,
    call_id: String,
    tool: &'static str,
    session_id: Option<i32>,
    max_output_tokens: Option<usize>,
    outcome: Result<ExecOutcome, UnifiedExecError>,
}

/// How a command is started: a login shell runs as `shell -c` in the environment a login
/// shell exported (captured once), so the profile is not read again for every command.
struct Launch {
    shell: String,
    login: bool,
    script: String,
}

impl Launch {
    async fn resolve(self, server: &crate::Server, mut request: ExecRequest) -> ExecRequest {
        request.env = if self.login {
            server.login_env.get(&self.shell).await.as_ref().clone()
        } else {
            std::env::vars().collect()
        };
        request.argv = tether_exec::shell_argv(&self.shell, false, &self.script);
        request
    }
}

/// Reports a finished call to the actor.
pub(super) struct Reporter {
    myself: tokio::sync::mpsc::Sender<Command>,
    generation: u64,
    call_id: String,
    tool: &'static str,
    session_id: Option<i32>,
}

impl Reporter {
    async fn report(
        self,
        outcome: Result<ExecOutcome, UnifiedExecError>,
        max_output_tokens: Option<usize>,
    ) {
        let done = CallDone {
            generation: self.generation,
            call_id: self.call_id,
            tool: self.tool,
            session_id: self.session_id,
            max_output_tokens,
            outcome,
        };
        let _ = self.myself.send(Command::CallDone(Box::new(done))).await;
    }
}

/// The thread's command state, kept across turns (sessions outlive the turn that started them).
pub(super) struct Commands {
    pub manager: Arc<UnifiedExecManager>,
    pub open: HashMap<i32, OpenCommand>,
    /// Argvs accepted for the session: they do not ask again in this thread.
    pub approved: std::collections::HashSet<Vec<String>>,
}

impl Commands {
    pub fn new(sandbox: Arc<tether_exec::Sandbox>) -> Commands {
        Commands {
            manager: Arc::new(UnifiedExecManager::new(sandbox)),
            open: HashMap::new(),
            approved: Default::default(),
        }
    }
}

impl Actor {
    /// The model called a built-in tool: queue it, and start it if nothing else runs.
    pub(super) async fn call_builtin(&mut self, call: BuiltinCall) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        active.exchanges.push(ToolExchange {
            at: active.items.len(),
            call: BuiltinCall {
                call_id: call.call_id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            },
            output: None,
        });
        active.calls_this_round += 1;
        active.builtin_queue.push_back(call);
        self.next_builtin().await;
    }

    /// Starts the next queued built-in call when none is in progress.
    async fn next_builtin(&mut self) {
        loop {
            let Some(active) = self.active.as_mut() else {
                return;
            };
            if active.current_call.is_some() {
                return;
            }
            let Some(call) = active.builtin_queue.pop_front() else {
                return self.continue_after_tools().await;
            };
            let turn_id = active.turn.id.clone();
            active.current_call = Some(call.call_id.clone());
            let immediate = match call.name.as_str() {
                UPDATE_PLAN => Some(self.update_plan(&turn_id, &call.arguments).await),
                WRITE_STDIN => self.write_stdin(&turn_id, &call).await,
                EXEC_COMMAND => self.exec_command(&turn_id, &call).await,
                other => Some(format!("unsupported call: {other}")),
            };
            let Some(output) = immediate else {
                return;
            };
            self.record_output(&call.call_id, output);
            if let Some(active) = self.active.as_mut() {
                active.current_call = None;
            }
        }
    }

    fn record_output(&mut self, call_id: &str, output: String) {
        if let Some(active) = self.active.as_mut()
            && let Some(exchange) = active
                .exchanges
                .iter_mut()
                .rev()
                .find(|exchange| exchange.call.call_id == call_id)
        {
            exchange.output = Some(output);
        }
    }

    /// The current call is done: its output goes to the model with the next round.
    async fn finish_call(&mut self, call_id: &str, output: String) {
        self.record_output(call_id, output);
        if let Some(active) = self.active.as_mut() {
            active.current_call = None;
        }
        self.next_builtin().await;
    }

    async fn update_plan(&mut self, turn_id: &str, arguments: &str) -> String {
        let args: UpdatePlanArgs = match tools::parse_arguments(arguments) {
            Ok(args) => args,
            Err(text) => return text,
        };
        let params = TurnPlanUpdatedNotification {
            thread_id: self.thread.id.clone(),
            turn_id: turn_id.to_owned(),
            explanation: args.explanation,
            plan: args
                .plan
                .into_iter()
                .map(|step| TurnPlanStep {
                    step: step.step,
                    status: step.status.into(),
                })
                .collect(),
        };
        self.notify_subscribers(&params).await;
        "Plan updated".to_owned()
    }

    /// Returns the output at once, or None when a task or an approval will finish the call.
    async fn exec_command(&mut self, turn_id: &str, call: &BuiltinCall) -> Option<String> {
        let args: ExecCommandArgs = match tools::parse_arguments(&call.arguments) {
            Ok(args) => args,
            Err(text) => return Some(text),
        };
        let argv = args.argv();
        let cwd = args.cwd(std::path::Path::new(&self.thread.cwd));
        let policy = self.settings.approval_policy();
        let approved = self.commands.approved.contains(&argv);
        let plan = tools::plan_exec(&policy, args.sandbox_permissions, approved);
        let escalated = match plan {
            ExecPlan::Refuse(text) => return Some(text),
            ExecPlan::Run { escalated } | ExecPlan::Ask { escalated } => escalated,
        };
        let item = command_item(
            call.call_id.clone(),
            &argv,
            &cwd,
            None,
            CommandExecutionSource::Agent,
        );
        let command = PreparedCommand {
            args,
            argv,
            cwd,
            item,
        };
        if matches!(plan, ExecPlan::Ask { .. }) {
            self.ask_approval(turn_id, command).await;
        } else {
            self.start_command(turn_id, command, escalated, true).await;
        }
        None
    }

    async fn ask_approval(&mut self, turn_id: &str, command: PreparedCommand) {
        self.item_started(turn_id, &command.item).await;
        let ThreadItem::CommandExecution {
            id,
            command: rendered,
            cwd,
            command_actions,
            started_at_ms,
            ..
        } = &command.item
        else {
            return;
        };
        let amendment = tools::proposed_amendment(&command.args.cmd);
        let params = CommandExecutionRequestApprovalParams {
            kind: CommandExecutionApprovalKind::Command,
            thread_id: self.thread.id.clone(),
            turn_id: turn_id.to_owned(),
            item_id: id.clone(),
            started_at_ms: started_at_ms.unwrap_or_else(now_ms),
            environment_id: Some("local".to_owned()),
            reason: command.args.justification.clone(),
            command: Some(rendered.clone()),
            cwd: Some(cwd.clone()),
            command_actions: Some(command_actions.clone()),
            proposed_execpolicy_amendment: Some(amendment.clone()),
            available_decisions: Some(tools::available_decisions(&amendment)),
        };
        let (request_id, answer) = self.server.requests.register(self.subscriber_ids());
        let request =
            Outgoing::server_request::<CommandExecutionRequestApproval>(request_id, &params);
        if let Some(active) = self.active.as_mut() {
            active.approval = Some(PendingApproval {
                request_id,
                request: request.clone(),
                command,
            });
        }
        let myself = self.myself.clone();
        tokio::spawn(async move {
            if let Ok(answer) = answer.await {
                let _ = myself
                    .send(Command::ApprovalAnswered { request_id, answer })
                    .await;
            }
        });
        self.set_waiting_on_approval(true).await;
        self.send_to_subscribers(&request).await;
    }

    async fn set_waiting_on_approval(&mut self, waiting: bool) {
        let active_flags = if waiting {
            vec!["waitingOnApproval".to_owned()]
        } else {
            vec![]
        };
        self.set_status(ThreadStatus::Active { active_flags }).await;
    }

    /// The user answered a command approval request.
    pub(super) async fn approval_answered(&mut self, request_id: i64, answer: Answer) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let waiting_for_it = active
            .approval
            .as_ref()
            .is_some_and(|approval| approval.request_id == request_id);
        let Some(PendingApproval { command, .. }) = active.approval.take_if(|_| waiting_for_it)
        else {
            return;
        };
        let turn_id = active.turn.id.clone();
        self.announce_resolved(request_id).await;
        self.set_waiting_on_approval(false).await;
        let decision = match answer.decode::<CommandExecutionRequestApproval>() {
            Ok(CommandExecutionRequestApprovalResponse { decision }) => decision,
            Err(Refusal::Malformed(_) | Refusal::Error(_)) => {
                CommandExecutionApprovalDecision::Decline
            }
        };
        let call_id = command.item.id().to_owned();
        match decision {
            CommandExecutionApprovalDecision::Accept
            | CommandExecutionApprovalDecision::AcceptWithExecpolicyAmendment { .. }
            | CommandExecutionApprovalDecision::ApplyNetworkPolicyAmendment { .. } => {
                let escalated =
                    command.args.sandbox_permissions == tools::SandboxPermissions::RequireEscalated;
                self.start_command(&turn_id, command, escalated, false)
                    .await;
            }
            CommandExecutionApprovalDecision::AcceptForSession => {
                self.commands.approved.insert(command.argv.clone());
                let escalated =
                    command.args.sandbox_permissions == tools::SandboxPermissions::RequireEscalated;
                self.start_command(&turn_id, command, escalated, false)
                    .await;
            }
            CommandExecutionApprovalDecision::Decline => {
                self.item_completed(&turn_id, declined(command.item)).await;
                self.finish_call(&call_id, tools::rejected("rejected by user"))
                    .await;
            }
            CommandExecutionApprovalDecision::Cancel => {
                self.item_completed(&turn_id, declined(command.item)).await;
                self.record_output(&call_id, tools::rejected("rejected by user"));
                self.finish(TurnStatus::Interrupted, None).await;
            }
        }
    }

    /// Runs a prepared command in a task; `announce` sends its `item/started` (an approved
    /// command announced it before asking).
    async fn start_command(
        &mut self,
        turn_id: &str,
        command: PreparedCommand,
        escalated: bool,
        announce: bool,
    ) {
        let session_id = self.commands.manager.reserve_session_id();
        let mut item = command.item;
        if let ThreadItem::CommandExecution {
            process_id, source, ..
        } = &mut item
        {
            *process_id = Some(session_id.to_string());
            *source = CommandExecutionSource::UnifiedExecStartup;
        }
        if announce {
            self.item_started(turn_id, &item).await;
        }
        let call_id = item.id().to_owned();
        self.commands.open.insert(
            session_id,
            OpenCommand {
                turn_id: turn_id.to_owned(),
                item,
                decoder: Utf8ChunkDecoder::default(),
                result_after_exit: None,
                user_shell: false,
            },
        );
        let sandbox = if escalated {
            tether_exec::SandboxPolicy::DangerFullAccess
        } else {
            self.settings.exec_sandbox()
        };
        let launch = Launch {
            shell: command
                .args
                .shell
                .clone()
                .unwrap_or_else(|| USER_SHELL.to_owned()),
            login: command.args.login.unwrap_or(true),
            script: command.args.cmd.clone(),
        };
        let request = ExecRequest {
            argv: Vec::new(),
            cwd: command.cwd,
            env: HashMap::new(),
            tty: command.args.tty,
            yield_time_ms: command.args.yield_time_ms,
            sandbox,
            session_id: Some(session_id),
            events: Some(self.exec_events()),
        };
        let manager = Arc::clone(&self.commands.manager);
        let server = Arc::clone(&self.server);
        let done = self.call_done(call_id, EXEC_COMMAND, Some(session_id));
        let max_output_tokens = command.args.max_output_tokens;
        tokio::spawn(async move {
            let request = launch.resolve(&server, request).await;
            let outcome = manager.exec(request).await;
            done.report(outcome, max_output_tokens).await;
        });
    }

    async fn write_stdin(&mut self, turn_id: &str, call: &BuiltinCall) -> Option<String> {
        let args: WriteStdinArgs = match tools::parse_arguments(&call.arguments) {
            Ok(args) => args,
            Err(text) => return Some(text),
        };
        if !args.chars.is_empty()
            && let Some(open) = self.commands.open.get(&args.session_id)
        {
            let params = TerminalInteractionNotification {
                thread_id: self.thread.id.clone(),
                turn_id: turn_id.to_owned(),
                item_id: open.item.id().to_owned(),
                process_id: args.session_id.to_string(),
                stdin: args.chars.clone(),
            };
            self.notify_subscribers(&params).await;
        }
        let manager = Arc::clone(&self.commands.manager);
        let done = self.call_done(call.call_id.clone(), WRITE_STDIN, Some(args.session_id));
        tokio::spawn(async move {
            let outcome = manager
                .write_stdin(WriteStdinRequest {
                    session_id: args.session_id,
                    chars: &args.chars,
                    yield_time_ms: args.yield_time_ms,
                })
                .await;
            done.report(outcome, args.max_output_tokens).await;
        });
        None
    }

    /// `thread/shellCommand`: runs the user's command unsandboxed as a `userShell` item of the
    /// running turn, or of a turn of its own (with no model call) when none runs.
    pub(super) async fn shell_command(&mut self, params: ThreadShellCommandParams, trace: &Trace) {
        if self.active.is_none() {
            self.open_turn(trace).shell_only = true;
            self.announce_turn().await;
        }
        let Some(turn_id) = self.active.as_ref().map(|active| active.turn.id.clone()) else {
            return;
        };
        let argv = tether_exec::shell_argv(USER_SHELL, true, &params.command);
        let cwd = PathBuf::from(&self.thread.cwd);
        let session_id = self.commands.manager.reserve_session_id();
        let item = command_item(
            uuid::Uuid::now_v7().to_string(),
            &argv,
            &cwd,
            Some(session_id),
            CommandExecutionSource::UserShell,
        );
        self.item_started(&turn_id, &item).await;
        self.commands.open.insert(
            session_id,
            OpenCommand {
                turn_id,
                item,
                decoder: Utf8ChunkDecoder::default(),
                result_after_exit: None,
                user_shell: true,
            },
        );
        let launch = Launch {
            shell: USER_SHELL.to_owned(),
            login: true,
            script: params.command.clone(),
        };
        let request = ExecRequest {
            argv: Vec::new(),
            cwd,
            env: HashMap::new(),
            tty: false,
            yield_time_ms: Some(tether_exec::MAX_YIELD_TIME_MS),
            sandbox: tether_exec::SandboxPolicy::DangerFullAccess,
            session_id: Some(session_id),
            events: Some(self.exec_events()),
        };
        let manager = Arc::clone(&self.commands.manager);
        let server = Arc::clone(&self.server);
        let myself = self.myself.clone();
        let timeout = Duration::from_millis(
            params
                .timeout_ms
                .map_or(SHELL_COMMAND_TIMEOUT_MS, |ms| ms.max(0) as u64),
        );
        tokio::spawn(async move {
            let request = launch.resolve(&server, request).await;
            if let Err(err) = manager.exec(request).await {
                // It never started, so no exit will be reported: report one.
                let failed = ExecEvent::Exited {
                    session_id,
                    exit_code: -1,
                    duration: Duration::ZERO,
                    aggregated_output: err.to_string(),
                };
                let _ = myself.send(Command::Exec(failed)).await;
                return;
            }
            tokio::time::sleep(timeout).await;
            let _ = manager.terminate(session_id).await;
        });
    }

    /// A turn of the user's commands alone ends when the last of them exits.
    async fn end_shell_turn(&mut self, turn_id: &str) {
        let shell_turn = self
            .active
            .as_ref()
            .is_some_and(|active| active.shell_only && active.turn.id == turn_id);
        let still_running = self
            .commands
            .open
            .values()
            .any(|open| open.user_shell && open.turn_id == turn_id);
        if shell_turn && !still_running {
            self.finish(TurnStatus::Completed, None).await;
        }
    }

    /// New input replaces the round in flight: its built-in calls are dropped (a command that
    /// already runs keeps running as a session) and an approval still asked for is withdrawn.
    pub(super) async fn abandon_builtin_calls(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        active.builtin_queue.clear();
        active.current_call = None;
        active.shell_only = false;
        let turn_id = active.turn.id.clone();
        if let Some(approval) = active.approval.take() {
            self.server.requests.cancel(approval.request_id);
            self.announce_resolved(approval.request_id).await;
            self.set_waiting_on_approval(false).await;
            self.item_completed(&turn_id, declined(approval.command.item))
                .await;
        }
    }

    /// What a call's task reports to the mailbox when it is done.
    fn call_done(&self, call_id: String, tool: &'static str, session_id: Option<i32>) -> Reporter {
        Reporter {
            myself: self.myself.clone(),
            generation: self.active.as_ref().map_or(0, |a| a.generation),
            call_id,
            tool,
            session_id,
        }
    }

    /// `thread/backgroundTerminals/list`: the sessions still running.
    pub(super) fn background_terminals(&self) -> ThreadBackgroundTerminalsListResponse {
        let mut data: Vec<ThreadBackgroundTerminal> = self
            .commands
            .open
            .iter()
            .filter_map(|(session_id, open)| match &open.item {
                ThreadItem::CommandExecution {
                    id, command, cwd, ..
                } => Some(ThreadBackgroundTerminal {
                    item_id: id.clone(),
                    process_id: session_id.to_string(),
                    command: command.clone(),
                    cwd: cwd.clone(),
                    os_pid: None,
                }),
                _ => None,
            })
            .collect();
        data.sort_by(|a, b| a.process_id.cmp(&b.process_id));
        ThreadBackgroundTerminalsListResponse {
            data,
            next_cursor: None,
        }
    }

    /// `thread/backgroundTerminals/terminate`: kills one session (its item completes when the
    /// exit arrives).
    pub(super) async fn terminate_session(
        &mut self,
        process_id: &str,
    ) -> ThreadBackgroundTerminalsTerminateResponse {
        let Ok(session_id) = process_id.parse::<i32>() else {
            return ThreadBackgroundTerminalsTerminateResponse { terminated: false };
        };
        let terminated = self.commands.open.contains_key(&session_id)
            && self.commands.manager.terminate(session_id).await.is_ok();
        ThreadBackgroundTerminalsTerminateResponse { terminated }
    }

    /// `thread/backgroundTerminals/clean`: kills every session of the thread.
    pub(super) async fn clean_sessions(&mut self) {
        self.commands.manager.terminate_all().await;
    }

    /// Where a session's output and exit go: to the mailbox, in order.
    fn exec_events(&self) -> tether_exec::ExecEventSink {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let myself = self.myself.clone();
        tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                if myself.send(Command::Exec(event)).await.is_err() {
                    return;
                }
            }
        });
        Arc::new(move |event| {
            let _ = sender.send(event);
        })
    }

    /// A session printed something or exited.
    pub(super) async fn exec_event(&mut self, event: ExecEvent) {
        match event {
            ExecEvent::Output { session_id, chunk } => {
                let Some(open) = self.commands.open.get_mut(&session_id) else {
                    return;
                };
                let delta = open.decoder.decode(&chunk);
                if delta.is_empty() {
                    return;
                }
                let params = CommandExecutionOutputDeltaNotification {
                    thread_id: self.thread.id.clone(),
                    turn_id: open.turn_id.clone(),
                    item_id: open.item.id().to_owned(),
                    delta,
                };
                self.notify_subscribers(&params).await;
            }
            ExecEvent::Exited {
                session_id,
                exit_code,
                duration,
                aggregated_output,
            } => {
                let Some(open) = self.commands.open.remove(&session_id) else {
                    return;
                };
                let status = if exit_code == 0 {
                    CommandExecutionStatus::Completed
                } else {
                    CommandExecutionStatus::Failed
                };
                let item = completed(
                    open.item,
                    status,
                    Some(exit_code),
                    Some(aggregated_output),
                    Some(duration.as_millis() as i64),
                );
                self.command_completed(&open.turn_id, item).await;
                if let Some(output) = open.result_after_exit {
                    self.finish_current(&open.turn_id, output).await;
                }
                if open.user_shell {
                    self.end_shell_turn(&open.turn_id).await;
                }
            }
        }
    }

    /// `item/completed` for a command; it joins the turn's items when its turn still runs.
    async fn command_completed(&mut self, turn_id: &str, item: ThreadItem) {
        let running = self
            .active
            .as_ref()
            .is_some_and(|active| active.turn.id == turn_id);
        if running {
            self.item_completed(turn_id, item).await;
        } else {
            self.announce_item_completed(turn_id, item).await;
        }
    }

    /// A call's task finished: the model gets its output, after the item completed.
    pub(super) async fn call_done_received(&mut self, done: Box<CallDone>) {
        let Some(active) = self.active.as_ref() else {
            return;
        };
        let current = active.current_call.as_deref();
        if active.generation != done.generation || current != Some(done.call_id.as_str()) {
            return;
        }
        let turn_id = active.turn.id.clone();
        let output = match &done.outcome {
            Ok(outcome) => outcome.model_text(done.max_output_tokens, TRUNCATION),
            Err(err) => format!("{} failed: {err}", done.tool),
        };
        let exited_session = match &done.outcome {
            Ok(outcome) if outcome.exit_code.is_some() => done.session_id,
            _ => None,
        };
        if let Some(open) = exited_session.and_then(|id| self.commands.open.get_mut(&id)) {
            // The exit event is still on its way; the item completes first.
            open.result_after_exit = Some(output);
            return;
        }
        if let (Err(_), Some(session_id), EXEC_COMMAND) =
            (&done.outcome, done.session_id, done.tool)
            && let Some(open) = self.commands.open.remove(&session_id)
        {
            // It never started: no exit will come.
            let item = completed(open.item, CommandExecutionStatus::Failed, None, None, None);
            self.command_completed(&open.turn_id, item).await;
        }
        self.finish_current(&turn_id, output).await;
    }

    async fn finish_current(&mut self, turn_id: &str, output: String) {
        let Some(active) = self.active.as_ref() else {
            return;
        };
        if active.turn.id != turn_id {
            return;
        }
        let Some(call_id) = active.current_call.clone() else {
            return;
        };
        self.finish_call(&call_id, output).await;
    }

    /// The turn ends: an approval still asked for is withdrawn, and when it was interrupted its
    /// commands are killed (their items fail now; their exits are not waited for).
    pub(super) async fn end_commands(&mut self, turn_id: &str, status: TurnStatus) {
        let pending = self
            .active
            .as_mut()
            .and_then(|active| active.approval.take());
        if let Some(PendingApproval {
            request_id,
            command,
            ..
        }) = pending
        {
            self.server.requests.cancel(request_id);
            self.announce_resolved(request_id).await;
            self.item_completed(turn_id, declined(command.item)).await;
        }
        if status != TurnStatus::Interrupted {
            return;
        }
        let sessions: Vec<i32> = self
            .commands
            .open
            .iter()
            .filter(|(_, open)| open.turn_id == turn_id)
            .map(|(id, _)| *id)
            .collect();
        for session_id in sessions {
            let Some(open) = self.commands.open.remove(&session_id) else {
                continue;
            };
            let manager = Arc::clone(&self.commands.manager);
            tokio::spawn(async move {
                let _ = manager.terminate(session_id).await;
            });
            let item = completed(open.item, CommandExecutionStatus::Failed, None, None, None);
            self.item_completed(turn_id, item).await;
        }
    }
}

/// A command item as it starts.
fn command_item(
    id: String,
    argv: &[String],
    cwd: &std::path::Path,
    session_id: Option<i32>,
    source: CommandExecutionSource,
) -> ThreadItem {
    ThreadItem::CommandExecution {
        id,
        command: render_command(argv),
        cwd: cwd.display().to_string(),
        process_id: session_id.map(|id| id.to_string()),
        source,
        status: CommandExecutionStatus::InProgress,
        command_actions: tools::wire_actions(argv, cwd),
        aggregated_output: None,
        exit_code: None,
        duration_ms: None,
        started_at_ms: Some(now_ms()),
        completed_at_ms: None,
    }
}

fn declined(item: ThreadItem) -> ThreadItem {
    completed(item, CommandExecutionStatus::Declined, None, None, None)
}

fn completed(
    item: ThreadItem,
    new_status: CommandExecutionStatus,
    new_exit_code: Option<i32>,
    output: Option<String>,
    duration: Option<i64>,
) -> ThreadItem {
    match item {
        ThreadItem::CommandExecution {
            id,
            command,
            cwd,
            process_id,
            source,
            command_actions,
            started_at_ms,
            ..
        } => ThreadItem::CommandExecution {
            id,
            command,
            cwd,
            process_id,
            source,
            status: new_status,
            command_actions,
            aggregated_output: output,
            exit_code: new_exit_code,
            duration_ms: duration,
            started_at_ms,
            completed_at_ms: Some(now_ms()),
        },
        other => other,
    }
}

/// The running turn's items with its built-in calls at the points they were made.
pub(super) fn current_entries<'a>(
    items: &'a [ThreadItem],
    exchanges: &'a [ToolExchange],
) -> Vec<super::Entry<'a>> {
    let mut entries = Vec::new();
    let mut rest = exchanges;
    for (index, item) in items.iter().enumerate() {
        let due = rest.iter().take_while(|e| e.at <= index).count();
        if due > 0 {
            entries.push(super::Entry::Exchanges(&rest[..due]));
            rest = &rest[due..];
        }
        entries.push(super::Entry::Item(item, false));
    }
    if !rest.is_empty() {
        entries.push(super::Entry::Exchanges(rest));
    }
    entries
}

/// Calls made together go back as all the calls, then all their outputs (a call still in
/// progress has no output yet and is left out).
pub(super) fn replay_exchanges(exchanges: &[ToolExchange], input: &mut Vec<InputItem>) {
    let done = || exchanges.iter().filter(|e| e.output.is_some());
    for exchange in done() {
        input.push(InputItem::FunctionCall {
            call_id: exchange.call.call_id.clone(),
            name: exchange.call.name.clone(),
            arguments: exchange.call.arguments.clone(),
        });
    }
    for exchange in done() {
        input.push(InputItem::FunctionCallOutput {
            call_id: exchange.call.call_id.clone(),
            output: exchange.output.clone().unwrap_or_default(),
        });
    }
}

/// A user's `!command` as the model hears of it: a user message with the command and its
/// result, in codex's form.
pub(super) fn replay_user_shell(item: &ThreadItem, input: &mut Vec<InputItem>) {
    let ThreadItem::CommandExecution {
        command,
        aggregated_output,
        exit_code,
        duration_ms,
        ..
    } = item
    else {
        return;
    };
    // The item shows the shell line; the model is told the command as the user typed it.
    let typed = shlex::split(command)
        .and_then(|argv| argv.last().cloned())
        .unwrap_or_else(|| command.clone());
    let seconds = duration_ms.unwrap_or_default() as f64 / 1000.0;
    let text = format!(
        "<user_shell_command>\n<command>\n{typed}\n</command>\n<result>\nExit code: {}\nDuration: {seconds:.4} seconds\nOutput:\n{}\n</result>\n</user_shell_command>",
        exit_code.unwrap_or(-1),
        aggregated_output.as_deref().unwrap_or_default()
    );
    input.push(InputItem::text(tether_upstream::Role::User, text));
}

/// A command of an earlier turn, as a call and its result (the exact output text of the
/// time is not kept past its turn).
pub(super) fn replay_past_command(item: &ThreadItem, input: &mut Vec<InputItem>) {
    let ThreadItem::CommandExecution {
        id,
        command,
        status,
        aggregated_output,
        exit_code,
        ..
    } = item
    else {
        return;
    };
    let output = match (status, exit_code) {
        (CommandExecutionStatus::Declined, _) => tools::rejected("rejected by user"),
        (_, Some(code)) => {
            let text = aggregated_output.as_deref().unwrap_or_default();
            let text = tether_exec::formatted_truncate_text(text, TRUNCATION);
            format!("Process exited with code {code}\nOutput:\n{text}")
        }
        (_, None) => "Process did not finish".to_owned(),
    };
    input.push(InputItem::FunctionCall {
        call_id: id.clone(),
        name: EXEC_COMMAND.to_owned(),
        arguments: serde_json::json!({ "cmd": command }).to_string(),
    });
    input.push(InputItem::FunctionCallOutput {
        call_id: id.clone(),
        output,
    });
}
