with connect() as codex:
    thread = codex.thread_start()
    handle = thread.turn("please hang")
    # The turn is running once the user message is recorded (codex has no active turn before).
    events = handle.stream()
    for event in events:
        item = getattr(event.payload, "item", None)
        if event.method == "item/completed" and value(getattr(item, "root", item).type) == "userMessage":
            break
    # The steer text hangs too, in case the server sends it upstream at once.
    steered = handle.steer("and keep hanging on")
    check(steered.turn_id == handle.id, f"steer answers the active turn: {steered.turn_id}")

    # codex's wording, which the SDK's goal cancellation parses.
    try:
        thread._client.turn_interrupt(thread.id, "not-the-active-turn")
        check(False, "interrupting another turn id is refused")
    except CodexRpcError as err:
        check(f"expected active turn id not-the-active-turn but found {handle.id}" in str(err), str(err))

    handle.interrupt()
    completed = [event for event in events if event.method == "turn/completed"]
    check(len(completed) == 1, "the turn completes")
    status = value(completed[0].payload.turn.status)
    check(status == "interrupted", f"status after interrupt {status}")
    after = thread.run("after the interrupt")
    check(after.final_response == "Echo: after the interrupt", "the thread goes on")
print("ok")
