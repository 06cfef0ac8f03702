"""The client command of the conformance suite's `auth/*` client scenarios: `revka mcp` as an OAuth client.

The suite (`@modelcontextprotocol/conformance`, client mode) starts a scenario's MCP server and
fake authorization server, then runs `<this command> <serverUrl>` through a shell with
`MCP_CONFORMANCE_SCENARIO` set and, for some scenarios, `MCP_CONFORMANCE_CONTEXT` (JSON: the
pre-registered client's credentials or key). For each run this script:

1. makes a fresh `REVKA_HOME` (a temporary directory, removed afterwards, so no token or
   registration outlives the run);
2. writes `config.toml` there: one server, `conformance`, `transport = "http"` at the suite's
   URL, with a `[mcp.servers.oauth]` table built from the scenario and its context, and
   `[mcp.oauth] client_metadata_url` set to the Client ID Metadata Document URL the suite's
   `auth/basic-cimd` expects (Revka presents it where an authorization server supports CIMD);
3. sets `BROWSER` to `browser.sh` beside this file (it follows the fake authorization server's
   redirect from `/authorize` straight to Revka's loopback callback, playing the person);
4. runs `$REVKA_BIN mcp call conformance__test-tool --timeout 30` (every auth scenario's server
   has one tool, `test-tool`) and exits with its status.

Scenario -> `[mcp.servers.oauth]`:

    auth/pre-registration          client_id, client_secret            (authorization_code)
    auth/client-credentials-basic  client_id, client_secret,           grant = client_credentials
    auth/client-credentials-jwt    client_id, private_key_file, signing_alg, grant = client_credentials
    every other auth/* scenario    (no table: CIMD where supported, else dynamic registration)

Secrets never reach a command line: the client secret is in the environment of `revka` only
(`REVKA_CONFORMANCE_CLIENT_SECRET`, referenced as `${...}` from config.toml) and the private key
is a 0600 file in the temporary home.

Environment: `REVKA_BIN` (required), the `revka` binary; `AUTH_CLIENT_STATUS` (optional), a file
this script writes revka's exit status to (`exit N` or `signal N`), so a caller can tell the
client's result from the suite's checks. Any stdlib Python 3 runs it; the tests use the venv's.
Exit status: revka's; 2 when this script cannot set the run up (the reason on stderr); 124
when revka ran over DEADLINE_SECS (it is stopped); 128 + N when this script is stopped by
signal N (revka is stopped first). Run it as `exec <python> auth_client.py`: the suite runs
its command through `sh -c` and, on its timeout, kills the shell, which does not pass the
signal on (dash does not exec the command).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

SERVER = "conformance"
TOOL = "test-tool"
CALL_TIMEOUT_SECS = "30"
# The longest revka may run in all (discovery, registration, the browser step, the call): past
# it revka is stopped (SIGTERM, SIGKILL 5 s later). Below the suite's client timeout, because
# the suite's own kill reaches the shell it runs this through, not this script, unless the
# command starts with `exec` (tests/conformance/auth.rs does that too).
DEADLINE_SECS = 50
KILL_GRACE_SECS = 5
CIMD_URL = "https://conformance-test.local/client-metadata.json"
SECRET_VAR = "REVKA_CONFORMANCE_CLIENT_SECRET"
CLIENT_CREDENTIALS_PREFIX = "auth/client-credentials-"
# The context keys this script understands; another one means a scenario it was not written
# for (e.g. cross-app-access's IdP fields), which it refuses rather than half-runs.
KNOWN_CONTEXT_KEYS = {"name", "client_id", "client_secret", "private_key_pem", "signing_algorithm"}


class SetupError(Exception):
    """The run cannot be set up; the message says why."""


def toml_str(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, and json.dumps never writes `\\/`)."""
    return json.dumps(value, ensure_ascii=False)


def read_context(scenario: str) -> dict:
    """The scenario's MCP_CONFORMANCE_CONTEXT, or {} when the suite gave none."""
    raw = os.environ.get("MCP_CONFORMANCE_CONTEXT")
    if not raw:
        return {}
    try:
        context = json.loads(raw)
    except json.JSONDecodeError as e:
        raise SetupError(f"MCP_CONFORMANCE_CONTEXT is not JSON: {e}") from None
    if not isinstance(context, dict):
        raise SetupError("MCP_CONFORMANCE_CONTEXT is not a JSON object")
    unknown = sorted(set(context) - KNOWN_CONTEXT_KEYS)
    if unknown:
        raise SetupError(f"{scenario}: context keys this wrapper does not map to Revka's config: {unknown}")
    for key, value in context.items():
        if not isinstance(value, str):
            raise SetupError(f"MCP_CONFORMANCE_CONTEXT: {key} is not a string")
    return context


