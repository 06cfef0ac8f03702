"""A server for the official MCP conformance suite's server scenarios, on the official Python SDK.

Built on `MCPServer` (PyPI `mcp` 2.x), it implements every tool, resource, prompt and utility
that the server scenarios of `@modelcontextprotocol/conformance` (the version pinned in
`.ci/test-deps/package.json`) call by name, with the content each scenario checks. It runs
over stdio (the default: Revka fronts it as an `[[mcp.servers]]` stdio entry, see
`tests/conformance.rs`) or over Streamable HTTP, for running the suite against it directly:

    python conformance_fixture.py                 # stdio
    python conformance_fixture.py --http [PORT]   # Streamable HTTP on 127.0.0.1:PORT (0 = any)

Over HTTP it binds before it starts serving and prints one line, `url=http://127.0.0.1:<port>/mcp`,
to stdout once it accepts connections; everything else goes to stderr.

Scenario -> what it calls here:

| scenario                        | implemented by                                               |
|---------------------------------|--------------------------------------------------------------|
| server-initialize, ping         | the SDK's handshake and `ping`                               |
| tools-list                      | every tool below has a name, description and inputSchema     |
| tools-call-simple-text          | tool `test_simple_text`                                      |
| tools-call-image                | tool `test_image_content` (1x1 PNG)                          |
| tools-call-audio                | tool `test_audio_content` (short WAV, `audio/wav`)           |
| tools-call-embedded-resource    | tool `test_embedded_resource`                                |
| tools-call-mixed-content        | tool `test_multiple_content_types` (text, image, resource)   |
| tools-call-error                | tool `test_error_handling` (`isError: true`)                 |
| tools-call-with-progress        | tool `test_tool_with_progress` (0, 50, 100 of 100)           |
| tools-call-with-logging         | tool `test_tool_with_logging` (3 info messages) + setLevel   |
| logging-set-level               | `logging/setLevel` (answers `{}`)                            |
| completion-complete             | `completion/complete` (prompt argument completions)          |
| tools-call-sampling             | tool `test_sampling` (`sampling/createMessage`)              |
| tools-call-elicitation          | tool `test_elicitation` (`elicitation/create`)               |
| elicitation-sep1034-defaults    | tool `test_elicitation_sep1034_defaults`                     |
| elicitation-sep1330-enums       | tool `test_elicitation_sep1330_enums`                        |
| json-schema-2020-12             | tool `json_schema_2020_12_tool` ($schema, $defs, ...)        |
| server-sse-polling              | tool `test_reconnection` (closes its SSE stream; HTTP only)  |
| server-sse-multiple-streams     | the transport (concurrent POST streams)                      |
| resources-list, -read-text,     | `test://static-text`, `test://static-binary`,                |
|   -read-binary, -templates-read |   template `test://template/{id}/data`                       |
| resources-subscribe/unsubscribe | `resources/subscribe` and `/unsubscribe` of                  |
|                                 |   `test://watched-resource`; tool `test_update_resource(uri)`|
|                                 |   sends `notifications/resources/updated` to its subscribers |
| prompts-list, prompts-get-*     | prompts `test_simple_prompt`, `test_prompt_with_arguments`,  |
|                                 |   `test_prompt_with_embedded_resource`,                      |
|                                 |   `test_prompt_with_image`                                   |
| dns-rebinding-protection        | the SDK's Host/Origin checks on a loopback bind (HTTP only)  |
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import socket
import struct
import sys
import warnings
import wave
import zlib
from collections import deque
from typing import Any

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer, UserMessage
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore

# Logging, sampling and elicitation are deprecated by the 2026-07-28 revision; the scenarios
# this fixture serves are of the revisions before it, where they are current.
warnings.filterwarnings("ignore", message=".*deprecated as of 2026-07-28.*")


def _png_1x1_red() -> bytes:
    """A valid 1x1 red RGB PNG, built here rather than pasted as opaque bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_silence() -> bytes:
    """A valid 10 ms mono 8 kHz 16-bit WAV of silence."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 80)
    return out.getvalue()


PNG = _png_1x1_red()
PNG_B64 = base64.b64encode(PNG).decode()
WAV_B64 = base64.b64encode(_wav_silence()).decode()

server = MCPServer(
    "revka-conformance-fixture",
    version="1.0.0",
    instructions="Fixture for the official MCP conformance suite's server scenarios.",
)


# ==== Tools: content types ====


@server.tool()
def test_simple_text() -> str:
    """Returns a simple text response."""
    return "This is a simple text response for testing."


@server.tool()
def test_image_content() -> types.CallToolResult:
    """Returns a 1x1 PNG image."""
    return types.CallToolResult(content=[types.ImageContent(type="image", data=PNG_B64, mime_type="image/png")])


@server.tool()
def test_audio_content() -> types.CallToolResult:
    """Returns a short WAV clip."""
    return types.CallToolResult(content=[types.AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")])


@server.tool()
def test_embedded_resource() -> types.CallToolResult:
    """Returns an embedded text resource."""
    resource = types.TextResourceContents(
        uri="test://embedded-resource",
        mime_type="text/plain",
        text="This is an embedded resource content.",
    )
    return types.CallToolResult(content=[types.EmbeddedResource(type="resource", resource=resource)])


@server.tool()
def test_multiple_content_types() -> types.CallToolResult:
    """Returns text, an image and an embedded resource in one result."""
    resource = types.TextResourceContents(
        uri="test://mixed-content-resource",
        mime_type="application/json",
        text=json.dumps({"test": "data", "value": 123}),
    )
    return types.CallToolResult(
        content=[
            types.TextContent(type="text", text="Multiple content types test:"),
            types.ImageContent(type="image", data=PNG_B64, mime_type="image/png"),
            types.EmbeddedResource(type="resource", resource=resource),
        ]
    )


@server.tool()
def test_error_handling() -> types.CallToolResult:
    """Always fails, as a tool error (isError: true)."""
    return types.CallToolResult(
        is_error=True,
        content=[types.TextContent(type="text", text="This tool intentionally returns an error for testing")],
    )


# ==== Tools: notifications during a call ====


@server.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress 0, 50 and 100 of 100, 50 ms apart (if the caller sent a progress token)."""
    await ctx.report_progress(0, 100)
    await asyncio.sleep(0.05)
    await ctx.report_progress(50, 100)
    await asyncio.sleep(0.05)
    await ctx.report_progress(100, 100)
    return "Progress test completed"


