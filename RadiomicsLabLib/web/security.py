"""Who may open a session on ``radiomicslab web``: only the page this server serves, in the user's browser.

trame serves the app with wslink's aiohttp backend: static files (the page) and one websocket
(``/ws``) that carries the whole app (state, triggers, uploads). Out of the box any web page open
in the user's browser may open that websocket (browsers let a page connect to any ``ws://`` host,
loopback included, and only *report* the page's ``Origin``), and the session then logs in with
wslink's public default secret ``wslink-secret``. :func:`install` closes that, in wslink's own
hook for this (trame's ``controller.on_server_bind``, called with wslink's ``WebAppServer`` before
its aiohttp application starts):

- **Origin and Host.** An aiohttp middleware on wslink's application checks every websocket
  handshake's ``Origin`` against the origins this server serves (``http://127.0.0.1:PORT``,
  ``http://localhost:PORT``, ``http://[::1]:PORT``, the ``--host`` given when it is a concrete
  address, plus each ``--allow-origin``) and answers anything else with 403 before wslink's
  handler (``AioHttpWsHandler.handleWsRequest``) runs, so no session ever starts. The same
  middleware checks the ``Host`` header of every HTTP request against those origins' hosts (a DNS
  rebinding page, whose own origin would pass the browser's same-origin rules, gets 403). A plain
  ``GET /ws`` (no upgrade) gets 426 and a malformed handshake 400, instead of wslink's 500 with two
  tracebacks (its handler's ``finally`` cleans up a session it never opened).
- **A per-launch secret.** A random secret replaces trame's public default (the root protocol's
  ``updateSecret``, checked in constant time by a ``validateToken`` on it, which wslink calls for
  every ``wslink.hello``). The page must hand it to trame's client, whose only way in is the
  ``secret`` URL parameter (its connection config merges the URL's parameters, and it removes
  ``secret`` from the address bar once connected). So ``/`` and ``/index.html`` are served by this
  module: trame's page with an inline script that puts the secret into the page's own URL before
  trame's client starts. Only a same-origin page can read that response: another origin's
  ``fetch`` gets an opaque or CORS-refused response (no ``Access-Control-Allow-*`` header is ever
  sent), and it cannot read a framed copy's document either. The response is ``no-store``, may only
  be framed by itself, sends no referrer, and may only connect back to this server (CSP
  ``connect-src 'self'``, so a crafted link's ``?sessionURL=`` cannot send the secret elsewhere;
  the inline script also drops such parameters).
- **Bounded messages.** wslink reassembles each message in a buffer the size its first chunk
  announces (up to 4 GB once logged in) and keeps any number of unfinished ones. Each connection's
  reassembler is replaced by one that refuses a message once the messages pending on that
  connection would exceed the upload limit plus a margin, freeing them and closing that
  connection (1009, "message too big") with one log line.
"""

import html
import ipaddress
import json
import logging
import re
import secrets
from pathlib import Path

from ..errors import RadiomicsLabError

log = logging.getLogger(__name__)

#: trame's (wslink's) public default secret, refused by every server :func:`install` guards.
DEFAULT_TRAME_SECRET = "wslink-secret"
#: Beyond the upload limit, what one connection may have pending (message framing, file names, state).
MESSAGE_MARGIN = 16 * 2**20
#: URL parameters trame's client would take as connection settings; a link to the app cannot set them.
UNSAFE_URL_PARAMETERS = ("secret", "sessionURL", "sessionManagerURL", "wsProxy", "iframe")
PAGE_TITLE = "RadiomicsLab"
#: Headers of the page that carries the secret.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "SAMEORIGIN",
    "Content-Security-Policy": "frame-ancestors 'self'; connect-src 'self' blob: data:",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
DEFAULT_PORTS = {"http": 80, "https": 443}


# ---------------------------------------------------------------------------------------------
# Origins
# ---------------------------------------------------------------------------------------------
def parse_origin(text: str) -> tuple[str, str, int]:
    """``scheme://host[:port]`` as ``(scheme, host, port)``, lower case, port explicit; raises
    :class:`RadiomicsLabError` for anything else (a path, a query, user info, another scheme)."""
    from yarl import URL

    try:
        url = URL(str(text).strip())
        scheme, host, port = (url.scheme or "").lower(), (url.host or "").lower().rstrip("."), url.port
    except (TypeError, ValueError):
        scheme = host = port = None
    if (scheme not in DEFAULT_PORTS or not host or port is None or url.path not in ("", "/") or url.query_string
            or url.fragment or url.user is not None):
        raise RadiomicsLabError(f"'{text}' is not a web origin; give one like http://workstation.example:8080 "
                                "(scheme, host and port only).")
    return scheme, host, port


