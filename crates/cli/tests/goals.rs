//! Thread goals and history revert, end to end over real connections.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tether_testkit::{Client, ResponsesServer, Script, Step, TetherProcess, message_response};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

async fn start_server(home: &Path, upstream: &ResponsesServer) -> TetherProcess {
    let config = format!(
        "model = \"mock-model\"\nmodel_provider = \"mock\"\n[model_providers.mock]\nname = \"Mock\"\nbase_url = \"{}\"\n\
         wire_api = \"responses\"\nrequest_max_retries = 0\nstream_max_retries = 0\n",
        upstream.base_url()
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
    TetherProcess::start(
        Path::new(TETHER),
        home,
        &["--listen", "ws://127.0.0.1:0"],
        &[],
    )
    .await
}

async fn client(process: &TetherProcess) -> Client {
    let mut client = process.ws().await;
    client.initialize("goals", Value::Null).await;
    client
}

fn error_of(response: &Value) -> String {
    assert_eq!(response["error"]["code"], -32600, "{response}");
    response["error"]["message"].as_str().unwrap().to_owned()
}

fn turn(client: &mut Client, thread_id: &str, text: &str) {
    client.request(format!("t-{text}"), "turn/start", json!({"threadId": thread_id, "input": [{"type": "text", "text": text, "text_elements": []}]}));
}

#[tokio::test]
async fn the_goal_validation_table() {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let process = start_server(home.path(), &upstream).await;
    let mut c = client(&process).await;
    let thread_id = c.start_thread(json!({})).await;
    let ephemeral = c.start_thread(json!({"ephemeral": true})).await;
    let unknown = "00000000-0000-0000-0000-000000000001";
    let set = |params: Value| {
        json!({"threadId": thread_id})
            .as_object()
            .unwrap()
            .clone()
            .into_iter()
            .chain(params.as_object().unwrap().clone())
            .collect::<serde_json::Map<_, _>>()
    };
    let cases: Vec<(Value, String)> = vec![
        (Value::Object(set(json!({}))), format!("cannot update goal for thread {thread_id}: no goal exists")),
        (Value::Object(set(json!({"objective": "   "}))), "goal objective must not be empty".into()),
        (Value::Object(set(json!({"objective": "x".repeat(4001)}))), "goal objective must be at most 4000 characters".into()),
        (Value::Object(set(json!({"objective": "ok", "tokenBudget": 0}))), "goal budgets must be positive when provided".into()),
        (Value::Object(set(json!({"objective": "ok", "tokenBudget": -1}))), "goal budgets must be positive when provided".into()),
        (Value::Object(set(json!({"objective": "ok", "status": "bogus"}))), "Invalid request: unknown variant `bogus`, expected one of `active`, `paused`, `blocked`, `usageLimited`, `budgetLimited`, `complete`".into()),
        (json!({"threadId": ephemeral, "objective": "ok"}), format!("ephemeral thread does not support goals: {ephemeral}")),
        (json!({"threadId": unknown, "objective": "ok"}), format!("thread not found: {unknown}")),
        (json!({"threadId": "nope", "objective": "ok"}), "invalid thread id: invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `n` at 1".into()),
    ];
    for (n, (params, message)) in cases.into_iter().enumerate() {
        let response = c.call(n, "thread/goal/set", params.clone()).await;
        assert_eq!(error_of(&response), message, "{params}");
    }
    let get = c
        .call("g", "thread/goal/get", json!({"threadId": ephemeral}))
        .await;
    assert_eq!(
        error_of(&get),
        format!("ephemeral thread does not support goals: {ephemeral}")
    );
    let get = c
        .call("g2", "thread/goal/get", json!({"threadId": thread_id}))
        .await;
    assert_eq!(get["result"], json!({"goal": null}));
}

#[tokio::test]
async fn goals_are_broadcast_after_the_response_patched_and_cleared() {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let process = start_server(home.path(), &upstream).await;
    let mut owner = client(&process).await;
    let mut other = client(&process).await;
    let thread_id = owner.start_thread(json!({})).await;
    assert_eq!(other.recv().await["method"], "thread/started");

    let set = owner.call(1, "thread/goal/set", json!({"threadId": thread_id, "objective": "  Ship it ", "status": "paused", "tokenBudget": 500})).await;
    let goal = set["result"]["goal"].clone();
    assert_eq!(goal["objective"], "Ship it");
    assert_eq!(goal["status"], "paused");
    assert_eq!(goal["tokenBudget"], 500);
    assert_eq!(goal["tokensUsed"], 0);
    let updated = owner.recv().await;
    assert_eq!(updated["method"], "thread/goal/updated");
    assert_eq!(
        updated["params"],
        json!({"threadId": thread_id, "turnId": null, "goal": goal})
    );
    assert_eq!(
        other.recv().await,
        updated,
        "broadcast to a connection that never subscribed"
    );

    let unchanged = owner
        .call(2, "thread/goal/set", json!({"threadId": thread_id}))
        .await;
    assert_eq!(
        unchanged["result"]["goal"]["tokenBudget"], 500,
        "absent keeps the budget"
    );
    assert_eq!(owner.recv().await["method"], "thread/goal/updated");
    let cleared_budget = owner
        .call(
            3,
            "thread/goal/set",
            json!({"threadId": thread_id, "tokenBudget": null}),
        )
        .await;
    assert_eq!(
        cleared_budget["result"]["goal"]["tokenBudget"],
        Value::Null,
        "null clears it"
    );
    assert_eq!(cleared_budget["result"]["goal"]["objective"], "Ship it");
    assert_eq!(owner.recv().await["method"], "thread/goal/updated");
    let read = owner
        .call(4, "thread/read", json!({"threadId": thread_id}))
        .await;
    assert_eq!(
        read["result"]["thread"]["preview"], "Ship it",
        "an empty preview takes the objective"
    );

    let cleared = owner
        .call(5, "thread/goal/clear", json!({"threadId": thread_id}))
        .await;
    assert_eq!(cleared["result"], json!({"cleared": true}));
    let notification = owner.recv().await;
    assert_eq!(notification["method"], "thread/goal/cleared");
    assert_eq!(notification["params"], json!({"threadId": thread_id}));
    let again = owner
        .call(6, "thread/goal/clear", json!({"threadId": thread_id}))
        .await;
    assert_eq!(again["result"], json!({"cleared": false}));
    owner.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(
        owner
            .call(7, "thread/goal/get", json!({"threadId": thread_id}))
            .await["result"],
        json!({"goal": null})
    );
}

#[tokio::test]
async fn a_turn_that_reaches_the_budget_limits_the_goal() {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let process = start_server(home.path(), &upstream).await;
    let mut c = client(&process).await;
    let thread_id = c.start_thread(json!({})).await;
    c.call(
        1,
        "thread/goal/set",
        json!({"threadId": thread_id, "objective": "work", "tokenBudget": 30}),
    )
    .await;
    c.recv().await;
    // Each scripted response uses 17 tokens.
    for round in 0..2 {
        upstream.push(Script::Stream(message_response(
            &format!("r{round}"),
            &["ok"],
        )));
        turn(&mut c, &thread_id, &format!("go {round}"));
        let messages = c.recv_until("turn/completed").await;
        let turn_id = messages.last().unwrap()["params"]["turn"]["id"].clone();
        let update = c.recv().await;
        assert_eq!(update["method"], "thread/goal/updated");
        assert_eq!(update["params"]["turnId"], turn_id);
        let goal = &update["params"]["goal"];
        assert_eq!(goal["tokensUsed"], 17 * (round + 1));
        let expected = if round == 0 {
            "active"
        } else {
            "budgetLimited"
        };
        assert_eq!(goal["status"], expected);
    }
    // A goal that is no longer active does not count further turns.
    upstream.push(Script::Stream(message_response("r2", &["ok"])));
    turn(&mut c, &thread_id, "more");
    c.recv_until("turn/completed").await;
    c.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn goal_notifications_are_ordered_with_a_concurrent_resume_of_a_running_thread() {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let process = start_server(home.path(), &upstream).await;
    let mut owner = client(&process).await;
    let thread_id = owner.start_thread(json!({})).await;
    for round in 0..10 {
        let mut slow = message_response(&format!("r{round}"), &["a", "b"]);
        slow.insert(3, Step::Pause(Duration::from_millis(150)));
        upstream.push(Script::Stream(slow));
        turn(&mut owner, &thread_id, &format!("round {round}"));
        owner.recv_until("item/started").await;
        let mut joiner = client(&process).await;
        let objective = format!("objective {round}");
        // The resume and the goal change race; whichever the thread handles first, the joiner
        // must end up having seen the final goal last.
        joiner.request("resume", "thread/resume", json!({"threadId": thread_id}));
        owner.request(
            format!("goal{round}"),
            "thread/goal/set",
            json!({"threadId": thread_id, "objective": objective}),
        );
        let mut last_goal = None;
        let mut responded = false;
        loop {
            let message = joiner.recv().await;
            if message["id"] == "resume" {
                responded = true;
            }
            if message["method"] == "thread/goal/updated" {
                last_goal = Some(message["params"]["goal"]["objective"].clone());
            }
            if message["method"] == "turn/completed" {
                break;
            }
        }
        assert!(responded);
        assert_eq!(last_goal, Some(json!(objective)), "round {round}");
        owner.recv_until("turn/completed").await;
        drop(joiner);
    }
}

#[tokio::test]
async fn revert_shortens_the_history_durably() {
    let upstream = ResponsesServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut process = start_server(home.path(), &upstream).await;
    let mut c = client(&process).await;
    let thread_id = c.start_thread(json!({})).await;
    let mut turn_ids = Vec::new();
    for round in 0..3 {
        upstream.push(Script::Stream(message_response(
            &format!("r{round}"),
            &[&format!("answer {round}")],
        )));
        turn(&mut c, &thread_id, &format!("question {round}"));
        let messages = c.recv_until("turn/completed").await;
        turn_ids.push(
            messages.last().unwrap()["params"]["turn"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let missing = c
        .call(
            1,
            "thread/revert",
            json!({"threadId": thread_id, "beforeTurnId": "no-such-turn"}),
        )
        .await;
    assert_eq!(error_of(&missing), "turn not found: no-such-turn");
    // Refused while a turn runs.
    let mut hang = message_response("rh", &["..."]);
    hang.truncate(3);
    hang.push(Step::Hang);
    upstream.push(Script::Stream(hang));
    turn(&mut c, &thread_id, "running");
    let started = c.recv_until("turn/started").await;
    c.request(
        2,
        "thread/revert",
        json!({"threadId": thread_id, "beforeTurnId": turn_ids[1]}),
    );
    let running = loop {
        let message = c.recv().await;
        if message["id"] == 2 {
            break message;
        }
    };
    assert_eq!(error_of(&running), "cannot revert while a turn is running");
    let running_id = started.last().unwrap()["params"]["turn"]["id"].clone();
    c.request(
        3,
        "turn/interrupt",
        json!({"threadId": thread_id, "turnId": running_id}),
    );
    c.recv_until("turn/completed").await;

    let reverted = c
        .call(
            4,
            "thread/revert",
            json!({"threadId": thread_id, "beforeTurnId": turn_ids[1]}),
        )
        .await;
    assert_eq!(reverted["result"]["thread"]["id"], thread_id);
    assert_eq!(reverted["result"]["thread"]["turns"], json!([]));
    let read = c
        .call(
            5,
            "thread/read",
            json!({"threadId": thread_id, "includeTurns": true}),
        )
        .await;
    let turns = read["result"]["thread"]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0]["id"], turn_ids[0]);

    process.signal("KILL");
    process.wait(Duration::from_secs(5)).await;
    let process = start_server(home.path(), &upstream).await;
    let mut c = client(&process).await;
    c.request(6, "thread/resume", json!({"threadId": thread_id}));
    let _status = c.recv().await;
    let resumed = c.recv().await;
    let turns = resumed["result"]["thread"]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 1, "{resumed}");
    assert_eq!(turns[0]["items"][1]["text"], "answer 0");
    // The model no longer sees what was reverted.
    upstream.push(Script::Stream(message_response("r9", &["fresh"])));
    turn(&mut c, &thread_id, "after revert");
    c.recv_until("turn/completed").await;
    let requests = upstream.requests();
    let input = &requests.last().unwrap().body["input"];
    assert_eq!(input.as_array().unwrap().len(), 3, "{input}");
}
