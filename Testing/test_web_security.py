"""Who may talk to ``radiomicslab web``, and how much: origins, the session secret, uploads, odd paths.

A real server (``radiomicslab web`` on a free loopback port, started by the same helper as the
end-to-end tests, with a 2 MB upload limit) is poked the way a hostile page or program would:
websocket handshakes from foreign origins, trame's public default secret, a plain ``GET /ws``, a
``Host`` of another name (DNS rebinding), uploads that never end, a message announcing gigabytes,
a data path with a NUL byte. The browser test serves a page from another loopback port in
Debian's Chromium and checks it cannot open a session while the app's own page can.

Without a server: the origin policy, the page's secret, the upload accounting and the loader's
refusal of odd names; ``radiomicslab web`` refusing a host it cannot listen on at once.
"""

import asyncio
import http.server
import re
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import msgpack
import pytest

from RadiomicsLabLib.errors import RadiomicsLabError

from conftest import run_cli

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "web" / "security"  # not web/: test_browser_artifacts_kept
UPLOAD_LIMIT_MB = 2
MB = 2**20


# ---------------------------------------------------------------------------------------------
# A raw wslink client: what trame's page does over the websocket, without a browser
# ---------------------------------------------------------------------------------------------
class WslinkSession:
    """One websocket session speaking wslink (msgpack messages in chunks), as trame's client does."""

    def __init__(self, http, ws):
        from wslink.chunking import UnChunker

        self.http, self.ws = http, ws
        self.unchunker = UnChunker()
        self.unchunker.set_max_message_size(2**31)
        self.published = []  # (topic, data) pushed by the server
        self.max_chunk = 512  # until logged in (wslink's WSLINK_AUTH_MSG_SIZE)
        self._count = 0

    async def send(self, message: dict, max_chunk: int | None = None):
        from wslink.chunking import generate_chunks

        for chunk in generate_chunks(msgpack.packb(message), max_chunk or self.max_chunk):
            await self.ws.send_bytes(chunk)

    async def receive(self, timeout: float = 30.0) -> dict:
        while True:
            frame = await self.ws.receive(timeout=timeout)
            if frame.type.name != "BINARY":
                raise ConnectionError(f"websocket {frame.type.name}: {frame.data!r} {frame.extra!r}")
            message = self.unchunker.process_chunk(frame.data)
            if message is not None:
                return message

    async def request(self, rpc_id: str, method: str, args=(), kwargs=None, timeout: float = 60.0) -> dict:
        await self.send({"wslink": "1.0", "id": rpc_id, "method": method, "args": list(args), "kwargs": kwargs or {}})
        while True:
            message = await self.receive(timeout)
            if str(message.get("id", "")).startswith("publish:"):
                self.published.append((message["id"].split(":")[1], message.get("result")))
                continue
            if message.get("id") == rpc_id:
                return message

    async def hello(self, secret: str) -> dict:
        reply = await self.request("system:c0:0", "wslink.hello", [{"secret": secret}])
        if "result" in reply:
            self.max_chunk = reply["result"]["maxMsgSize"]
        return reply

    async def call(self, method: str, *args, **kwargs) -> dict:
        self._count += 1
        return await self.request(f"rpc:c0:{self._count}", method, args, kwargs)

    def state_changes(self) -> dict:
        """Every state change the server pushed so far, merged."""
        merged = {}
        for topic, data in self.published:
            if topic == "trame.state.topic" and isinstance(data, dict):
                merged.update(data)
        return merged


@contextmanager
def session(port: int, origin: str | None = None, secret: str | None = None, host: str = "127.0.0.1"):
    """A logged-in (when ``secret`` is given) :class:`WslinkSession` on ``ws://host:port/ws`` from ``origin``."""
    import aiohttp

    loop = asyncio.new_event_loop()

    async def open_session():
        http = aiohttp.ClientSession()
        headers = {"Origin": origin} if origin is not None else {}
        try:
            ws = await http.ws_connect(f"ws://{host}:{port}/ws", headers=headers, max_msg_size=0, autoping=True)
        except BaseException:
            await http.close()
            raise
        opened = WslinkSession(http, ws)
        if secret is not None:
            reply = await opened.hello(secret)
            assert "result" in reply, reply
        return opened

    opened = loop.run_until_complete(open_session())
    opened.run = loop.run_until_complete
    try:
        yield opened
    finally:
        loop.run_until_complete(opened.ws.close())
        loop.run_until_complete(opened.http.close())
        loop.close()


