#!/usr/bin/env python3
# A fake of the two agent CLIs the daemon's fallback agents run (src/agents/fallback.rs), for
# tests: no network, no model, stdlib only. It replays short protocol transcripts.
#
# Mode, picked from argv (one script for both):
#   - codex  when argv has `exec` and `--json`  (`codex exec --json [flags] [resume <id>] -- <prompt>`)
#   - claude when argv has `-p` and `--output-format stream-json` (`claude -p --output-format
#     stream-json --verbose [flags] [--resume <id>] -- <prompt>`)
# The prompt is the last argument.
#
# Where the message shapes come from:
#   - claude: the Agent SDK's SDKMessage union (@anthropic-ai/claude-agent-sdk, sdk.d.ts:
#     SDKSystemMessage `system`/`init` {session_id, model, cwd, tools}, SDKAssistantMessage
#     `assistant` {message: {model, content: [text | tool_use {id, name, input}]}},
#     SDKUserMessage `user` {message: {content: [tool_result {tool_use_id, content, is_error}]}},
#     SDKResultMessage `result` {subtype, is_error, result, session_id, num_turns, duration_ms,
#     total_cost_usd, usage {input_tokens, output_tokens, cache_read_input_tokens,
#     cache_creation_input_tokens}}), as Claude Code's headless mode documents them.
#   - codex: ThreadEvent of codex-rs/exec/src/exec_events.rs (openai/codex at 08a1f30c):
#     thread.started {thread_id}, turn.started, item.started / item.completed {item: {id, type:
#     agent_message {text} | reasoning {text} | command_execution {command, aggregated_output,
#     exit_code, status} | mcp_tool_call {server, tool, arguments, result {content}, error,
#     status} | file_change {changes [{path, kind}], status}}}, turn.completed {usage
#     {input_tokens, cached_input_tokens, output_tokens}}, turn.failed {error {message}}.
#
# Scenarios, by prompt text:
#   hello      a greeting, usage, the result
#   tool       a tool call and its result, then the answer
#   error      the backend reports an error (claude: result is_error; codex: turn.failed); exit 1
#   slow       starts a grandchild `sleep` (its pid in a `fake.pid` line), then waits until a
#              signal ends it (SIGINT: exit 130)
#   stubborn   as slow, but ignores SIGINT and SIGTERM (only SIGKILL ends it)
#   garbage    one line that is not JSON, then waits
#   die        a message, a line on stderr, then exit 3 mid-turn
#   flood      100,050 assistant messages, then waits
#   usage N    reports N tokens (claude also $N/1000), then waits (the budget must stop it)
#   unknown    a line of a type neither CLI has
#   escape     starts `sleep 120` in a session of its own, without the REVKA_* markers,
#              holding stdout open (its pid in a
#              `fake.pid` line as `escaped`), then answers like hello and exits
#   anything else: like hello, echoing the prompt
# If $FAKE_AGENT_LOG is set, each run appends its argv (a JSON array) to that file.

import json
import os
import signal
import subprocess
import sys
import time
import uuid


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def wait_forever():
    while True:
        time.sleep(3600)


def option(argv, name):
    if name in argv:
        i = argv.index(name)
        if i + 1 < len(argv):
            return argv[i + 1]
    return None


def grandchild():
    child = subprocess.Popen(["sleep", "300"])
    emit({"type": "fake.pid", "pid": os.getpid(), "grandchild": child.pid})


def on_sigint(_sig, _frame):
    sys.exit(130)


def claude(argv, prompt):
    session = option(argv, "--resume") or str(uuid.uuid4())
    model = option(argv, "--model") or "claude-fake-1"

    def init():
        emit({"type": "system", "subtype": "init", "session_id": session, "model": model,
              "cwd": os.getcwd(), "tools": ["Bash", "Read"], "mcp_servers": [],
              "permissionMode": "default", "apiKeySource": "none"})

    def assistant(content):
        emit({"type": "assistant", "session_id": session, "parent_tool_use_id": None,
              "message": {"id": "msg_" + uuid.uuid4().hex[:8], "type": "message",
                          "role": "assistant", "model": model, "content": content,
                          "usage": {"input_tokens": 1, "output_tokens": 1}}})

    def result(text, usage=None, cost=0.001, is_error=False, subtype="success", turns=1):
        emit({"type": "result", "subtype": subtype, "is_error": is_error, "duration_ms": 12,
              "duration_api_ms": 10, "num_turns": turns, "result": text, "session_id": session,
              "total_cost_usd": cost,
              "usage": usage or {"input_tokens": 10, "output_tokens": 5,
                                 "cache_read_input_tokens": 2,
                                 "cache_creation_input_tokens": 1}})

    init()
    common(prompt, init, lambda text: assistant([{"type": "text", "text": text}]))
    if prompt == "tool":
        assistant([{"type": "text", "text": "Let me look."},
                   {"type": "tool_use", "id": "toolu_01", "name": "Bash",
                    "input": {"command": "echo hi"}}])
        emit({"type": "user", "session_id": session, "parent_tool_use_id": None,
              "message": {"role": "user", "content": [
                  {"type": "tool_result", "tool_use_id": "toolu_01",
                   "content": [{"type": "text", "text": "hi"}], "is_error": False}]}})
        assistant([{"type": "text", "text": "It printed hi."}])
        result("It printed hi.", turns=2)
    elif prompt == "error":
        result("", is_error=True, subtype="error_during_execution")
        sys.exit(1)
    elif prompt.startswith("usage "):
        n = int(prompt.split()[1])
        assistant([{"type": "text", "text": "spending"}])
        result("spent", usage={"input_tokens": n, "output_tokens": 0,
                               "cache_read_input_tokens": 0,
                               "cache_creation_input_tokens": 0}, cost=n / 1000.0)
        wait_forever()
    else:
        text = "Hello from fake claude" if prompt == "hello" else "You said: " + prompt
        assistant([{"type": "text", "text": text}])
        result(text)


