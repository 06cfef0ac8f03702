"""Revka's reference operator: a stdio MCP server that persists plans and goals.

The daemon runs it once per agent session through the launcher ``run_operator_mcp.py``;
``revka install --sidecars-only`` installs it into ``$REVKA_HOME/operator_mcp/venv``.
"""

__version__ = "0.1.0"