@server.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends three info log messages, 50 ms apart."""
    await ctx.info("Tool execution started")
    await asyncio.sleep(0.05)
    await ctx.info("Tool processing data")
    await asyncio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Logging test completed"


@server.tool()
async def test_reconnection(ctx: Context) -> str:
    """Closes its SSE stream mid-call, then answers; the client resumes with Last-Event-ID.

    Only meaningful over Streamable HTTP with an event store; elsewhere closing is a no-op.
    """
    await asyncio.sleep(0.05)
    await ctx.close_sse_stream()
    await asyncio.sleep(0.2)
    return "Reconnection test completed"


# ==== Tools: requests to the client ====


@server.tool()
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Asks the client's LLM (sampling/createMessage) and returns its answer."""
    result = await ctx.session.create_message(
        messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
        max_tokens=100,
        related_request_id=ctx.request_id,
    )
    content = result.content
    text = content.text if isinstance(content, types.TextContent) else json.dumps(content.model_dump(mode="json"))
    return f"LLM response: {text}"


async def _elicit(ctx: Context, message: str, schema: dict[str, Any]) -> str:
    result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"


@server.tool()
async def test_elicitation(message: str, ctx: Context) -> str:
    """Asks the user (elicitation/create) for a username and an email."""
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    }
    text = await _elicit(ctx, message, schema)
    return text.replace("Elicitation completed", "User response", 1)


@server.tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Elicits a form whose every primitive field has a default (SEP-1034)."""
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
        "required": [],
    }
    return await _elicit(ctx, "Please review and update the form fields with defaults", schema)


@server.tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Elicits a form with the five enum schema variants (SEP-1330)."""
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Untitled single-select",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Titled single-select",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"},
                ],
            },
            "legacyEnum": {
                "type": "string",
                "description": "Legacy titled enum",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Untitled multi-select",
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
            },
            "titledMulti": {
                "type": "array",
                "description": "Titled multi-select",
                "items": {
                    "anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"},
                    ]
                },
            },
        },
        "required": [],
    }
    return await _elicit(ctx, "Please select options from the enum fields", schema)


# ==== Tool: a JSON Schema 2020-12 input schema, advertised verbatim ====


def json_schema_2020_12_tool(name: str | None = None, address: dict[str, Any] | None = None) -> str:
    """Tool with JSON Schema 2020-12 features"""
    return json.dumps({"name": name, "address": address})


JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}
# The SDK derives a schema from the signature (which validates the call); the advertised one is
# replaced by the 2020-12 schema the scenario looks for.
server._tool_manager.add_tool(json_schema_2020_12_tool)  # noqa: SLF001
_registered: Tool = server._tool_manager.get_tool("json_schema_2020_12_tool")  # noqa: SLF001
_registered.parameters = JSON_SCHEMA_2020_12


# ==== Resources ====


@server.resource("test://static-text", name="static-text", description="A static text resource", mime_type="text/plain")
def static_text() -> str:
    return "This is the content of the static text resource."


@server.resource("test://static-binary", name="static-binary", description="A 1x1 PNG", mime_type="image/png")
def static_binary() -> bytes:
    return PNG


