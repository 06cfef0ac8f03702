"""Plans and goals, persisted as JSON files under ``$REVKA_HOME/operator_mcp/state/``.

Every operator process (the daemon starts one per agent session) shares the same state
directory, so every read-modify-write runs under an exclusive ``flock`` on
``state/.lock``, and every write replaces its file atomically: a temporary sibling created
owner-only (0600), flushed and fsynced, then renamed over the target. A reader therefore sees
either the old document or the new one, and two processes saving at once never lose a write.

The documents are ``plans.json`` and ``goals.json``, each ``{"version": 1, "items": [...]}``.
Problems (bad input, an unreadable or corrupt file) raise :class:`StoreError` with a message
meant for the caller; the server turns them into tool error results.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
PRIORITIES = ("low", "normal", "high")
GOAL_STATUSES = ("open", "done", "all")

MAX_TITLE = 200
MAX_TEXT = 4000
MAX_STEPS = 100
MAX_STEP = 2000
MAX_SESSION = 200
MAX_QUERY = 200
MAX_LIMIT = 100


class StoreError(Exception):
    """A request the store cannot carry out; the message is shown to the caller as is."""


def revka_home(env: dict[str, str] | None = None) -> Path:
    """``$REVKA_HOME`` (a leading ``~`` expanded), else ``~/.revka``."""
    env = os.environ if env is None else env
    home = env.get("REVKA_HOME", "").strip()
    return Path(home).expanduser() if home else Path.home() / ".revka"


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    """``$REVKA_HOME/operator_mcp/state``."""
    return revka_home(env) / "operator_mcp" / "state"


def now_iso() -> str:
    """The current UTC time, RFC 3339 with milliseconds."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _new_id(prefix: str) -> str:
    # Sortable by creation time (ms), unique across processes (random suffix).
    return f"{prefix}_{int(time.time() * 1000):013d}_{secrets.token_hex(4)}"


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise StoreError(f"{name} must be a string")
    value = value.strip()
    if not value:
        raise StoreError(f"{name} must not be empty")
    if len(value) > limit:
        raise StoreError(f"{name} is too long ({len(value)} characters; at most {limit})")
    return value


def _check_id(value: Any, prefix: str) -> str:
    if not isinstance(value, str) or not value.startswith(prefix + "_") or len(value) > 64:
        raise StoreError(f"invalid id {value!r}: expected an id like {prefix}_…")
    if not all(c.isalnum() or c == "_" for c in value):
        raise StoreError(f"invalid id {value!r}")
    return value


