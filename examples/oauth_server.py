#!/usr/bin/env python3
"""An OAuth-protected MCP server and its own small authorization server, for Revka's OAuth tests.

One process, two loopback listeners on ephemeral ports:

- the resource server (RS): the official SDK's `MCPServer` over Streamable HTTP at `/mcp`, with
  the SDK's bearer-token auth (`AuthSettings` + a token verifier that asks the AS below). Without
  a valid token it answers 401 with `WWW-Authenticate: Bearer resource_metadata="…"`; its
  protected resource metadata (RFC 9728) is at `/.well-known/oauth-protected-resource/mcp`.
  Tools: `whoami` (the token's client_id and scopes, as JSON) and `echo` (its text back).
- the authorization server (AS), written here: metadata (RFC 8414) at
  `/.well-known/oauth-authorization-server`, dynamic client registration (RFC 7591) at
  `/register`, `/authorize` (approves at once, no UI: validates the client, a registered
  loopback redirect URI whose port may differ (RFC 8252), `response_type=code`, a PKCE S256
  challenge and `resource` = the MCP URL, then redirects 302 with `code` and `state`) and
  `/token` (`authorization_code` with the PKCE verifier, the redirect URI and client
  authentication checked; `refresh_token` with rotation: every refresh issues a new refresh
  token and retires the old one, whose reuse is `invalid_grant`).
- the admin API, on the AS's port, for tests: `GET /admin/stats` answers
  `{grants: {authorization_code, refresh_token}, registrations, authorizations, token_requests,
  errors: {oauth error code: n}, revocations, requests: {path: n}, rs: {authorized,
  unauthorized}, live: {access_tokens, refresh_tokens}, clients: [{client_id,
  token_endpoint_auth_method, redirect_uris}], access_tokens, refresh_tokens (every one issued,
  in order), live_refresh_tokens, tokens (all access and refresh tokens), secrets
  (authorization codes and client secrets)}`, so a test can look for any of them where it must
  not be; `POST /admin/revoke` kills every access and refresh token (the RS then answers 401,
  a refresh `invalid_grant`) and answers the stats.

At start it prints one JSON line on stdout, then serves until SIGTERM/SIGINT:

    {"mcp": "http://127.0.0.1:P/mcp", "issuer": "http://127.0.0.1:Q", "admin": "http://127.0.0.1:Q/admin"}

Run it with a Python that has the `mcp` SDK (the test cache's venv):

    .cache/test-deps/venv/bin/python examples/oauth_server.py --access-ttl 2

Flags: `--access-ttl SECS` (access token lifetime, default 3600) and the bad-input modes
`--token-html`, `--token-hang`, `--metadata-huge`, `--metadata-malformed`,
`--prm-other-resource` (see `--help`). Everything is in memory: a restart forgets every client
and token. Not a real authorization server: it approves every request from anyone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import re
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import unquote_plus, urlencode, urlsplit

import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

SCOPE = "mcp:tools"
AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]
GRANT_TYPES = ["authorization_code", "refresh_token"]
CODE_TTL = 60.0
MAX_BODY = 64 * 1024
# RFC 7636 §4.1: 43 to 128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
OTHER_RESOURCE = "https://other.example/mcp"


# ---------------------------------------------------------------------------
# State: clients, codes, tokens, counters (in memory)
# ---------------------------------------------------------------------------


@dataclass
class Client:
    client_id: str
    secret: str | None
    auth_method: str
    redirect_uris: list[str]
    metadata: dict


@dataclass
class Code:
    client_id: str
    redirect_uri: str
    challenge: str
    scopes: list[str]
    resource: str
    expires_at: float


@dataclass
class Token:
    client_id: str
    scopes: list[str]
    resource: str
    expires_at: float | None  # None: a refresh token, which lives until rotated or revoked
    live: bool = True


@dataclass
class State:
    mcp_url: str
    issuer: str
    access_ttl: float
    clients: dict[str, Client] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    access: dict[str, Token] = field(default_factory=dict)
    refresh: dict[str, Token] = field(default_factory=dict)
    # Every secret ever handed out, in order, so a test can look for it where it must not be.
    access_issued: list[str] = field(default_factory=list)
    refresh_issued: list[str] = field(default_factory=list)
    other_secrets: list[str] = field(default_factory=list)  # codes and client secrets
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def issue(self, client_id: str, scopes: list[str], resource: str) -> dict:
        """A new access token and refresh token; the token endpoint's success body."""
        access = "fx-at-" + secrets.token_urlsafe(24)
        refresh = "fx-rt-" + secrets.token_urlsafe(24)
        self.access[access] = Token(client_id, scopes, resource, time.time() + self.access_ttl)
        self.refresh[refresh] = Token(client_id, scopes, resource, None)
        self.access_issued.append(access)
        self.refresh_issued.append(refresh)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(self.access_ttl),
            "refresh_token": refresh,
            "scope": " ".join(scopes),
        }

    def live_access(self, token: str) -> Token | None:
        record = self.access.get(token)
        if record is None or not record.live or (record.expires_at or 0) <= time.time():
            return None
        return record

    def stats(self) -> dict:
        now = time.time()
        return {
            "grants": {
                "authorization_code": self.counts.get("grant:authorization_code", 0),
                "refresh_token": self.counts.get("grant:refresh_token", 0),
            },
            "registrations": self.counts.get("registrations", 0),
            "authorizations": self.counts.get("authorizations", 0),
            "token_requests": self.counts.get("token_requests", 0),
            "errors": {k[len("error:") :]: v for k, v in self.counts.items() if k.startswith("error:")},
            "revocations": self.counts.get("revocations", 0),
            "requests": {k[len("path:") :]: v for k, v in self.counts.items() if k.startswith("path:")},
            "rs": {
                "authorized": self.counts.get("rs:authorized", 0),
                "unauthorized": self.counts.get("rs:unauthorized", 0),
            },
            "live": {
                "access_tokens": sum(1 for t in self.access.values() if t.live and (t.expires_at or 0) > now),
                "refresh_tokens": sum(1 for t in self.refresh.values() if t.live),
            },
            "clients": [
                {
                    "client_id": c.client_id,
                    "token_endpoint_auth_method": c.auth_method,
                    "redirect_uris": c.redirect_uris,
                }
                for c in self.clients.values()
            ],
            "access_tokens": self.access_issued,
            "refresh_tokens": self.refresh_issued,
            "live_refresh_tokens": [t for t, r in self.refresh.items() if r.live],
            "tokens": self.access_issued + self.refresh_issued,
            "secrets": self.other_secrets,
        }


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def oauth_error(state: State, error: str, description: str, status: int = 400, **headers: str) -> JSONResponse:
    state.count(f"error:{error}")
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", **headers},
    )