def format_origin(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" if DEFAULT_PORTS[scheme] == port else f"{scheme}://{host}:{port}"


def is_wildcard(host: str) -> bool:
    """``0.0.0.0``, ``::`` or empty: every address of the machine."""
    if not host:
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def browser_host(host: str) -> str:
    """The host part of the URL a browser on this machine should open for a server listening on ``host``."""
    if is_wildcard(host):
        return "[::1]" if ":" in host else "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class OriginPolicy:
    """The web origins whose pages may open a session: this server's loopback addresses, the
    ``--host`` it listens on when that is one address (not ``0.0.0.0`` / ``::``), and ``allowed``."""

    def __init__(self, host: str, allowed=()):
        self.host = host
        self.allowed = [parse_origin(o) for o in allowed]
        self._port = None
        self._origins = None
        self._hosts = None

    def bind(self, port: int):
        """Fix the served port (known once listening: ``--port 0`` picks one)."""
        self._port = int(port)
        hosts = ["127.0.0.1", "localhost", "::1"]
        if not is_wildcard(self.host):
            hosts.append(self.host.lower().strip("[]").rstrip("."))
        self._origins = {("http", h, self._port) for h in hosts} | set(self.allowed)
        self._hosts = set()
        for scheme, host, port in self._origins:
            name = f"[{host}]" if ":" in host else host
            self._hosts.add(f"{name}:{port}")
            if DEFAULT_PORTS[scheme] == port:
                self._hosts.add(name)

    @property
    def bound(self) -> bool:
        return self._origins is not None

    def origins(self) -> list[str]:
        return sorted(format_origin(o) for o in self._origins)

    def origin_allowed(self, origin) -> bool:
        if not origin:
            return False  # browsers always send one on a websocket handshake
        try:
            return parse_origin(origin) in self._origins
        except RadiomicsLabError:
            return False  # "null" (a sandboxed frame, a file:// page) and anything malformed

    def host_allowed(self, host) -> bool:
        """Whether an HTTP ``Host`` header names this server (as one of the allowed origins' hosts)."""
        host = str(host or "").strip().lower()
        if host.endswith("]") or ":" not in host:
            name, port = host, ""
        else:
            name, _, port = host.rpartition(":")
        name = name.rstrip(".")
        return bool(name) and (f"{name}:{port}" if port else name) in self._hosts


# ---------------------------------------------------------------------------------------------
# The page that carries the secret
# ---------------------------------------------------------------------------------------------
def page_html(template: str, secret: str, icon_url: str = "") -> str:
    """trame's ``index.html`` titled RadiomicsLab, with the script handing ``secret`` to trame's client.

    trame's client reads its connection settings from the page's URL parameters (``secret``
    among them) when it starts; this inline script runs first (it precedes trame's deferred
    module script) and writes the secret there, dropping parameters a link could use to send the
    connection elsewhere. trame's client then removes ``secret`` from the address bar.
    """
    script = (
        "<script>(function () {"
        " var url = new URL(window.location.href);"
        f" {json.dumps(list(UNSAFE_URL_PARAMETERS))}.forEach(function (k) {{ url.searchParams.delete(k); }});"
        f" url.searchParams.set('secret', {json.dumps(secret)});"
        " window.history.replaceState(window.history.state, '', url);"
        " })();</script>"
    )
    page, count = re.subn(r"<head>", lambda _: "<head>\n    " + script, template, count=1)
    if not count:
        raise RadiomicsLabError("trame's index.html has no <head>; cannot hand the session secret to the page.")
    page = re.sub(r"<title>.*?</title>", lambda _: f"<title>{html.escape(PAGE_TITLE)}</title>", page, count=1,
                  flags=re.S)
    if icon_url:
        page = re.sub(r'<link rel="icon"[^>]*>', lambda _: f'<link rel="icon" href="{html.escape(icon_url)}" />',
                      page, count=1)
    return page


# ---------------------------------------------------------------------------------------------
# Bounded message reassembly
# ---------------------------------------------------------------------------------------------
class MessageRefused(Exception):
    """A websocket message wslink must not reassemble (too large, or malformed chunking)."""


def bounded_unchunker(limit: int):
    """A wslink ``UnChunker`` whose pending messages together never exceed ``limit`` bytes."""
    from wslink.chunking import HEADER_LENGTH, UnChunker, _decode_header

    class BoundedUnChunker(UnChunker):
        def set_max_message_size(self, size):
            super().set_max_message_size(min(size, limit))  # wslink lifts it to 4 GB at login

        def process_chunk(self, chunk):
            try:
                if len(chunk) < HEADER_LENGTH:
                    raise ValueError(f"a chunk of {len(chunk)} bytes has no header")
                message_id, _, total = _decode_header(chunk[:HEADER_LENGTH])
                if message_id not in self.pending_messages:
                    pending = sum(len(m["content"]) for m in self.pending_messages.values())
                    if pending + total > self.max_message_size:
                        raise ValueError(f"a message of {total} bytes (with {pending} pending) exceeds the "
                                         f"limit of {self.max_message_size} bytes")
                return super().process_chunk(chunk)
            except Exception as error:
                self.release_pending_messages()
                raise MessageRefused(str(error).splitlines()[0]) from None

    return BoundedUnChunker()


def bound_messages(handler, limit: int):
    """Give each connection of wslink's ``AioHttpWsHandler`` a bounded reassembler; a refused message
    closes that connection (1009) with one log line instead of a traceback."""
    import aiohttp

    connect, on_message = handler.onConnect, handler.onMessage

    async def on_connect(request, client_id):
        await connect(request, client_id)
        handler.unchunkers[client_id] = bounded_unchunker(limit)

    async def on_message_bounded(is_binary, msg, client_id):
        try:
            await on_message(is_binary, msg, client_id)
        except MessageRefused as error:
            log.warning("RadiomicsLab web: closed a connection that sent a message it may not (%s).", error)
            ws = handler.connections.get(client_id)
            if ws is not None:
                await ws.close(code=aiohttp.WSCloseCode.MESSAGE_TOO_BIG, message=b"message refused")

    handler.onConnect = on_connect
    handler.onMessage = on_message_bounded


# ---------------------------------------------------------------------------------------------
# Installing it all on trame's server
# ---------------------------------------------------------------------------------------------
class SessionGuard:
    """Installed by :func:`install`; ``secret`` is this launch's session secret, ``policy`` the origins."""

    def __init__(self, server, host: str, allowed_origins=(), max_message_bytes: int | None = None,
                 icon_url: str = ""):
        self.server = server
        self.policy = OriginPolicy(host, allowed_origins)
        # "rl-" keeps trame's client from reading the secret as a number (it converts numeric URL parameters).
        self.secret = "rl-" + secrets.token_urlsafe(32)
        self.max_message_bytes = max_message_bytes
        self.icon_url = icon_url
        self._page = None
        self._web_server = None
        self._ws_paths = set()
        self._reported = set()

    # wslink hooks ------------------------------------------------------------------------------
    def on_server_bind(self, web_server, *_args, **_kwargs):
        """trame's ``on_server_bind``: wslink's ``WebAppServer`` is built, its aiohttp app not yet started."""
        self._web_server = web_server
        app = web_server.app
        if app is None:  # wslink's reverse-connection mode: no HTTP server to guard
            raise RadiomicsLabError("radiomicslab web cannot run as a wslink reverse connection.")
        protocol = self.server.protocol
        protocol.updateSecret(self.secret)

        async def validate_token(token, _client_id):
            return isinstance(token, str) and secrets.compare_digest(token.encode(), self.secret.encode())

        protocol.validateToken = validate_token  # wslink asks the root protocol first (WslinkHandler.validateToken)

        self._ws_paths = {"/" + str(path).lstrip("/") for path in web_server.config.get("ws", {})}
        content = web_server.config.get("static", {}).get("/")
        template = (Path(content) / "index.html").read_text(encoding="utf-8") if content else ""
        self._page = page_html(template, self.secret, self.icon_url) if template else None
        app.middlewares.append(self.middleware)
        if self._page is not None:  # before wslink's static routes (added at start), so these win
            app.router.add_get("/", self.index)
            app.router.add_get("/index.html", self.index)
        if self.max_message_bytes is not None:
            handlers = getattr(web_server, "_ws_handlers", None)
            if not handlers:
                log.warning("RadiomicsLab web: wslink's websocket handler not found; messages are not bounded.")
            for handler in handlers or ():
                bound_messages(handler, self.max_message_bytes)

    async def index(self, request):
        from aiohttp import web

        return web.Response(text=self._page, content_type="text/html", headers=PAGE_HEADERS)

    @property
    def middleware(self):
        from aiohttp import web

        @web.middleware
        async def guard(request, handler):
            policy = self.policy
            if not policy.bound:
                policy.bind(self._web_server.get_port())
            if not policy.host_allowed(request.host):
                self._report("host", request.host)
                return web.Response(status=403, text=self._refusal("host", request.host))
            upgrade = request.headers.get("Upgrade", "").strip().lower() == "websocket"
            if request.path in self._ws_paths or upgrade:
                if not upgrade:
                    return web.Response(status=426, headers={"Upgrade": "websocket", "Connection": "Upgrade"},
                                        text="This is RadiomicsLab's websocket; open the page at / instead.\n")
                origin = request.headers.get("Origin")
                if not policy.origin_allowed(origin):
                    self._report("origin", origin)
                    return web.Response(status=403, text=self._refusal("origin", origin))
                if not web.WebSocketResponse().can_prepare(request).ok:
                    return web.Response(status=400, text="Not a valid websocket handshake.\n")
            return await handler(request)

        return guard

    def _refusal(self, what: str, value) -> str:
        return (f"Refused: {what} {value!r} is not this server's. RadiomicsLab serves its page to "
                f"{', '.join(self.policy.origins())}; start radiomicslab web with --allow-origin URL to add another.\n")

    def _report(self, what: str, value):
        key = (what, str(value)[:200])
        if key not in self._reported and len(self._reported) < 100:
            self._reported.add(key)
            log.warning("RadiomicsLab web: refused a request with %s %r (not this server's page; "
                        "--allow-origin adds one).", what, key[1])


def install(server, host: str, allowed_origins=(), max_message_bytes: int | None = None,
            icon_url: str = "") -> SessionGuard:
    """Guard trame ``server`` (before ``server.start``): origins, Host, a per-launch secret, bounded messages."""
    guard = SessionGuard(server, host, allowed_origins, max_message_bytes, icon_url)
    server.controller.on_server_bind.add(guard.on_server_bind)
    return guard