def codex(argv, prompt):
    thread = option(argv, "resume") or str(uuid.uuid4())

    def item(kind, done, **fields):
        fields.setdefault("id", "item_" + uuid.uuid4().hex[:6])
        emit({"type": "item.completed" if done else "item.started",
              "item": dict(type=kind, **fields)})

    emit({"type": "thread.started", "thread_id": thread})
    emit({"type": "turn.started"})
    common(prompt, lambda: None, lambda text: item("agent_message", True, text=text))
    usage = {"input_tokens": 12, "cached_input_tokens": 2, "output_tokens": 5}
    if prompt == "tool":
        item("reasoning", True, text="**Running a command**")
        item("command_execution", False, id="cmd_1", command="echo hi", aggregated_output="",
             exit_code=None, status="in_progress")
        item("command_execution", True, id="cmd_1", command="echo hi",
             aggregated_output="hi\n", exit_code=0, status="completed")
        item("mcp_tool_call", True, id="mcp_1", server="revka", tool="list", arguments={},
             result={"content": [{"type": "text", "text": "[]"}], "structured_content": None},
             error=None, status="completed")
        item("file_change", True, id="fc_1", changes=[{"path": "a.txt", "kind": "add"}],
             status="completed")
        item("agent_message", True, text="It printed hi.")
        emit({"type": "turn.completed", "usage": usage})
    elif prompt == "error":
        emit({"type": "turn.failed", "error": {"message": "fake failure"}})
        sys.exit(1)
    elif prompt.startswith("usage "):
        n = int(prompt.split()[1])
        item("agent_message", True, text="spending")
        emit({"type": "turn.completed",
              "usage": {"input_tokens": n, "cached_input_tokens": 0, "output_tokens": 0}})
        wait_forever()
    else:
        text = "Hello from fake codex" if prompt == "hello" else "You said: " + prompt
        item("agent_message", True, text=text)
        emit({"type": "turn.completed", "usage": usage})


def common(prompt, _init, say):
    """Scenarios both modes play the same way (after their first lines)."""
    if prompt in ("slow", "stubborn"):
        if prompt == "stubborn":
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        grandchild()
        say("working...")
        wait_forever()
    elif prompt == "garbage":
        sys.stdout.write("this is not JSON\n")
        sys.stdout.flush()
        wait_forever()
    elif prompt == "die":
        say("about to crash")
        sys.stderr.write("fatal: the fake agent crashed\n")
        sys.stderr.flush()
        sys.exit(3)
    elif prompt == "flood":
        for i in range(100_050):
            say("flood %d" % i)
        wait_forever()
    elif prompt == "unknown":
        emit({"type": "fake.unknown", "detail": 42})
    elif prompt == "escape":
        # A descendant in a session of its own (out of the run's process group) that keeps
        # this process's stdout open after the answer and the exit.
        # Scrubbed of the supervisor's markers too: what the daemon's own sweep of escaped
        # processes could not recognise.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REVKA_")}
        child = subprocess.Popen(["sleep", "120"], start_new_session=True, env=env)
        emit({"type": "fake.pid", "pid": os.getpid(), "escaped": child.pid})


def main():
    signal.signal(signal.SIGINT, on_sigint)
    argv = sys.argv[1:]
    log = os.environ.get("FAKE_AGENT_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(argv) + "\n")
    prompt = argv[-1] if argv else ""
    if "exec" in argv and "--json" in argv:
        codex(argv, prompt)
    elif "-p" in argv and option(argv, "--output-format") == "stream-json":
        claude(argv, prompt)
    else:
        sys.stderr.write("fake_agent_cli: run me as `claude -p ... --output-format stream-json`"
                         " or `codex exec --json ...`\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
