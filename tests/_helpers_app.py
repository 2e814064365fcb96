"""The web app under test: serve it on 127.0.0.1, drive it in Debian's chromium with Playwright, and make the
videos the tests (and docs/app_screenshots.py) use."""

from __future__ import annotations

import shutil
import socket
import tempfile
import urllib.parse

import numpy as np

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LONG_LABELS = ["playing guitar", "riding a bike", "cooking pasta", "swimming in a pool", "dancing ballet"]


def free_port() -> int:
    """A port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(app) -> str:
    """Launch a built app on 127.0.0.1 (a free port) without blocking; returns its URL."""
    from xclip_hf.app import launch_app

    _, url, _ = launch_app(app, "127.0.0.1", free_port(), block=False, quiet=True)
    return url


def write_long_video(path: str, seconds: float = 24.0, fps: int = 8, height: int = 48, width: int = 64) -> str:
    """An untrimmed video of 3 s scenes that differ in colour and motion (uint8 RGB, h264 or vp9 by suffix)."""
    from xclip_hf.data.video_writer import write_video

    n = int(seconds * fps)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width, 3), dtype=np.uint8)
    for t in range(n):
        scene = int(t / fps // 3)
        rng = np.random.default_rng(scene)
        base, blob_color = rng.integers(30, 225, 3), rng.integers(0, 255, 3)
        step = (t % (3 * fps)) / (3 * fps)
        cx = width * (step if scene % 2 == 0 else 1 - step)
        cy = height * (0.3 + 0.4 * ((scene * 37) % 10) / 10)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (4 + scene % 3 * 3) ** 2))[..., None]
        frames[t] = np.clip(base * (1 - blob) + blob_color * blob, 0, 255)
    return write_video(path, frames, fps=fps)


def write_coloured_frames(path: str, num_frames: int = 12, size: int = 40) -> str:
    """Frame k is one solid colour of its own (lossless h264): a frame's colour tells which frame it is."""
    from xclip_hf.data.video_writer import write_video

    frames = np.stack([np.full((size, size, 3), frame_colour(k), dtype=np.uint8) for k in range(num_frames)])
    return write_video(path, frames, fps=10, lossless=True)


def frame_colour(k: int) -> tuple[int, int, int]:
    return (20 + 18 * k, 230 - 15 * k, (90 + 70 * k) % 256)


class Browser:
    """Debian's chromium, headless, with an empty profile (a temporary user-data-dir), driven by Playwright;
    every request a page makes is recorded in ``requests``."""

    def __init__(self):
        from playwright.sync_api import sync_playwright

        executable = shutil.which("chromium")
        if executable is None:
            raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
        self.profile = tempfile.mkdtemp(prefix="xclip_app_profile_")
        self._playwright = sync_playwright().start()
        self.context = self._playwright.chromium.launch_persistent_context(
            self.profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900})
        self.requests: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))

    def page(self, url: str):
        """A new page at ``url``, loaded."""
        page = self.context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url, wait_until="networkidle")
        return page

    def foreign_requests(self) -> list[str]:
        """Recorded requests to any host other than 127.0.0.1 (data:/blob: URLs have no host)."""
        hosts = ((url, urllib.parse.urlsplit(url)) for url in self.requests)
        return [url for url, parts in hosts if parts.scheme not in ("data", "blob") and parts.hostname != "127.0.0.1"]

    def close(self):
        self.context.close()
        self._playwright.stop()
        shutil.rmtree(self.profile, ignore_errors=True)


def classify_in_page(page, video: str, labels: list[str], screenshot: str | None = None) -> dict:
    """Upload ``video``, type the labels, press Classify; returns what the page shows: the top label, the status
    line and the segments table's labels (empty when no timeline)."""
    page.locator("#video-in input[type=file]").set_input_files(video)
    page.locator("#video-in video").first.wait_for(state="attached")
    page.locator("#labels textarea").fill(", ".join(labels))
    page.locator("#classify-btn").click()
    status = page.locator("#classify-status")
    status.filter(has_text="frames per clip").or_(status.filter(has_text="Error")).wait_for()
    page.wait_for_load_state("networkidle")
    segments = []
    if " windows of " in status.inner_text():  # the status line says when the video was cut into windows
        page.locator("#timeline img").first.wait_for()
        segments = table_column(page, "#segments", 2)
    top = page.locator("#scores h2")
    shown = {"top": top.first.inner_text().strip() if top.count() else None, "status": status.inner_text().strip(),
             "segments": segments}
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)
    return shown


def table_column(page, table: str, column: int) -> list[str]:
    """The texts of one column of a shown Dataframe (its rows are `.virtual-row` of `.body-cell`), once it has rows."""
    script = """([table, column]) => {
        const rows = Array.from(document.querySelectorAll(table + ' .virtual-row'));
        const texts = rows.map(r => (r.querySelectorAll('.body-cell')[column] || {}).innerText || '');
        return texts.length && texts.every(t => t.trim()) ? texts.map(t => t.trim()) : null;
    }"""
    return page.wait_for_function(script, arg=[table, column]).json_value()


def table_cell(page, table: str, row: int, column: int):
    """The locator of one cell of a shown Dataframe."""
    return page.locator(f"{table} .virtual-row").nth(row).locator(".body-cell").nth(column)


def search_in_page(page, query: str, screenshot: str | None = None) -> dict:
    """Open the Search tab, type ``query``, press Search; returns the status line and the result rows' paths."""
    page.get_by_role("tab", name="Search").click()
    page.locator("#query textarea, #query input").first.fill(query)
    page.locator("#search-btn").click()
    status = page.locator("#search-status")
    status.filter(has_text="results for").or_(status.filter(has_text="Error")).wait_for()
    page.wait_for_load_state("networkidle")
    page.locator("#hit-0 video").first.wait_for(state="attached")
    paths = table_column(page, "#results", 1)
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)
    return {"status": status.inner_text().strip(), "paths": paths}
