//! The real Codex TUI (codex-cli 0.169.0, installed by scripts/setup-clients.sh) driven in a
//! pseudo-terminal against `tether app-server`, over `ws://` and `unix://`, with a loopback
//! Responses upstream that echoes the user's text. Screens are checked by their text.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tether_testkit::{
    COMPOSER_PLACEHOLDER, CTRL_C, Clients, ESC, ResponsesServer, Script, Step, TetherProcess, Tui,
    codex_config, last_user_text, message_response,
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
/// Long enough for a TUI start on a loaded machine; waits end as soon as the screen shows it.
const WAIT: Duration = Duration::from_secs(30);
/// The empty composer.
const COMPOSER: &str = COMPOSER_PLACEHOLDER;

/// Answers each model request with `Echo: <the user's last text>`; a text containing `hang`
/// gets a response that starts and never ends (to be interrupted).
fn echo(body: &Value) -> Script {
    let text = last_user_text(body).unwrap_or_default();
    if text.contains("hang") {
        return Script::Stream(vec![
            Step::Event(json!({"type": "response.created", "response": {"id": "r-hang"}})),
            Step::Hang,
        ]);
    }
    // The TUI's title request quotes the whole prompt: keep the echo short and on one line.
    let short: String = text.chars().take(40).filter(|c| *c != '\n').collect();
    Script::Stream(message_response("r-echo", &[&format!("Echo: {short}")]))
}

struct Setup {
    clients: Clients,
    upstream: ResponsesServer,
    home: tempfile::TempDir,
}

async fn setup() -> Setup {
    let clients = Clients::require();
    let upstream = ResponsesServer::start().await;
    upstream.respond_with(echo);
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("config.toml"),
        codex_config(&upstream.base_url()),
    )
    .unwrap();
    Setup {
        clients,
        upstream,
        home,
    }
}

async fn start_tether(home: &Path, listen: &str) -> TetherProcess {
    TetherProcess::start_app_server(
        Path::new(TETHER),
        home,
        &["--listen", listen],
        &[("MOCK_API_KEY", "mock-key")],
    )
    .await
}

/// The `--remote` URL of a running tether.
fn remote(tether: &TetherProcess, listen: &str) -> String {
    if listen.starts_with("unix://") {
        format!("unix://{}", tether.unix_path().display())
    } else {
        format!("ws://{}", tether.ws_address())
    }
}

/// Waits for the composer (with the configured model in its footer) and checks that no error
/// cell came before it.
async fn wait_ready(tui: &mut Tui) {
    tui.wait_for_composer("mock-model", WAIT).await.unwrap();
    let screen = tui.screen_text();
    assert!(
        !screen.contains('■') && !screen.contains("rror"),
        "an error cell at startup:\n{screen}"
    );
}

/// Submits `prompt` and waits for its echo and, after it, the turn's `Worked for` line.
async fn answered_turn(tui: &mut Tui, prompt: &str) {
    tui.submit(prompt, WAIT).await.unwrap();
    let echo = format!("Echo: {prompt}");
    tui.wait_until(&format!("{echo:?}, then 'Worked for'"), WAIT, |screen| {
        screen
            .rsplit_once(&echo)
            .is_some_and(|(_, after)| after.contains("Worked for"))
    })
    .await
    .unwrap();
}

/// `/quit`: exit 0 and the hint to resume; returns the thread id from the hint.
async fn quit(tui: &mut Tui) -> String {
    tui.submit("/quit", WAIT).await.unwrap();
    let code = tui.wait_exit(WAIT).await.unwrap();
    let screen = tui.screen_text();
    assert_eq!(code, 0, "{screen}");
    resume_hint_thread(&screen)
}

/// The thread id of the `codex --remote … resume <id>` hint the TUI prints when it quits.
fn resume_hint_thread(screen: &str) -> String {
    let after = screen
        .split_once(" resume ")
        .unwrap_or_else(|| panic!("no resume hint:\n{screen}"))
        .1;
    let id = after.split_whitespace().next().unwrap().to_owned();
    assert!(screen.contains("codex --remote "), "{screen}");
    id
}

/// Startup, two answered turns, Esc interrupt, `/new` and a turn, the `/resume` picker, `/quit`.
async fn full_session(listen: &str) {
    let setup = setup().await;
    let tether = start_tether(setup.home.path(), listen).await;
    let mut tui = Tui::start(&setup.clients, &["--remote", &remote(&tether, listen)]);
    wait_ready(&mut tui).await;

    answered_turn(&mut tui, "first question").await;
    answered_turn(&mut tui, "second question").await;

    tui.submit("please hang", WAIT).await.unwrap();
    tui.wait_for_text("esc to interrupt", WAIT).await.unwrap();
    tui.send_keys(ESC);
    tui.wait_for_text("■ Conversation interrupted", WAIT)
        .await
        .unwrap();

    tui.submit("/new", WAIT).await.unwrap();
    tui.wait_until("a fresh session", WAIT, |screen| {
        !screen.contains("second question") && screen.contains(COMPOSER)
    })
    .await
    .unwrap();
    answered_turn(&mut tui, "after new").await;

    tui.submit("/resume", WAIT).await.unwrap();
    tui.wait_until("the picker with both sessions", WAIT, |screen| {
        screen.contains("Resume a previous session")
            && screen.contains("after new")
            && screen.contains("first question")
    })
    .await
    .unwrap();
    tui.send_keys(ESC);
    tui.wait_until("the picker closed", WAIT, |screen| {
        !screen.contains("Resume a previous session") && screen.contains(COMPOSER)
    })
    .await
    .unwrap();

    quit(&mut tui).await;
    assert!(
        setup.upstream.requests().len() >= 4,
        "the turns reached the upstream"
    );
}

