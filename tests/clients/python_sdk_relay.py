"""Drives the relay of server-to-client requests through Revka with the official Python SDK's
`Client` (PyPI `mcp`) as a sampling-, elicitation- and roots-capable client, on the standard
Streamable HTTP path, against server-everything served as `everything`.

Reads REVKA_URL and REVKA_CLIENT_TOKEN; the mode is the first argument.

- `relay`: a client with every callback sets its log level to debug, calls
  `everything__trigger-sampling-request` (its sampling callback answers) and
  `everything__trigger-elicitation-request` (its elicitation callback accepts), and starts and
  stops `everything__toggle-simulated-logging` (its logging callback gets a message). Then a
  client declaring none of the capabilities calls the sampling tool: it must get an error at
  once. Prints one JSON document with what it saw.
- `kill`: a client whose sampling callback prints `{"phase": "sampling"}` and then never
  answers calls the sampling tool; the test kills the server meanwhile. Prints one JSON
  document with how the call ended.

Exits non-zero on failure. Used by tests/mcp_relay.rs.
"""

import asyncio
import json
import os
import sys
import time

import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

MODEL = "python-sdk-relay-model"
SAMPLING = "everything__trigger-sampling-request"


def connect(url, token, **callbacks):
    """A `Client` for `url` sending `token`, with `callbacks`."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    client = Client(
        streamable_http_client(url, http_client=http),
        mode="legacy",
        client_info=types.Implementation(name="python-sdk-relay", version="1"),
        **callbacks,
    )
    return http, client


async def call(client, name, arguments):
    """The call's texts and error flag, or the JSON-RPC error it raised; and how long it took."""
    start = time.monotonic()
    try:
        result = await client.call_tool(name, arguments)
        outcome = {
            "texts": [c.text for c in result.content if getattr(c, "text", None) is not None],
            "is_error": bool(result.is_error),
        }
    except MCPError as err:
        outcome = {"error": {"code": err.code, "message": err.message}}
    outcome["secs"] = time.monotonic() - start
    return outcome


async def relay(url, token):
    out = {"sampling_params": [], "elicitation_params": [], "roots_asked": 0, "logs": []}

    async def on_sampling(context, params):
        content = params.messages[0].content
        text = getattr(content, "text", None) or str(content)
        out["sampling_params"].append({"text": text, "max_tokens": params.max_tokens})
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled by the python client"),
            model=MODEL,
            stop_reason="endTurn",
        )

    async def on_elicitation(context, params):
        out["elicitation_params"].append({"message": getattr(params, "message", None)})
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})

    async def on_roots(context):
        out["roots_asked"] += 1
        return types.ListRootsResult(roots=[])

    async def on_log(params):
        out["logs"].append({"level": params.level, "data": str(params.data)})

    http, client = connect(
        url,
        token,
        sampling_callback=on_sampling,
        elicitation_callback=on_elicitation,
        list_roots_callback=on_roots,
        logging_callback=on_log,
    )
    async with http, client:
        await client.set_logging_level("debug")
        out["sampling"] = await call(client, SAMPLING, {"prompt": "relay me", "maxTokens": 21})
        out["elicitation"] = await call(client, "everything__trigger-elicitation-request", {})
        await call(client, "everything__toggle-simulated-logging", {})
        for _ in range(200):
            if out["logs"]:
                break
            await asyncio.sleep(0.05)
        await call(client, "everything__toggle-simulated-logging", {})

    # A client that declared none of the capabilities: the server is refused at once.
    http, client = connect(url, token)
    async with http, client:
        out["without_sampling"] = await call(client, SAMPLING, {"prompt": "nobody answers"})
    return out


async def kill(url, token):
    async def on_sampling(context, params):
        print(json.dumps({"phase": "sampling"}), flush=True)
        await asyncio.Event().wait()  # never answers: the server dies meanwhile

    http, client = connect(url, token, sampling_callback=on_sampling)
    async with http, client:
        return {"call": await call(client, SAMPLING, {"prompt": "you will not see this"})}


async def main() -> int:
    url = os.environ["REVKA_URL"]
    token = os.environ["REVKA_CLIENT_TOKEN"]
    mode = sys.argv[1]
    out = await (relay(url, token) if mode == "relay" else kill(url, token))
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