def is_loopback_redirect(uri: str) -> bool:
    """RFC 8252 §7.3: an `http` redirect to a loopback address (any port)."""
    try:
        parts = urlsplit(uri)
        return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS and not parts.fragment
    except ValueError:
        return False


def same_redirect_but_port(registered: str, given: str) -> bool:
    """RFC 8252 §7.3: a loopback redirect URI matches a registered one whatever its port."""
    a, b = urlsplit(registered), urlsplit(given)
    return (a.scheme, a.hostname, a.path or "/", a.query) == (b.scheme, b.hostname, b.path or "/", b.query)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


async def read_form(request: Request) -> dict[str, str] | None:
    """The form body (`application/x-www-form-urlencoded`, at most MAX_BODY), or None."""
    body = await request.body()
    if len(body) > MAX_BODY or not request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        return None
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def with_query(uri: str, params: dict[str, str]) -> str:
    return uri + ("&" if urlsplit(uri).query else "?") + urlencode(params)


# ---------------------------------------------------------------------------
# The authorization server
# ---------------------------------------------------------------------------


def authorization_server(state: State, args: argparse.Namespace) -> ASGIApp:
    issuer = state.issuer

    async def metadata(_: Request) -> Response:
        doc = {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "registration_endpoint": f"{issuer}/register",
            "response_types_supported": ["code"],
            "grant_types_supported": GRANT_TYPES,
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            "scopes_supported": [SCOPE],
        }
        if args.metadata_malformed:
            # A truncated document: not JSON, though it says it is.
            text = json.dumps(doc)[: len(json.dumps(doc)) // 2]
            return Response(text, media_type="application/json")
        if args.metadata_huge:
            # Valid JSON, only far too large: 2 MiB.
            doc["x_padding"] = ""
            compact = json.dumps(doc, separators=(",", ":"))
            doc["x_padding"] = "x" * (2 * 1024 * 1024 - len(compact))
            return Response(json.dumps(doc, separators=(",", ":")), media_type="application/json")
        return JSONResponse(doc)

    async def register(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return oauth_error(state, "invalid_client_metadata", "registration request too large")
        try:
            meta = json.loads(body)
        except ValueError:
            return oauth_error(state, "invalid_client_metadata", "registration request is not JSON")
        if not isinstance(meta, dict):
            return oauth_error(state, "invalid_client_metadata", "registration request is not a JSON object")
        uris = meta.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
            return oauth_error(state, "invalid_redirect_uri", "redirect_uris must be a non-empty list of URIs")
        bad = [u for u in uris if not is_loopback_redirect(u)]
        if bad:
            return oauth_error(state, "invalid_redirect_uri", f"not a loopback http redirect URI: {bad[0]}")
        method = meta.get("token_endpoint_auth_method", "client_secret_basic")  # RFC 7591 §2 default
        if method not in AUTH_METHODS:
            return oauth_error(state, "invalid_client_metadata", f"unsupported token_endpoint_auth_method {method!r}")
        grants = meta.get("grant_types", ["authorization_code"])
        if not isinstance(grants, list) or any(g not in GRANT_TYPES for g in grants):
            return oauth_error(state, "invalid_client_metadata", f"unsupported grant_types {grants!r}")
        responses = meta.get("response_types", ["code"])
        if responses != ["code"]:
            return oauth_error(state, "invalid_client_metadata", f"unsupported response_types {responses!r}")
        scope = meta.get("scope")
        if scope is not None and (not isinstance(scope, str) or any(s != SCOPE for s in scope.split())):
            return oauth_error(state, "invalid_client_metadata", f"unsupported scope {scope!r}")

        client_id = "fx-client-" + secrets.token_urlsafe(12)
        secret = None if method == "none" else "fx-cs-" + secrets.token_urlsafe(24)
        if secret:
            state.other_secrets.append(secret)
        answer = {
            **meta,
            "client_id": client_id,
            "client_id_issued_at": int(time.time()),
            "token_endpoint_auth_method": method,
            "grant_types": grants,
            "response_types": responses,
        }
        if secret:
            answer["client_secret"] = secret
            answer["client_secret_expires_at"] = 0
        state.clients[client_id] = Client(client_id, secret, method, list(uris), answer)
        state.count("registrations")
        return JSONResponse(answer, status_code=201, headers={"Cache-Control": "no-store"})

    async def authorize(request: Request) -> Response:
        q = request.query_params
        client = state.clients.get(q.get("client_id", ""))
        if client is None:
            # Not redirected (RFC 6749 §4.1.2.1): the client is unknown.
            state.count("error:unknown_client")
            return HTMLResponse("<h1>Unknown client_id</h1>", status_code=400)
        redirect_uri = q.get("redirect_uri")
        if redirect_uri is None and len(client.redirect_uris) == 1:
            redirect_uri = client.redirect_uris[0]
        if (
            redirect_uri is None
            or not is_loopback_redirect(redirect_uri)
            or not any(same_redirect_but_port(r, redirect_uri) for r in client.redirect_uris)
        ):
            state.count("error:bad_redirect_uri")
            return HTMLResponse("<h1>redirect_uri is not registered for this client</h1>", status_code=400)

        def refuse(error: str, description: str) -> Response:
            state.count(f"error:{error}")
            params = {"error": error, "error_description": description}
            if "state" in q:
                params["state"] = q["state"]
            return RedirectResponse(with_query(redirect_uri, params), status_code=302)

        if q.get("response_type") != "code":
            return refuse("unsupported_response_type", "response_type must be code")
        challenge = q.get("code_challenge")
        if not challenge or q.get("code_challenge_method") != "S256":
            return refuse("invalid_request", "a PKCE code_challenge with code_challenge_method=S256 is required")
        if q.get("resource") != state.mcp_url:
            return refuse("invalid_target", f"resource must be {state.mcp_url}")
        scopes = (q.get("scope") or SCOPE).split()
        if any(s != SCOPE for s in scopes):
            return refuse("invalid_scope", f"only {SCOPE} is supported")

        code = "fx-code-" + secrets.token_urlsafe(24)
        state.other_secrets.append(code)
        state.codes[code] = Code(client.client_id, redirect_uri, challenge, scopes, state.mcp_url, time.time() + CODE_TTL)
        state.count("authorizations")
        params = {"code": code}
        if "state" in q:
            params["state"] = q["state"]
        return RedirectResponse(with_query(redirect_uri, params), status_code=302)

    def authenticate(request: Request, form: dict[str, str]) -> Client | Response:
        """The client of a token request, by the method it registered (RFC 6749 §2.3)."""
        basic = request.headers.get("authorization", "")
        client_id, secret, used = form.get("client_id"), form.get("client_secret"), "none"
        if basic.lower().startswith("basic "):
            try:
                raw_id, _, raw_secret = base64.b64decode(basic[6:], validate=True).decode().partition(":")
            except ValueError:
                return oauth_error(state, "invalid_client", "malformed Basic credentials", 401)
            client_id, secret, used = unquote_plus(raw_id), unquote_plus(raw_secret), "client_secret_basic"
        elif secret is not None:
            used = "client_secret_post"
        client = state.clients.get(client_id or "")
        if client is None:
            return oauth_error(state, "invalid_client", "unknown client", 401)
        if used != client.auth_method:
            return oauth_error(
                state,
                "invalid_client",
                f"client registered token_endpoint_auth_method {client.auth_method}, request used {used}",
                401,
            )
        if client.secret is not None and not secrets.compare_digest(client.secret, secret or ""):
            return oauth_error(
                state, "invalid_client", "wrong client secret", 401, **{"WWW-Authenticate": 'Basic realm="token"'}
            )
        return client

    async def token(request: Request) -> Response:
        state.count("token_requests")
        if args.token_hang:
            await asyncio.Event().wait()  # never answers
        if args.token_html:
            return HTMLResponse("<!doctype html><html><body><h1>Please sign in</h1></body></html>")
        form = await read_form(request)
        if form is None:
            return oauth_error(state, "invalid_request", "expected an application/x-www-form-urlencoded body")
        client = authenticate(request, form)
        if isinstance(client, Response):
            return client
        resource = form.get("resource")
        if resource is not None and resource != state.mcp_url:
            return oauth_error(state, "invalid_target", f"resource must be {state.mcp_url}")
        grant = form.get("grant_type")

        if grant == "authorization_code":
            code = state.codes.pop(form.get("code", ""), None)  # single use
            if code is None or code.expires_at < time.time():
                return oauth_error(state, "invalid_grant", "unknown, used or expired authorization code")
            if code.client_id != client.client_id:
                return oauth_error(state, "invalid_grant", "the code was issued to another client")
            if form.get("redirect_uri") != code.redirect_uri:
                return oauth_error(state, "invalid_grant", "redirect_uri differs from the authorization request's")
            verifier = form.get("code_verifier", "")
            if not VERIFIER.fullmatch(verifier) or not secrets.compare_digest(s256(verifier), code.challenge):
                return oauth_error(state, "invalid_grant", "PKCE code_verifier does not match the code_challenge")
            state.count("grant:authorization_code")
            return JSONResponse(state.issue(client.client_id, code.scopes, code.resource), headers={"Cache-Control": "no-store"})

        if grant == "refresh_token":
            old = state.refresh.get(form.get("refresh_token", ""))
            if old is None or not old.live:
                return oauth_error(state, "invalid_grant", "unknown, rotated or revoked refresh token")
            if old.client_id != client.client_id:
                return oauth_error(state, "invalid_grant", "the refresh token was issued to another client")
            scopes = form.get("scope", "").split() or old.scopes
            if any(s not in old.scopes for s in scopes):
                return oauth_error(state, "invalid_scope", "a refresh cannot widen the grant")
            old.live = False  # rotation: the old refresh token is spent
            state.count("grant:refresh_token")
            return JSONResponse(state.issue(client.client_id, scopes, old.resource), headers={"Cache-Control": "no-store"})

        return oauth_error(state, "unsupported_grant_type", f"grant_type {grant!r} is not supported")

    async def stats(_: Request) -> Response:
        return JSONResponse(state.stats())

    async def revoke_all(_: Request) -> Response:
        for record in [*state.access.values(), *state.refresh.values()]:
            record.live = False
        state.count("revocations")
        return JSONResponse(state.stats())

    app = Starlette(
        routes=[
            Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
            Route("/register", register, methods=["POST"]),
            Route("/authorize", authorize, methods=["GET"]),
            Route("/token", token, methods=["POST"]),
            Route("/admin/stats", stats, methods=["GET"]),
            Route("/admin/revoke", revoke_all, methods=["POST"]),
        ]
    )

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/admin/"):
            state.count(f"path:{scope['path']}")
        await app(scope, receive, send)

    return counted


# ---------------------------------------------------------------------------
# The resource server: the SDK's MCPServer with bearer auth
# ---------------------------------------------------------------------------


class Verifier:
    """The SDK's `TokenVerifier`: a token is valid while the AS says it is live."""

    def __init__(self, state: State):
        self.state = state

    async def verify_token(self, token: str) -> AccessToken | None:
        record = self.state.live_access(token)
        if record is None:
            return None
        return AccessToken(
            token=token,
            client_id=record.client_id,
            scopes=record.scopes,
            expires_at=int(record.expires_at or 0) + 1,  # our own check above is the exact one
            resource=record.resource,
        )


def resource_server(state: State, args: argparse.Namespace) -> ASGIApp:
    mcp = MCPServer(
        "oauth-fixture",
        instructions="An OAuth-protected test server: whoami and echo.",
        token_verifier=Verifier(state),
        auth=AuthSettings(
            issuer_url=state.issuer,
            resource_server_url=state.mcp_url,
            required_scopes=[SCOPE],
            validate_token_resource=True,
        ),
    )

    @mcp.tool(description="The OAuth client and scopes of the token this call was made with, as JSON.")
    def whoami() -> str:
        token = get_access_token()
        return json.dumps({"client_id": token.client_id, "scopes": token.scopes} if token else {})

    @mcp.tool(description="Returns its text.")
    def echo(text: str) -> str:
        return text

    app = mcp.streamable_http_app(host="127.0.0.1")
    prm_path = "/.well-known/oauth-protected-resource" + urlsplit(state.mcp_url).path

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        """Counts the RS's answers for the stats, and serves the wrong PRM when asked to."""
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        state.count(f"path:{scope['path']}")
        if args.prm_other_resource and scope["path"] == prm_path:
            doc = {"resource": OTHER_RESOURCE, "authorization_servers": [state.issuer], "scopes_supported": [SCOPE]}
            await JSONResponse(doc)(scope, receive, send)
            return

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start" and scope["path"] == "/mcp":
                state.count("rs:unauthorized" if message["status"] == 401 else "rs:authorized")
            await send(message)

        await app(scope, receive, counting_send)

    return wrapped


# ---------------------------------------------------------------------------
# Main: bind both listeners, announce them, serve
# ---------------------------------------------------------------------------


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `main` (two servers share the process)."""

    def capture_signals(self):  # type: ignore[override]
        return contextlib.nullcontext()


def listener() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock, sock.getsockname()[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--access-ttl", type=float, default=3600, metavar="SECS", help="access token lifetime (default 3600)")
    p.add_argument("--token-html", action="store_true", help="the token endpoint answers 200 text/html")
    p.add_argument("--token-hang", action="store_true", help="the token endpoint never answers")
    p.add_argument("--metadata-huge", action="store_true", help="the AS metadata is 2 MiB (valid JSON)")
    p.add_argument("--metadata-malformed", action="store_true", help="the AS metadata is not JSON")
    p.add_argument(
        "--prm-other-resource", action="store_true", help=f"the PRM's resource is another origin's ({OTHER_RESOURCE})"
    )
    args = p.parse_args()
    if args.access_ttl <= 0:
        p.error("--access-ttl must be positive")
    return args


async def main() -> None:
    args = parse_args()
    rs_sock, rs_port = listener()
    as_sock, as_port = listener()
    issuer = f"http://127.0.0.1:{as_port}"
    state = State(mcp_url=f"http://127.0.0.1:{rs_port}/mcp", issuer=issuer, access_ttl=args.access_ttl)

    def server(app: ASGIApp) -> QuietServer:
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1)
        return QuietServer(config)

    servers = [server(resource_server(state, args)), server(authorization_server(state, args))]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: [setattr(s, "should_exit", True) for s in servers])

    print(json.dumps({"mcp": state.mcp_url, "issuer": issuer, "admin": f"{issuer}/admin"}), flush=True)
    await asyncio.gather(servers[0].serve(sockets=[rs_sock]), servers[1].serve(sockets=[as_sock]))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
