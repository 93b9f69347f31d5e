//! The methods real Codex clients call beyond threads and turns, end to end: a real `tether
//! serve`, a WebSocket client whose every response is checked against the 0.169 schema of its
//! method, and a loopback Responses server that records what reaches the model.

use std::path::Path;

use serde_json::{Value, json};
use tether_testkit::{
    Client, ResponsesServer, Script, Step, TetherProcess, completed, message_response,
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

struct Setup {
    upstream: ResponsesServer,
    home: tempfile::TempDir,
    process: TetherProcess,
}

async fn setup() -> Setup {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let config = format!(
        "# kept across edits\nmodel = \"mock-model\"\nmodel_provider = \"mock\"\n\n\
         [model_providers.mock]\nname = \"Mock\"\nbase_url = \"{}\"\nwire_api = \"responses\"\n\
         request_max_retries = 0\nstream_max_retries = 0\n",
        upstream.base_url()
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let process = TetherProcess::start(
        Path::new(TETHER),
        home.path(),
        &["--listen", "ws://127.0.0.1:0"],
        &[],
    )
    .await;
    Setup {
        upstream,
        home,
        process,
    }
}

async fn client(setup: &Setup) -> Client {
    let mut client = setup.process.ws().await;
    client
        .initialize("codex-tui", json!({"experimentalApi": true}))
        .await;
    client
}

fn text(input: &str) -> Value {
    json!([{"type": "text", "text": input, "text_elements": []}])
}

/// Sends a request and returns its response, skipping the notifications that come first.
async fn ask(client: &mut Client, id: &str, method: &str, params: Value) -> Value {
    client.request(id, method, params);
    loop {
        let message = client.recv().await;
        if message["id"] == id {
            return message;
        }
    }
}

/// Sends a request and returns its response and the notification `heard` it causes (in
/// whichever order they come).
async fn ask_heard(
    client: &mut Client,
    id: &str,
    method: &str,
    params: Value,
    heard: &str,
) -> (Value, Value) {
    client.request(id, method, params);
    let (mut response, mut notification) = (None, None);
    while response.is_none() || notification.is_none() {
        let message = client.recv().await;
        if message["id"] == id {
            response = Some(message);
        } else if message["method"] == heard {
            notification = Some(message);
        }
    }
    (response.unwrap(), notification.unwrap())
}

async fn turn(client: &mut Client, thread_id: &str, input: &str) -> Vec<Value> {
    client.request(
        format!("turn-{input}"),
        "turn/start",
        json!({"threadId": thread_id, "input": text(input)}),
    );
    client.recv_until("turn/completed").await
}

#[tokio::test]
async fn the_startup_methods_of_the_tui_answer() {
    let setup = setup().await;
    let skill = setup.home.path().join("skills/greeter");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(
        skill.join("SKILL.md"),
        "---\nname: greeter\ndescription: Says hello\n---\nBody\n",
    )
    .unwrap();
    let mut client = client(&setup).await;
    let account = ask(&mut client, "a", "account/read", json!({})).await;
    assert_eq!(account["result"]["account"], Value::Null, "{account}");
    assert_eq!(account["result"]["requiresOpenaiAuth"], false);
    let models = ask(
        &mut client,
        "m",
        "model/list",
        json!({"includeHidden": true}),
    )
    .await;
    let slugs: Vec<&str> = models["result"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert!(
        slugs.contains(&"mock-model"),
        "the configured model is listed: {slugs:?}"
    );
    assert!(slugs.len() > 1, "the bundled catalog too: {slugs:?}");
    let config = ask(
        &mut client,
        "c",
        "config/read",
        json!({"includeLayers": true, "cwd": "."}),
    )
    .await;
    assert_eq!(config["result"]["config"]["model"], "mock-model");
    assert!(!config["result"]["layers"].as_array().unwrap().is_empty());
    let requirements = ask(&mut client, "r", "configRequirements/read", Value::Null).await;
    assert_eq!(requirements["result"]["requirements"], Value::Null);
    let skills = ask(
        &mut client,
        "s",
        "skills/list",
        json!({"cwds": [setup.home.path()], "forceReload": true}),
    )
    .await;
    let found = &skills["result"]["data"][0]["skills"];
    assert!(
        found
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "greeter" && s["description"] == "Says hello"),
        "{skills}"
    );
    for (id, method, params) in [
        ("h", "hooks/list", json!({"cwds": [setup.home.path()]})),
        (
            "p",
            "plugin/installed",
            json!({"cwds": [setup.home.path()]}),
        ),
        ("cm", "collaborationMode/list", json!({})),
        ("f", "experimentalFeature/list", json!({"limit": 10})),
        ("b", "account/bedrock/checkGovCloudRequirements", json!({})),
        ("rl", "account/rateLimits/read", Value::Null),
        (
            "tl",
            "thread/list",
            json!({"limit": 100, "sortKey": "section_position"}),
        ),
    ] {
        let answer = ask(&mut client, id, method, params).await;
        assert!(answer.get("result").is_some(), "{method}: {answer}");
    }
}

#[tokio::test]
async fn config_writes_keep_the_file_and_show_in_config_read() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    let written = ask(
        &mut client,
        "w",
        "config/value/write",
        json!({"keyPath": "tui.theme", "value": "dark", "mergeStrategy": "replace"}),
    )
    .await;
    assert_eq!(written["result"]["status"], "ok", "{written}");
    let batch = ask(
        &mut client,
        "b",
        "config/batchWrite",
        json!({"edits": [{"keyPath": "features.shell_tool", "value": false, "mergeStrategy": "upsert"}]}),
    )
    .await;
    assert_eq!(batch["result"]["status"], "ok", "{batch}");
    let file = std::fs::read_to_string(setup.home.path().join("config.toml")).unwrap();
    assert!(file.starts_with("# kept across edits\n"), "{file}");
    assert!(file.contains("theme = \"dark\""), "{file}");
    let config = ask(&mut client, "r", "config/read", json!({})).await;
    assert_eq!(config["result"]["config"]["tui"]["theme"], "dark");
    let refused = ask(
        &mut client,
        "x",
        "config/value/write",
        json!({"keyPath": "", "value": 1, "mergeStrategy": "replace"}),
    )
    .await;
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
}

#[tokio::test]
async fn an_api_key_login_is_written_and_a_logout_removes_it() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    let login = ask(
        &mut client,
        "l",
        "account/login/start",
        json!({"type": "apiKey", "apiKey": "sk-test-secret"}),
    )
    .await;
    assert_eq!(login["result"]["type"], "apiKey", "{login}");
    let auth = setup.home.path().join("auth.json");
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&auth).unwrap()).unwrap();
    assert_eq!(stored["OPENAI_API_KEY"], "sk-test-secret");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let account = ask(&mut client, "a", "account/read", json!({})).await;
    assert_eq!(account["result"]["account"]["type"], "apiKey");
    let browser = ask(
        &mut client,
        "c",
        "account/login/start",
        json!({"type": "chatgpt"}),
    )
    .await;
    assert_eq!(browser["error"]["code"], -32600, "{browser}");
    ask(&mut client, "o", "account/logout", Value::Null).await;
    assert!(!auth.exists());
    assert!(
        !setup.process.stderr().contains("sk-test-secret"),
        "keys are never logged"
    );
}

