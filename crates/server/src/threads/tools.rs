//! The agent's built-in tools as the model sees them (their declarations and arguments) and
//! the approval rule deciding whether a command runs, asks, or is refused. Pure: no processes,
//! no I/O; the actor runs what these functions decide.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;
use tether_protocol::{AskForApproval, CommandAction, CommandExecutionApprovalDecision};
use tether_upstream::Tool;

/// The built-in tools.
pub(crate) const EXEC_COMMAND: &str = "exec_command";
pub(crate) const WRITE_STDIN: &str = "write_stdin";
pub(crate) const UPDATE_PLAN: &str = "update_plan";

/// What a thread runs with unless its client says otherwise (from `config.toml`).
#[derive(Clone, Debug, Default)]
pub(crate) struct ThreadDefaults {
    pub tools: ToolSwitches,
    /// `approval_policy`.
    pub approval_policy: Option<AskForApproval>,
    /// `sandbox_mode`.
    pub sandbox: Option<tether_protocol::SandboxMode>,
}

/// Which built-in tools are declared (`[features] shell_tool`, `[tools.update_plan] enabled`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ToolSwitches {
    pub shell_tool: bool,
    pub update_plan: bool,
}

impl Default for ToolSwitches {
    fn default() -> ToolSwitches {
        ToolSwitches {
            shell_tool: true,
            update_plan: false,
        }
    }
}

impl ToolSwitches {
    /// Whether `name` is a built-in tool this thread declares.
    pub fn is_builtin(&self, name: &str) -> bool {
        match name {
            EXEC_COMMAND | WRITE_STDIN => self.shell_tool,
            UPDATE_PLAN => self.update_plan,
            _ => false,
        }
    }

    /// The declarations, in codex's order.
    pub fn declarations(&self) -> Vec<Tool> {
        let mut tools = Vec::new();
        if self.shell_tool {
            tools.push(exec_command_tool());
            tools.push(write_stdin_tool());
        }
        if self.update_plan {
            tools.push(update_plan_tool());
        }
        tools
    }
}

fn exec_command_tool() -> Tool {
    Tool::Function {
        name: EXEC_COMMAND.to_owned(),
        description:
            "Runs a command in a PTY, returning output or a session ID for ongoing interaction."
                .to_owned(),
        parameters: json!({
            "type": "object",
            "properties": {
                "cmd": {"type": "string", "description": "The shell command to run."},
                "workdir": {"type": "string", "description": "Directory to run it in; the turn's cwd when left out."},
                "shell": {"type": "string", "description": "Shell binary to launch. Defaults to the user's default shell."},
                "tty": {"type": "boolean", "description": "Allocate a TTY (keeps stdin open for write_stdin). Defaults to false: plain pipes."},
                "yield_time_ms": {"type": "number", "description": "How long to wait (in milliseconds) for output before returning."},
                "max_output_tokens": {"type": "number", "description": "Maximum number of tokens to return; more output is truncated."},
                "login": {"type": "boolean", "description": "Whether to run the shell with -l/-i semantics. Defaults to true."},
                "sandbox_permissions": {"type": "string", "enum": ["use_default", "require_escalated"], "description": "Use \"require_escalated\" to ask to run outside the sandbox."},
                "justification": {"type": "string", "description": "Why escalation is needed, shown to the user with the approval request."},
                "prefix_rule": {"type": "array", "items": {"type": "string"}, "description": "A command prefix the user could allow from now on."}
            },
            "required": ["cmd"],
            "additionalProperties": false
        }),
        strict: false,
    }
}

fn write_stdin_tool() -> Tool {
    Tool::Function {
        name: WRITE_STDIN.to_owned(),
        description:
            "Writes characters to an existing unified exec session and returns recent output."
                .to_owned(),
        parameters: json!({
            "type": "object",
            "properties": {
                "session_id": {"type": "number", "description": "Identifier of the running unified exec session."},
                "chars": {"type": "string", "description": "Bytes to write to stdin (may be empty to poll)."},
                "yield_time_ms": {"type": "number", "description": "How long to wait (in milliseconds) for output before returning."},
                "max_output_tokens": {"type": "number", "description": "Maximum number of tokens to return; more output is truncated."}
            },
            "required": ["session_id"],
            "additionalProperties": false
        }),
        strict: false,
    }
}

fn update_plan_tool() -> Tool {
    Tool::Function {
        name: UPDATE_PLAN.to_owned(),
        description: "Updates the task plan.\nGive an optional explanation and the list of steps, each with its status.\nNo more than one step may be in_progress at once.\n".to_owned(),
        parameters: json!({
            "type": "object",
            "properties": {
                "explanation": {"type": "string"},
                "plan": {
                    "type": "array",
                    "description": "The steps",
                    "items": {
                        "type": "object",
                        "properties": {
                            "step": {"type": "string"},
                            "status": {"type": "string", "description": "One of: pending, in_progress, completed", "enum": ["pending", "in_progress", "completed"]}
                        },
                        "required": ["step", "status"],
                        "additionalProperties": false
                    }
                }
            },
            "required": ["plan"],
            "additionalProperties": false
        }),
        strict: false,
    }
}

