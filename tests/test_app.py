"""The web app (`xclip-hf app`, `xclip_hf.app.build_app`), served on 127.0.0.1 with a tiny model: its API through
gradio's own Python client against the pipeline and `search_videos` (independently loaded), errors as one line,
limits, the frames the model saw, and a real browser (Debian's chromium driven by Playwright) that must never
request anything from another host."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

from _helpers_app import (  # noqa: E402
    LONG_LABELS,
    Browser,
    classify_in_page,
    frame_colour,
    search_in_page,
    serve,
    table_cell,
    write_coloured_frames,
    write_long_video,
)
from _helpers_pipeline import NUM_FRAMES, make_our_checkpoint, write_videos  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ["playing guitar", "riding a bike", "cooking pasta", "swimming in a pool", "dancing ballet"]
# the classify endpoint's inputs, in order: video, path/URL, labels, top-k, template, mode, window, hop
WHOLE = dict(top_k=5, template="{}", mode="whole video", window_s=4.0, stride_s=2.0)


@pytest.fixture(scope="module")
def outbound():
    """Connections this process opens to hosts other than this machine, recorded while the module runs."""
    import socket

    seen, connect = [], socket.socket.connect

    def recording_connect(sock, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            seen.append(address)
        return connect(sock, address)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", recording_connect)
        yield seen


@pytest.fixture(scope="module")
def served(tmp_path_factory, outbound):
    """A tiny checkpoint, a short clip, a 24 s video, an index of both, the app on a free port and a client. The
    app reads typed paths under the test's folder (--video-dir) and fetches URLs of this machine
    (--allow-private-urls: the URL test's server listens on 127.0.0.1)."""
    from gradio_client import Client

    from xclip_hf import embed_videos
    from xclip_hf.app import AppAccess, build_app

    root = tmp_path_factory.mktemp("app")
    ckpt = make_our_checkpoint(root / "ckpt")
    clip = write_videos(str(root))[0]
    long = write_long_video(str(root / "long.mp4"))
    index = str(root / "emb")
    embed_videos([clip, long], index, ckpt, chunk_length_s=2, progress=False)
    app = build_app(ckpt, index, access=AppAccess(video_dirs=(str(root),), private_urls=True))
    url = serve(app)
    client = Client(url, verbose=False)
    yield {"root": root, "ckpt": ckpt, "clip": clip, "long": long, "index": index, "app": app, "url": url,
           "client": client, "service": app.xclip_service, "outbound": outbound}
    app.close()
    app.xclip_service.close()


@pytest.fixture(scope="module")
def oracle(served):
    """The zero-shot pipeline loaded on its own from the checkpoint folder (not the app's objects)."""
    from transformers import pipeline

    import xclip_hf  # noqa: F401 - registers the task

    return pipeline("zero-shot-video-classification", model=served["ckpt"])


def _classify(served, video=None, source="", labels=", ".join(LABELS), **options):
    from gradio_client import handle_file

    o = {**WHOLE, **options}
    outputs = served["client"].predict(handle_file(video) if video else None, source, labels, o["top_k"],
                                       o["template"], o["mode"], o["window_s"], o["stride_s"], api_name="/classify")
    from xclip_hf.app.ui import CLASSIFY_OUTPUTS

    return dict(zip(CLASSIFY_OUTPUTS, outputs))


def _assert_ranked_equal(got, expected):
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    np.testing.assert_allclose([p["score"] for p in got], [p["score"] for p in expected], atol=1e-5, rtol=0)


def test_classify_an_uploaded_file_gives_the_pipelines_labels_and_scores(served, oracle):
    out = _classify(served, served["clip"], labels="playing guitar, riding a bike\ncooking pasta", top_k=2,
                    template="a video of {}")
    expected = oracle(served["clip"], candidate_labels=LABELS[:3], top_k=2, hypothesis_template="a video of {}")
    _assert_ranked_equal(out["result"]["predictions"], expected)
    chart = out["scores"]
    assert chart["label"] == expected[0]["label"]
    _assert_ranked_equal([{"label": c["label"], "score": c["confidence"]} for c in chart["confidences"]], expected)
    assert out["status"].startswith(f"**ckpt** · {NUM_FRAMES} frames per clip")
    assert out["result"]["model"] == served["ckpt"] and out["result"]["num_frames"] == NUM_FRAMES
    assert len(out["frames"]) == NUM_FRAMES and out["result"].get("windows") is None


def test_windows_give_the_pipelines_timestamps_and_segments(served, oracle):
    out = _classify(served, source=served["long"], labels=", ".join(LONG_LABELS), top_k=3, mode="auto",
                    window_s=4.0, stride_s=2.0)
    options = dict(candidate_labels=LONG_LABELS, chunk_length_s=4.0, stride_length_s=2.0)
    windows = oracle(served["long"], return_timestamps=True, top_k=3, **options)
    segments = oracle(served["long"], aggregate="segmentation", **options)
    got = out["result"]["windows"]
    assert len(got) == len(windows) > 3  # "auto": 24 s is longer than 3 windows of 4 s
    assert [tuple(w["timestamp"]) for w in got] == [tuple(w["timestamp"]) for w in windows]
    for g, w in zip(got, windows):
        _assert_ranked_equal(g["labels"], w["labels"])
    assert [(s["label"], s["start_s"], s["end_s"]) for s in out["result"]["segments"]] == \
           [(s["label"], s["start_s"], s["end_s"]) for s in segments]
    np.testing.assert_allclose([s["score"] for s in out["result"]["segments"]], [s["score"] for s in segments],
                               atol=1e-5, rtol=0)
    assert [row[2] for row in out["segments"]["value"]["data"]] == [s["label"] for s in segments]
    assert out["timeline"]["visible"] and out["timeline"]["value"]["type"] == "matplotlib"
    # a typed path is shown in the player (a copy the page may fetch) and the box is cleared
    assert out["player"] and os.path.basename(out["player"]).endswith("long.mp4") and out["source"] == ""


def test_search_gives_the_rows_of_search_videos(served):
    from xclip_hf import search_videos
    from xclip_hf.app.ui import MAX_RESULTS, SEARCH_OUTPUTS

    out = dict(zip(SEARCH_OUTPUTS, served["client"].predict("cooking pasta", 3, api_name="/search")))
    expected = search_videos(served["index"], "cooking pasta", served["ckpt"], top_k=3)
    rows = out["results"]["data"]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(i + 1, h["path"], h["start_s"], h["end_s"])
                                                       for i, h in enumerate(expected)]
    np.testing.assert_allclose([r[4] for r in rows], [h["score"] for h in expected], atol=1e-5, rtol=0)
    players = [out[f"video_{i}"] for i in range(MAX_RESULTS)]
    assert [p["playback_position"] for p in players[:3]] == [h["start_s"] for h in expected]
    assert all(p["visible"] for p in players[:3]) and not any(p["visible"] for p in players[3:])


