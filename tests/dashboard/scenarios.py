"""The dashboard's browser scenarios, run by tests/dashboard.rs against a live daemon.

Usage: scenarios.py <scenario>, with DASH_URL (the gateway), DASH_OWNER_TOKEN, DASH_HOME,
DASH_ARTIFACTS (screenshots), DASH_CHROMIUM, DASH_CHROMEDRIVER. Each scenario drives a real
headless Chromium through selenium, saves screenshots as <scenario>-<step>.png and
<scenario>.png, prints what it measured, and exits non-zero (with a screenshot and the
browser's console) on the first failed check.
"""

import http.server
import json
import os
import signal
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

URL = os.environ["DASH_URL"].rstrip("/")
OWNER = os.environ["DASH_OWNER_TOKEN"]
HOME = os.environ.get("DASH_HOME", "")
ART = os.environ.get("DASH_ARTIFACTS", ".")
TOKEN_KEY = "revka.gateway.token"


class Failed(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failed(message)


def api(method, path, token=OWNER, body=None, headers=None):
    """(status, JSON or text) of a gateway call."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def pairing_code(role):
    status, body = api("POST", "/api/pair/code", body={"role": role})
    check(status == 200, f"pairing code: {status} {body}")
    return body["code"]


# Every wait is stretched by this factor: CI machines are 2-core and run the other integration
# tests beside these; a wait bounds a hang, it does not measure speed (times are printed).
SLACK = float(os.environ.get("DASH_WAIT_SLACK", "3"))


def toast_text(d):
    """The toast's last message, even after it has hidden itself again (6 s)."""
    return d.execute_script("return document.getElementById('toast').textContent") or ""


def wait(what, cond, timeout=10.0, interval=0.02):
    timeout *= SLACK
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except Exception as e:  # a stale element while the page updates
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise Failed(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def browser(width=1280, height=900):
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("DASH_CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(os.environ.get("DASH_CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    return driver


class Run:
    def __init__(self, name):
        self.name = name
        self.drivers = []
        self.step = 0

    def browser(self, **kw):
        d = browser(**kw)
        self.drivers.append(d)
        return d

    def shot(self, driver, step=None):
        os.makedirs(ART, exist_ok=True)
        if step is None:
            path = os.path.join(ART, f"{self.name}.png")
        else:
            self.step += 1
            path = os.path.join(ART, f"{self.name}-{self.step:02}-{step}.png")
        driver.save_screenshot(path)
        print(f"screenshot: {path}")

    def close(self):
        for d in self.drivers:
            try:
                d.quit()
            except Exception:
                pass


def visible(driver, css):
    els = driver.find_elements(By.CSS_SELECTOR, css)
    return bool(els) and els[0].is_displayed()


def sign_in(run, driver, role, width=None):
    driver.get(URL + "/")
    wait("the sign-in form", lambda: visible(driver, "#signin-code"))
    code = pairing_code(role)
    field = driver.find_element(By.ID, "signin-code")
    field.clear()
    field.send_keys(code)
    field.send_keys(Keys.ENTER)
    wait("the app after sign-in", lambda: visible(driver, "#app") and not visible(driver, "#signin"))
    wait("the role in the header", lambda: role in driver.find_element(By.ID, "whoami").text)
    return driver.execute_script(f"return localStorage.getItem('{TOKEN_KEY}')")


def row(driver, path):
    els = driver.find_elements(By.CSS_SELECTOR, f'.row[data-path="{path}"]')
    return els[0] if els else None


def row_state(driver, path):
    return driver.execute_script(
        "const r = document.querySelector(`.row[data-path=\"${arguments[0]}\"]`);"
        "return r ? {state: r.dataset.state, text: r.querySelector('.state').textContent,"
        " restarts: r.querySelector('.restarts').textContent} : null;", path)


def server_names():
    status, tree = api("GET", "/api/actors/root/mcp_servers")
    check(status == 200, f"/api/actors/root/mcp_servers: {status}")
    return [c["id"] for c in tree["children"]]


# ---------------------------------------------------------------------------------------------


def scenario_sign_in_live_tree(run):
    d = run.browser()
    # 1. Unauthenticated: the sign-in form only, and no API call made.
    d.get(URL + "/")
    wait("the sign-in form", lambda: visible(d, "#signin-code"))
    time.sleep(0.3)
    check(not visible(d, "#app"), "the app is hidden before sign-in")
    api_calls = d.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/api/'))")
    check(api_calls == [], f"no API call before sign-in: {api_calls}")
    check(d.find_element(By.CSS_SELECTOR, "label[for=signin-code]").text == "Pairing code", "labelled field")
    run.shot(d, "signed-out")

    # A wrong code is refused with a message.
    field = d.find_element(By.ID, "signin-code")
    field.send_keys("AAAA-BBBB")
    field.send_keys(Keys.ENTER)
    wait("the refusal", lambda: "not accepted" in d.find_element(By.ID, "signin-error").text, timeout=15)
    check(not visible(d, "#app"), "still signed out")

    # 2. Sign in with a pairing code (operator: may restart, not edit config or open Code).
    token = sign_in(run, d, "operator")
    check(token and token.startswith("rvk_"), "the token is kept in localStorage")
    check(TOKEN_KEY not in d.current_url and token not in d.current_url, "the token is not in the URL")
    check(d.execute_script("return document.cookie") == "", "no cookie")
    check(not visible(d, "#tab-code") and not visible(d, "#tab-sessions"), "owner-only tabs hidden from an operator")

    # 3. The tree shows every configured server.
    names = server_names()
    check(len(names) == 3, f"three servers: {names}")
    for name in names:
        wait(f"the row of {name}", lambda: row(d, f"root/mcp_servers/{name}"))
    # The server's connection actor: a kill -9 of its process restarts it.
    proc = "root/mcp_servers/mcp:alpha"
    wait("alpha running", lambda: (row_state(d, proc) or {}).get("state") == "running")
    text = row(d, "root/mcp_servers/mcp:alpha").text
    check("running" in text, f"state in words, not colour alone: {text!r}")
    run.shot(d, "tree")

    # Details of a selected actor.
    row(d, proc).click()
    wait("the details panel", lambda: "protocol version" in d.find_element(By.ID, "actor-details").text)
    check(visible(d, "#restart-actor"), "an operator gets the Restart button")
    run.shot(d, "details")

    # 4. kill -9 of the server's process: backing off, then running, restarts + 1, no reload.
    status, node = api("GET", f"/api/actors/{proc}/process")
    pid = node["details"]["pid"]
    before = int(row_state(d, proc)["restarts"])
    d.execute_script("window.__noReload = true;")
    # Every state the row takes, recorded by the page itself. Mutation records are delivered in
    # batches (two feed events handled in one task come together), so each record's old value
    # is kept too: a state replaced within the batch is not lost.
    d.execute_script("""
        const r = document.querySelector(`.row[data-path="${arguments[0]}"]`);
        window.__states = [r.dataset.state];
        new MutationObserver((records) => {
            for (const m of records) {
                if (m.type === 'attributes' && m.attributeName === 'data-state' && m.target === r)
                    window.__states.push(m.oldValue + '/(replaced)');
            }
            window.__states.push(r.dataset.state + '/' + r.querySelector('.restarts').textContent);
        }).observe(r, {attributes: true, attributeOldValue: true, attributeFilter: ['data-state'],
            subtree: true, childList: true, characterData: true});
    """, proc)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    # Generous timeouts: the machines are noisy; the time taken is printed, not asserted.
    wait("backing off", lambda: any(s.startswith("backing_off") for s in d.execute_script("return window.__states")), timeout=10)
    run.shot(d, "backing-off")
    wait("running again with restarts + 1",
         lambda: (row_state(d, proc) or {}).get("state") == "running"
         and int(row_state(d, proc)["restarts"]) == before + 1, timeout=15)
    took = time.monotonic() - t0
    check(d.execute_script("return window.__noReload === true"), "no page reload")
    print(f"kill -9 -> backing off -> running, restarts {before} -> {before + 1}, in {took:.2f} s; "
          f"states seen: {d.execute_script('return window.__states')}")
    run.shot(d, "recovered")

    # 5. Restart button (operator).
    status, node = api("GET", f"/api/actors/{proc}/process")
    old_pid = node["details"]["pid"]
    restarts = api("GET", f"/api/actors/{proc}")[1]["restarts"]
    row(d, proc).click()
    wait("the Restart button", lambda: visible(d, "#restart-actor"))
    d.find_element(By.ID, "restart-actor").click()
    wait("the restart toast", lambda: "Restart of" in toast_text(d))

    def restarted():
        status, n = api("GET", f"/api/actors/{proc}/process")
        return status == 200 and n["state"] == "running" and n["details"].get("pid") not in (None, old_pid)
    wait("a new process after Restart", restarted, timeout=15)
    wait("the row shows the restart", lambda: int(row_state(d, proc)["restarts"]) > restarts
         or (row_state(d, proc) or {}).get("state") == "running", timeout=5)
    run.shot(d, "restarted")

    # Sidecars: the breaker's state and its Reset (operator).
    d.find_element(By.ID, "tab-sidecars").click()
    wait("the breaker", lambda: d.find_element(By.ID, "breaker-state").text == "closed")
    d.find_element(By.ID, "breaker-reset").click()
    wait("the reset toast", lambda: "Circuit breaker reset" in toast_text(d))
    run.shot(d, "sidecars")

    # The Events view lists the restart.
    d.find_element(By.ID, "tab-events").click()
    wait("the restart in the event log", lambda: "killed by signal 9" in d.find_element(By.CSS_SELECTOR, "#view-events .event-log").text)
    run.shot(d, "events")

    # 6. Keyboard: the tabs move with the arrow keys, the focus ring is visible.
    d.find_element(By.ID, "tab-tree").click()
    d.find_element(By.ID, "tab-tree").send_keys(Keys.ARROW_RIGHT)
    wait("the Servers tab", lambda: d.switch_to.active_element.get_attribute("id") == "tab-servers"
         and visible(d, "#view-servers"))
    outline = d.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    check(outline not in ("none", ""), f"a visible focus ring (outline {outline})")

    # 390 px wide: still readable (no horizontal scroll of the page).
    d.set_window_size(390, 844)
    d.find_element(By.ID, "tab-servers").send_keys(Keys.ARROW_LEFT)
    time.sleep(0.3)
    overflow = d.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    check(overflow <= 1, f"no horizontal overflow at 390 px ({overflow} px)")
    run.shot(d, "narrow")
    d.set_window_size(1280, 900)

    # 7. Sign out revokes the token and shows the sign-in.
    d.find_element(By.ID, "signout").click()
    wait("the sign-in after sign-out", lambda: visible(d, "#signin-code"))
    check(d.execute_script(f"return localStorage.getItem('{TOKEN_KEY}')") is None, "the token is forgotten")
    status, _ = api("GET", "/api/whoami", token=token)
    check(status == 401, f"the token is revoked ({status})")
    run.shot(d)


def scenario_test_button(run):
    d = run.browser()
    sign_in(run, d, "owner")
    # The owner pairs another device from the page: the code it shows works once.
    d.find_element(By.ID, "pair-device").click()
    d.find_element(By.ID, "pair-role").send_keys("operator")
    d.find_element(By.ID, "pair-create").click()
    shown = wait("a pairing code", lambda: d.find_element(By.ID, "pair-code").text, timeout=10)
    run.shot(d, "pairing")
    code = shown.split(" ")[0]
    status, body = api("POST", "/pair", token=None, headers={"X-Pairing-Code": code, "X-Pairing-Label": "phone"})
    check(status == 200 and body["role"] == "operator", f"the shown code pairs an operator: {status} {body}")
    d.find_element(By.ID, "pair-close").click()
    d.find_element(By.ID, "tab-servers").click()
    wait("the editor", lambda: visible(d, "#ed-name"))

    def fill(name, command):
        d.find_element(By.ID, "ed-name").clear()
        d.find_element(By.ID, "ed-name").send_keys(name)
        d.find_element(By.ID, "ed-command").clear()
        d.find_element(By.ID, "ed-command").send_keys(command)
        d.find_element(By.ID, "ed-args").clear()

    fill("good", os.environ["DASH_FIXTURE_ECHO"])
    d.find_element(By.ID, "ed-test").click()
    result = wait("the good result", lambda: (lambda t: t if t.startswith("OK") else None)(
        d.find_element(By.ID, "editor-result").text), timeout=20)
    check("1 tool" in result and "echo" in result, f"ok with one tool: {result!r}")
    print(f"good config: {result!r}")
    d.execute_script("document.getElementById('editor-result').scrollIntoView({block: 'center'})")
    run.shot(d, "good")

    fill("bad", "/nonexistent/mcp-server")
    d.find_element(By.ID, "ed-test").click()
    result = wait("the bad result", lambda: (lambda t: t if t.startswith("Failed") else None)(
        d.find_element(By.ID, "editor-result").text), timeout=20)
    check("nonexistent" in result or "No such file" in result or "not found" in result.lower(),
          f"the error names the problem: {result!r}")
    print(f"bad config: {result!r}")
    d.execute_script("document.getElementById('editor-result').scrollIntoView({block: 'center'})")
    run.shot(d)


def scenario_other_origin(run):
    # The dashboard, signed in, in one tab of this browser.
    d = run.browser()
    token = sign_in(run, d, "owner")
    check(token, "signed in")

    # A page served from another origin (another port of 127.0.0.1).
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<!doctype html><title>evil</title><p>another origin</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    evil = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        d.switch_to.new_window("tab")
        d.get(evil + "/")
        stolen = d.execute_script(f"return localStorage.getItem('{TOKEN_KEY}')")
        check(stolen is None, "another origin cannot read the token")
        check(d.execute_script("return document.cookie") == "", "no cookie to ride on")
        # Its fetches: without the token (401), and a cross-origin read is refused anyway.
        result = d.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const url = arguments[0];
            const out = {};
            fetch(url + '/api/actors').then(r => { out.actors = 'read ' + r.status; })
              .catch(e => { out.actors = 'refused: ' + e.message; })
              .then(() => fetch(url + '/api/actors/root/restart', {method: 'POST', mode: 'no-cors'}))
              .then(r => { out.restart = 'opaque ' + r.type; })
              .catch(e => { out.restart = 'refused: ' + e.message; })
              .then(() => fetch(url + '/', {mode: 'no-cors'}))
              .then(r => { out.page = r.type; })
              .catch(e => { out.page = 'refused: ' + e.message; })
              .then(() => new Promise(resolve => {
                  const ws = new WebSocket(url.replace('http', 'ws') + '/ws/mcp/events?session_id=x',
                      ['revka', 'bearer.rvk_guess']);
                  ws.onopen = () => { out.ws = 'open'; resolve(); };
                  ws.onerror = () => { out.ws = 'refused'; resolve(); };
                  setTimeout(() => { out.ws = out.ws || 'timeout'; resolve(); }, 5000);
              }))
              .then(() => done(out));
        """, URL)
        print(f"from {evil}: {result}")
        check(result["actors"].startswith("refused"), f"a cross-origin read fails: {result}")
        check(result["ws"] == "refused", f"the WebSocket is refused: {result}")
        # The gateway itself refuses the foreign Origin, token or not (the WebSocket check).
        status, body = api("GET", "/api/actors", headers={"Origin": evil})
        check(status == 403 and "Origin" in str(body), f"foreign Origin refused: {status} {body}")
        status, body = api("GET", "/ws/mcp/events?session_id=x", headers={
            "Origin": evil, "Connection": "Upgrade", "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        check(status == 403, f"a foreign-Origin WebSocket upgrade is refused with 403 ({status})")
        # Nothing was restarted by the no-cors POST.
        status, root = api("GET", "/api/actors")
        check(all(c["restarts"] == 0 for c in root["children"]), "no restart happened")
        run.shot(d)
    finally:
        server.shutdown()
    # The dashboard tab still holds its token (the other origin did not touch it).
    d.switch_to.window(d.window_handles[0])
    check(d.execute_script(f"return localStorage.getItem('{TOKEN_KEY}')") == token, "the token is intact")


def scenario_first_load(run):
    d = run.browser()
    sign_in(run, d, "owner")
    # A fresh load of the signed-in page, cache bypassed by a new browser profile.
    d2 = run.browser()
    # The token goes into the origin's storage from a page of the origin that loads nothing (a
    # 404 answer), so the measured load below is the very first fetch of every file.
    d2.get(URL + "/no-such-page")
    d2.execute_script(f"localStorage.setItem('{TOKEN_KEY}', arguments[0])",
                      d.execute_script(f"return localStorage.getItem('{TOKEN_KEY}')"))
    d2.get(URL + "/")
    wait("the tree", lambda: d2.find_elements(By.CSS_SELECTOR, ".row"), timeout=15)
    time.sleep(1.0)
    entries = d2.execute_script("""
        const nav = performance.getEntriesByType('navigation')[0];
        const res = performance.getEntriesByType('resource');
        return [{name: nav.name, size: nav.transferSize, body: nav.encodedBodySize}]
            .concat(res.map(e => ({name: e.name, size: e.transferSize, body: e.encodedBodySize})));
    """)
    assets = [e for e in entries if "/api/" not in e["name"]]
    total = sum(e["size"] for e in assets)
    for e in assets:
        print(f"  {e['size']:>7} B  {e['name']}")
    print(f"first load: {total} B transferred ({total / 1024:.1f} KiB) in {len(assets)} files")
    check(total < 300 * 1024, f"first load under 300 KiB: {total} B")
    check(all(e["size"] > 300 for e in assets if "favicon" not in e["name"]),
          "every file was fetched, none revalidated from a cache")
    check(not any("xterm" in e["name"] for e in entries), "xterm.js is not loaded at start")
    # The Code tab loads it.
    d2.find_element(By.ID, "tab-code").click()
    wait("xterm loaded", lambda: any("xterm.mjs" in n for n in d2.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")), timeout=15)
    run.shot(d2, "code-tab")
    # Security headers of the page and an asset.
    for path in ("/", "/assets/js/app.js"):
        req = urllib.request.Request(URL + path, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            h = resp.headers
            check("script-src 'self'" in h["Content-Security-Policy"]
                  and "frame-ancestors 'none'" in h["Content-Security-Policy"]
                  and "unsafe-inline" not in h["Content-Security-Policy"], f"CSP of {path}")
            check(h["X-Content-Type-Options"] == "nosniff", "nosniff")
            check(h["X-Frame-Options"] == "DENY", "X-Frame-Options")
            check(h["Referrer-Policy"] == "no-referrer", "Referrer-Policy")
            check(h["Content-Encoding"] == "gzip", f"gzip for {path}")
            check(h["ETag"], "ETag")
    # No CSP violation in the console during all that.
    logs = [l for l in d2.get_log("browser") if "Content Security Policy" in l["message"]
            and "xterm" not in l["message"] and "style" not in l["message"]]
    check(not logs, f"no CSP violation of the dashboard's own files: {logs}")
    run.shot(d2)


def scenario_scale(run):
    d = run.browser()
    # 1. 1,000 real sessions on the daemon, and the real page over them.
    mcp = json.load(open(os.path.join(HOME, "mcp.json")))["url"].rsplit("/mcp", 1)[0]
    t0 = time.monotonic()
    for i in range(1000):
        req = urllib.request.Request(mcp + "/session", data=json.dumps({"label": f"load {i}"}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
    print(f"1000 sessions created in {time.monotonic() - t0:.1f} s")
    status, tree = api("GET", "/api/actors/root/sessions")
    check(status == 200 and len(tree["children"]) >= 1000, f"1000 sessions in the tree ({len(tree.get('children', []))})")
    sign_in(run, d, "owner")
    t0 = time.monotonic()
    d.get(URL + "/")
    wait("1000 session rows", lambda: len(d.find_elements(By.CSS_SELECTOR, '.row[data-path^="root/sessions/"]')) >= 1000, timeout=30, interval=0.05)
    page = time.monotonic() - t0
    print(f"real page: load + first render of {len(d.find_elements(By.CSS_SELECTOR, '.row'))} rows in {page * 1000:.0f} ms")
    run.shot(d, "real-1000-sessions")

    # 2. The renderer module itself with 200 servers (4 actors each) and 1,000 sessions.
    figures = d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('/assets/js/treeview.js').then(({ TreeView }) => {
          const now = new Date().toISOString();
          const node = (path, id, kind, children = [], extra = {}) => ({ path, id, kind, state: 'running',
            state_since: now, started_at: now, restarts: 0, children, ...extra });
          const servers = [];
          for (let i = 0; i < 200; i++) {
            const p = `root/mcp_servers/mcp:s${i}`;
            servers.push(node(p, `mcp:s${i}`, 'mcp_server', [node(`${p}/process`, 'process', 'process', [], { details: { pid: 1000 + i } }),
              node(`${p}/client`, 'client', 'mcp_client'), node(`${p}/pinger`, 'pinger', 'pinger')]));
          }
          const sessions = [];
          for (let i = 0; i < 1000; i++) sessions.push(node(`root/sessions/sess${i}`, `sess${i}`, 'session', [], { details: { label: `s ${i}` } }));
          const snap = node('root', 'root', 'root', [node('root/mcp_servers', 'mcp_servers', 'supervisor', servers),
            node('root/sessions', 'sessions', 'supervisor', sessions)]);
          const host = document.createElement('div');
          host.className = 'tree';
          document.querySelector('#view-tree').prepend(host);
          const view = new TreeView(host, {});
          let t = performance.now();
          view.render(snap);
          const first = performance.now() - t;
          // Layout and paint of the first frame.
          requestAnimationFrame(() => requestAnimationFrame(() => {
            const painted = performance.now() - t;
            // A burst of 1,000 events (exits and restarts of random servers), applied one by one.
            const events = [];
            for (let i = 0; i < 1000; i++) {
              const s = i % 200;
              events.push({ path: `root/mcp_servers/mcp:s${s}/process`, kind: i % 2 ? 'started' : 'exited',
                state: i % 2 ? 'running' : 'backing_off', restarts: Math.floor(i / 2) + 1, at: now,
                abnormal: !(i % 2), reason: 'killed by signal 9' });
            }
            t = performance.now();
            let applied = 0;
            for (const e of events) if (view.apply(e)) applied++;
            const apply = performance.now() - t;
            // A refetch after those events: the 200 rows they changed are written back...
            t = performance.now();
            const rewritten = view.render(snap);
            const rerender = performance.now() - t;
            // ...and a refetch of an unchanged tree writes no row at all.
            t = performance.now();
            const touched = view.render(snap);
            const unchanged = performance.now() - t;
            // Frame times while 50 events per frame arrive for 60 frames.
            const frames = [];
            let n = 0, last = performance.now();
            const step = () => {
              for (let k = 0; k < 50; k++) { const s = (n * 50 + k) % 200;
                view.apply({ path: `root/mcp_servers/mcp:s${s}/process`, kind: 'started', state: n % 2 ? 'running' : 'backing_off', restarts: n, at: now }); }
              const t2 = performance.now(); frames.push(t2 - last); last = t2;
              if (++n < 60) requestAnimationFrame(step);
              else { host.remove(); done({ rowCount: view.rows.size, first, painted, applied, apply,
                       perEvent: apply / events.length, rerender, rewritten, unchanged, touched,
                       maxFrame: Math.max(...frames.slice(1)), meanFrame: frames.slice(1).reduce((a, b) => a + b, 0) / (frames.length - 1) }); }
            };
            requestAnimationFrame(step);
          }));
        }).catch((e) => done({ error: String(e) }));
    """)
    print(f"renderer, 200 servers + 1,000 sessions: {json.dumps(figures)}")
    check("error" not in figures, f"the module ran: {figures}")
    check(figures["rowCount"] == 3 + 800 + 1000, f"every actor has a row: {figures['rowCount']}")
    check(figures["applied"] == 1000, "every event found its row")
    check(figures["touched"] == 0, "an unchanged snapshot writes no row")
    check(figures["perEvent"] < 1.0, f"an event costs well under a millisecond ({figures['perEvent']:.3f} ms)")
    check(figures["painted"] < 3000, f"first render and paint under 3 s ({figures['painted']:.0f} ms)")
    run.shot(d)


def scenario_config_editor(run):
    """Needs the config24 routes: Save adds a server (it appears in the tree), an invalid entry
    shows the file:line:col reason and leaves the file as it was, and a second tab that saves
    over a changed file is told so and offered a reload."""
    status, body = api("GET", "/api/config/servers")
    check(status == 200, f"GET /api/config/servers: {status} {body}")
    config_path = body["path"]
    d = run.browser()
    sign_in(run, d, "owner")
    d.find_element(By.ID, "tab-servers").click()
    wait("the editor with the file's entries", lambda: len(d.find_elements(By.CSS_SELECTOR, "#ed-pick option")) > 1)
    d2 = run.browser()
    sign_in(run, d2, "owner")
    d2.find_element(By.ID, "tab-servers").click()
    wait("the second tab's editor", lambda: len(d2.find_elements(By.CSS_SELECTOR, "#ed-pick option")) > 1)

    def fill(drv, name, command, timeout=""):
        for field, value in (("ed-name", name), ("ed-command", command), ("ed-timeout", timeout)):
            el = drv.find_element(By.ID, field)
            el.clear()
            if value:
                el.send_keys(value)

    # Save a new server: written, reloaded, in the tree.
    fill(d, "delta", os.environ["DASH_FIXTURE_ECHO"])
    d.find_element(By.ID, "ed-save").click()
    wait("saved", lambda: "Saved delta" in d.find_element(By.ID, "editor-result").text
         or "Reloaded" in d.find_element(By.ID, "editor-result").text, timeout=20)
    written = open(config_path).read()
    check("delta" in written and "env = {}" not in written, f"delta is in config.toml, no empty keys:\n{written}")
    wait("delta in the tree", lambda: api("GET", "/api/actors/root/mcp_servers/mcp:delta")[0] == 200, timeout=20)
    run.shot(d, "saved")

    # An invalid entry: the reason with file:line:col, the file untouched.
    before = open(config_path).read()
    fill(d, "broken", "")  # a stdio server without a command
    d.find_element(By.ID, "ed-save").click()
    reason = wait("the 422 reason", lambda: (lambda t: t if t.startswith("Invalid") else None)(
        d.find_element(By.ID, "editor-result").text), timeout=20)
    print(f"invalid entry: {reason!r}")
    check(":" in reason and "config.toml" in reason, f"file:line:col in {reason!r}")
    check(open(config_path).read() == before, "the file is untouched")
    d.execute_script("document.getElementById('editor-result').scrollIntoView({block: 'center'})")
    run.shot(d, "invalid")

    # The second tab still has the old version: told the file changed, offered a reload.
    fill(d2, "epsilon", os.environ["DASH_FIXTURE_ECHO"])
    d2.find_element(By.ID, "ed-save").click()
    wait("the conflict", lambda: "changed since this editor loaded it" in d2.find_element(By.ID, "editor-result").text, timeout=20)
    check(visible(d2, "#ed-conflict-reload"), "a reload button")
    d2.execute_script("document.getElementById('editor-result').scrollIntoView({block: 'center'})")
    run.shot(d2, "conflict")
    d2.find_element(By.ID, "ed-conflict-reload").click()
    wait("reloaded", lambda: "delta" in [o.get_attribute("value") for o in d2.find_elements(By.CSS_SELECTOR, "#ed-pick option")])
    run.shot(d2)


def scenario_code_tab(run):
    """Needs the term24 routes and a launcher (DASH_LAUNCHER) whose fake CLI prints
    DASH_CLI_MARKER and calls one tool through the injected MCP config: the terminal shows the
    output, the side panel that call's progress; a 10 MB paste is sent in bounded frames."""
    d = run.browser()
    sign_in(run, d, "owner")
    d.find_element(By.ID, "tab-code").click()
    launcher = os.environ.get("DASH_LAUNCHER")
    wait("the launchers", lambda: len(d.find_elements(By.CSS_SELECTOR, "#code-launcher option")) > 0, timeout=15)
    if launcher:
        d.execute_script("document.getElementById('code-launcher').value = arguments[0]", launcher)
    d.find_element(By.ID, "code-start").click()
    wait("the ready frame", lambda: "Running" in d.find_element(By.ID, "code-info").text, timeout=20)
    marker = os.environ.get("DASH_CLI_MARKER", "")
    if marker:
        wait("the CLI's output in the terminal", lambda: marker in d.find_element(By.ID, "terminal").text, timeout=30)
    run.shot(d, "ready")
    # The fake CLI calls its tool on the line `call`, typed into the terminal.
    call = os.environ.get("DASH_CLI_CALL", "")
    if call:
        d.find_element(By.CSS_SELECTOR, "#terminal textarea").send_keys(call + "\n")
        wait("the call's result in the terminal", lambda: "RESULT" in d.find_element(By.ID, "terminal").text, timeout=30)
    wait("the tool call's progress in the side panel",
         lambda: d.find_elements(By.CSS_SELECTOR, "#view-code .progress-log li"), timeout=30)
    run.shot(d, "running")
    # A 10 MB paste: split into frames of at most 60 KiB by the page; the terminal stays up.
    d.execute_script("""
        const ta = document.querySelector('#terminal textarea');
        const dt = new DataTransfer();
        dt.setData('text/plain', 'x'.repeat(10 * 1024 * 1024));
        ta.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    """)
    time.sleep(2)
    check("could not be opened" not in d.find_element(By.ID, "code-info").text, "the terminal survived the paste")
    d.set_window_size(900, 700)
    time.sleep(0.5)
    run.shot(d)
    d.find_element(By.ID, "code-stop").click()


def scenario_sidecars_live(run):
    agent = os.environ["DASH_AGENT_ID"]
    room = os.environ["DASH_ROOM_ID"]
    d = run.browser()
    sign_in(run, d, "owner")
    d.find_element(By.ID, "tab-sidecars").click()

    def watch_button(title):
        for li in d.find_elements(By.CSS_SELECTOR, "#view-sidecars li"):
            if title in li.text:
                buttons = li.find_elements(By.TAG_NAME, "button")
                if buttons:
                    return buttons[0]
        return None

    # The agent: its timeline so far arrives on the relayed stream.
    wait("the agent's Watch button", lambda: watch_button(agent), timeout=15).click()
    wait("the agent's events", lambda: "echo: first words" in d.find_element(By.CSS_SELECTOR, "#view-sidecars .watch").text, timeout=15)
    run.shot(d, "agent")

    # The room: a message posted while the page watches shows up without a reload.
    wait("the room's Watch button", lambda: watch_button(room), timeout=15).click()
    wait("the room stream is live", lambda: "Live." in d.find_element(By.CSS_SELECTOR, "#view-sidecars .watch").text, timeout=15)
    status, minted = api("POST", "/api/mcp/session", body={"label": "dashboard-test"})
    check(status == 200, f"mcp session: {status} {minted}")
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "post_chat_message", "arguments": {"room_id": room, "text": "hello from the test", "from": "lead"}}}
    status, answer = api("POST", "/api/mcp/call", body=call,
                         headers={"X-Revka-Session": minted["session_id"], "Accept": "application/json, text/event-stream"})
    check(status == 200 and "hello from the test" in str(answer), f"post: {status} {answer}")
    wait("the message in the room's list", lambda: "hello from the test" in d.find_element(By.CSS_SELECTOR, "#view-sidecars .watch").text, timeout=15)
    run.shot(d, "room")

    # The whole agent feed (/ws/agents/events): a prompt sent while the page follows shows up
    # with its agent's name, and so does a chat message.
    d.find_element(By.ID, "feed-follow").click()
    wait("the feed is live", lambda: "Live." in d.find_element(By.CSS_SELECTOR, "#view-sidecars .watch").text, timeout=15)
    prompt = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "send_agent_prompt", "arguments": {"agent_id": agent, "prompt": "fed words"}}}
    status, answer = api("POST", "/api/mcp/call", body=prompt,
                         headers={"X-Revka-Session": minted["session_id"], "Accept": "application/json, text/event-stream"})
    check(status == 200 and "'isError': True" not in str(answer), f"prompt: {status} {answer}")
    wait("the agent's output on the feed", lambda: "echo: fed words" in d.find_element(By.CSS_SELECTOR, "#view-sidecars .watch").text, timeout=15)
    feed = d.find_element(By.CSS_SELECTOR, "#view-sidecars .watch").text
    check("sidecar · watched output" in feed, f"the item names its source, agent and type: {feed}")
    agents = d.find_element(By.CSS_SELECTOR, "#view-sidecars").text
    check("echo" in agents, f"the Agents card shows the backend: {agents}")
    run.shot(d, "feed")
    run.shot(d)


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items() if name.startswith("scenario_")}


def main():
    name = sys.argv[1]
    run = Run(name)
    try:
        SCENARIOS[name](run)
        print(f"{name}: passed")
        return 0
    except Exception as e:
        print(f"{name}: FAILED: {e}")
        traceback.print_exc()
        for i, d in enumerate(run.drivers):
            try:
                run.shot(d, f"failure{i}")
                for entry in d.get_log("browser"):
                    print(f"console: {entry['level']} {entry['message']}")
            except Exception:
                pass
        return 1
    finally:
        run.close()


if __name__ == "__main__":
    sys.exit(main())
