"""Drives `revka mcp serve --stdio` with the official Python SDK's stdio client (PyPI `mcp`).

Spawns REVKA_BIN with `mcp serve --stdio` (REVKA_HOME passed on, working directory WORKDIR),
then: initialize, list tools, activate the fault tools with tool_search, a call with a
progress callback, a call cancelled by the client, and a call in flight while the daemon is
restarted. The restart is the Rust test's: this script creates MARKERS/restart-now and waits
for MARKERS/restarted. After it: a ping, then a tools/list_changed notification, the tools activated again
(the new daemon gave a new session), a call with progress. Prints one JSON document with what
it saw; exits non-zero on failure. Used by tests/stdio_bridge.rs.
"""

import json
import os
import sys
from pathlib import Path

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

TOOLS = "select:fault__progress,fault__hang,fault__slow_echo"


def text(result) -> str:
    return result.content[0].text


def is_error(result) -> bool:
    return bool(getattr(result, "is_error", None) or getattr(result, "isError", False))


async def wait_for(path: Path, seconds: float) -> None:
    with anyio.fail_after(seconds):
        while not path.exists():
            await anyio.sleep(0.02)


async def main() -> int:
    markers = Path(os.environ["MARKERS"])
    params = StdioServerParameters(
        command=os.environ["REVKA_BIN"],
        args=["mcp", "serve", "--stdio"],
        env={"REVKA_HOME": os.environ["REVKA_HOME"], "RUST_LOG": "warn"},
        cwd=os.environ["WORKDIR"],
    )
    out: dict = {"list_changed": 0}

    async def on_message(message) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            out["list_changed"] += 1

    async def progress_call(session: ClientSession) -> dict:
        seen = []

        async def on_progress(p, total, message):
            seen.append({"progress": p, "total": total, "message": message})

        result = await session.call_tool(
            "fault__progress", {"steps": 3, "interval_ms": 5}, progress_callback=on_progress
        )
        return {"text": text(result), "is_error": is_error(result), "progress": seen}

    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, message_handler=on_message) as session:
            init = await session.initialize()
            out["server_name"] = init.server_info.name
            out["protocol_version"] = init.protocol_version
            listed = await session.list_tools()
            out["tools_before"] = [t.name for t in listed.tools]
            await session.call_tool("tool_search", {"query": TOOLS})
            listed = await session.list_tools()
            out["tools_after"] = [t.name for t in listed.tools]
            out["call"] = await progress_call(session)

            # Cancelled by the client: the SDK sends notifications/cancelled.
            with anyio.move_on_after(0.5) as scope:
                await session.call_tool("fault__hang", {})
            out["hang_cancelled"] = scope.cancelled_caught

            # A call in flight while the daemon restarts.
            interrupted: dict = {}

            async def slow() -> None:
                try:
                    result = await session.call_tool("fault__slow_echo", {"text": "slow", "ms": 60000})
                    interrupted["text"] = text(result)
                    interrupted["is_error"] = is_error(result)
                except MCPError as err:
                    interrupted["error"] = {"code": err.code, "message": err.message}

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                # The test waits for the call to reach the fault server before it restarts.
                (markers / "restart-now").touch()
                await wait_for(markers / "restarted", 60)
            out["interrupted"] = interrupted

            # The next request finds the new daemon; the bridge says the tools may have changed
            # (a ping changes no tool: any tools/list_changed now is the bridge's).
            before = out["list_changed"]
            await session.send_ping()
            with anyio.move_on_after(10):
                while out["list_changed"] == before:
                    await anyio.sleep(0.01)
            out["list_changed_on_restart"] = out["list_changed"] - before

            # A new daemon, a new session: activate again, then call.
            search = await session.call_tool("tool_search", {"query": TOOLS})
            out["search_after_restart"] = text(search)
            out["after_restart"] = await progress_call(session)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(anyio.run(main))
    except Exception as exc:  # report, with the chain, for the Rust test's assertion message
        import traceback

        traceback.print_exc()
        print(json.dumps({"error": repr(exc)}))
        sys.exit(1)