def test_a_url_is_downloaded_classified_and_shown(served, oracle):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=os.path.dirname(served["clip"]))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{os.path.basename(served['clip'])}"
        out = _classify(served, source=url, top_k=3)
    finally:
        server.shutdown()
        thread.join()
    _assert_ranked_equal(out["result"]["predictions"], oracle(served["clip"], candidate_labels=LABELS, top_k=3))
    assert out["player"] and out["source"] == ""


def test_model_runs_are_queued_one_at_a_time_with_progress(served, monkeypatch):
    import threading
    import time

    service, lock, state = served["service"], threading.Lock(), {"active": 0, "peak": 0, "calls": 0}

    def counted(method):
        def run(*args, **kwargs):
            with lock:
                state["active"] += 1
                state["calls"] += 1
                state["peak"] = max(state["peak"], state["active"])
            time.sleep(0.2)
            try:
                return method(*args, **kwargs)
            finally:
                with lock:
                    state["active"] -= 1
        return run

    monkeypatch.setattr(service, "classify", counted(service.classify))
    monkeypatch.setattr(service, "search", counted(service.search))
    client = served["client"]
    windows = client.submit(None, served["long"], "a, b, c", 3, "{}", "windows", 1.0, 0.1, api_name="/classify")
    others = [client.submit("cooking pasta", 2, api_name="/search"),
              client.submit(None, served["clip"], "a, b", 2, "{}", "whole video", 4, 2, api_name="/classify")]
    progress = set()
    while not windows.done():
        for update in windows.status().progress_data or []:
            progress.add((update.desc, update.length))
        time.sleep(0.02)
    results = [job.result() for job in [windows, *others]]
    assert all("frames per clip" in r[0] or "results for" in r[0] for r in results), [r[0] for r in results]
    assert state == {"active": 0, "peak": 1, "calls": 3}
    n_windows = len(results[0][5]["windows"])
    # the page shows the pipeline's bar over windows (its total grows as the chunks of the video are planned)
    assert n_windows > 3 and any(desc == "windows" for desc, _ in progress), progress