def handshake_status(port: int, origin: str | None) -> int:
    """HTTP status of a websocket handshake on ``/ws`` from ``origin`` (101: switched)."""
    import aiohttp

    try:
        with session(port, origin):
            return 101
    except aiohttp.WSServerHandshakeError as error:
        return error.status


def http_get(port: int, path: str, headers=None):
    """``GET path`` (no redirects): (status, headers, body text)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode("utf-8", "replace")


def page_secret(port: int) -> str:
    status, _, page = http_get(port, "/")
    assert status == 200
    return re.search(r"searchParams\.set\('secret', \"([^\"]+)\"\)", page).group(1)


def server_pid(port: int) -> int:
    """The process listening on ``port`` on 127.0.0.1 (Linux: the socket's inode in /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            inodes.add(fields[9])
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            target = fd.readlink().name if hasattr(fd, "readlink") else ""
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return int(fd.parent.parent.name)
    raise RuntimeError(f"no process listens on port {port}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def template_trigger(state: dict, marker: str, pattern: str) -> str:
    """The trigger name in the page template near ``marker`` (an element id or class)."""
    template = next(v for k, v in state.items() if k.startswith("trame__template_") and marker in str(v))
    at = template.index(marker)
    return re.search(pattern, template[at:at + 3000]).group(1)


def wait_state(ws: WslinkSession, key: str, seconds: float = 30.0):
    """The value of state ``key`` once the server set it (not empty), pushed on request."""
    deadline = time.monotonic() + seconds
    while True:
        ws.run(ws.call("trame.force.push", key))
        value = ws.state_changes().get(key)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def state_key(state: dict, prefix: str, suffix: str) -> str:
    """The state name of a typed-state field (``job`` ... ``error``: the page's error message)."""
    return next(k for k in state if k.startswith(prefix) and k.endswith(suffix))


# ---------------------------------------------------------------------------------------------
# Without a server
# ---------------------------------------------------------------------------------------------
def test_origin_policy():
    from RadiomicsLabLib.web.security import OriginPolicy

    policy = OriginPolicy("127.0.0.1", ["https://proxy.example", "http://lab-ws.example:9000/"])
    policy.bind(8123)
    assert policy.origins() == ["http://127.0.0.1:8123", "http://[::1]:8123", "http://lab-ws.example:9000",
                                "http://localhost:8123", "https://proxy.example"]
    for origin in ("http://127.0.0.1:8123", "http://LOCALHOST:8123", "http://[::1]:8123", "https://proxy.example",
                   "https://proxy.example:443", "http://lab-ws.example:9000"):
        assert policy.origin_allowed(origin), origin
    for origin in (None, "", "null", "http://evil.example", "http://127.0.0.1:8124", "https://127.0.0.1:8123",
                   "http://127.0.0.1.evil.example:8123", "http://user@127.0.0.1:8123", "file://"):
        assert not policy.origin_allowed(origin), origin
    for host in ("127.0.0.1:8123", "localhost:8123", "localhost.:8123", "[::1]:8123", "proxy.example"):
        assert policy.host_allowed(host), host
    for host in ("", "evil.example:8123", "127.0.0.1", "127.0.0.1:8124", "lab-ws.example"):
        assert not policy.host_allowed(host), host
    wildcard = OriginPolicy("0.0.0.0")
    wildcard.bind(80)
    assert wildcard.origins() == ["http://127.0.0.1", "http://[::1]", "http://localhost"]
    concrete = OriginPolicy("192.168.1.10")
    concrete.bind(8080)
    assert concrete.origin_allowed("http://192.168.1.10:8080")


def test_page_hands_over_the_secret_and_is_titled():
    from trame_client.module import vue3

    from RadiomicsLabLib.web.security import page_html

    template = (Path(vue3.__file__).with_name("vue3-www") / "index.html").read_text()
    page = page_html(template, "rl-s3cret")
    assert "<title>RadiomicsLab</title>" in page and "trame is built by Kitware</title>" not in page
    script = page.index("rl-s3cret")
    assert script < page.index('<script type="module"')  # before trame's client reads the URL
    assert "url.searchParams.delete(k)" in page and '"sessionURL"' in page


def test_upload_accounting_refuses_the_crossing_chunk():
    """The Data panel's upload button counts bytes as chunks come: the chunk crossing the limit is refused,
    what was held is dropped, later chunks of that upload are ignored, the next upload starts afresh."""
    from trame.app import get_server
    from trame.widgets import html

    from RadiomicsLabLib.web.panels.common import UploadButton

    server = get_server("radiomicslab-upload-accounting", client_type="vue3")
    received = []
    with html.Div(trame_server=server):
        button = UploadButton("Image", "mdi-upload", "rl-test-upload", (".nrrd",), 3 * MB, "upload_error")
    button.uploaded.connect(lambda files: received.append(files))

    def chunk(size, name="a.nrrd"):
        return [{"name": name, "size": size, "type": "", "content": b"\0" * size}]

    async def scenario():
        assert await button._on_chunk(chunk(2 * MB)) == {"received": 2 * MB, "accepted": True}
        assert button.received_bytes == 2 * MB
        assert await button._on_chunk(chunk(2 * MB)) == {"received": 0, "accepted": False}
        assert button.received_bytes == 0 and button._files == []
        assert server.state["upload_error"].startswith("The upload is at least 4 MB, more than the limit of 3 MB; ")
        assert await button._on_chunk(chunk(MB)) == {"received": 0, "accepted": False}  # the rest is dropped
        assert await button._on_chunk([]) == {"received": 0, "accepted": False}
        assert received == []
        assert await button._on_chunk(chunk(MB, "b.nrrd")) == {"received": MB, "accepted": True}
        assert await button._on_chunk([]) == {"received": 0, "accepted": True}
        assert [f["name"] for f in received[0]] == ["b.nrrd"] and button.received_bytes == 0

    asyncio.run(scenario())


def test_odd_paths_and_names_are_clear_errors(tmp_path):
    from RadiomicsLabLib.web.loader import DataFolder, UploadFolder, safe_file_name

    (tmp_path / "ct.nrrd").write_bytes(b"x")
    (tmp_path / "bad\nname.nrrd").write_bytes(b"x")
    folder = DataFolder(tmp_path)
    assert [e.path for e in folder.entries()] == ["ct.nrrd"]  # a name the page could not send back is not listed
    for bad in ("ct.nrrd\x00", "a\x00b.nrrd", "case/\x00/ct.nrrd", "bad\nname.nrrd", "\udcff.nrrd"):
        with pytest.raises(RadiomicsLabError, match="not a path inside the data folder .it holds control characters"):
            folder.path_of(bad)
    with pytest.raises(RadiomicsLabError, match="of the data folder; choose one from the list"):
        folder.path_of("a" * 5000 + ".nrrd")
    for bad in ("a\x00.nrrd", "x.nrrd\x00.sh", "line\nbreak.nrrd", "bell\x07.nrrd", "\udcff.nrrd"):
        with pytest.raises(RadiomicsLabError, match="holds control characters") as error:
            safe_file_name(bad)
        assert "\x00" not in str(error.value) and "\n" not in str(error.value)
    assert r"'a\x00.nrrd'" in _message(safe_file_name, "a\x00.nrrd")
    with pytest.raises(RadiomicsLabError, match="longer than 255 bytes"):
        with UploadFolder([{"name": "é" * 200 + ".nrrd", "content": b"x"}], "image"):
            pass
    with pytest.raises(RadiomicsLabError, match="not understood"):
        with UploadFolder(["not a file"], "image"):
            pass
    with pytest.raises(RadiomicsLabError, match="did not arrive as file content"):
        with UploadFolder([{"name": "a.nrrd", "content": "text, not bytes"}], "image"):
            pass


def _message(function, *args) -> str:
    try:
        function(*args)
    except RadiomicsLabError as error:
        return str(error)
    raise AssertionError("no error")


def test_web_command_refuses_bad_host_at_once(tmp_path):
    for host, message in (("999.1.1.1", "radiomicslab: error: --host 999.1.1.1: no such address"),
                          ("no-such-host.invalid", "radiomicslab: error: --host no-such-host.invalid: no such address"),
                          ("192.0.2.1", "radiomicslab: error: Cannot listen on 192.0.2.1: ")):
        started = time.monotonic()
        done = run_cli("web", "--host", host, "--data", str(tmp_path))
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().startswith(message) and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert time.monotonic() - started < 8
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("web", "--port", str(port), "--data", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"radiomicslab: error: Cannot listen on 127.0.0.1 port {port}: Address already in "
                                   "use; choose another --host or --port.")
    done = run_cli("web", "--allow-origin", "lab.example:8080", "--data", str(tmp_path))
    assert done.returncode == 2 and "'lab.example:8080' is not a web origin" in done.stderr


# ---------------------------------------------------------------------------------------------
# A real server
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def guarded(data, tmp_path_factory):
    """``radiomicslab web`` with a 2 MB upload limit: (port, log path, secret)."""
    from RadiomicsLabLib.web.driver import served

    log = ARTIFACTS / "server.log"
    output = tmp_path_factory.mktemp("web-output")
    with served(data, log, extra_args=("--max-upload-mb", str(UPLOAD_LIMIT_MB), "--output", str(output))) as (_, port):
        for _ in range(100):  # listening comes a moment before the app is ready
            if http_get(port, "/")[0] == 200:
                break
            time.sleep(0.1)
        yield port, log, page_secret(port)


def wait_log(log: Path, seconds: float = 0.5) -> str:
    time.sleep(seconds)
    return log.read_text()


def test_served_page_carries_a_fresh_secret_and_title(guarded):
    port, log, secret = guarded
    status, headers, page = http_get(port, "/")
    assert status == 200 and "<title>RadiomicsLab</title>" in page
    assert secret.startswith("rl-") and len(secret) > 40 and secret != "wslink-secret"
    assert headers["Cache-Control"] == "no-store" and "Access-Control-Allow-Origin" not in headers
    assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]
    assert http_get(port, "/index.html")[2] == page
    assert secret not in http_get(port, "/", {"Origin": "http://evil.example"})[1].values()
    log_text = log.read_text()
    assert "GetROINode" not in log_text and "callback exception" not in log_text


def test_foreign_origins_refused_served_origin_accepted(guarded):
    port, log, _ = guarded
    for origin in ("http://evil.example", "null", None, f"http://127.0.0.1:{port + 1}", f"https://127.0.0.1:{port}",
                   f"http://127.0.0.1.evil.example:{port}"):
        assert handshake_status(port, origin) == 403, origin
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        assert handshake_status(port, origin) == 101, origin
    text = wait_log(log)
    assert "refused a request with origin 'http://evil.example'" in text and "Traceback" not in text


def test_default_secret_refused(guarded):
    port, _, secret = guarded
    with session(port, f"http://127.0.0.1:{port}") as ws:
        reply = ws.run(ws.hello("wslink-secret"))
        assert reply["error"]["message"] == "Authentication failed"
        reply = ws.run(ws.call("trame.state.get"))
        assert "Unauthorized" in reply["error"]["message"] and "result" not in reply
        assert ws.run(ws.hello(secret[:-1]))["error"]["message"] == "Authentication failed"
    with session(port, f"http://127.0.0.1:{port}", secret) as ws:
        state = ws.run(ws.call("trame.state.get"))["result"]["state"]
        assert state["trame__title"] == "RadiomicsLab"


def test_plain_get_ws_and_rebinding_host_are_clean_4xx(guarded):
    port, log, _ = guarded
    status, headers, body = http_get(port, "/ws")
    assert status == 426 and headers["Upgrade"] == "websocket" and "open the page" in body
    status, _, body = http_get(port, "/ws", {"Upgrade": "websocket", "Connection": "Upgrade",
                                             "Origin": f"http://127.0.0.1:{port}"})
    assert status == 400  # an upgrade without a websocket key and version
    status, _, body = http_get(port, "/", {"Host": f"rebound.example:{port}"})
    assert status == 403 and "--allow-origin" in body
    text = wait_log(log)
    assert "Traceback" not in text and "Error handling request" not in text


def test_upload_over_the_limit_refused_at_the_crossing_chunk_and_freed(guarded):
    """Through the websocket, as the page's chunk loader sends them: 1.5 MB accepted, the next 1.5 MB
    (crossing 2 MB) refused with the error shown, then 200 MB more of the same never-ending upload
    dropped as it comes (the server's memory stays put); its end lets the next upload through."""
    port, log, secret = guarded
    pid = server_pid(port)
    with session(port, f"http://127.0.0.1:{port}", secret) as ws:
        state = ws.run(ws.call("trame.state.get"))["result"]["state"]
        trigger = template_trigger(state, 'id="rl-upload-image"', r"trigger_name: '([^']+)'")
        error_key = state_key(state, "job", "__error")

        def send(size, name="big.nrrd"):
            reply = ws.run(ws.call("trame.trigger", trigger, [[{"name": name, "size": size, "type": "",
                                                                 "content": b"\1" * size}]], {}))
            return reply["result"]

        assert send(3 * MB // 2) == {"received": 3 * MB // 2, "accepted": True}
        assert send(3 * MB // 2) == {"received": 0, "accepted": False}
        assert wait_state(ws, error_key).startswith("The upload is at least 3 MB, more than the limit of 2 MB")
        before = rss_mb(pid)
        for _ in range(50):
            assert send(4 * MB) == {"received": 0, "accepted": False}
        grown = rss_mb(pid) - before
        assert grown < 60, f"the server's memory grew by {grown:.0f} MB for a refused upload"
        assert ws.run(ws.call("trame.trigger", trigger, [[]], {}))["result"] == {"received": 0, "accepted": False}
        # The next upload is counted afresh and read (this one is not an image: the reader says so).
        assert send(MB, "notes.nrrd") == {"received": MB, "accepted": True}
        ws.run(ws.call("trame.trigger", trigger, [[]], {}))
        assert "notes.nrrd" in wait_state(ws, error_key)
    assert "Traceback" not in wait_log(log)


def test_message_announcing_gigabytes_closes_that_connection(guarded):
    """wslink reassembles a message in a buffer of the size its first chunk announces (4 GB allowed once
    logged in); here a message over the upload limit closes that connection, and the server goes on."""
    from wslink.chunking import _encode_header

    port, log, secret = guarded
    pid = server_pid(port)
    before = rss_mb(pid)
    with session(port, f"http://127.0.0.1:{port}", secret) as ws:
        ws.run(ws.ws.send_bytes(_encode_header(7, 0, 3 * 2**30) + b"\0" * 1024))
        frame = ws.run(ws.ws.receive(timeout=30))
        assert frame.type.name in ("CLOSE", "CLOSED", "CLOSING") and ws.ws.close_code == 1009
    assert rss_mb(pid) - before < 60
    with session(port, f"http://127.0.0.1:{port}", secret) as ws:  # the server still serves
        assert "result" in ws.run(ws.call("trame.state.get"))
    text = wait_log(log)
    assert "closed a connection that sent a message it may not" in text and "Traceback" not in text


def test_nul_byte_path_is_a_clear_error_in_the_panel(guarded):
    port, log, secret = guarded
    with session(port, f"http://127.0.0.1:{port}", secret) as ws:
        state = ws.run(ws.call("trame.state.get"))["result"]["state"]
        trigger = template_trigger(state, "rl-data-open", r"trigger\('([^']+)'")
        error_key = state_key(state, "job", "__error")
        ws.run(ws.call("trame.state.update", [{"key": state_key(state, "DataPanel", "__image"),
                                               "value": "brain1\x00.nrrd"}]))
        ws.run(ws.call("trame.trigger", trigger, [], {}))
        error = wait_state(ws, error_key)
    assert error == ("'brain1\\x00.nrrd' is not a path inside the data folder (it holds control characters such as "
                     "NUL); choose a file from the list.")
    text = wait_log(log)
    assert "ValueError" not in text and "Traceback" not in text


# ---------------------------------------------------------------------------------------------
# In the browser
# ---------------------------------------------------------------------------------------------
FOREIGN_PAGE = """<!doctype html><html><head><title>elsewhere</title></head><body><script>
window.outcome = {opened: false, messages: 0, closed: null, fetched: null};
const ws = new WebSocket("ws://127.0.0.1:%(port)d/ws");
ws.binaryType = "arraybuffer";
ws.onopen = () => { window.outcome.opened = true; };
ws.onmessage = () => { window.outcome.messages += 1; };
ws.onclose = (event) => { window.outcome.closed = event.code; };
fetch("http://127.0.0.1:%(port)d/index.html").then((r) => r.text())
  .then((text) => { window.outcome.fetched = text.length; })
  .catch((error) => { window.outcome.fetched = "refused: " + error; });
</script></body></html>"""


@contextmanager
def foreign_site(html_text: str):
    """A tiny web server on another loopback port serving one page: another origin."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = html_text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_browser_page_from_another_origin_cannot_open_a_session(guarded):
    from playwright.sync_api import sync_playwright

    from RadiomicsLabLib.web.driver import open_app, open_browser

    port, log, _ = guarded
    with sync_playwright() as playwright, foreign_site(FOREIGN_PAGE % {"port": port}) as elsewhere:
        browser = open_browser(playwright)
        try:
            page = browser.new_page()
            page.goto(elsewhere)
            page.wait_for_function("window.outcome.closed !== null && window.outcome.fetched !== null",
                                   timeout=30_000)
            outcome = page.evaluate("window.outcome")
            assert outcome["opened"] is False and outcome["messages"] == 0 and outcome["closed"] == 1006, outcome
            assert str(outcome["fetched"]).startswith("refused: "), outcome  # no CORS: the page cannot read ours
            # The app's own page, in the same browser, opens its session (and hides the secret again).
            app = open_app(browser, f"http://127.0.0.1:{port}/")
            assert app.title() == "RadiomicsLab"
            assert "secret" not in app.url
            page.screenshot(path=str(ARTIFACTS / "foreign_page.png"))
        finally:
            browser.close()
    assert f"refused a request with origin '{elsewhere.rstrip('/')}'" in wait_log(log)