#[tokio::test]
async fn threads_are_named_archived_forked_paged_and_deleted() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    let started = ask(
        &mut client,
        "s",
        "thread/start",
        json!({"approvalPolicy": "on-request", "sandbox": "workspace-write", "approvalsReviewer": "user"}),
    )
    .await;
    assert_eq!(started["result"]["approvalPolicy"], "on-request");
    assert_eq!(started["result"]["sandbox"]["type"], "workspaceWrite");
    assert_eq!(started["result"]["thread"]["historyMode"], "paginated");
    let thread_id = started["result"]["thread"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = ask(&mut client, "l0", "thread/list", json!({})).await;
    assert_eq!(listed["result"]["data"], json!([]), "no user message yet");
    for n in 0..3 {
        setup
            .upstream
            .push(Script::Stream(message_response(&format!("r{n}"), &["ok"])));
        turn(&mut client, &thread_id, &format!("message {n}")).await;
    }
    ask(
        &mut client,
        "n",
        "thread/name/set",
        json!({"threadId": thread_id, "name": "  Renamed "}),
    )
    .await;
    let named = client
        .recv_until("thread/name/updated")
        .await
        .pop()
        .unwrap();
    assert_eq!(
        named["params"],
        json!({"threadId": thread_id, "threadName": "Renamed"})
    );
    let read = ask(
        &mut client,
        "rd",
        "thread/read",
        json!({"threadId": thread_id}),
    )
    .await;
    assert_eq!(read["result"]["thread"]["name"], "Renamed");

    let page = ask(&mut client, "t1", "thread/turns/list", json!({"threadId": thread_id, "limit": 2, "sortDirection": "desc", "itemsView": "notLoaded"})).await;
    let turns = page["result"]["data"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    let next = page["result"]["nextCursor"].clone();
    let rest = ask(
        &mut client,
        "t2",
        "thread/turns/list",
        json!({"threadId": thread_id, "cursor": next, "sortDirection": "desc"}),
    )
    .await;
    assert_eq!(rest["result"]["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["result"]["nextCursor"], Value::Null);
    let items = ask(
        &mut client,
        "i",
        "thread/items/list",
        json!({"threadId": thread_id, "limit": 100, "sortDirection": "desc"}),
    )
    .await;
    let entries = items["result"]["data"].as_array().unwrap();
    assert_eq!(entries.len(), 6, "a user message and an answer per turn");
    assert_eq!(entries[0]["item"]["type"], "agentMessage");
    assert_eq!(entries[1]["item"]["content"][0]["text"], "message 2");

    let last_turn = turns[0]["id"].as_str().unwrap().to_owned();
    let second_turn = turns[1]["id"].as_str().unwrap().to_owned();
    let forked = ask(
        &mut client,
        "f",
        "thread/fork",
        json!({"threadId": thread_id, "lastTurnId": second_turn}),
    )
    .await;
    let fork = &forked["result"]["thread"];
    assert_eq!(fork["forkedFromId"], thread_id.as_str());
    assert_eq!(fork["turns"].as_array().unwrap().len(), 2, "{forked}");
    assert_ne!(fork["turns"][1]["id"], last_turn.as_str());
    let fork_id = fork["id"].as_str().unwrap().to_owned();

    let (_, archived) = ask_heard(
        &mut client,
        "ar",
        "thread/archive",
        json!({"threadId": thread_id}),
        "thread/archived",
    )
    .await;
    assert_eq!(archived["params"]["threadId"], thread_id.as_str());
    let listed = ask(&mut client, "l1", "thread/list", json!({})).await;
    let ids: Vec<&str> = listed["result"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [fork_id.as_str()]);
    let archived = ask(&mut client, "l2", "thread/list", json!({"archived": true})).await;
    assert_eq!(archived["result"]["data"][0]["id"], thread_id.as_str());
    let unarchived = ask(
        &mut client,
        "ua",
        "thread/unarchive",
        json!({"threadId": thread_id}),
    )
    .await;
    assert_eq!(unarchived["result"]["thread"]["id"], thread_id.as_str());

    let terminals = ask(
        &mut client,
        "bt",
        "thread/backgroundTerminals/list",
        json!({"threadId": thread_id}),
    )
    .await;
    assert_eq!(terminals["result"]["data"], json!([]));
    let deleted = ask(
        &mut client,
        "d",
        "thread/delete",
        json!({"threadId": fork_id}),
    )
    .await;
    assert_eq!(deleted["result"], json!({}), "{deleted}");
    assert!(
        !setup
            .home
            .path()
            .join("threads")
            .join(format!("{fork_id}.jsonl"))
            .exists()
    );
    let gone = ask(
        &mut client,
        "g",
        "thread/read",
        json!({"threadId": fork_id}),
    )
    .await;
    assert_eq!(gone["error"]["code"], -32600);
}

#[tokio::test]
async fn read_state_is_marked_and_a_stale_revision_is_refused() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    let thread_id = client.start_thread(json!({})).await;
    setup
        .upstream
        .push(Script::Stream(message_response("r1", &["ok"])));
    let seen = turn(&mut client, &thread_id, "hello").await;
    let changed = seen
        .iter()
        .find(|m| m["method"] == "thread/readState/changed")
        .unwrap();
    let revision = changed["params"]["readState"]["revision"].clone();
    let marked = ask(
        &mut client,
        "u",
        "thread/readState/update",
        json!({"threadId": thread_id, "operation": {"type": "read"}, "expectedRevision": revision}),
    )
    .await;
    assert_eq!(marked["result"]["readState"]["firstUnread"], Value::Null);
    let stale = ask(&mut client, "v", "thread/readState/update", json!({"threadId": thread_id, "operation": {"type": "unread"}, "expectedRevision": revision})).await;
    assert_eq!(stale["error"]["code"], -32600, "{stale}");
}

#[tokio::test]
async fn what_reaches_the_model_and_how_deltas_are_joined() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    let namespace = json!([{"type": "namespace", "name": "codex_tui", "description": "TUI tools", "tools": [
        {"type": "function", "name": "list_threads", "description": "Lists threads", "inputSchema": {"type": "object"}, "deferLoading": true},
        {"type": "function", "name": "read_thread", "description": "Reads a thread", "inputSchema": {"type": "object"}, "deferLoading": true}
    ]}]);
    let thread_id = client
        .start_thread(json!({"dynamicTools": namespace}))
        .await;
    // A delta without an item id still belongs to the open message.
    setup.upstream.push(Script::Stream(vec![
        Step::Event(json!({"type": "response.created", "response": {"id": "r1"}})),
        Step::Event(json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}})),
        Step::Event(json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "{\"title\":\"t\"}"})),
        Step::Event(json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "text": "{\"title\":\"t\"}"}]}})),
        completed("r1"),
    ]));
    let schema = json!({"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]});
    client.request(
        "t",
        "turn/start",
        json!({"threadId": thread_id, "input": text("title this"), "outputSchema": schema}),
    );
    let seen = client.recv_until("turn/completed").await;
    let delta = seen
        .iter()
        .find(|m| m["method"] == "item/agentMessage/delta")
        .unwrap();
    assert_eq!(delta["params"]["itemId"], "msg_1");
    let request = &setup.upstream.requests()[0];
    assert_eq!(request.body["text"]["format"]["type"], "json_schema");
    assert_eq!(request.body["text"]["format"]["schema"], schema);
    // The client's tools follow the built-in ones.
    let tool = request.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tool| tool["type"] == "namespace")
        .expect("the client's namespace");
    assert_eq!(tool["name"], "codex_tui");
    assert_eq!(tool["tools"][1]["name"], "read_thread");
    assert_eq!(request.header("originator"), Some("codex-tui"));
    let agent = request.header("user-agent").unwrap();
    assert!(agent.starts_with("codex-tui/0.169.0 ("), "{agent}");

    // turn/steer and turn/interrupt name the running turn; codex's wording otherwise.
    // The steer starts a new round: it hangs too.
    setup.upstream.push(Script::Stream(vec![Step::Hang]));
    setup.upstream.push(Script::Stream(vec![Step::Hang]));
    client.request(
        "t2",
        "turn/start",
        json!({"threadId": thread_id, "input": text("long")}),
    );
    let running = client.recv_until("turn/started").await;
    let turn_id = running.last().unwrap()["params"]["turn"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = ask(
        &mut client,
        "s1",
        "turn/steer",
        json!({"threadId": thread_id, "expectedTurnId": "nope", "input": text("more")}),
    )
    .await;
    assert_eq!(
        wrong["error"]["message"],
        format!("expected active turn id nope but found {turn_id}")
    );
    let wrong = ask(
        &mut client,
        "i1",
        "turn/interrupt",
        json!({"threadId": thread_id, "turnId": "nope"}),
    )
    .await;
    assert_eq!(
        wrong["error"]["message"],
        format!("expected active turn id nope but found {turn_id}")
    );
    let steered = ask(
        &mut client,
        "s2",
        "turn/steer",
        json!({"threadId": thread_id, "expectedTurnId": turn_id, "input": text("more")}),
    )
    .await;
    assert_eq!(steered["result"]["turnId"], turn_id.as_str());
    ask(
        &mut client,
        "i2",
        "turn/interrupt",
        json!({"threadId": thread_id, "turnId": turn_id}),
    )
    .await;
    let done = client.recv_until("turn/completed").await.pop().unwrap();
    assert_eq!(done["params"]["turn"]["status"], "interrupted");
}

#[tokio::test]
async fn a_message_sent_during_a_compaction_is_refused_not_swallowed() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    let thread_id = client.start_thread(json!({})).await;
    setup.upstream.push(Script::Stream(vec![Step::Hang]));
    ask(
        &mut client,
        "c",
        "thread/compact/start",
        json!({"threadId": thread_id}),
    )
    .await;
    client.recv_until("turn/started").await;
    let refused = ask(
        &mut client,
        "t",
        "turn/start",
        json!({"threadId": thread_id, "input": text("hello?")}),
    )
    .await;
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("compaction")
    );
}

#[tokio::test]
async fn rate_limits_from_upstream_headers_reach_clients_and_account_rate_limits_read() {
    let setup = setup().await;
    let mut client = client(&setup).await;
    let thread_id = client.start_thread(json!({})).await;
    let headers = vec![
        ("x-codex-primary-used-percent".to_owned(), "42".to_owned()),
        (
            "x-codex-primary-window-minutes".to_owned(),
            "300".to_owned(),
        ),
    ];
    setup.upstream.push(Script::StreamWithHeaders(
        headers,
        message_response("r1", &["ok"]),
    ));
    let seen = turn(&mut client, &thread_id, "hi").await;
    let updated = seen
        .iter()
        .find(|m| m["method"] == "account/rateLimits/updated")
        .expect("account/rateLimits/updated");
    assert_eq!(
        updated["params"]["rateLimits"]["primary"]["usedPercent"],
        42
    );
    let read = ask(&mut client, "r", "account/rateLimits/read", Value::Null).await;
    assert_eq!(read["result"]["rateLimits"]["primary"]["usedPercent"], 42);
    assert_eq!(
        read["result"]["rateLimits"]["primary"]["windowDurationMins"],
        300
    );
}
