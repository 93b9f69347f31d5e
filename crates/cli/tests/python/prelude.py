# Shared by every script of python_sdk.rs (prepended to it): a client launched as a user would,
# `CodexConfig(codex_bin=<tether>)`, which runs `tether app-server --listen stdio://` with this
# process's environment (CODEX_HOME, MOCK_API_KEY).
import os
import sys

from openai_codex import Codex, CodexConfig, CodexRpcError


def connect():
    return Codex(CodexConfig(codex_bin=os.environ["TETHER_BIN"], cwd=os.environ["TETHER_WORK"]))


def check(condition, message):
    if not condition:
        print(f"check failed: {message}", file=sys.stderr)
        sys.exit(1)


def value(field):
    """An enum's wire value, or the field itself."""
    return getattr(field, "value", field)


def turn_count(thread):
    return len(thread.read(include_turns=True).thread.turns or [])
