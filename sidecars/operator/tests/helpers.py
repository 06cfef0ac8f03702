"""Shared helpers: the operator's source directory, temporary homes, result decoding."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

OPERATOR_DIR = Path(__file__).resolve().parent.parent
LAUNCHER = OPERATOR_DIR / "run_operator_mcp.py"

if str(OPERATOR_DIR) not in sys.path:
    sys.path.insert(0, str(OPERATOR_DIR))

# IsolatedAsyncioTestCase runs the loop in debug mode, which logs every subprocess at DEBUG.
logging.getLogger("asyncio").setLevel(logging.WARNING)


def temp_home(case: Any) -> Path:
    """A temporary REVKA_HOME removed when the test case ends."""
    tmp = tempfile.TemporaryDirectory(prefix="revka-op-")
    case.addCleanup(tmp.cleanup)
    return Path(tmp.name)


def server_env(home: Path) -> dict[str, str]:
    """Environment for a server subprocess: REVKA_HOME and the package on PYTHONPATH."""
    return {
        "REVKA_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(
            p for p in [str(OPERATOR_DIR), os.environ.get("PYTHONPATH", "")] if p
        ),
    }


def payload(result: Any) -> Any:
    """The JSON a successful tool result carries (structured content, else its text)."""
    if getattr(result, "is_error", False):
        raise AssertionError(f"tool error: {text(result)}")
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(text(result))


def text(result: Any) -> str:
    """The text content of a tool result."""
    return "".join(getattr(c, "text", "") for c in result.content)
