//! The command line codex clients use to start a server, run as real processes: `tether
//! app-server`, `-c key=value` overrides on top of config.toml, the home taken from `--home`,
//! `TETHER_HOME` or `CODEX_HOME`, and a `--version` line a client can parse.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use tether_testkit::{Client, ResponsesServer, Script, message_response};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

/// Environment variables set for a process.
type Env<'a> = &'a [(&'a str, &'a Path)];

/// `tether ARGS…` with `env` and neither home variable inherited from the test's environment.
fn tether_command(args: &[&str], env: &[(&str, &Path)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(TETHER);
    command
        .args(args)
        .env_remove("TETHER_HOME")
        .env_remove("CODEX_HOME")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Starts `tether ARGS…` (a stdio server) and returns it with an initialized client on it and
/// the `codexHome` that `initialize` reported.
async fn start_stdio(
    args: &[&str],
    env: &[(&str, &Path)],
) -> (tokio::process::Child, Client, String) {
    let mut child = tether_command(args, env).spawn().expect("start tether");
    let mut client = Client::over_lines(child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let initialized = client.initialize("probe", Value::Null).await;
    let home = initialized["codexHome"].as_str().unwrap().to_owned();
    (child, client, home)
}

fn run(args: &[&str]) -> Output {
    Command::new(TETHER)
        .args(args)
        .env_remove("TETHER_HOME")
        .env_remove("CODEX_HOME")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn version_is_tether_then_the_codex_protocol_it_implements() {
    let output = run(&["--version"]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "tether {} (codex app-server protocol 0.169.0)\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[tokio::test]
async fn app_server_runs_a_turn_with_overrides_set_on_top_of_config_toml() {
    let upstream = ResponsesServer::start().await;
    upstream.push(Script::Stream(message_response("r1", &["hi"])));
    let home = tempfile::tempdir().unwrap();
    // The file's provider points nowhere and its model is not the one asked for: only the
    // overrides make the turn reach the loopback upstream with the right model.
    std::fs::write(
        home.path().join("config.toml"),
        "model = \"file-model\"\nmodel_provider = \"mock\"\n[model_providers.mock]\nname = \"Mock\"\n\
         base_url = \"http://127.0.0.1:9/v1\"\nwire_api = \"responses\"\nrequest_max_retries = 0\n",
    )
    .unwrap();
    let base_url = format!("model_providers.mock.base_url=\"{}\"", upstream.base_url());
    let (mut child, mut client, _) = start_stdio(
        &["app-server", "-c", "model=cli-model", "--config", &base_url],
        &[("CODEX_HOME", home.path())],
    )
    .await;
    let thread_id = client.start_thread(json!({"cwd": "/tmp"})).await;
    client.request(
        "turn",
        "turn/start",
        json!({"threadId": thread_id, "input": [{"type": "text", "text": "hello", "text_elements": []}]}),
    );
    let completed = client.recv_until("turn/completed").await;
    let last = completed.last().unwrap();
    assert_eq!(last["params"]["turn"]["status"], "completed", "{last}");
    let requests = upstream.wait_for_requests(1).await;
    assert_eq!(requests[0].body["model"], "cli-model");
    drop(client);
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test]
async fn home_is_the_flag_else_tether_home_else_codex_home() {
    let flag = tempfile::tempdir().unwrap();
    let tether_home = tempfile::tempdir().unwrap();
    let codex_home = tempfile::tempdir().unwrap();
    let cases: [(&[&str], Env, &Path); 3] = [
        (
            &["--home", flag.path().to_str().unwrap(), "app-server"],
            &[
                ("TETHER_HOME", tether_home.path()),
                ("CODEX_HOME", codex_home.path()),
            ],
            flag.path(),
        ),
        (
            &["app-server"],
            &[
                ("TETHER_HOME", tether_home.path()),
                ("CODEX_HOME", codex_home.path()),
            ],
            tether_home.path(),
        ),
        (
            &["serve"],
            &[("CODEX_HOME", codex_home.path())],
            codex_home.path(),
        ),
    ];
    for (args, env, expected) in cases {
        let (mut child, client, home) = start_stdio(args, env).await;
        assert_eq!(home, expected.to_str().unwrap(), "{args:?} {env:?}");
        drop(client);
        assert!(child.wait().await.unwrap().success());
    }
}

#[test]
fn malformed_overrides_fail_before_serving_with_the_override_named() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path().to_str().unwrap();
    let cases: [(&[&str], i32, &str); 4] = [
        (
            &["--home", home, "app-server", "-c", "model"],
            2,
            "Invalid override (missing '='): model",
        ),
        (
            &["--home", home, "serve", "-c", "=x"],
            2,
            "Empty key in override: =x",
        ),
        (
            &[
                "--home",
                home,
                "app-server",
                "-c",
                "thread_unload_delay_secs=soon",
            ],
            1,
            "thread_unload_delay_secs",
        ),
        (
            &[
                "--home",
                home,
                "app-server",
                "-c",
                "model_providers.x.wire_api=chat",
            ],
            1,
            "model_providers.x.wire_api = \"chat\": only \"responses\" is supported",
        ),
    ];
    for (args, status, message) in cases {
        let output = run(args);
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(status), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