def oauth_table(scenario: str, context: dict, home: Path, env: dict) -> list:
    """The `[mcp.servers.oauth]` lines for this scenario (none when it needs no table);
    writes the private key file and puts the client secret in `env`."""
    lines = []
    if "client_id" in context:
        lines.append(f"client_id = {toml_str(context['client_id'])}")
    if "client_secret" in context:
        env[SECRET_VAR] = context["client_secret"]
        lines.append(f'client_secret = "${{{SECRET_VAR}}}"')
    if scenario.startswith(CLIENT_CREDENTIALS_PREFIX):
        lines.append('grant = "client_credentials"')
    if "private_key_pem" in context:
        key = home / "client-key.pem"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(context["private_key_pem"])
        lines.append(f"private_key_file = {toml_str(str(key))}")
        if "signing_algorithm" in context:
            lines.append(f"signing_alg = {toml_str(context['signing_algorithm'])}")
    if scenario.startswith(CLIENT_CREDENTIALS_PREFIX) and "client_id" not in context:
        raise SetupError(f"{scenario}: no client_id in MCP_CONFORMANCE_CONTEXT")
    return lines


def write_config(home: Path, url: str, oauth: list) -> None:
    """`config.toml` in `home`: the one server, its OAuth table, the CIMD URL."""
    text = [
        "# Written by tests/conformance/auth_client.py for one conformance scenario.",
        "[mcp]",
        "enabled = true",
        "",
        "[mcp.oauth]",
        f"client_metadata_url = {toml_str(CIMD_URL)}",
        "",
        "[[mcp.servers]]",
        f"name = {toml_str(SERVER)}",
        'transport = "http"',
        f"url = {toml_str(url)}",
    ]
    if oauth:
        text += ["", "[mcp.servers.oauth]", *oauth]
    text.append("")
    (home / "config.toml").write_text("\n".join(text))


def record_status(status: str) -> None:
    """Writes revka's exit status where the caller asked (AUTH_CLIENT_STATUS), if it did."""
    path = os.environ.get("AUTH_CLIENT_STATUS")
    if path:
        Path(path).write_text(status + "\n")


def run(url: str) -> int:
    revka = os.environ.get("REVKA_BIN")
    if not revka:
        raise SetupError("REVKA_BIN is not set (the revka binary to run)")
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    if not scenario.startswith("auth/"):
        raise SetupError(f"not an auth scenario: MCP_CONFORMANCE_SCENARIO={scenario!r}")
    context = read_context(scenario)
    browser = Path(__file__).resolve().parent / "browser.sh"
    if not os.access(browser, os.X_OK):
        raise SetupError(f"{browser} is missing or not executable")

    home = Path(tempfile.mkdtemp(prefix="revka-conformance-auth-"))
    child = None
    stop_signal = None

    def stop(signum, _frame):
        # The suite kills the shell's command on its timeout: stop revka too, then clean up.
        nonlocal stop_signal
        stop_signal = signum
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        os.chmod(home, 0o700)
        env = dict(os.environ)
        env.pop(SECRET_VAR, None)
        write_config(home, url, oauth_table(scenario, context, home, env))
        env["REVKA_HOME"] = str(home)
        env["BROWSER"] = str(browser)
        # The context (a secret, a private key) is in config.toml and its files now.
        env.pop("MCP_CONFORMANCE_CONTEXT", None)
        args = [revka, "mcp", "call", f"{SERVER}__{TOOL}", "--timeout", CALL_TIMEOUT_SECS]
        print(f"auth_client.py: {scenario}: {' '.join(args[1:])} (REVKA_HOME={home})", file=sys.stderr, flush=True)
        child = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL)
        if stop_signal is not None:
            child.send_signal(stop_signal)
        try:
            code = child.wait(timeout=DEADLINE_SECS)
        except subprocess.TimeoutExpired:
            print(f"auth_client.py: revka still running after {DEADLINE_SECS} s: stopping it", file=sys.stderr, flush=True)
            child.terminate()
            try:
                child.wait(timeout=KILL_GRACE_SECS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            record_status(f"stopped after {DEADLINE_SECS} s")
            return 124
        record_status(f"signal {-code}" if code < 0 else f"exit {code}")
        if stop_signal is not None:
            return 128 + stop_signal
        return 128 - code if code < 0 else code
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: auth_client.py SERVER_URL (run by the conformance suite)", file=sys.stderr)
        return 2
    try:
        return run(sys.argv[1])
    except (SetupError, OSError) as e:
        print(f"auth_client.py: {e}", file=sys.stderr)
        record_status("setup failed")
        return 2


if __name__ == "__main__":
    sys.exit(main())
