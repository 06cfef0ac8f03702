"""Drives Revka's standard Streamable HTTP path with the official Python SDK's `Client`
(PyPI `mcp`), given only the URL and a client token.

Reads REVKA_URL and REVKA_CLIENT_TOKEN. With one client: list the tools, activate a deferred
tool with tool_search (the server's tools/list_changed must arrive), list again, call it with a
progress callback. Then it prints `{"phase": "restart"}` and waits for a line on stdin, while
the test restarts the daemon on the same port: the old session is gone, so the next call fails
with the server's 404 error, and the script does what an application does, a new `Client` (a
new initialize), and calls a tool again. Finally it checks, with the SDK's own message types,
that the gap notice of `GET /mcp` (sent for a `Last-Event-ID` the server does not know) is a
message the SDK accepts. Prints one JSON document with what it saw; exits non-zero on failure.
Used by tests/interop.rs.
"""

import asyncio
import json
import os
import sys

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

ACCEPT = "application/json, text/event-stream"


def connect(url, token, notes):
    """A `Client` for `url` sending `token`; server notifications are appended to `notes`."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})

    async def on_message(message):
        method = getattr(message, "method", None)
        if method is not None:
            notes.append(method)

    client = Client(
        streamable_http_client(url, http_client=http),
        message_handler=on_message,
        client_info=types.Implementation(name="python-sdk-standard", version="1"),
    )
    return http, client


async def wait_for(notes, method, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if method in notes:
            return True
        await asyncio.sleep(0.05)
    return False


def names(listed):
    return [t.name for t in listed.tools]


async def gap_notice(url, token):
    """A raw initialize, then `GET /mcp` with a `Last-Event-ID` the server never issued: the
    first message, checked against the SDK's types."""
    headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }
    async with httpx2.AsyncClient(timeout=30) as http:
        answer = await http.post(url, json=init, headers=headers)
        session = answer.headers["mcp-session-id"]
        stream_headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "text/event-stream",
            "Mcp-Session-Id": session,
            "Last-Event-ID": "not-an-event-id",
        }
        async with http.stream("GET", url, headers=stream_headers) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:") and line[5:].strip():
                    data = line[5:].strip()
                    break
    message = types.jsonrpc_message_adapter.validate_json(data, by_name=False)
    notification = types.server_notification_adapter.validate_python(
        {"method": message.method, "params": message.params}
    )
    return {
        "type": type(notification).__name__,
        "level": notification.params.level,
        "logger": notification.params.logger,
        "data": notification.params.data,
    }


async def main() -> int:
    url = os.environ["REVKA_URL"]
    token = os.environ["REVKA_CLIENT_TOKEN"]
    tool = os.environ.get("REVKA_TOOL", "fault__progress")
    out = {}
    notes = []
    http, client = connect(url, token, notes)
    async with http, client:
        out["protocol_version"] = client.protocol_version
        out["server_name"] = client.server_info.name
        out["tools_before"] = names(await client.list_tools(cache_mode="refresh"))
        search = await client.call_tool("tool_search", {"query": f"select:{tool}"})
        out["search_text"] = search.content[0].text
        out["list_changed"] = await wait_for(notes, "notifications/tools/list_changed")
        out["tools_after"] = names(await client.list_tools(cache_mode="refresh"))
        progress = []

        async def on_progress(p, total, message):
            progress.append({"progress": p, "total": total, "message": message})

        result = await client.call_tool(tool, {"steps": 3, "interval_ms": 5}, progress_callback=on_progress)
        out["result_text"] = result.content[0].text
        out["progress"] = progress

        # The test restarts the daemon now.
        print(json.dumps({"phase": "restart"}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        try:
            await client.call_tool("tool_search", {"query": "select:fault__echo"})
            out["after_restart"] = None
        except MCPError as err:
            out["after_restart"] = {"code": err.code, "message": err.message}

    # What an application does on that error: a new client, a new session.
    notes_again = []
    http, client = connect(url, token, notes_again)
    async with http, client:
        await client.call_tool("tool_search", {"query": "select:fault__echo"})
        echoed = await client.call_tool("fault__echo", {"text": "after the restart"})
        out["echo_after_restart"] = echoed.content[0].text

    out["gap"] = await gap_notice(url, token)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except Exception as exc:  # report, with the chain, for the Rust test's assertion message
        import traceback

        traceback.print_exc()
        print(json.dumps({"error": repr(exc)}), flush=True)
        sys.exit(1)
