"""The library's URL downloads (the pipeline's http(s) videos) end: within `url_timeout` seconds overall, also
against a server that trickles bytes, and within `MAX_URL_BYTES`, also against an endless body; each refusal names
the URL and leaves no file behind."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time

import pytest

from _helpers_pipeline import LABELS, make_our_checkpoint


@contextlib.contextmanager
def raw_server(reply):
    """A one-connection-at-a-time TCP server on 127.0.0.1 whose `reply(conn, stop)` answers each request."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.recv(65536)
                reply(conn, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()


def trickle(conn, stop):
    """Headers, then one body byte every 0.2 s for 20 s (no read ever waits long enough for a socket timeout)."""
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp4\r\n\r\n")
    end = time.monotonic() + 20
    while time.monotonic() < end and not stop.wait(0.2):
        conn.sendall(b"x")


def endless(conn, stop):
    """Headers without a length, then bytes as fast as they are read, for 20 s."""
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp4\r\n\r\n")
    block, end = b"x" * 65536, time.monotonic() + 20
    while time.monotonic() < end and not stop.is_set():
        conn.sendall(block)


def declared_huge(conn, stop):
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 900000000000\r\n\r\nxx")


@pytest.fixture
def downloads(tmp_path, monkeypatch):
    """Where the library's downloads go (checked empty after each refusal)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _partial_files(folder) -> list[str]:
    """Downloads left in `folder` (the fetcher names them url_*)."""
    return [name for name in os.listdir(folder) if name.startswith("url_")]


def test_a_trickling_server_is_cut_at_the_overall_deadline(downloads):
    from xclip_hf.pipelines.video_inputs import download_video

    with raw_server(trickle) as base:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=f"URL '{base}/v.mp4' took longer than the download limit of 2 s"):
            download_video(f"{base}/v.mp4", timeout=2.0)
        assert time.monotonic() - start < 2 + 3
    assert _partial_files(downloads) == []


def test_an_endless_body_stops_at_the_size_limit(downloads, monkeypatch):
    from xclip_hf.pipelines import video_inputs

    monkeypatch.setattr(video_inputs, "MAX_URL_BYTES", 2_000_000)
    with raw_server(endless) as base:
        with pytest.raises(ValueError, match=f"URL '{base}/v.mp4' is over the download limit of 2 MB"):
            video_inputs.download_video(f"{base}/v.mp4", timeout=30.0)
    assert _partial_files(downloads) == []


def test_a_declared_size_over_the_limit_is_refused_before_the_body(downloads):
    from xclip_hf.pipelines.video_inputs import download_video

    with raw_server(declared_huge) as base:
        with pytest.raises(ValueError, match=f"URL '{base}/v.mp4' is 9e\\+05 MB, over the download limit"):
            download_video(f"{base}/v.mp4")
    assert _partial_files(downloads) == []


def test_the_pipeline_passes_its_url_timeout_and_names_the_url(downloads, tmp_path_factory):
    from xclip_hf.pipelines import build_pipeline

    pipe = build_pipeline(make_our_checkpoint(tmp_path_factory.mktemp("model") / "ours"), device="cpu")
    pipe.url_timeout = 1.5
    with raw_server(trickle) as base:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=f"'{base}/clip.mp4' took longer than the download limit of 1.5 s"):
            pipe(f"{base}/clip.mp4", candidate_labels=LABELS)
        assert time.monotonic() - start < 1.5 + 3
