//! Typed dispatch of client requests. The generic checks run once, in the protocol's order
//! (decode, initialized, experimental, transport), then the method's handler runs with a
//! [`Ctx`] and its typed params. A handler either returns its result, which the dispatcher
//! sends, or (for requests a thread actor answers, so the answer is ordered with the thread's
//! events) hands its [`Reply`] on. Handlers never see the request id or the outbox.

use std::sync::Arc;

use tether_protocol::{
    ClientRequest, InitializeParams, InitializeResponse, Method, Outgoing, RequestId, Route,
    Serialization, Transports, methods,
};
use tracing::Instrument as _;

use crate::Server;
use crate::connection::{Connection, Origin, Session};
use crate::error::ServerError;
use crate::reply::{Reply, Responder};
use crate::trace::Trace;
use crate::user_agent::user_agent;

/// What a handler may use: the server, the calling connection and the request's trace.
#[derive(Clone)]
pub struct Ctx {
    /// The server.
    pub server: Arc<Server>,
    /// The connection that sent the request.
    pub connection: Arc<Connection>,
    /// The request's span and trace context.
    pub trace: Trace,
}

/// Applies the generic checks and runs the handler of `method`. Every request gets exactly one
/// answer, from here or from whoever its [`Reply`] was handed to.
pub async fn request(
    server: &Arc<Server>,
    connection: &Arc<Connection>,
    id: RequestId,
    method: &str,
    params: Option<serde_json::Value>,
    trace: Trace,
) {
    let responder = Responder::new(id, Arc::clone(connection));
    let request = match checked(connection, method, params) {
        Ok(request) => request,
        Err(error) => return responder.error(&error).await,
    };
    let ctx = Ctx {
        server: Arc::clone(server),
        connection: Arc::clone(connection),
        trace,
    };
    use crate::catalog;
    use crate::command_exec;
    use crate::threads;
    use ClientRequest as R;
    match request {
        R::Initialize(params) => initialize(ctx, params, Reply::new(responder)).await,
        R::ThreadStart(p) => defer::<methods::ThreadStart>(ctx, p, responder, threads::start).await,
        R::ThreadResume(p) => {
            defer::<methods::ThreadResume>(ctx, p, responder, threads::resume).await
        }
        R::ThreadFork(p) => defer::<methods::ThreadFork>(ctx, p, responder, threads::fork).await,
        R::ThreadArchive(p) => {
            answer::<methods::ThreadArchive, _, _>(ctx, p, responder, threads::archive).await
        }
        R::ThreadDelete(p) => {
            defer::<methods::ThreadDelete>(ctx, p, responder, threads::delete).await
        }
        R::ThreadUnsubscribe(p) => {
            defer::<methods::ThreadUnsubscribe>(ctx, p, responder, threads::unsubscribe).await
        }
        R::ThreadNameSet(p) => {
            defer::<methods::ThreadNameSet>(ctx, p, responder, threads::name_set).await
        }
        R::ThreadGoalSet(p) => {
            defer::<methods::ThreadGoalSet>(ctx, p, responder, threads::goal_set).await
        }
        R::ThreadGoalGet(p) => {
            defer::<methods::ThreadGoalGet>(ctx, p, responder, threads::goal_get).await
        }
        R::ThreadGoalClear(p) => {
            defer::<methods::ThreadGoalClear>(ctx, p, responder, threads::goal_clear).await
        }
        R::ThreadMetadataUpdate(p) => {
            defer::<methods::ThreadMetadataUpdate>(ctx, p, responder, threads::metadata_update)
                .await
        }
        R::ThreadUnarchive(p) => {
            answer::<methods::ThreadUnarchive, _, _>(ctx, p, responder, threads::unarchive).await
        }
        R::ThreadCompactStart(p) => {
            defer::<methods::ThreadCompactStart>(ctx, p, responder, threads::compact).await
        }
        R::ThreadShellCommand(p) => {
            defer::<methods::ThreadShellCommand>(ctx, p, responder, threads::shell_command).await
        }
        R::ThreadBackgroundTerminalsList(p) => {
            let handler = threads::background_terminals;
            defer::<methods::ThreadBackgroundTerminalsList>(ctx, p, responder, handler).await
        }
        R::ThreadBackgroundTerminalsTerminate(p) => {
            let handler = threads::terminate_background_terminal;
            defer::<methods::ThreadBackgroundTerminalsTerminate>(ctx, p, responder, handler).await
        }
        R::ThreadBackgroundTerminalsClean(p) => {
            let handler = threads::clean_background_terminals;
            defer::<methods::ThreadBackgroundTerminalsClean>(ctx, p, responder, handler).await
        }
        R::ThreadRevert(p) => {
            defer::<methods::ThreadRevert>(ctx, p, responder, threads::revert).await
        }
        R::ThreadList(p) => {
            answer::<methods::ThreadList, _, _>(ctx, p, responder, threads::list).await
        }
        R::ThreadLoadedList(p) => {
            answer::<methods::ThreadLoadedList, _, _>(ctx, p, responder, threads::loaded_list).await
        }
        R::ThreadRead(p) => defer::<methods::ThreadRead>(ctx, p, responder, threads::read).await,
        R::ThreadReadStateUpdate(p) => {
            defer::<methods::ThreadReadStateUpdate>(ctx, p, responder, threads::read_state_update)
                .await
        }
        R::ThreadTurnsList(p) => {
            defer::<methods::ThreadTurnsList>(ctx, p, responder, threads::turns_list).await
        }
        R::ThreadItemsList(p) => {
            defer::<methods::ThreadItemsList>(ctx, p, responder, threads::items_list).await
        }
        R::SkillsList(p) => {
            answer::<methods::SkillsList, _, _>(ctx, p, responder, catalog::skills).await
        }
        R::HooksList(p) => {
            answer::<methods::HooksList, _, _>(ctx, p, responder, catalog::hooks).await
        }
        R::PluginInstalled(p) => {
            answer::<methods::PluginInstalled, _, _>(ctx, p, responder, catalog::plugins).await
        }
        R::TurnStart(p) => {
            defer::<methods::TurnStart>(ctx, p, responder, threads::turn_start).await
        }
        R::TurnSteer(p) => defer::<methods::TurnSteer>(ctx, p, responder, threads::steer).await,
        R::TurnInterrupt(p) => {
            defer::<methods::TurnInterrupt>(ctx, p, responder, threads::interrupt).await
        }
        R::ModelList(p) => {
            answer::<methods::ModelList, _, _>(ctx, p, responder, catalog::model_list).await
        }
        R::ExperimentalFeatureList(p) => {
            answer::<methods::ExperimentalFeatureList, _, _>(ctx, p, responder, catalog::features)
                .await
        }
        R::CollaborationModeList(p) => {
            answer::<methods::CollaborationModeList, _, _>(
                ctx,
                p,
                responder,
                catalog::collaboration_modes,
            )
            .await
        }
        R::AccountLoginStart(p) => {
            answer::<methods::AccountLoginStart, _, _>(ctx, p, responder, catalog::login).await
        }
        R::AccountBedrockCheckGovCloudRequirements(p) => {
            answer::<methods::AccountBedrockCheckGovCloudRequirements, _, _>(
                ctx,
                p,
                responder,
                catalog::bedrock_check,
            )
            .await
        }
        R::AccountLogout(p) => {
            answer::<methods::AccountLogout, _, _>(ctx, p, responder, catalog::logout).await
        }
        R::AccountRateLimitsRead(p) => {
            answer::<methods::AccountRateLimitsRead, _, _>(ctx, p, responder, catalog::rate_limits)
                .await
        }
        R::CommandExec(p) => {
            defer::<methods::CommandExec>(ctx, p, responder, command_exec::start).await
        }
        R::CommandExecWrite(p) => {
            answer::<methods::CommandExecWrite, _, _>(ctx, p, responder, command_exec::write).await
        }
        R::CommandExecTerminate(p) => {
            answer::<methods::CommandExecTerminate, _, _>(
                ctx,
                p,
                responder,
                command_exec::terminate,
            )
            .await
        }
        R::CommandExecResize(p) => {
            answer::<methods::CommandExecResize, _, _>(ctx, p, responder, command_exec::resize)
                .await
        }
        R::ConfigRead(p) => {
            answer::<methods::ConfigRead, _, _>(ctx, p, responder, catalog::config_read).await
        }
        R::ConfigValueWrite(p) => {
            answer::<methods::ConfigValueWrite, _, _>(ctx, p, responder, catalog::config_write)
                .await
        }
        R::ConfigBatchWrite(p) => {
            answer::<methods::ConfigBatchWrite, _, _>(
                ctx,
                p,
                responder,
                catalog::config_batch_write,
            )
            .await
        }
        R::ConfigRequirementsRead(p) => {
            answer::<methods::ConfigRequirementsRead, _, _>(
                ctx,
                p,
                responder,
                catalog::requirements,
            )
            .await
        }
        R::AccountRead(p) => {
            answer::<methods::AccountRead, _, _>(ctx, p, responder, catalog::account_read).await
        }
        R::TetherStatus(p) => {
            answer::<methods::TetherStatus, _, _>(ctx, p, responder, crate::status::handle).await
        }
        R::DeviceKeyCreate(p) => {
            answer::<methods::DeviceKeyCreate, _, _>(ctx, p, responder, crate::device_keys::create)
                .await
        }
        R::DeviceKeyPublic(p) => {
            answer::<methods::DeviceKeyPublic, _, _>(ctx, p, responder, crate::device_keys::public)
                .await
        }
        R::DeviceKeySign(p) => {
            answer::<methods::DeviceKeySign, _, _>(ctx, p, responder, crate::device_keys::sign)
                .await
        }
    }
}

