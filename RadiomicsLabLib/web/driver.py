"""Driving the web app from outside, as a user does: the real server and a real browser.

Used by the end-to-end tests and the benchmark: :func:`served` starts ``radiomicslab web`` on a
free loopback port; :func:`open_browser` opens Debian's Chromium through Playwright (never a
downloaded browser); the page helpers locate the app's panels and views.
"""

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import RadiomicsLabError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1440, "height": 900}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Addresses with a socket listening on ``port`` (from ``/proc/net/tcp`` and ``tcp6``; Linux)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if width == 8:
                found.add(".".join(str(b) for b in raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


@contextmanager
def served(data_dir, log_path, port: int | None = None, timeout: float = 120.0, extra_args=()):
    """``radiomicslab web`` on 127.0.0.1 (a free port unless given) until the block ends; yields (url, port)."""
    port = port or free_port()
    command = Path(sys.executable).with_name("radiomicslab")
    env = {**os.environ, "VTK_DEFAULT_OPENGL_WINDOW": os.environ.get("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")}
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        process = subprocess.Popen([str(command), "web", "--port", str(port), "--data", str(data_dir), *extra_args],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RadiomicsLabError(f"radiomicslab web exited with status {process.returncode}; "
                                        f"see {log_path}:\n{log_path.read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RadiomicsLabError(f"radiomicslab web did not listen on port {port} within {timeout:.0f} s.")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/", port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def open_browser(playwright):
    """Debian's Chromium, headless (``.ci/run`` installs it)."""
    if not CHROMIUM.is_file():
        raise RadiomicsLabError(f"Chromium not found at {CHROMIUM}; install Debian's 'chromium' package "
                                "(.ci/run does).")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def open_app(browser, url, timeout_ms: int = 60_000):
    """A page of the app, ready (the sample buttons are shown)."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    page.goto(url)
    page.wait_for_selector(".rl-sample")
    return page


def open_tool(page, key: str):
    """Open a panel by its rail button (``data``, ``segment``, ``extraction``, ...), unless it is open."""
    button = page.locator(f".rl-tool-{key}")
    if "rl-tool-active" not in (button.get_attribute("class") or ""):
        button.click()
    page.wait_for_selector(f".rl-panel-{key}")


def load_sample(page, name: str):
    page.locator(".rl-sample", has_text=name).click()
    page.wait_for_selector(f".rl-study-chip:has-text('{name}')")


def axial_view_box(page) -> dict:
    """Screen box of the axial view (the large left view of the default 'Axial Primary' layout)."""
    boxes = [b for b in (img.bounding_box() for img in page.locator("img.image-display-area").all()) if b]
    return max(boxes, key=lambda b: b["width"] * b["height"])


def add_segment(page, name: str):
    """Add a segment in the segment editor, rename it, and select the Paint effect."""
    open_tool(page, "segment")
    count = page.locator(".rl-panel-segment .v-list-item").count()
    page.locator(".rl-panel-segment button:has(.mdi-plus)").first.click()
    page.wait_for_function(f"document.querySelectorAll('.rl-panel-segment .v-list-item').length === {count + 1}")
    field = page.locator(".rl-panel-segment .v-list-item--active input")
    field.fill(name)
    field.press("Enter")
    page.locator(".rl-panel-segment .v-card-item button:has(.mdi-brush)").click()


def stroke(page, x: float, y: float, steps: int = 5, dx: float = 4, dy: float = 3):
    """A real mouse stroke (press, drag, release) starting at screen point (x, y)."""
    page.mouse.move(x - 20, y)
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, steps + 1):
        page.mouse.move(x + dx * i, y + dy * i, steps=2)
        page.wait_for_timeout(50)
    page.mouse.up()
