with connect() as codex:
    thread = codex.thread_start()
    check(thread.run("fork me").final_response == "Echo: fork me", "the first turn")

    fork = codex.thread_fork(thread.id)
    check(fork.id != thread.id, "the fork is a new thread")
    check(turn_count(fork) == 1, "the fork has the turn")
    check(fork.run("on the fork").final_response == "Echo: on the fork", "a turn on the fork")
    check(turn_count(thread) == 1, "the original is unchanged")
    lean = codex.thread_fork(thread.id, include_turns=False)
    check(lean.id not in (thread.id, fork.id), "a fork with excludeTurns")

    codex.thread_archive(thread.id)
    check(thread.id not in [t.id for t in codex.thread_list().data], "archived threads leave the list")
    check(thread.id in [t.id for t in codex.thread_list(archived=True).data], "and are listed as archived")
    restored = codex.thread_unarchive(thread.id)
    check(restored.id == thread.id, "unarchive gives the thread back")
    check(thread.id in [t.id for t in codex.thread_list().data], "listed again")
print("ok")