/// Decode, then initialization, then the experimental gate, then the transport.
fn checked(
    connection: &Connection,
    method: &str,
    params: Option<serde_json::Value>,
) -> Result<ClientRequest, ServerError> {
    let request = ClientRequest::decode(method, params)
        .map_err(|err| ServerError::invalid(format!("Invalid request: {err}")))?;
    if matches!(request, ClientRequest::Initialize(_)) {
        return Ok(request);
    }
    let Some(session) = connection.session() else {
        return Err(ServerError::invalid("Not initialized"));
    };
    let spec = request.spec();
    let experimental = if spec.experimental {
        Some(spec.name)
    } else {
        request.experimental_use()
    };
    if let Some(member) = experimental
        && !session.experimental_api
    {
        return Err(ServerError::invalid(format!(
            "{member} requires experimentalApi capability"
        )));
    }
    if let Route::Local(transports) = spec.route
        && !serves(transports, connection.origin())
    {
        return Err(ServerError::invalid(format!(
            "{} is not available over remote transports",
            spec.name
        )));
    }
    Ok(request)
}

fn serves(transports: Transports, origin: Origin) -> bool {
    match transports {
        Transports::Owner => origin != Origin::WebSocket,
        Transports::Stdio => origin == Origin::Stdio,
    }
}

