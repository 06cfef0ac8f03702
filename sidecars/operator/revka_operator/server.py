"""The ``revka-operator`` MCP server (stdio): plans, goals and status tools over a :class:`Store`.

Run it with ``python -m revka_operator.server`` (or the ``revka-operator`` console script);
the daemon runs it through the launcher ``run_operator_mcp.py``. State lives under
``$REVKA_HOME/operator_mcp/state/`` unless ``REVKA_OPERATOR_STATE_DIR`` names another
directory. The daemon passes ``[operator] max_tool_iterations`` as
``REVKA_OPERATOR_MAX_TOOL_ITERATIONS`` (default 80 when unset); ``operator_status`` reports it
for the agent loop that drives this session (the operator runs no loop itself), and a value
that is not a whole number from 1 to 2^32-1 stops the server at start with exit status 78
(EX_CONFIG) and a message saying so. Every failure a caller can cause is a tool error result
(``isError: true``) with a message saying what to fix; the process never exits because of a
bad call.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from typing import Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from . import __version__
from .store import Store, StoreError, default_state_dir

SERVER_NAME = "revka-operator"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
MAX_COUNT = 1000
MAX_INTERVAL_MS = 10_000
MAX_TOOL_ITERATIONS_ENV = "REVKA_OPERATOR_MAX_TOOL_ITERATIONS"
DEFAULT_MAX_TOOL_ITERATIONS = 80
MAX_TOOL_ITERATIONS_LIMIT = 2**32 - 1
EX_CONFIG = 78

INSTRUCTIONS = (
    "Revka's operator: persist plans (save_plan, recall_plans, get_plan) and goals "
    "(set_goal, list_goals, complete_goal) across agent sessions; operator_status reports "
    "the operator's own state."
)


def state_dir_from_env(env: dict[str, str] | None = None) -> str:
    """``REVKA_OPERATOR_STATE_DIR``, else ``$REVKA_HOME/operator_mcp/state``."""
    env = os.environ if env is None else env
    override = env.get("REVKA_OPERATOR_STATE_DIR", "").strip()
    return os.path.expanduser(override) if override else str(default_state_dir(env))


class ConfigError(Exception):
    """An environment setting the server cannot start with; the message says which and why."""


def max_tool_iterations_from_env(env: dict[str, str] | None = None) -> tuple[int, str]:
    """``REVKA_OPERATOR_MAX_TOOL_ITERATIONS`` and where it came from (the variable's name, or
    ``"default"`` when it is unset or empty). Raises :class:`ConfigError` for anything but a
    whole number from 1 to 2^32-1."""
    env = os.environ if env is None else env
    raw = env.get(MAX_TOOL_ITERATIONS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_TOOL_ITERATIONS, "default"
    if raw.isdigit() and raw.isascii() and 1 <= int(raw) <= MAX_TOOL_ITERATIONS_LIMIT:
        return int(raw), MAX_TOOL_ITERATIONS_ENV
    raise ConfigError(
        f"{MAX_TOOL_ITERATIONS_ENV} must be a whole number from 1 to "
        f"{MAX_TOOL_ITERATIONS_LIMIT}, not {raw!r}"
    )


def build_server(
    store: Store,
    log_level: LogLevel = "INFO",
    max_tool_iterations: tuple[int, str] = (DEFAULT_MAX_TOOL_ITERATIONS, "default"),
) -> MCPServer:
    """The MCP server with every tool bound to ``store``; it logs to stderr at ``log_level``.
    ``max_tool_iterations`` (value, source) is what ``operator_status`` reports."""
    server = MCPServer(
        SERVER_NAME, version=__version__, instructions=INSTRUCTIONS, log_level=log_level
    )

    def tool(fn: Any) -> Any:
        # Registers `fn` with its docstring dedented as the description.
        server.add_tool(fn, description=inspect.cleandoc(fn.__doc__ or ""))
        return fn

    def run(op: Any, *args: Any) -> Any:
        try:
            return op(*args)
        except StoreError as e:
            raise ToolError(str(e)) from e

    @tool
    def save_plan(title: str, steps: list[str], session: str | None = None) -> dict[str, Any]:
        """Save a plan: a title and its ordered steps, optionally tagged with a session id.

        Returns the stored plan, whose `id` get_plan accepts.
        """
        plan = run(store.save_plan, title, steps, session)
        return {"id": plan["id"], "plan": plan}

    @tool
    def recall_plans(query: str | None = None, limit: int = 10) -> dict[str, Any]:
        """Recall saved plans, newest first.

        With `query`, only plans whose title or steps contain every word of it
        (case-insensitive). `limit` is 1 to 100 (default 10).
        """
        plans = run(store.recall_plans, query, limit)
        return {"plans": plans, "count": len(plans)}

    @tool
    def get_plan(id: str) -> dict[str, Any]:  # noqa: A002 - the tool's argument is `id`
        """Get one saved plan by its id."""
        return run(store.get_plan, id)

    @tool
    def set_goal(text: str, priority: Literal["low", "normal", "high"] = "normal") -> dict[str, Any]:
        """Record a new open goal with a priority (low, normal or high; default normal)."""
        return run(store.set_goal, text, priority)

    @tool
    def list_goals(status: Literal["open", "done", "all"] = "open") -> dict[str, Any]:
        """List goals by status (open, done or all; default open), high priority first."""
        goals = run(store.list_goals, status)
        return {"goals": goals, "count": len(goals)}

    @tool
    def complete_goal(id: str) -> dict[str, Any]:  # noqa: A002
        """Mark an open goal as done."""
        return run(store.complete_goal, id)

    iterations, iterations_source = max_tool_iterations

    @tool
    def operator_status() -> dict[str, Any]:
        """The operator's pid, version, state directory, how many plans and goals it holds,
        and the session's tool-loop limit (`max_tool_iterations`, with where it came from)."""
        return {
            "name": SERVER_NAME,
            "version": __version__,
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "state_dir": str(store.dir),
            "counts": run(store.counts),
            "max_tool_iterations": iterations,
            "max_tool_iterations_source": iterations_source,
        }

    @tool
    async def slow_count(n: int, interval_ms: int, ctx: Context) -> dict[str, Any]:
        """Count from 1 to `n`, waiting `interval_ms` between steps and reporting MCP progress
        after each one (a test tool for progress and timeouts)."""
        if not 1 <= n <= MAX_COUNT:
            raise ToolError(f"n must be from 1 to {MAX_COUNT}")
        if not 0 <= interval_ms <= MAX_INTERVAL_MS:
            raise ToolError(f"interval_ms must be from 0 to {MAX_INTERVAL_MS}")
        for i in range(1, n + 1):
            if interval_ms:
                await asyncio.sleep(interval_ms / 1000)
            await ctx.report_progress(i, n, f"counted {i} of {n}")
        return {"counted": n}

    return server


def main(argv: list[str] | None = None) -> int:
    """Entry point: serve MCP on stdin/stdout until the client closes stdin."""
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["--version"], ["-V"]):
        print(f"{SERVER_NAME} {__version__}")
        return 0
    if argv:
        print(f"usage: {SERVER_NAME} [--version]  (serves MCP on stdio)", file=sys.stderr)
        return 64
    try:
        iterations = max_tool_iterations_from_env()
    except ConfigError as e:
        print(f"{SERVER_NAME}: {e}", file=sys.stderr)
        return EX_CONFIG
    server = build_server(Store(state_dir_from_env()), max_tool_iterations=iterations)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
