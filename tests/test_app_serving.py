"""The web app as a server others may reach (issue 31): it serves exactly the indexed videos a search returned (not
their folders), reads typed local paths only under `--video-dir` (one refusal, whether or not the path exists),
fetches only http(s) URLs of public addresses (each redirect checked, the checked address is the one connected to),
stops a download at `--max-upload-mb` and at one overall `--url-timeout`, outside the model's turn, and says what is
exposed when bound beyond loopback. Through gradio_client and raw HTTP against the app on 127.0.0.1; every web
server here listens on 127.0.0.1 or 127.0.0.2, and no address outside this machine is ever connected to."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

from _helpers_app import serve  # noqa: E402
from _helpers_pipeline import make_our_checkpoint, write_videos  # noqa: E402

DEADLINE_S = 3.0  # the app's --url-timeout here
LIMIT_MB = 1.0  # the app's --max-upload-mb here
REFUSED_PATH = "this app reads local videos only under its video folders (--video-dir)"


@pytest.fixture(scope="module")
def exposed(tmp_path_factory):
    """The campaign's layout: ``videos/clip_a.mp4`` indexed beside ``videos/.env`` and ``videos/model/``; the
    model in ``ckpt/``; the operator's video folder ``allowed/`` (with a symlink pointing out of it). The app runs
    with --video-dir allowed, --max-upload-mb 1, --url-timeout 3 and the default URL rules."""
    from gradio_client import Client

    from xclip_hf import embed_videos
    from xclip_hf.app import AppAccess, AppLimits, build_app

    root = tmp_path_factory.mktemp("serving")
    videos, allowed = root / "videos", root / "allowed"
    for folder in (videos, videos / "model", allowed):
        folder.mkdir()
    clip = write_videos(str(videos))[0]
    (videos / ".env").write_bytes(b"API_KEY=not-for-visitors\n")
    (videos / "model" / "model.safetensors").write_bytes(os.urandom(4096))
    mine = write_videos(str(allowed))[0]
    os.symlink(clip, allowed / "escape.mp4")
    ckpt = make_our_checkpoint(root / "ckpt")
    index = str(root / "emb")
    embed_videos([clip], index, ckpt, chunk_length_s=2, progress=False)
    access = AppAccess(video_dirs=(str(allowed),), url_timeout=DEADLINE_S)
    app = build_app(ckpt, index, limits=AppLimits(max_upload_mb=LIMIT_MB), access=access)
    url = serve(app)
    yield {"root": root, "videos": videos, "allowed": allowed, "clip": clip, "mine": mine, "ckpt": ckpt,
           "index": index, "app": app, "url": url, "client": Client(url, verbose=False),
           "service": app.xclip_service}
    app.close()
    app.xclip_service.close()


def _classify(exposed, video=None, source="") -> str:
    """The status line of a classify call (an upload, or a typed path / URL)."""
    from gradio_client import handle_file

    outputs = exposed["client"].predict(handle_file(video) if video else None, source, "cooking, dancing", 2, "{}",
                                        "whole video", 4.0, 2.0, api_name="/classify")
    return outputs[0]


def _get(url: str) -> tuple[int, bytes]:
    """(status, body) of a GET (an error status too)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _file_route(exposed, path: str) -> str:
    return exposed["url"] + "gradio_api/file=" + urllib.parse.quote(str(path))


def _private_urls(exposed, monkeypatch, **changes):
    """The app with other URL rules for one test (--allow-private-urls by default: the servers here are local)."""
    service = exposed["service"]
    changes = {"private_urls": True, **changes}
    monkeypatch.setattr(service, "access", dataclasses.replace(service.access, **changes))