/// Runs a handler that returns its result, in order or on its own task as the table says, and
/// sends the result.
async fn answer<M, F, Fut>(ctx: Ctx, params: M::Params, responder: Responder, handler: F)
where
    M: Method,
    F: FnOnce(Ctx, M::Params) -> Fut,
    Fut: Future<Output = Result<M::Response, ServerError>> + Send + 'static,
{
    let reply = Reply::<M>::new(responder);
    let tasks = ctx.server.tasks.clone();
    let span = ctx.trace.span.clone();
    let run = handler(ctx, params);
    let answered = async move { reply.send(run.await).await };
    match M::SERIALIZATION {
        Serialization::InOrder => answered.await,
        Serialization::Concurrent => {
            tasks.spawn(answered.instrument(span));
        }
    }
}

/// Runs a handler that answers through the [`Reply`] it is given (usually by handing it to a
/// thread's actor).
async fn defer<M: Method>(
    ctx: Ctx,
    params: M::Params,
    responder: Responder,
    handler: impl AsyncFnOnce(Ctx, M::Params, Reply<M>),
) {
    handler(ctx, params, Reply::new(responder)).await
}

async fn initialize(ctx: Ctx, params: InitializeParams, reply: Reply<methods::Initialize>) {
    let connection = &ctx.connection;
    if connection.session().is_some() {
        return reply
            .error(ServerError::invalid("Already initialized"))
            .await;
    }
    let name = &params.client_info.name;
    if http::HeaderValue::from_str(name).is_err() {
        return reply
            .error(ServerError::invalid(format!(
                "Invalid clientInfo.name: '{name}'. Must be a valid HTTP header value."
            )))
            .await;
    }
    let response = InitializeResponse {
        user_agent: user_agent(&params.client_info),
        codex_home: ctx.server.home_dir.clone(),
        platform_family: std::env::consts::FAMILY.to_owned(),
        platform_os: std::env::consts::OS.to_owned(),
    };
    let session = Session::new(name, params.capabilities);
    // The response is queued before the connection counts as initialized, so no broadcast can
    // overtake it. Requests of this connection wait for this one: nothing sees the gap.
    reply.ok(response).await;
    for warning in &ctx.server.config_warnings {
        connection.send(Outgoing::notify(warning)).await;
    }
    connection.initialize(session);
    tracing::info!(connection = connection.id(), client = %name, "initialized");
}