def test_errors_are_one_line_in_the_page_and_the_app_still_answers(served, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    cases = [(dict(video=str(corrupt)), "cannot open video 'corrupt.mp4'"),
             (dict(video=served["clip"], labels=" ,\n , "), "no labels"),
             (dict(video=served["clip"], labels="cooking, Cooking"), "Cooking"),
             (dict(source=str(tmp_path / "missing.mp4")), "missing.mp4"),
             (dict(), "no video")]
    for kwargs, named in cases:
        out = _classify(served, **kwargs)
        status = out["status"]
        assert status.startswith("**Error:** ") and named in status, status
        assert "\n" not in status and "Traceback" not in status and not out["scores"]
        assert out["result"] == {"error": status[len("**Error:** "):]}
    out = _classify(served, served["clip"])  # the next request is answered normally
    assert out["scores"]["label"] and out["result"]["predictions"]
    out = dict(zip(["status"], served["client"].predict("   ", 3, api_name="/search")))
    assert out["status"].startswith("**Error:** no query")


def test_size_and_length_limits_are_one_clear_line(served, monkeypatch):
    from xclip_hf.app import AppLimits

    service = served["service"]
    monkeypatch.setattr(service, "limits", AppLimits(max_video_s=10))
    status = _classify(served, source=served["long"])["status"]
    assert "24.0 s long, over the app's limit of 10 s" in status and "--max-video-s" in status
    monkeypatch.setattr(service, "limits", AppLimits(max_upload_mb=0.001))
    status = _classify(served, served["clip"])["status"]
    assert "over the app's limit of 0.001 MB" in status and "--max-upload-mb" in status
    with pytest.raises(ValueError, match="max_video_s must be a positive number"):
        AppLimits(max_video_s=0)


def test_the_frame_strip_shows_the_sampled_frames_after_the_crop(served, tmp_path):
    from PIL import Image

    video = write_coloured_frames(str(tmp_path / "colours.mp4"), num_frames=12, size=40)
    out = _classify(served, video)
    # independent: sparse sampling takes the middle frame of each of T equal segments (paper Sec. 4.2)
    expected = [int(np.floor(12 / NUM_FRAMES * (i + 0.5))) for i in range(NUM_FRAMES)]
    palette = np.array([frame_colour(k) for k in range(12)], dtype=float)
    shown = []
    for item in out["frames"]:
        image = np.asarray(Image.open(item["image"]).convert("RGB"), dtype=float)
        assert image.shape == (32, 32, 3)  # the crop size of the tiny processor, not the 40 px frame
        shown.append(int(np.abs(palette - image.reshape(-1, 3).mean(0)).sum(1).argmin()))
    assert shown == expected
    assert [item["caption"] for item in out["frames"]] == [f"{k / 10:.2f} s" for k in expected]


def test_an_index_made_with_another_model_is_refused_clearly(served, tmp_path):
    from xclip_hf.app import AppService

    other = make_our_checkpoint(tmp_path / "other", seed=1)
    service = AppService(other, served["index"])
    try:
        with pytest.raises(ValueError, match="was made with the model|embedded with another model") as err:
            service.search("cooking pasta")
        assert served["ckpt"] in str(err.value) and other in str(err.value)
    finally:
        service.close()
    same = AppService(os.path.relpath(served["ckpt"]), served["index"])  # the same folder, named otherwise
    try:
        assert same.index_problem is None and same.search("cooking pasta", 2)
    finally:
        same.close()


def test_cli_without_gradio_says_how_to_install_it():
    code = ("import sys\nsys.modules['gradio'] = None  # as if not installed\nfrom xclip_hf.cli import main\n"
            "sys.exit(main(['app', '--model', 'some/model']))\n")
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip() == \
        'xclip-hf app: error: the web app needs gradio: pip install -e ".[app]" (or pip install gradio)', proc.stderr


def test_cli_help_imports_neither_gradio_nor_torch():
    code = ("import json, sys\nfrom xclip_hf.cli import main\n"
            "try:\n    main(['app', '--help'])\nexcept SystemExit as e:\n    code = e.code\n"
            "print(json.dumps([code, sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'torch'))]))\n")
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    code, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 0 and heavy == [] and "--index" in proc.stdout and "127.0.0.1" in proc.stdout


# ----------------------------------------------------------------------------------------------- a real browser
@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("playwright")
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    b = Browser()
    yield b
    b.close()


@pytest.mark.browser
def test_browser_classify_long_video(served, oracle, browser, tmp_path):
    page = browser.page(served["url"])
    shot = str(tmp_path / "classify.png")
    shown = classify_in_page(page, served["long"], LONG_LABELS, screenshot=shot)
    options = dict(candidate_labels=LONG_LABELS, chunk_length_s=4.0, stride_length_s=2.0)
    windows = oracle(served["long"], return_timestamps=True, **options)
    best = max(windows, key=lambda w: w["labels"][0]["score"])
    assert shown["top"] == best["labels"][0]["label"], shown
    assert shown["segments"] == [s["label"] for s in oracle(served["long"], aggregate="segmentation", **options)]
    assert os.path.getsize(shot) > 10_000
    # a click on a segment's row moves the player to the segment's start (the player is first moved elsewhere: a
    # segmentation may have one segment only, starting at 0)
    segments = oracle(served["long"], aggregate="segmentation", **options)
    last = segments[-1]
    elsewhere = 13.7 if abs(last["start_s"] - 13.7) > 1 else 3.3
    seek = "(t) => { const v = document.querySelector('#video-in video'); v.currentTime = t; return true; }"
    page.evaluate(seek, elsewhere)
    at = "(t) => Math.abs(document.querySelector('#video-in video').currentTime - t) < 0.01"
    page.wait_for_function(at, arg=elsewhere)
    table_cell(page, "#segments", len(segments) - 1, 2).click()
    page.wait_for_function(at, arg=last["start_s"])
    page.close()
    assert browser.foreign_requests() == [] and served["outbound"] == []
    _keep_screenshot(shot, "app_classify.png")


@pytest.mark.browser
def test_browser_search(served, browser, tmp_path):
    from xclip_hf import search_videos

    page = browser.page(served["url"])
    shot = str(tmp_path / "search.png")
    shown = search_in_page(page, "cooking pasta", screenshot=shot)
    expected = search_videos(served["index"], "cooking pasta", served["ckpt"], top_k=4)
    assert shown["paths"] == [h["path"] for h in expected] and shown["status"].startswith("4 results")
    starts = page.evaluate("() => Array.from(document.querySelectorAll('.hit video')).map(v => v.currentTime)")
    assert starts == pytest.approx([h["start_s"] for h in expected])  # each player starts at its hit
    page.close()
    assert browser.foreign_requests() == [] and served["outbound"] == []
    _keep_screenshot(shot, "app_search.png")


def _keep_screenshot(path: str, name: str) -> None:
    """XCLIP_APP_SCREENSHOTS=DIR keeps a copy of the browser tests' screenshots (for looking at them)."""
    target = os.environ.get("XCLIP_APP_SCREENSHOTS")
    if target:
        os.makedirs(target, exist_ok=True)
        shutil.copyfile(path, os.path.join(target, name))