/// `exec_command`'s arguments.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ExecCommandArgs {
    pub cmd: String,
    pub workdir: Option<String>,
    pub shell: Option<String>,
    #[serde(default)]
    pub tty: bool,
    pub yield_time_ms: Option<u64>,
    pub max_output_tokens: Option<usize>,
    pub login: Option<bool>,
    #[serde(default)]
    pub sandbox_permissions: SandboxPermissions,
    pub justification: Option<String>,
}

impl ExecCommandArgs {
    /// The directory the command runs in: `workdir` resolved against the thread's cwd.
    pub fn cwd(&self, thread_cwd: &Path) -> PathBuf {
        match &self.workdir {
            Some(dir) => thread_cwd.join(dir),
            None => thread_cwd.to_owned(),
        }
    }

    /// The argv: the shell (`/bin/bash` unless the model named one) running `cmd`.
    pub fn argv(&self) -> Vec<String> {
        let shell = self.shell.as_deref().unwrap_or(DEFAULT_SHELL);
        tether_exec::shell_argv(shell, self.login.unwrap_or(true), &self.cmd)
    }
}

const DEFAULT_SHELL: &str = "/bin/bash";

/// Whether the model asked to leave the sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SandboxPermissions {
    #[default]
    UseDefault,
    RequireEscalated,
}

/// `write_stdin`'s arguments.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct WriteStdinArgs {
    pub session_id: i32,
    #[serde(default)]
    pub chars: String,
    pub yield_time_ms: Option<u64>,
    pub max_output_tokens: Option<usize>,
}

/// `update_plan`'s arguments.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct UpdatePlanArgs {
    pub explanation: Option<String>,
    pub plan: Vec<PlanStepArg>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct PlanStepArg {
    pub step: String,
    pub status: PlanStatusArg,
}

/// A plan step's status as the model writes it (`in_progress`; the wire says `inProgress`).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PlanStatusArg {
    Pending,
    InProgress,
    Completed,
}

impl From<PlanStatusArg> for tether_protocol::TurnPlanStepStatus {
    fn from(status: PlanStatusArg) -> Self {
        match status {
            PlanStatusArg::Pending => Self::Pending,
            PlanStatusArg::InProgress => Self::InProgress,
            PlanStatusArg::Completed => Self::Completed,
        }
    }
}

/// Parses a tool's JSON arguments; the error is the text the model gets back.
pub(crate) fn parse_arguments<T: for<'de> Deserialize<'de>>(arguments: &str) -> Result<T, String> {
    serde_json::from_str(arguments)
        .map_err(|err| format!("failed to parse function arguments: {err}"))
}

/// What happens to a command the model wants to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ExecPlan {
    /// Run it now; `escalated` runs it outside the sandbox.
    Run { escalated: bool },
    /// Ask the user first; if accepted, run it (`escalated`: outside the sandbox).
    Ask { escalated: bool },
    /// Refuse it; the text goes back to the model.
    Refuse(String),
}

/// The approval rule: what `policy` says about a command that asks for `permissions`, when the
/// same command was or was not accepted for the session already.
pub(crate) fn plan_exec(
    policy: &AskForApproval,
    permissions: SandboxPermissions,
    approved_for_session: bool,
) -> ExecPlan {
    let escalated = permissions == SandboxPermissions::RequireEscalated;
    if approved_for_session {
        return ExecPlan::Run { escalated };
    }
    match policy {
        AskForApproval::Untrusted => ExecPlan::Ask { escalated },
        AskForApproval::OnRequest if escalated => ExecPlan::Ask { escalated },
        AskForApproval::Granular(granular) if escalated && granular.sandbox_approval => {
            ExecPlan::Ask { escalated }
        }
        AskForApproval::OnRequest | AskForApproval::Granular(_) | AskForApproval::Never
            if !escalated =>
        {
            ExecPlan::Run { escalated: false }
        }
        AskForApproval::Never | AskForApproval::Granular(_) => ExecPlan::Refuse(rejected(
            "approval policy does not allow running outside the sandbox",
        )),
        AskForApproval::OnRequest => unreachable!("escalated on-request asks above"),
    }
}

/// The tool output of a command that did not run because of approvals, in codex's form.
pub(crate) fn rejected(reason: &str) -> String {
    format!("exec_command failed: CreateProcess {{ message: \"Rejected(\\\"{reason}\\\")\" }}")
}

/// The decisions offered with a command approval request, as codex offers them (a client may
/// still answer `acceptForSession` or `decline`).
pub(crate) fn available_decisions(amendment: &[String]) -> Vec<CommandExecutionApprovalDecision> {
    vec![
        CommandExecutionApprovalDecision::Accept,
        CommandExecutionApprovalDecision::AcceptWithExecpolicyAmendment {
            execpolicy_amendment: amendment.to_vec(),
        },
        CommandExecutionApprovalDecision::Cancel,
    ]
}

/// The rule an approval could add: the words of the command the model wrote.
pub(crate) fn proposed_amendment(cmd: &str) -> Vec<String> {
    shlex::split(cmd).unwrap_or_else(|| vec![cmd.to_owned()])
}

