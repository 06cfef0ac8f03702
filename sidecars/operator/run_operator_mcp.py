#!/usr/bin/env python3
"""Launcher of Revka's operator MCP server: the file ``[operator] mcp_path`` points at.

The daemon runs ``python3 run_operator_mcp.py`` with any Python; this script switches to the
operator's own virtual environment, ``$REVKA_HOME/operator_mcp/venv`` (``REVKA_HOME``
defaults to ``~/.revka``), by ``exec``-ing its interpreter with ``-m revka_operator.server``,
so stdin and stdout reach the server untouched. Inside that venv already, it starts the
server directly. Without the venv it prints one line saying how to install it and exits 78
(EX_CONFIG). It uses only the standard library and runs on any Python 3.
"""

import os
import sys

EX_CONFIG = 78


def revka_home():
    home = os.environ.get("REVKA_HOME", "").strip()
    return os.path.expanduser(home) if home else os.path.join(os.path.expanduser("~"), ".revka")


def main():
    venv = os.path.join(revka_home(), "operator_mcp", "venv")
    python = os.path.join(venv, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(venv):
        from revka_operator.server import main as serve

        sys.exit(serve(sys.argv[1:]))
    if not os.access(python, os.X_OK):
        sys.stderr.write(
            "revka operator: no venv at %s \u2014 run: revka install --sidecars-only\n" % venv
        )
        sys.stderr.flush()
        sys.exit(EX_CONFIG)
    try:
        # -P: do not put the working directory on sys.path (Python >= 3.11, like the venv).
        os.execv(python, [python, "-P", "-m", "revka_operator.server"] + sys.argv[1:])
    except OSError as e:
        sys.stderr.write("revka operator: cannot run %s: %s\n" % (python, e.strerror))
        sys.exit(EX_CONFIG)


if __name__ == "__main__":
    main()