@server.resource(
    "test://template/{id}/data", name="template-data", description="Data for an id", mime_type="application/json"
)
def template_data(id: str) -> str:  # noqa: A002 - the template's variable name
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@server.resource(
    "test://watched-resource", name="watched-resource", description="A subscribable resource", mime_type="text/plain"
)
def watched_resource() -> str:
    return "Watched resource content"


# The connections (one per client) subscribed to each URI. The SDK makes a session per request;
# updates go on the connection's own channel (for HTTP, the client's GET stream), as no
# request of the client's is theirs.
SUBSCRIBED: dict[str, list[Any]] = {}


def _connection(ctx: Any) -> Any:
    return ctx.session._connection  # noqa: SLF001 - the SDK exposes no public accessor here


async def _subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    connections = SUBSCRIBED.setdefault(str(params.uri), [])
    if all(c is not _connection(ctx) for c in connections):
        connections.append(_connection(ctx))
    return types.EmptyResult()


async def _unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    connections = SUBSCRIBED.get(str(params.uri), [])
    connections[:] = [c for c in connections if c is not _connection(ctx)]
    return types.EmptyResult()


@server.tool()
async def test_update_resource(uri: str = "test://watched-resource") -> str:
    """Sends notifications/resources/updated for `uri` to every client subscribed to it."""
    sent = 0
    for connection in list(SUBSCRIBED.get(uri, [])):
        try:
            await connection.send_resource_updated(uri)
            sent += 1
        except Exception:  # noqa: BLE001 - a client that went away is forgotten
            SUBSCRIBED[uri] = [c for c in SUBSCRIBED[uri] if c is not connection]
    return f"notified {sent} subscriber(s) of {uri}"


async def _set_level(_ctx: Any, _params: types.SetLevelRequestParams) -> types.EmptyResult:
    return types.EmptyResult()


# The SDK's high-level server has no decorator for these; its low-level server takes them (and
# then advertises `resources.subscribe` and `logging`).
_low = server._lowlevel_server  # noqa: SLF001
_low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, _subscribe)
_low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, _unsubscribe)
_low.add_request_handler("logging/setLevel", types.SetLevelRequestParams, _set_level)


# ==== Prompts and completion ====


@server.prompt()
def test_simple_prompt() -> str:
    """A simple prompt without arguments."""
    return "This is a simple prompt for testing."


@server.prompt()
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with two required arguments."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@server.prompt()
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:  # noqa: N803 - the scenario's name
    """A prompt embedding the resource named by its argument."""
    resource = types.TextResourceContents(
        uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
    )
    return [
        UserMessage(content=types.EmbeddedResource(type="resource", resource=resource)),
        UserMessage(content="Please process the embedded resource above."),
    ]


@server.prompt()
def test_prompt_with_image() -> list[UserMessage]:
    """A prompt with an image."""
    return [
        UserMessage(content=types.ImageContent(type="image", data=PNG_B64, mime_type="image/png")),
        UserMessage(content="Please analyze the image above."),
    ]


COMPLETIONS = ["paris", "park", "party", "test", "testing", "tested"]


@server.completion()
async def complete(_ref: Any, argument: types.CompletionArgument, _context: Any) -> types.Completion:
    values = [v for v in COMPLETIONS if v.startswith(argument.value)]
    return types.Completion(values=values, total=len(values), has_more=False)


# ==== Streamable HTTP ====


class MemoryEventStore(EventStore):
    """Resumability for the HTTP mode: the last `capacity` events of every stream, in memory."""

    def __init__(self, capacity: int = 1000) -> None:
        self._events: deque[tuple[str, str, types.JSONRPCMessage | None]] = deque(maxlen=capacity)
        self._next = 0

    async def store_event(self, stream_id: str, message: types.JSONRPCMessage | None) -> str:
        self._next += 1
        event_id = str(self._next)
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        ids = [e[0] for e in self._events]
        if last_event_id not in ids:
            return None
        at = ids.index(last_event_id)
        stream_id = self._events[at][1]
        for event_id, sid, message in list(self._events)[at + 1 :]:
            if sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


async def serve_http(port: int) -> None:
    import uvicorn

    app = server.streamable_http_app(event_store=MemoryEventStore(), retry_interval=500, host="127.0.0.1")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning")
    http = uvicorn.Server(config)

    async def announce() -> None:
        while not http.started:
            await asyncio.sleep(0.01)
        print(f"url=http://127.0.0.1:{bound}/mcp", flush=True)

    announcer = asyncio.ensure_future(announce())
    await http.serve(sockets=[sock])
    announcer.cancel()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--http", nargs="?", const=0, type=int, metavar="PORT", help="serve Streamable HTTP on 127.0.0.1:PORT"
    )
    args = parser.parse_args()
    if args.http is None:
        server.run("stdio")
    else:
        asyncio.run(serve_http(args.http))
    return 0


if __name__ == "__main__":
    sys.exit(main())
