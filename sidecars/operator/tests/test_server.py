"""The MCP server: every tool in-process through the SDK's client, then the real server
(and the launcher) as a subprocess over stdio through the SDK's stdio client."""

from __future__ import annotations

import os
import subprocess
import sys
import unittest
from pathlib import Path

from helpers import LAUNCHER, OPERATOR_DIR, payload, server_env, temp_home, text

from mcp import Client, ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from revka_operator import __version__
from revka_operator.server import (
    DEFAULT_MAX_TOOL_ITERATIONS,
    MAX_TOOL_ITERATIONS_ENV,
    SERVER_NAME,
    ConfigError,
    build_server,
    max_tool_iterations_from_env,
)
from revka_operator.store import Store

TOOLS = {
    "save_plan",
    "recall_plans",
    "get_plan",
    "set_goal",
    "list_goals",
    "complete_goal",
    "operator_status",
    "slow_count",
}


class InProcessTest(unittest.IsolatedAsyncioTestCase):
    """Each test talks to a fresh server over a fresh state directory."""

    def setUp(self) -> None:
        self.state = temp_home(self) / "state"

    def connect(self) -> Client:
        return Client(build_server(Store(self.state), log_level="WARNING"))

    async def call(self, name: str, **args: object):
        return await self.client.call_tool(name, args)

    async def test_lists_every_tool_with_a_description(self) -> None:
        async with self.connect() as self.client:
            tools = (await self.client.list_tools()).tools
            self.assertEqual({t.name for t in tools}, TOOLS)
            for t in tools:
                self.assertTrue(t.description and not t.description.startswith(" "), t.name)
            by_name = {t.name: t for t in tools}
            self.assertEqual(by_name["save_plan"].input_schema["required"], ["title", "steps"])
            priority = by_name["set_goal"].input_schema["properties"]["priority"]
            self.assertEqual(priority["enum"], ["low", "normal", "high"])

    async def test_plans_save_recall_get(self) -> None:
        async with self.connect() as self.client:
            saved = payload(await self.call("save_plan", title="Ship v1", steps=["test", "tag"]))
            self.assertTrue(saved["id"].startswith("plan_"))
            payload(await self.call("save_plan", title="Other", steps=["x"], session="s-9"))
            recalled = payload(await self.call("recall_plans", query="ship"))
            self.assertEqual(recalled["count"], 1)
            self.assertEqual(recalled["plans"][0]["steps"], ["test", "tag"])
            self.assertEqual(payload(await self.call("recall_plans"))["plans"][0]["session"], "s-9")
            self.assertEqual(payload(await self.call("recall_plans", limit=1))["count"], 1)
            got = payload(await self.call("get_plan", id=saved["id"]))
            self.assertEqual(got["title"], "Ship v1")

    async def test_goals_set_list_complete(self) -> None:
        async with self.connect() as self.client:
            g = payload(await self.call("set_goal", text="ship it", priority="high"))
            payload(await self.call("set_goal", text="later", priority="low"))
            listed = payload(await self.call("list_goals"))
            self.assertEqual([x["text"] for x in listed["goals"]], ["ship it", "later"])
            done = payload(await self.call("complete_goal", id=g["id"]))
            self.assertEqual(done["status"], "done")
            self.assertEqual(payload(await self.call("list_goals", status="done"))["count"], 1)
            self.assertEqual(payload(await self.call("list_goals", status="all"))["count"], 2)
            status = payload(await self.call("operator_status"))
            self.assertEqual(status["counts"], {"plans": 0, "goals_open": 1, "goals_done": 1})
            self.assertEqual(status["pid"], os.getpid())
            self.assertEqual(status["state_dir"], str(self.state))
            self.assertEqual(status["version"], __version__)
            self.assertEqual(status["max_tool_iterations"], DEFAULT_MAX_TOOL_ITERATIONS)
            self.assertEqual(status["max_tool_iterations_source"], "default")

    async def test_status_reports_the_max_tool_iterations_it_was_given(self) -> None:
        server = build_server(
            Store(self.state),
            log_level="WARNING",
            max_tool_iterations=(12, MAX_TOOL_ITERATIONS_ENV),
        )
        async with Client(server) as self.client:
            status = payload(await self.call("operator_status"))
            self.assertEqual(status["max_tool_iterations"], 12)
            self.assertEqual(
                status["max_tool_iterations_source"], "REVKA_OPERATOR_MAX_TOOL_ITERATIONS"
            )

    async def test_bad_input_is_a_tool_error_and_the_server_carries_on(self) -> None:
        async with self.connect() as self.client:
            cases = [
                ("save_plan", {"title": " ", "steps": ["a"]}, "title must not be empty"),
                ("save_plan", {"title": "t"}, "steps"),
                ("save_plan", {"title": "t", "steps": []}, "non-empty list"),
                ("recall_plans", {"limit": 0}, "limit must be"),
                ("get_plan", {"id": "plan_0_missing"}, "no plan with id"),
                ("get_plan", {"id": "../x"}, "invalid id"),
                ("set_goal", {"text": "x", "priority": "urgent"}, "priority"),
                ("list_goals", {"status": "closed"}, "status"),
                ("complete_goal", {"id": "goal_0_missing"}, "no goal with id"),
                ("slow_count", {"n": 0, "interval_ms": 0}, "n must be from 1"),
                ("slow_count", {"n": 1, "interval_ms": -1}, "interval_ms must be"),
            ]
            for name, args, message in cases:
                with self.subTest(tool=name, args=args):
                    result = await self.client.call_tool(name, args)
                    self.assertTrue(result.is_error)
                    self.assertIn(message, text(result))
            unknown = await self.client.call_tool("no_such_tool", {})
            self.assertTrue(unknown.is_error)
            self.assertEqual(payload(await self.call("operator_status"))["counts"]["plans"], 0)

    async def test_slow_count_reports_progress(self) -> None:
        async with self.connect() as self.client:
            seen: list[tuple[float, float | None, str | None]] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                seen.append((progress, total, message))

            result = await self.client.call_tool(
                "slow_count", {"n": 3, "interval_ms": 5}, progress_callback=on_progress
            )
            self.assertEqual(payload(result), {"counted": 3})
            self.assertEqual([(p, t) for p, t, _ in seen], [(1, 3), (2, 3), (3, 3)])
            self.assertEqual(seen[-1][2], "counted 3 of 3")


