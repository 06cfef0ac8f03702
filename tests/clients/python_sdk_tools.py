"""Calls Revka's built-in tools with the official Python SDK client (PyPI `mcp`).

Reads REVKA_URL, REVKA_SESSION and REVKA_TOKEN (a session minted by `POST /session`, so its
workspace is the cwd the test chose), and on stdin a JSON array of calls
`{"tool": name, "arguments": {...}}`. Connects over Streamable HTTP with the two auth headers,
activates every named tool with one `tool_search` `select:` (deferred loading), then makes each
call in order with a progress callback. Prints one JSON document: `{"tools": [listed names],
"calls": [{"tool", "is_error", "text", "structured", "progress", "error"}]}` where `error` is a
JSON-RPC error `{code, message}` when the call was refused as a request. Exits non-zero when
the session cannot be set up. Used by tests/builtin_*.rs through tests/harness/builtin.rs.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


def is_error(result):
    return bool(getattr(result, "is_error", None) or getattr(result, "isError", False))


def structured(result):
    value = getattr(result, "structured_content", None)
    if value is None:
        value = getattr(result, "structuredContent", None)
    return value


async def main() -> int:
    url = os.environ["REVKA_URL"]
    headers = {
        "Authorization": f"Bearer {os.environ['REVKA_TOKEN']}",
        "X-Revka-Session": os.environ["REVKA_SESSION"],
    }
    calls = json.load(sys.stdin)
    out = {"calls": []}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = sorted({c["tool"] for c in calls})
                if names:
                    await session.call_tool("tool_search", {"query": "select:" + ",".join(names)})
                listed = await session.list_tools()
                out["tools"] = [t.name for t in listed.tools]
                for call in calls:
                    progress = []

                    async def on_progress(p, total, message, progress=progress):
                        progress.append({"progress": p, "total": total, "message": message})

                    seen = {"tool": call["tool"], "progress": progress}
                    try:
                        result = await session.call_tool(
                            call["tool"], call.get("arguments", {}), progress_callback=on_progress
                        )
                        seen["is_error"] = is_error(result)
                        seen["text"] = "".join(
                            getattr(c, "text", "") for c in result.content if getattr(c, "type", "") == "text"
                        )
                        seen["structured"] = structured(result)
                    except MCPError as err:
                        seen["error"] = {"code": err.code, "message": err.message}
                    out["calls"].append(seen)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except Exception as e:  # noqa: BLE001 - the test prints what went wrong
        print(f"python_sdk_tools: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
