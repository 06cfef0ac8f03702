"""Drives Revka's MCP server with the official Python SDK client (PyPI `mcp`).

Reads REVKA_URL, REVKA_SESSION and REVKA_TOKEN, connects over Streamable HTTP with the two
auth headers, then: initialize, list tools, activate a deferred tool with tool_search, call it
with a progress callback. Prints one JSON document with what it saw; exits non-zero on failure.
Used by tests/interop.rs.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


async def main() -> int:
    url = os.environ["REVKA_URL"]
    headers = {
        "Authorization": f"Bearer {os.environ['REVKA_TOKEN']}",
        "X-Revka-Session": os.environ["REVKA_SESSION"],
    }
    tool = os.environ.get("REVKA_TOOL", "fault__progress")
    out = {}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                out["server_name"] = init.server_info.name if hasattr(init, "server_info") else init.serverInfo.name
                out["protocol_version"] = getattr(init, "protocol_version", None) or getattr(init, "protocolVersion", None)
                out["instructions"] = init.instructions
                listed = await session.list_tools()
                out["tools_before"] = [t.name for t in listed.tools]
                search = await session.call_tool("tool_search", {"query": f"select:{tool}"})
                out["search_text"] = search.content[0].text
                listed = await session.list_tools()
                out["tools_after"] = [t.name for t in listed.tools]
                progress = []

                async def on_progress(p, total, message):
                    progress.append({"progress": p, "total": total, "message": message})

                result = await session.call_tool(tool, {"steps": 3, "interval_ms": 5}, progress_callback=on_progress)
                out["result_text"] = result.content[0].text
                out["is_error"] = bool(getattr(result, "is_error", None) or getattr(result, "isError", False))
                out["progress"] = progress
                try:
                    await session.call_tool("does_not_exist", {})
                    out["unknown_error"] = None
                except MCPError as err:  # a plain JSON-RPC error, as seed 001 specifies
                    out["unknown_error"] = {"code": err.code, "message": err.message}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except Exception as exc:  # report, with the chain, for the Rust test's assertion message
        import traceback
        traceback.print_exc()
        print(json.dumps({"error": repr(exc)}))
        sys.exit(1)