class MaxToolIterationsTest(unittest.TestCase):
    def test_from_the_environment_or_the_default(self) -> None:
        self.assertEqual(DEFAULT_MAX_TOOL_ITERATIONS, 80)
        self.assertEqual(max_tool_iterations_from_env({}), (80, "default"))
        blank = {MAX_TOOL_ITERATIONS_ENV: " "}
        self.assertEqual(max_tool_iterations_from_env(blank), (80, "default"))
        for raw, value in [("12", 12), (" 7 ", 7), ("1", 1), ("4294967295", 4294967295)]:
            with self.subTest(raw=raw):
                self.assertEqual(
                    max_tool_iterations_from_env({MAX_TOOL_ITERATIONS_ENV: raw}),
                    (value, MAX_TOOL_ITERATIONS_ENV),
                )

    def test_anything_else_is_a_precise_config_error(self) -> None:
        for raw in ["0", "-3", "abc", "1.5", "4294967296", "\u0661\u0662", "+5"]:
            with self.subTest(raw=raw):
                with self.assertRaises(ConfigError) as caught:
                    max_tool_iterations_from_env({MAX_TOOL_ITERATIONS_ENV: raw})
                self.assertEqual(
                    str(caught.exception),
                    "REVKA_OPERATOR_MAX_TOOL_ITERATIONS must be a whole number from 1 to "
                    f"4294967295, not {raw!r}",
                )

    def test_the_server_refuses_to_start_with_a_bad_value_and_exits_78(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "revka_operator.server"],
            env={**os.environ, **server_env(temp_home(self)), MAX_TOOL_ITERATIONS_ENV: "lots"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(done.returncode, 78, done.stderr)
        self.assertEqual(done.stdout, "")
        self.assertEqual(
            done.stderr.strip(),
            "revka-operator: REVKA_OPERATOR_MAX_TOOL_ITERATIONS must be a whole number "
            "from 1 to 4294967295, not 'lots'",
        )


class StdioTest(unittest.IsolatedAsyncioTestCase):
    """The real server process, over stdio, through the SDK's stdio client."""

    async def session_test(
        self, params: StdioServerParameters, home: Path, iterations: tuple[int, str]
    ) -> None:
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    init = await session.initialize()
                    self.assertEqual(init.server_info.name, SERVER_NAME)
                    self.assertEqual(init.server_info.version, __version__)
                    tools = await session.list_tools()
                    self.assertEqual({t.name for t in tools.tools}, TOOLS)
                    saved = payload(
                        await session.call_tool("save_plan", {"title": "t", "steps": ["a"]})
                    )
                    got = payload(await session.call_tool("get_plan", {"id": saved["id"]}))
                    self.assertEqual(got["steps"], ["a"])
                    bad = await session.call_tool("set_goal", {"text": ""})
                    self.assertTrue(bad.is_error)
                    seen: list[float] = []

                    async def on_progress(p: float, _t: float | None, _m: str | None) -> None:
                        seen.append(p)

                    counted = await session.call_tool(
                        "slow_count", {"n": 4, "interval_ms": 10}, progress_callback=on_progress
                    )
                    self.assertEqual(payload(counted), {"counted": 4})
                    self.assertEqual(seen, [1, 2, 3, 4])
                    status = payload(await session.call_tool("operator_status", {}))
                    self.assertNotEqual(status["pid"], os.getpid())
        state = home / "operator_mcp" / "state"
        self.assertTrue((state / "plans.json").exists(), "state lands under $REVKA_HOME")
        self.assertEqual(status["state_dir"], str(state))
        self.assertEqual(
            (status["max_tool_iterations"], status["max_tool_iterations_source"]), iterations
        )

    async def test_server_module_over_stdio(self) -> None:
        home = temp_home(self)
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "revka_operator.server"],
            env={**server_env(home), MAX_TOOL_ITERATIONS_ENV: "17"},
            cwd=str(home),
        )
        await self.session_test(params, home, (17, MAX_TOOL_ITERATIONS_ENV))

    async def test_launcher_execs_into_the_operator_venv(self) -> None:
        home = temp_home(self)
        make_venv(home / "operator_mcp" / "venv")
        params = StdioServerParameters(
            command=sys.executable,
            args=[str(LAUNCHER)],
            env={"REVKA_HOME": str(home), MAX_TOOL_ITERATIONS_ENV: "23"},
        )
        await self.session_test(params, home, (23, MAX_TOOL_ITERATIONS_ENV))


def make_venv(venv: Path) -> None:
    """A real venv (no pip) that sees the test interpreter's packages and the operator source."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    paths = [str(OPERATOR_DIR)] + [p for p in sys.path if p.endswith("site-packages")]
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "revka_test.pth").write_text("\n".join(paths) + "\n")


class LauncherTest(unittest.TestCase):
    def test_without_a_venv_it_says_how_to_install_and_exits_78(self) -> None:
        home = temp_home(self)
        done = subprocess.run(
            [sys.executable, str(LAUNCHER)],
            env={"REVKA_HOME": str(home), "PATH": os.environ.get("PATH", "")},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(done.returncode, 78)
        self.assertEqual(done.stdout, "")
        lines = done.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, done.stderr)
        self.assertIn(f"no venv at {home / 'operator_mcp' / 'venv'}", lines[0])
        self.assertIn("run: revka install --sidecars-only", lines[0])

    def test_version_flag(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "revka_operator.server", "--version"],
            env={**os.environ, **server_env(temp_home(self))},
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), f"{SERVER_NAME} {__version__}")


if __name__ == "__main__":
    unittest.main()
