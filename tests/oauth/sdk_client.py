"""Checks examples/oauth_server.py with the official Python SDK client's OAuth support.

Usage: sdk_client.py MCP_URL ADMIN_URL (the fixture's start line; run it with --access-ttl 2 or
so: this script sleeps past each access token's lifetime). For each token endpoint auth method
the fixture supports (`none`, `client_secret_basic`, `client_secret_post`), an
`OAuthClientProvider` with in-memory storage and a redirect handler that plays the browser (it
follows the authorization URL with httpx, takes `code` and `state` from the redirect and hands
them to the callback handler) logs in on the first 401 (discovery, dynamic registration, PKCE),
calls `whoami`, waits past the access token's expiry and calls again: the SDK refreshes, the
fixture rotates the refresh token, and the old one is then refused (`invalid_grant`). After
`POST /admin/revoke` a call makes the SDK authorize afresh. Then a few requests the fixture
must refuse (no PKCE, another resource, an unregistered redirect URI, a reused code, a wrong
verifier). Prints one JSON line per step and exits non-zero on the first failed check. Run by
tests/oauth.rs (`the_fixture_passes_the_official_sdk_clients_oauth_flow`).
"""

import asyncio
import base64
import hashlib
import json
import secrets
import sys
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT = "http://127.0.0.1:47999/callback"  # never listened on: the handler reads the redirect itself


def step(name: str, **facts) -> None:
    print(json.dumps({"step": name, **facts}), flush=True)


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


class MemoryStorage:
    """The SDK's `TokenStorage`, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Browser:
    """Plays the person approving in a browser: follows the authorization URL (the fixture
    approves at once) and passes the redirect's code and state to the SDK's callback handler."""

    def __init__(self) -> None:
        self.result: asyncio.Future[AuthorizationCodeResult] | None = None
        self.visits = 0

    async def redirect_handler(self, url: str) -> None:
        self.visits += 1
        self.result = asyncio.get_running_loop().create_future()
        async with httpx2.AsyncClient(follow_redirects=False) as http:
            response = await http.get(url)
        check(response.status_code == 302, f"authorize answered {response.status_code}: {response.text}")
        location = response.headers["location"]
        check(location.startswith(REDIRECT + "?"), f"redirected to {location}")
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        check("code" in query, f"no code in the redirect: {query}")
        self.result.set_result(AuthorizationCodeResult(code=query["code"], state=query.get("state")))

    async def callback_handler(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return await self.result


async def stats(http: httpx2.AsyncClient, admin: str) -> dict:
    return (await http.get(f"{admin}/stats")).json()


async def whoami(session: ClientSession) -> dict:
    result = await session.call_tool("whoami", {})
    check(not getattr(result, "is_error", False), f"whoami failed: {result}")
    return json.loads(result.content[0].text)


async def token_request(http: httpx2.AsyncClient, issuer: str, client: OAuthClientInformationFull, data: dict):
    """A token request with the client's own authentication."""
    headers = {}
    data = {**data, "client_id": client.client_id}
    if client.token_endpoint_auth_method == "client_secret_basic":
        raw = f"{client.client_id}:{client.client_secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    elif client.token_endpoint_auth_method == "client_secret_post":
        data["client_secret"] = client.client_secret
    return await http.post(f"{issuer}/token", data=data, headers=headers)


