"""A stdio MCP server on the official Python SDK for Revka's resources/prompts tests.

It offers, for `tests/mcp_surface.rs`:
- `demo://resource/static/document/instructions.md`: the URI server-everything also serves,
  with its own text (`served by the surface fixture`), so two servers share a URI;
- `fixture://hello`: a URI only it serves;
- `fixture://big`: 5 MiB of text, past the 4 MiB line cap of stdio transports;
- prompt `greet(name)`;
- subscriptions: `resources/subscribe` adds the URI to a set and, before answering, sends
  `notifications/resources/updated` for every URI in the set (so a second subscription shows
  whether each session gets only the updates of its own URI).
"""

from __future__ import annotations

import sys
from typing import Any

import mcp_types as types
from mcp.server.mcpserver import MCPServer

server = MCPServer("revka-surface-fixture", version="1.0.0")


@server.resource("demo://resource/static/document/instructions.md", name="instructions.md", mime_type="text/markdown")
def shared() -> str:
    return "served by the surface fixture"


@server.resource("fixture://hello", name="hello", mime_type="text/plain")
def hello() -> str:
    return "hello from the fixture"


@server.resource("fixture://big", name="big", mime_type="text/plain")
def big() -> str:
    return "x" * (5 * 1024 * 1024)


@server.prompt()
def greet(name: str) -> str:
    """Greets someone."""
    return f"Hello, {name}!"


SUBSCRIBED: set[str] = set()


async def _subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    uri = str(params.uri)
    SUBSCRIBED.add(uri)
    for each in sorted(SUBSCRIBED):
        await ctx.session.send_resource_updated(each)
    return types.EmptyResult()


async def _unsubscribe(_ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    SUBSCRIBED.discard(str(params.uri))
    return types.EmptyResult()


_low = server._lowlevel_server  # noqa: SLF001
_low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, _subscribe)
_low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, _unsubscribe)


if __name__ == "__main__":
    server.run("stdio")
    sys.exit(0)