@contextlib.contextmanager
def site(answer, host="127.0.0.1", port=0):
    """A web server on ``host`` answering every GET with ``answer(handler)``; yields (its base URL, the (path,
    Host header) of each request it received)."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            seen.append((self.path, self.headers.get("Host")))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                answer(self)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def send_file(path):
    def answer(handler):
        data = open(path, "rb").read()
        handler.send_response(200)
        handler.send_header("Content-Type", "video/mp4")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    return answer


def redirect(to: str):
    def answer(handler):
        handler.send_response(302)
        handler.send_header("Location", to)
        handler.end_headers()
    return answer


# ----------------------------------------------------------------------------------------------- files served
def test_file_routes_serve_nothing_beside_the_indexed_videos(exposed):
    status = exposed["client"].predict("cooking pasta", 1, api_name="/search")[0]
    assert status.startswith("1 results")  # the indexed clip is now shown: its folder's other files stay out
    videos, ckpt = exposed["videos"], exposed["ckpt"]
    private = [videos / ".env", videos / "model" / "model.safetensors", f"{exposed['clip']}/../.env",
               *[os.path.join(ckpt, name) for name in sorted(os.listdir(ckpt))],
               *[os.path.join(exposed["index"], name) for name in sorted(os.listdir(exposed["index"]))],
               exposed["allowed"] / "clip_a.mp4", "/etc/passwd"]
    answers = {str(path): _get(_file_route(exposed, path))[0] for path in private}
    assert set(answers.values()) == {403}, answers


def test_search_players_and_uploads_still_work(exposed):
    from xclip_hf.app.ui import SEARCH_OUTPUTS

    out = dict(zip(SEARCH_OUTPUTS, exposed["client"].predict("cooking pasta", 1, api_name="/search")))
    shown, clip = out["video_0"]["value"], open(exposed["clip"], "rb").read()
    assert open(shown, "rb").read() == clip  # gradio_client fetched the player's file through the file route
    assert _get(_file_route(exposed, shown)) == (200, clip)  # and so does a browser
    assert "frames per clip" in _classify(exposed, video=exposed["clip"])  # an upload from outside the folders


# ----------------------------------------------------------------------------------------------- typed paths
def test_typed_paths_outside_the_video_folders_get_one_message(exposed):
    videos, allowed = exposed["videos"], exposed["allowed"]
    typed = [exposed["clip"],  # exists, a video, outside
             str(videos / "missing.mp4"), str(videos), "/etc/passwd", "/etc", "/nonexistent/x.mp4",
             f"{allowed}/../videos/clip_a.mp4", str(allowed / "escape.mp4"),  # `..` and a symlink out of the folder
             "~/.bashrc", os.path.relpath("/etc/passwd")]
    statuses = {text: _classify(exposed, source=text) for text in typed}
    messages = {status.replace(repr(text), "PATH") for text, status in statuses.items()}
    assert messages == {f"**Error:** video path PATH refused: {REFUSED_PATH}"}, statuses
    assert "frames per clip" in _classify(exposed, source=exposed["mine"])  # inside the folder: read
    assert "not found" in _classify(exposed, source=str(allowed / "missing.mp4"))


def test_without_video_folders_the_path_field_is_off(exposed, monkeypatch):
    from xclip_hf.app import AppAccess, build_app

    service = exposed["service"]
    monkeypatch.setattr(service, "access", AppAccess(url_timeout=DEADLINE_S))
    status = _classify(exposed, source=exposed["mine"])
    assert status == f"**Error:** video path {exposed['mine']!r} refused: this app reads no local paths (upload " \
                     "the video, or start the app with --video-dir DIR)"

    def source_box(access):
        monkeypatch.setattr(service, "access", access)
        app = build_app(service=service)
        return next(c["props"] for c in app.config["components"] if c["props"].get("elem_id") == "source")

    assert source_box(AppAccess())["label"] == "…or an http(s) URL"
    assert source_box(AppAccess(urls=False))["visible"] is False
    assert "local path" in source_box(AppAccess(video_dirs=(str(exposed["allowed"]),)))["label"]


# ----------------------------------------------------------------------------------------------- URLs
def test_urls_of_this_machine_and_private_networks_are_refused_before_connecting(exposed, monkeypatch):
    from xclip_hf.video import fetch

    connects = []
    original = fetch.PinnedConnection.connect
    monkeypatch.setattr(fetch.PinnedConnection, "connect", lambda self: (connects.append(self.address),
                                                                         original(self))[1])
    with site(send_file(exposed["clip"])) as (base, seen):
        port = base.rsplit(":", 1)[1]
        urls = [f"{base}/clip.mp4", f"http://localhost:{port}/clip.mp4", f"http://[::1]:{port}/clip.mp4",
                f"http://0.0.0.0:{port}/clip.mp4", f"http://[::ffff:127.0.0.1]:{port}/clip.mp4",
                "http://10.1.2.3/clip.mp4", "http://192.168.0.1/clip.mp4", "http://169.254.169.254/latest/meta-data/",
                "https://[fe80::1]/clip.mp4", "http://[fd00::1]/clip.mp4"]
        statuses = {url: _classify(exposed, source=url) for url in urls}
        schemes = {url: _classify(exposed, source=url) for url in ["file:///etc/passwd", f"ftp://127.0.0.1:{port}/"]}
    for url, status in statuses.items():
        assert status.startswith(f"**Error:** URL {url!r} refused: its host ") and "--allow-private-urls" in status
    for url, status in schemes.items():
        assert status == f"**Error:** URL {url!r} refused: only http:// and https:// URLs are fetched"
    assert seen == [] and connects == []


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1%lo", "link-local"), ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"), ("240.0.0.1", "reserved"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("100.64.0.1", "non-public"), ("8.8.8.8", None), ("2606:4700::1111", None)])
def test_the_address_check(address, kind):
    from xclip_hf.video.fetch import address_refusal

    assert address_refusal(address) == kind


def test_each_redirect_is_checked(exposed, monkeypatch):
    from xclip_hf.video import fetch

    # 127.0.0.1 plays a public host, 127.0.0.2 a private one
    monkeypatch.setattr(fetch, "address_refusal", lambda a: "private" if a == "127.0.0.2" else None)
    with site(send_file(exposed["clip"]), host="127.0.0.2") as (inner, inner_seen), \
            site(redirect(f"{inner}/clip.mp4")) as (outer, outer_seen):
        status = _classify(exposed, source=f"{outer}/go")
        assert status == (f"**Error:** URL '{outer}/go' refused (redirected to '{inner}/clip.mp4'): its host "
                          "'127.0.0.2' is a private address, and this app fetches public internet addresses only "
                          "(start the app with --allow-private-urls to fetch such addresses)")
        assert [path for path, _ in outer_seen] == ["/go"] and inner_seen == []
        _private_urls(exposed, monkeypatch)
        assert "frames per clip" in _classify(exposed, source=f"{outer}/go")  # allowed: the hop is followed
        assert [path for path, _ in inner_seen] == ["/clip.mp4"]


def test_the_checked_address_is_the_one_connected_to(exposed, monkeypatch):
    """One lookup decides: a name that answers a public address to the check and a private one afterwards (a DNS
    rebind) is fetched from the checked address; answered a private one first, it is refused."""
    from xclip_hf.video import fetch

    monkeypatch.setattr(fetch, "address_refusal", lambda a: "private" if a == "127.0.0.2" else None)
    lookup, answers, lookups = socket.getaddrinfo, [], []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.test":
            return lookup(host, port, *args, **kwargs)
        lookups.append(host)
        ip = answers.pop(0) if len(answers) > 1 else answers[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with site(send_file(exposed["clip"])) as (public, public_seen):
        port = int(public.rsplit(":", 1)[1])
        with site(send_file(exposed["clip"]), host="127.0.0.2", port=port) as (_, private_seen):
            url = f"http://rebind.test:{port}/clip.mp4"
            answers[:] = ["127.0.0.1", "127.0.0.2"]
            assert "frames per clip" in _classify(exposed, source=url)
            assert public_seen == [("/clip.mp4", f"rebind.test:{port}")] and private_seen == [] and len(lookups) == 1
            answers[:] = ["127.0.0.2", "127.0.0.1"]
            status = _classify(exposed, source=url)
            assert status.startswith(f"**Error:** URL {url!r} refused: its host 'rebind.test' is a private address")
            assert len(public_seen) == 1 and private_seen == []


def _stream(total: int, declare: bool, counted: dict):
    """An answer of ``total`` bytes sent 64 KiB at a time (with or without a Content-Length); ``counted`` gets the
    bytes the server could send and "done" when it stopped."""
    def answer(handler):
        counted["sent"], chunk = 0, b"\0" * 65536
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "video/mp4")
            if declare:
                handler.send_header("Content-Length", str(total))
            handler.end_headers()
            while counted["sent"] < total:
                handler.wfile.write(chunk)
                counted["sent"] += len(chunk)
        finally:
            counted["done"].set()
    return answer


@pytest.mark.parametrize("declare", [False, True], ids=["no-length", "declared-length"])
def test_a_download_stops_at_the_size_limit(exposed, monkeypatch, declare):
    _private_urls(exposed, monkeypatch)
    total, counted = 40_000_000, {"done": threading.Event()}
    with site(_stream(total, declare, counted)) as (base, _):
        status = _classify(exposed, source=f"{base}/big.mp4")
        assert counted["done"].wait(20)
    over = f"over the app's limit of {LIMIT_MB:g} MB"
    if declare:
        assert status == f"**Error:** URL '{base}/big.mp4' is 40 MB, {over} (start the app with a larger --max-upload-mb)"
    else:
        assert status == (f"**Error:** URL '{base}/big.mp4' is {over} (the download stopped there; start the app "
                          "with a larger --max-upload-mb)")
    assert counted["sent"] < total / 2  # the app hung up (what it read beyond the limit was never written)
    assert [f for f in os.listdir(exposed["service"].workdir) if f.startswith("url_")] == []


def _trickle(started: threading.Event, stop: threading.Event):
    """An answer that declares 100 kB and sends one byte every 0.25 s (for at most 12 s)."""
    def answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "video/mp4")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        started.set()
        end = time.monotonic() + 12
        while time.monotonic() < end and not stop.wait(0.25):
            handler.wfile.write(b"\0")
            handler.wfile.flush()
    return answer


def _finish_times(jobs: dict, timeout: float) -> dict:
    """When each gradio_client job finished (time.monotonic()), watched side by side."""
    finished, end = {}, time.monotonic() + timeout
    while len(finished) < len(jobs) and time.monotonic() < end:
        finished.update({name: time.monotonic() for name, job in jobs.items() if name not in finished and job.done()})
        time.sleep(0.02)
    assert len(finished) == len(jobs), f"not done after {timeout} s: {set(jobs) - set(finished)}"
    return finished


def test_a_slow_url_holds_up_nobody_and_ends_at_the_deadline(exposed, monkeypatch):
    from gradio_client import handle_file

    _private_urls(exposed, monkeypatch)
    client, started, stop = exposed["client"], threading.Event(), threading.Event()
    with site(_trickle(started, stop)) as (base, _):
        t0 = time.monotonic()
        slow = client.submit(None, f"{base}/slow.mp4", "cooking, dancing", 2, "{}", "whole video", 4.0, 2.0,
                             api_name="/classify")
        try:
            assert started.wait(20)
            normal = client.submit(handle_file(exposed["clip"]), "", "cooking, dancing", 2, "{}", "whole video", 4.0,
                                   2.0, api_name="/classify")
            done = _finish_times({"normal": normal, "slow": slow}, timeout=60)
        finally:
            stop.set()
    normal_status, slow_status = normal.result()[0], slow.result()[0]
    assert "frames per clip" in normal_status and done["normal"] < done["slow"], done
    assert slow_status == (f"**Error:** URL '{base}/slow.mp4' took longer than the app's limit of {DEADLINE_S:g} s to "
                           "download (start the app with a larger --url-timeout)")
    assert done["slow"] - t0 < DEADLINE_S + 4


def test_a_server_trickling_its_headers_is_cut_at_the_deadline(tmp_path):
    from xclip_hf.video.fetch import fetch_video

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle_headers():
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nX-Slow: ")
            end = time.monotonic() + 12
            while time.monotonic() < end and not stop.wait(0.25):
                conn.sendall(b"a")

    thread = threading.Thread(target=trickle_headers, daemon=True)
    thread.start()
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match="took longer than the download limit of 2 s"):
            fetch_video(f"http://127.0.0.1:{listener.getsockname()[1]}/v.mp4", str(tmp_path), max_bytes=10**6,
                        timeout=2.0, allow_private=True)
        assert time.monotonic() - start < 2 + 2 and os.listdir(tmp_path) == []
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_no_urls_fetches_nothing(exposed, monkeypatch):
    _private_urls(exposed, monkeypatch, urls=False)
    with site(send_file(exposed["clip"])) as (base, seen):
        status = _classify(exposed, source=f"{base}/clip.mp4")
    assert status == f"**Error:** URL '{base}/clip.mp4' refused: this app fetches no URLs (it was started with --no-urls)"
    assert seen == []


def test_gradios_file_route_fetches_no_url(exposed, monkeypatch):
    import gradio.route_utils

    asked = []
    monkeypatch.setattr(gradio.route_utils.safehttpx, "async_validate_url", lambda host: asked.append(host))
    with site(send_file(exposed["clip"])) as (base, seen):
        code, _ = _get(exposed["url"] + f"gradio_api/file={base}/clip.mp4")
    assert code == 403 and asked == [] and seen == []


# ----------------------------------------------------------------------------------------------- binding
def test_binding_beyond_loopback_says_what_is_exposed(exposed, monkeypatch, capsys):
    import xclip_hf.app
    from xclip_hf.cli import main

    launched = []

    def launch(app, host, port, **kwargs):
        launched.append(host)
        app.xclip_service.close()

    monkeypatch.setattr(xclip_hf.app, "launch_app", launch)
    common = ["app", "--model", exposed["ckpt"], "--index", exposed["index"], "--video-dir", str(exposed["allowed"]),
              "--max-upload-mb", "5", "--url-timeout", "7"]
    assert main([*common, "--host", "0.0.0.0"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: listening on 0.0.0.0 exposes the app to the network" in err
    assert f"reads local videos typed into the page under: {os.path.realpath(exposed['allowed'])}" in err
    assert f"plays the videos of the index {exposed['index']!r} that searches return" in err
    assert "fetches http(s) URLs of public internet addresses (up to 5 MB and 7 s each" in err
    assert main([*common, "--host", "127.0.0.1", "--allow-private-urls"]) == 0
    assert "WARNING" not in capsys.readouterr().err and launched == ["0.0.0.0", "127.0.0.1"]
    assert main(["app", "--model", exposed["ckpt"], "--video-dir", str(exposed["root"] / "nope")]) == 1
    assert "video folder" in capsys.readouterr().err and len(launched) == 2


def test_the_exposure_notice_names_the_url_rules():
    from xclip_hf.app import AppAccess
    from xclip_hf.app.access import exposure_notice

    assert exposure_notice("127.0.0.1", AppAccess(), None, 200) == exposure_notice("localhost", AppAccess(), None, 1) \
        == exposure_notice("::1", AppAccess(), None, 1) == []
    assert "reads no local paths" in "\n".join(exposure_notice("0.0.0.0", AppAccess(), None, 200))
    assert "(--no-urls)" in exposure_notice("192.0.2.7", AppAccess(urls=False), None, 200)[-1]
    private = exposure_notice("", AppAccess(private_urls=True), None, 200)
    assert private[0].startswith("xclip-hf app: WARNING: listening on all addresses")
    assert "also of loopback and private-network addresses (--allow-private-urls)" in private[-1]