/// The exec crate's command summary on the wire.
pub(crate) fn wire_actions(argv: &[String], cwd: &Path) -> Vec<CommandAction> {
    tether_exec::command_actions(argv, cwd)
        .into_iter()
        .map(|action| match action {
            tether_exec::CommandAction::Read {
                command,
                name,
                path,
            } => CommandAction::Read {
                command,
                name,
                path: path.display().to_string(),
            },
            tether_exec::CommandAction::ListFiles { command, path } => {
                CommandAction::ListFiles { command, path }
            }
            tether_exec::CommandAction::Search {
                command,
                query,
                path,
            } => CommandAction::Search {
                command,
                query,
                path,
            },
            tether_exec::CommandAction::Unknown { command } => CommandAction::Unknown { command },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::GranularApproval;

    const USE_DEFAULT: SandboxPermissions = SandboxPermissions::UseDefault;
    const ESCALATED: SandboxPermissions = SandboxPermissions::RequireEscalated;

    fn granular(sandbox_approval: bool) -> AskForApproval {
        AskForApproval::Granular(GranularApproval {
            sandbox_approval,
            rules: false,
            mcp_elicitations: false,
            request_permissions: false,
            skill_approval: false,
        })
    }

    #[test]
    fn never_runs_in_the_sandbox_and_refuses_escalation() {
        let never = AskForApproval::Never;
        assert_eq!(
            plan_exec(&never, USE_DEFAULT, false),
            ExecPlan::Run { escalated: false }
        );
        assert!(matches!(
            plan_exec(&never, ESCALATED, false),
            ExecPlan::Refuse(text) if text.starts_with("exec_command failed: CreateProcess")
        ));
    }

    #[test]
    fn on_request_asks_only_to_leave_the_sandbox() {
        let policy = AskForApproval::OnRequest;
        assert_eq!(
            plan_exec(&policy, USE_DEFAULT, false),
            ExecPlan::Run { escalated: false }
        );
        assert_eq!(
            plan_exec(&policy, ESCALATED, false),
            ExecPlan::Ask { escalated: true }
        );
        assert_eq!(
            plan_exec(&policy, ESCALATED, true),
            ExecPlan::Run { escalated: true }
        );
    }

    #[test]
    fn untrusted_asks_for_every_command_not_yet_accepted_for_the_session() {
        let policy = AskForApproval::Untrusted;
        assert_eq!(
            plan_exec(&policy, USE_DEFAULT, false),
            ExecPlan::Ask { escalated: false }
        );
        assert_eq!(
            plan_exec(&policy, USE_DEFAULT, true),
            ExecPlan::Run { escalated: false }
        );
    }

    #[test]
    fn granular_asks_to_escalate_only_when_sandbox_approval_is_on() {
        assert_eq!(
            plan_exec(&granular(true), ESCALATED, false),
            ExecPlan::Ask { escalated: true }
        );
        assert!(matches!(
            plan_exec(&granular(false), ESCALATED, false),
            ExecPlan::Refuse(_)
        ));
        assert_eq!(
            plan_exec(&granular(false), USE_DEFAULT, false),
            ExecPlan::Run { escalated: false }
        );
    }

    #[test]
    fn the_rejection_text_is_codexs() {
        assert_eq!(
            rejected("rejected by user"),
            r#"exec_command failed: CreateProcess { message: "Rejected(\"rejected by user\")" }"#
        );
    }

    #[test]
    fn switches_declare_tools_in_codexs_order() {
        let names = |switches: ToolSwitches| -> Vec<String> {
            switches
                .declarations()
                .into_iter()
                .map(|tool| match tool {
                    Tool::Function { name, .. } | Tool::Namespace { name, .. } => name,
                })
                .collect()
        };
        assert_eq!(
            names(ToolSwitches::default()),
            ["exec_command", "write_stdin"]
        );
        let all = ToolSwitches {
            shell_tool: true,
            update_plan: true,
        };
        assert_eq!(names(all), ["exec_command", "write_stdin", "update_plan"]);
        let none = ToolSwitches {
            shell_tool: false,
            update_plan: false,
        };
        assert!(names(none).is_empty());
        assert!(!none.is_builtin("exec_command"));
    }

    #[test]
    fn arguments_parse_with_codexs_defaults() {
        let args: ExecCommandArgs = parse_arguments(r#"{"cmd":"echo hi"}"#).unwrap();
        assert_eq!(args.argv(), ["/bin/bash", "-lc", "echo hi"]);
        assert!(!args.tty);
        assert_eq!(args.sandbox_permissions, USE_DEFAULT);
        assert_eq!(args.cwd(Path::new("/w")), Path::new("/w"));
        let args: ExecCommandArgs =
            parse_arguments(r#"{"cmd":"ls","workdir":"sub","login":false}"#).unwrap();
        assert_eq!(args.argv(), ["/bin/bash", "-c", "ls"]);
        assert_eq!(args.cwd(Path::new("/w")), Path::new("/w/sub"));
        let err = parse_arguments::<ExecCommandArgs>("{}").unwrap_err();
        assert!(
            err.starts_with("failed to parse function arguments"),
            "{err}"
        );
    }
}