class Store:
    """The operator's persistent state in one directory (created 0700 on first use)."""

    def __init__(self, state_dir: Path | str) -> None:
        self.dir = Path(state_dir)

    # -- files -------------------------------------------------------------------------

    def _ensure_dir(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the state directory {self.dir}: {e.strerror}") from e

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Holds the state directory's exclusive lock (blocks while another process has it)."""
        self._ensure_dir()
        try:
            fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StoreError(f"cannot open the lock file in {self.dir}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self, name: str) -> list[dict[str, Any]]:
        path = self.dir / name
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreError(f"cannot read {path}: {e.strerror}") from e
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise StoreError(f"{path} is corrupt (not JSON: {e}); move it aside to start over") from e
        items = doc.get("items") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise StoreError(f"{path} is corrupt (no list of items); move it aside to start over")
        return items

    def _write(self, name: str, items: list[dict[str, Any]]) -> None:
        path = self.dir / name
        tmp = self.dir / f".{name}.{os.getpid()}.tmp"
        data = json.dumps({"version": FORMAT_VERSION, "items": items}, indent=1).encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StoreError(f"cannot write {path}: {e.strerror}") from e

    # -- plans -------------------------------------------------------------------------

    def save_plan(self, title: Any, steps: Any, session: Any = None) -> dict[str, Any]:
        """Stores a new plan and returns it (with its id)."""
        title = _text(title, "title", MAX_TITLE)
        if not isinstance(steps, list) or not steps:
            raise StoreError("steps must be a non-empty list of strings")
        if len(steps) > MAX_STEPS:
            raise StoreError(f"too many steps ({len(steps)}; at most {MAX_STEPS})")
        steps = [_text(s, f"steps[{i}]", MAX_STEP) for i, s in enumerate(steps)]
        if session is not None:
            session = _text(session, "session", MAX_SESSION)
        plan = {
            "id": _new_id("plan"),
            "title": title,
            "steps": steps,
            "session": session,
            "created_at": now_iso(),
        }
        with self._locked():
            items = self._read("plans.json")
            items.append(plan)
            self._write("plans.json", items)
        return plan

    def recall_plans(self, query: Any = None, limit: Any = 10) -> list[dict[str, Any]]:
        """Plans, newest first; with ``query``, those whose title or steps contain every word."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise StoreError(f"limit must be an integer from 1 to {MAX_LIMIT}")
        words: list[str] = []
        if query is not None:
            if not isinstance(query, str) or len(query) > MAX_QUERY:
                raise StoreError(f"query must be a string of at most {MAX_QUERY} characters")
            words = query.lower().split()
        with self._locked():
            items = self._read("plans.json")

        def matches(plan: dict[str, Any]) -> bool:
            haystack = " ".join([str(plan.get("title", ""))] + [str(s) for s in plan.get("steps", [])])
            haystack = haystack.lower()
            return all(w in haystack for w in words)

        # Plans are appended under the lock, so the file's order is creation order.
        found = [p for p in reversed(items) if matches(p)]
        return found[:limit]

    def get_plan(self, plan_id: Any) -> dict[str, Any]:
        """The plan with this id."""
        plan_id = _check_id(plan_id, "plan")
        with self._locked():
            items = self._read("plans.json")
        for plan in items:
            if plan.get("id") == plan_id:
                return plan
        raise StoreError(f"no plan with id {plan_id}")

    # -- goals -------------------------------------------------------------------------

    def set_goal(self, text: Any, priority: Any = "normal") -> dict[str, Any]:
        """Records a new open goal and returns it."""
        text = _text(text, "text", MAX_TEXT)
        if priority not in PRIORITIES:
            raise StoreError(f"priority must be one of {', '.join(PRIORITIES)}")
        goal = {
            "id": _new_id("goal"),
            "text": text,
            "priority": priority,
            "status": "open",
            "created_at": now_iso(),
            "completed_at": None,
        }
        with self._locked():
            items = self._read("goals.json")
            items.append(goal)
            self._write("goals.json", items)
        return goal

    def list_goals(self, status: Any = "open") -> list[dict[str, Any]]:
        """Goals with this status (``open``, ``done`` or ``all``): high priority first, then oldest."""
        if status not in GOAL_STATUSES:
            raise StoreError(f"status must be one of {', '.join(GOAL_STATUSES)}")
        with self._locked():
            items = self._read("goals.json")
        rank = {p: i for i, p in enumerate(reversed(PRIORITIES))}
        found = [g for g in items if status == "all" or g.get("status") == status]
        # Stable sort: within a priority, the file's (creation) order.
        found.sort(key=lambda g: rank.get(g.get("priority"), len(rank)))
        return found

    def complete_goal(self, goal_id: Any) -> dict[str, Any]:
        """Marks a goal done (completing a done goal is an error) and returns it."""
        goal_id = _check_id(goal_id, "goal")
        with self._locked():
            items = self._read("goals.json")
            for goal in items:
                if goal.get("id") == goal_id:
                    if goal.get("status") == "done":
                        raise StoreError(f"goal {goal_id} is already done")
                    goal["status"] = "done"
                    goal["completed_at"] = now_iso()
                    self._write("goals.json", items)
                    return goal
        raise StoreError(f"no goal with id {goal_id}")

    # -- status ------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """How many plans, open goals and done goals there are."""
        with self._locked():
            plans = self._read("plans.json")
            goals = self._read("goals.json")
        return {
            "plans": len(plans),
            "goals_open": sum(1 for g in goals if g.get("status") == "open"),
            "goals_done": sum(1 for g in goals if g.get("status") == "done"),
        }


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
