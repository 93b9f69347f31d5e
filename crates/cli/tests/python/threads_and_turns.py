with connect() as codex:
    thread = codex.thread_start()
    result = thread.run("first question")
    check(value(result.status) == "completed", f"run status {result.status}")
    check(result.final_response == "Echo: first question", f"final response {result.final_response!r}")

    handle = thread.turn("second question")
    methods, deltas = [], ""
    for event in handle.stream():
        methods.append(event.method)
        if event.method == "item/agentMessage/delta":
            deltas += event.payload.delta
    check(methods[-1] == "turn/completed", f"stream ends with turn/completed: {methods}")
    check("turn/started" in methods and "item/completed" in methods, f"stream methods {methods}")
    check(deltas == "Echo: second question", f"streamed text {deltas!r}")

    read = thread.read(include_turns=True)
    check(read.thread.id == thread.id, "read the same thread")
    check(len(read.thread.turns) == 2, f"two turns read, got {len(read.thread.turns)}")

    listed = [t.id for t in codex.thread_list().data]
    check(thread.id in listed, f"listed {listed}")

    # The SDK reads the server's version after the first "/" (excludeTurns needs 0.151.0).
    agent = codex.metadata.userAgent
    check(agent.split("/", 1)[1].startswith("0.169.0"), f"protocol version in userAgent: {agent}")

    thread.set_name("tide notes")
    check(thread.read().thread.name == "tide notes", "the name was set")
    thread_id = thread.id

# A new process resumes the thread and runs on it; a resume without turns also works.
with connect() as codex:
    resumed = codex.thread_resume(thread_id)
    check(resumed.id == thread_id, "resumed the same thread")
    result = resumed.run("third question")
    check(result.final_response == "Echo: third question", f"after resume {result.final_response!r}")
    check(turn_count(resumed) == 3, "three turns after the resume")

with connect() as codex:
    lean = codex.thread_resume(thread_id, include_turns=False)
    check(lean.id == thread_id, "resumed with excludeTurns")
    check(turn_count(lean) == 3, "the turns are still stored")
print("ok")