#[tokio::test]
async fn tui_session_over_websocket() {
    full_session("ws://127.0.0.1:0").await;
}

#[tokio::test]
async fn tui_session_over_unix_socket() {
    let socket_dir = tempfile::tempdir().unwrap();
    let listen = format!("unix://{}", socket_dir.path().join("tether.sock").display());
    full_session(&listen).await;
}

#[tokio::test]
async fn tui_resumes_a_thread_after_a_tether_restart() {
    let setup = setup().await;
    let mut tether = start_tether(setup.home.path(), "ws://127.0.0.1:0").await;
    let mut tui = Tui::start(&setup.clients, &["--remote", &remote(&tether, "ws://")]);
    wait_ready(&mut tui).await;
    answered_turn(&mut tui, "remember the tide").await;
    let thread_id = quit(&mut tui).await;

    tether.signal("TERM");
    assert!(tether.wait(WAIT).await.success(), "{}", tether.stderr());
    let tether = start_tether(setup.home.path(), "ws://127.0.0.1:0").await;
    let mut tui = Tui::start(
        &setup.clients,
        &["--remote", &remote(&tether, "ws://"), "resume", &thread_id],
    );
    tui.wait_until("the history and the composer", WAIT, |screen| {
        screen.contains("remember the tide")
            && screen.contains("Echo: remember the tide")
            && screen.contains(COMPOSER)
    })
    .await
    .unwrap();
    answered_turn(&mut tui, "after the restart").await;
    tui.send_keys(CTRL_C);
    let code = tui.wait_exit(WAIT).await.unwrap();
    let screen = tui.screen_text();
    assert_eq!(code, 0, "{screen}");
    assert_eq!(resume_hint_thread(&screen), thread_id);
}

/// The model asks to run `touch target` outside the sandbox; once the call's output comes back
/// it answers `Created it`. Title requests (with an output schema) get an echo.
fn approval_script(body: &Value, target: &Path) -> Script {
    let answered = body["input"].as_array().is_some_and(|input| {
        input
            .iter()
            .any(|item| item["type"] == "function_call_output" && item["call_id"] == "call-y")
    });
    let wants_file = last_user_text(body).is_some_and(|text| text.contains("please create a file"));
    if answered {
        return Script::Stream(message_response("r-done", &["Created it"]));
    }
    if !wants_file || body["text"]["format"].is_object() {
        return echo(body);
    }
    let arguments = json!({
        "cmd": format!("touch {}", target.display()),
        "sandbox_permissions": "require_escalated",
        "justification": "Create a marker file for the test?",
    })
    .to_string();
    Script::Stream(vec![
        Step::Event(json!({"type": "response.created", "response": {"id": "r-call"}})),
        Step::Event(
            json!({"type": "response.output_item.done", "item": {"type": "function_call", "id": "fc-y", "call_id": "call-y", "name": "exec_command", "arguments": arguments}}),
        ),
        tether_testkit::completed("r-call"),
    ])
}

#[tokio::test]
async fn tui_approves_a_command_with_y_and_its_output_reaches_the_model() {
    let setup = setup().await;
    // The thread runs in tether's cwd (the TUI sends none): the file goes to a temp dir.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("tool-made-this.txt");
    let script_target = target.clone();
    setup
        .upstream
        .respond_with(move |body| approval_script(body, &script_target));
    let config = codex_config(&setup.upstream.base_url()).replace(
        "approval_policy = \"never\"",
        "approval_policy = \"on-request\"",
    );
    std::fs::write(setup.home.path().join("config.toml"), config).unwrap();
    let tether = start_tether(setup.home.path(), "ws://127.0.0.1:0").await;
    let mut tui = Tui::start(&setup.clients, &["--remote", &remote(&tether, "ws://")]);
    wait_ready(&mut tui).await;
    tui.submit("please create a file", WAIT).await.unwrap();
    tui.wait_for_text("Would you like to run the following command?", WAIT)
        .await
        .unwrap();
    tui.send_keys("y");
    tui.wait_for_text("Created it", WAIT).await.unwrap();
    assert!(target.exists(), "the approved command ran");
    let output = setup
        .upstream
        .requests()
        .iter()
        .flat_map(|request| {
            request.body["input"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|item| item["type"] == "function_call_output" && item["call_id"] == "call-y")
        .expect("the output went to the model");
    let text = output["output"].as_str().unwrap();
    assert!(text.contains("Process exited with code 0"), "{text}");
    quit(&mut tui).await;
}