async def flow(mcp_url: str, admin: str, method: str, http: httpx2.AsyncClient) -> None:
    """Login, a call, expiry and a refresh with rotation, then revocation and a fresh login."""
    issuer = admin.removesuffix("/admin")
    storage, browser = MemoryStorage(), Browser()
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name=f"sdk-check-{method}",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            token_endpoint_auth_method=method,
        ),
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )
    before = await stats(http, admin)
    async with httpx2.AsyncClient(auth=provider, timeout=30) as authed:
        async with streamable_http_client(mcp_url, http_client=authed) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                me = await whoami(session)
                client = storage.client
                check(client is not None and client.token_endpoint_auth_method == method, f"registered: {client}")
                check(me == {"client_id": client.client_id, "scopes": ["mcp:tools"]}, f"whoami: {me}")
                check((client.client_secret is None) == (method == "none"), "a secret exactly when one is used")
                first = storage.tokens
                step("login", method=method, client_id=client.client_id, expires_in=first.expires_in)

                # Past the access token's lifetime: the SDK refreshes before the next request.
                await asyncio.sleep((first.expires_in or 1) + 1)
                me = await whoami(session)
                after = await stats(http, admin)
                second = storage.tokens
                refreshes = after["grants"]["refresh_token"] - before["grants"]["refresh_token"]
                check(me["client_id"] == client.client_id, f"whoami after refresh: {me}")
                check(refreshes == 1, f"{refreshes} refresh grants")
                check(second.refresh_token != first.refresh_token, "the refresh token was rotated")
                check(second.access_token != first.access_token, "a new access token")
                check(after["live_refresh_tokens"].count(second.refresh_token) == 1, "the new one is live")
                step("refresh", method=method, refresh_grants=refreshes)

                # The rotated-out refresh token is spent.
                reuse = await token_request(
                    http, issuer, client, {"grant_type": "refresh_token", "refresh_token": first.refresh_token}
                )
                check(reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant", f"reuse: {reuse.text}")
                step("old refresh token refused", method=method, status=reuse.status_code)

                # Revoked: the RS refuses the token, the SDK authorizes afresh.
                await http.post(f"{admin}/revoke")
                visits = browser.visits
                me = await whoami(session)
                check(browser.visits == visits + 1, "a new authorization after revocation")
                check(me["client_id"] == client.client_id, f"whoami after revocation: {me}")
                step("revoked, authorized again", method=method)


async def refusals(mcp_url: str, admin: str, http: httpx2.AsyncClient) -> None:
    """What the authorization server must refuse."""
    issuer = admin.removesuffix("/admin")
    reg = await http.post(f"{issuer}/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})
    check(reg.status_code == 201, f"register: {reg.text}")
    client = OAuthClientInformationFull.model_validate(reg.json())
    bad = await http.post(f"{issuer}/register", json={"redirect_uris": ["https://evil.example/cb"]})
    check(bad.status_code == 400 and bad.json()["error"] == "invalid_redirect_uri", f"https redirect: {bad.text}")

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    other_port = "http://127.0.0.1:1234/callback"
    base = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": other_port,  # RFC 8252: any port of a registered loopback URI
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": mcp_url,
    }

    async def authorize(**changes) -> httpx2.Response:
        params = {k: v for k, v in {**base, **changes}.items() if v is not None}
        return await http.get(f"{issuer}/authorize?{urlencode(params)}")

    def redirect_query(response: httpx2.Response) -> dict:
        check(response.status_code == 302, f"{response.status_code}: {response.text}")
        return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}

    for changes, error in [
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"resource": "http://127.0.0.1:1/mcp"}, "invalid_target"),
        ({"resource": None}, "invalid_target"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "admin"}, "invalid_scope"),
    ]:
        query = redirect_query(await authorize(**changes))
        check(query.get("error") == error and query.get("state") == "s1", f"{changes}: {query}")
    for changes in [{"redirect_uri": "http://127.0.0.1:1234/elsewhere"}, {"client_id": "nobody"}]:
        response = await authorize(**changes)
        check(response.status_code == 400, f"{changes}: not redirected, refused: {response.status_code}")

    code = redirect_query(await authorize())["code"]
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": other_port}
    wrong = await token_request(http, issuer, client, {**exchange, "code_verifier": secrets.token_urlsafe(48)})
    check(wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant", f"wrong verifier: {wrong.text}")
    code = redirect_query(await authorize())["code"]
    exchange["code"] = code
    other = await token_request(http, issuer, client, {**exchange, "code_verifier": verifier, "redirect_uri": REDIRECT})
    check(other.status_code == 400, f"another redirect_uri than the authorization's: {other.text}")
    code = redirect_query(await authorize())["code"]
    exchange["code"] = code
    good = await token_request(http, issuer, client, {**exchange, "code_verifier": verifier})
    check(good.status_code == 200 and good.json()["token_type"] == "Bearer", f"exchange: {good.text}")
    check(good.headers["cache-control"] == "no-store", "token answers are not cached")
    again = await token_request(http, issuer, client, {**exchange, "code_verifier": verifier})
    check(again.status_code == 400 and again.json()["error"] == "invalid_grant", f"code reuse: {again.text}")
    unauth = await http.post(mcp_url, json={}, headers={"Authorization": "Bearer nope"})
    check(unauth.status_code == 401 and "resource_metadata=" in unauth.headers["www-authenticate"], "401 + PRM")
    step("refusals")


async def main() -> int:
    mcp_url, admin = sys.argv[1], sys.argv[2]
    started = time.monotonic()
    async with httpx2.AsyncClient(timeout=30) as http:
        for method in ["none", "client_secret_basic", "client_secret_post"]:
            await flow(mcp_url, admin, method, http)
        await refusals(mcp_url, admin, http)
        final = await stats(http, admin)
    step("done", seconds=round(time.monotonic() - started, 1), grants=final["grants"], registrations=final["registrations"])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except Exception as e:  # noqa: BLE001 - the test prints what went wrong
        print(f"sdk_client: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
