"""The page: a Gradio `Blocks` app with a Classify and a Search tab over one shared `AppService`."""

from __future__ import annotations

import os
import re

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry or version check (also set per Blocks)

import gradio as gr  # noqa: E402

from ..utils.messages import one_line
from .access import AppAccess, exposure_notice
from .service import MODES, AppLimits, AppService, parse_labels

__all__ = ["build_app", "launch_app", "MAX_RESULTS", "CLASSIFY_OUTPUTS", "SEARCH_OUTPUTS"]

MAX_RESULTS = 8  # video players on the search tab
CLASSIFY_SLOTS = 4  # classify requests in progress at once: their downloads overlap, their model runs take turns
REMOTE_FILE = re.compile(r"/file=[A-Za-z][A-Za-z0-9+.-]*:")  # Gradio's file route asked for a URL
# outputs of the API endpoints, in order (the Python client returns them as a tuple)
CLASSIFY_OUTPUTS = ("status", "scores", "frames", "timeline", "segments", "result", "player", "source")
SEARCH_OUTPUTS = ("status", "results", *[f"video_{i}" for i in range(MAX_RESULTS)])
SEGMENT_HEADERS = ["start (s)", "end (s)", "label", "score"]
RESULT_HEADERS = ["rank", "path", "start (s)", "end (s)", "score"]
TIME_AND_SCORE = {"start (s)": "{:.2f}", "end (s)": "{:.2f}", "score": "{:.4f}"}

CSS = """
#frames img { image-rendering: pixelated; }
.status-line p { margin: 0; }
.status-error { color: var(--error-text-color); }
"""


def _theme():
    """Gradio's default theme with only local or system fonts (no request to a font service)."""
    return gr.themes.Default(font=[gr.themes.LocalFont("IBM Plex Sans"), "ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=[gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "monospace"])


def _timeline_figure(windows: list[dict], window_s: float, stride_s: float):
    """Each label's probability over time and the segments (`pipelines.timeline.plot_timeline`)."""
    from matplotlib.figure import Figure

    from ..pipelines.timeline import plot_timeline

    fig = Figure(figsize=(10, 3.3), dpi=100)
    ax = fig.add_subplot()
    plot_timeline(ax, windows, f"label probability per {window_s:g} s window (hop {stride_s:g} s)")
    fig.tight_layout()
    return fig


def _table(rows: list[list], headers: list[str], formats: dict[str, str]):
    """Rows for a Dataframe: exact values (what the API returns), shown rounded (a pandas Styler's display)."""
    import pandas as pd

    return pd.DataFrame(rows, columns=headers).style.format(formats, na_rep="")


def _number(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if not number > 0:
        raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    return number


def _classify_handler(service: AppService):
    def classify(video, source, labels_text, top_k, template, mode, window_s, stride_s,
                 progress=gr.Progress(track_tqdm=True)):
        try:
            labels = parse_labels(labels_text)
            top_k = int(top_k) if top_k else None
            progress(0.0, desc="reading the video")
            path, player, info = service.resolve_video(video, source)  # outside the lock: a download waits alone
            duration = info.num_frames / info.fps if info.fps > 0 else 0.0
            window_s, stride_s = _number(window_s, "window length"), _number(stride_s, "hop")
            windows = service.wants_windows(mode, duration, window_s)
            progress(0.1, desc="waiting for the model")
            with service.lock:
                progress(0.1, desc="running the model")
                out = service.classify(path, labels, top_k=top_k, template=template, windows=windows,
                                       chunk_length_s=window_s if windows else None,
                                       stride_length_s=stride_s if windows else None)
                best = out["windows"][out["best"]]["timestamp"] if windows else None
                frames = out["frames"]
        except Exception as err:  # noqa: BLE001 - every failure becomes one line in the page
            line = one_line(err)
            if video:  # name an upload by its file name, not by the server's cache folder
                line = line.replace(os.path.dirname(os.fspath(video)) + os.sep, "")
            return (f"**Error:** {line}", None, None, gr.update(visible=False), gr.update(visible=False),
                    {"error": line}, gr.skip(), gr.skip())
        scores = {p["label"]: p["score"] for p in out["predictions"]}
        result = {"model": service.model_name, "num_frames": service.num_frames, "duration_s": round(duration, 3),
                  "predictions": out["predictions"]}
        summary = (f"**{service.short_name}** · {service.num_frames} frames per clip · video {duration:.1f} s, "
                   f"{info.num_frames} frames at {info.fps:g} fps")
        if windows:
            result.update(window_s=window_s, stride_s=stride_s, windows=out["windows"], segments=out["segments"],
                          best_window=out["best"])
            summary += (f" · {len(out['windows'])} windows of {window_s:g} s every {stride_s:g} s; scores and frames "
                        f"of the most confident window, {best[0]:.2f}-{best[1]:.2f} s")
            timeline = gr.update(value=_timeline_figure(out["all_windows"], window_s, stride_s), visible=True)
            rows = [[s["start_s"], s["end_s"], s["label"], s["score"]] for s in out["segments"]]
            segments = gr.update(value=_table(rows, SEGMENT_HEADERS, TIME_AND_SCORE), visible=True)
        else:
            timeline, segments = gr.update(visible=False), gr.update(visible=False)
        # a local path or URL: show the file in the player and clear the box (the player now holds that video)
        player_update = player if player is not None else gr.skip()
        source_update = "" if player is not None else gr.skip()
        return summary, scores, frames, timeline, segments, result, player_update, source_update

    return classify


def _search_handler(service: AppService, play):
    """``play(file)``: lets the server serve that indexed video (before the page is told to show it)."""
    def search(query, top_k):
        players = [gr.update(value=None, visible=False) for _ in range(MAX_RESULTS)]
        try:
            with service.lock:
                hits = service.search(query, int(top_k))
        except Exception as err:  # noqa: BLE001
            return (f"**Error:** {one_line(err)}", [], *players)
        rows = [[rank, hit["path"], hit["start_s"], hit["end_s"], hit["score"]] for rank, hit in enumerate(hits, 1)]
        rows = _table(rows, RESULT_HEADERS, TIME_AND_SCORE)
        for i, hit in enumerate(hits[:MAX_RESULTS]):
            file = service.video_file(hit["path"])
            start = float(hit["start_s"] or 0.0)
            end = "" if hit["end_s"] is None else f"-{hit['end_s']:.2f}"
            title = f"#{i + 1} {os.path.basename(hit['path'])} · {start:.2f}{end} s · score {hit['score']:.4f}"
            if file is None:
                title += " (file not found on this machine)"
            else:
                play(file)
            players[i] = gr.update(value=file, label=title, playback_position=start, visible=True)
        status = f"{len(hits)} results for **{query.strip()}**" if hits else f"no results for **{query.strip()}**"
        return (status, rows, *players)

    return search


def _seek_handler():
    def seek(evt: gr.SelectData):
        """A click on a segment row: the player jumps to the segment's start."""
        row = evt.row_value or []
        try:
            return gr.update(playback_position=float(row[0]))
        except (TypeError, ValueError, IndexError):
            return gr.skip()

    return seek


def _source_box(access: AppAccess):
    """The "local path / URL" field, as the access rules allow it (hidden when they allow neither)."""
    kinds = (["a local path (under the app's video folders)"] if access.video_dirs else []) + \
        (["an http(s) URL"] if access.urls else [])
    examples = (["/videos/clip.mp4"] if access.video_dirs else []) + (["https://…"] if access.urls else [])
    return gr.Textbox(label="…or " + " / ".join(kinds) if kinds else "local paths and URLs are off",
                      elem_id="source", placeholder=" or ".join(examples), visible=bool(kinds))


def _allow_file(app):
    """A function that lets ``app`` serve one more file (an indexed video): an allow-list of files, not folders."""
    def play(file: str) -> None:
        if file not in app.allowed_paths:
            app.allowed_paths.append(file)

    return play


def build_app(model=None, index=None, *, processor=None, limits: AppLimits | None = None,
              access: AppAccess | None = None, device=None, dtype=None, service: AppService | None = None):
    """The Gradio app (a `gr.Blocks`, not launched): Classify and, with ``index``, Search; ``access``: `AppAccess`."""
    from .service import DEFAULT_MODEL

    if service is None:
        service = AppService(model or DEFAULT_MODEL, index, processor=processor, limits=limits, access=access,
                             device=device, dtype=dtype)
    md = dict(latex_delimiters=[])
    with gr.Blocks(title="X-CLIP video app", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(f"## X-CLIP zero-shot video\nModel **{service.model_name}** · {service.num_frames} frames per "
                    f"clip · videos up to {service.limits.max_upload_mb:g} MB and {service.limits.max_video_s:g} s",
                    **md)
        with gr.Tab("Classify"):
            with gr.Row():
                with gr.Column(scale=1):
                    video = gr.Video(label="Video", sources=["upload"], elem_id="video-in", height=260)
                    source = _source_box(service.access)
                    labels = gr.Textbox(label="Labels (comma- or line-separated)", lines=3, elem_id="labels",
                                        placeholder="cooking, dancing, surfing")
                    with gr.Row():
                        top_k = gr.Slider(1, 20, value=5, step=1, label="Top-k", elem_id="top-k")
                        template = gr.Textbox(value="{}", label="Prompt template", elem_id="template")
                    with gr.Accordion("Long videos: windows and timeline", open=False):
                        mode = gr.Radio(list(MODES), value="auto", label="Timeline",
                                        info="auto: windows when the video is longer than 3 windows")
                        with gr.Row():
                            window_s = gr.Number(value=4.0, label="Window length (s)", minimum=0.01)
                            stride_s = gr.Number(value=2.0, label="Hop (s)", minimum=0.01)
                    run = gr.Button("Classify", variant="primary", elem_id="classify-btn")
                with gr.Column(scale=1):
                    status = gr.Markdown(elem_id="classify-status", elem_classes="status-line", **md)
                    scores = gr.Label(label="Scores", elem_id="scores")
                    frames = gr.Gallery(label="What the model saw (sampled and cropped frames)", columns=4,
                                        fit_columns=False, object_fit="contain", format="png", elem_id="frames",
                                        allow_preview=False)
            timeline = gr.Plot(label="Timeline", visible=False, elem_id="timeline")
            segments = gr.Dataframe(headers=SEGMENT_HEADERS, label="Segments "
                                    "(click a row to play it)", visible=False, interactive=False,
                                    elem_id="segments", latex_delimiters=[])
            with gr.Accordion("Result (JSON)", open=False):
                result = gr.JSON(label="Result", elem_id="result")
        with gr.Tab("Search", elem_id="search-tab"):
            if service.index is None:
                gr.Markdown("No index loaded: start the app with `--index DIR`, a folder written by "
                            "`xclip-hf embed`.", **md)
            else:
                note = service.index_problem or service.index_note or ""
                made = service.index_model
                gr.Markdown(f"Index `{service.index_dir}` · {len(service.index)} rows"
                            + (f" · made with `{made}`" if made else "")
                            + (f"\n\n**{note}**" if note else ""), **md)
            with gr.Row():
                query = gr.Textbox(label="Find", placeholder="a person cooking", elem_id="query", scale=4)
                search_k = gr.Slider(1, 20, value=4, step=1, label="Results", scale=1)
            find = gr.Button("Search", variant="primary", elem_id="search-btn")
            search_status = gr.Markdown(elem_id="search-status", elem_classes="status-line", **md)
            results = gr.Dataframe(headers=RESULT_HEADERS, label="Results",
                                   interactive=False, elem_id="results", latex_delimiters=[])
            players = []
            for row in range(0, MAX_RESULTS, 4):
                with gr.Row():
                    for i in range(row, row + 4):
                        players.append(gr.Video(visible=False, interactive=False, height=200,
                                                elem_id=f"hit-{i}", elem_classes="hit"))

        model_queue = dict(concurrency_id="model", concurrency_limit=1)
        run.click(_classify_handler(service),
                  [video, source, labels, top_k, template, mode, window_s, stride_s],
                  [status, scores, frames, timeline, segments, result, video, source], api_name="classify",
                  concurrency_id="classify", concurrency_limit=CLASSIFY_SLOTS)
        segments.select(_seek_handler(), None, video, api_name=False, queue=False)
        play = _allow_file(app)
        find.click(_search_handler(service, play), [query, search_k], [search_status, results, *players],
                   api_name="search", **model_queue)
        query.submit(_search_handler(service, play), [query, search_k], [search_status, results, *players],
                     api_name=False, **model_queue)
    app.queue(default_concurrency_limit=1)
    app.xclip_service = service  # for tests and embedding
    return app


class _NoRemoteFiles:
    """ASGI middleware: 403 for Gradio's file route asked for a URL (which Gradio would fetch for the visitor)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and REMOTE_FILE.search(scope.get("path", "")):
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": b"this app does not fetch files for visitors"})
            return
        await self.app(scope, receive, send)


def launch_app(app, host: str = "127.0.0.1", port: int | None = 7860, *, block: bool = True, quiet: bool = False):
    """Serve ``app`` on ``host:port`` (127.0.0.1 by default); beyond loopback, print what is exposed."""
    import sys

    from starlette.middleware import Middleware

    service = app.xclip_service
    if not quiet:
        for line in exposure_notice(host, service.access, service.index_dir, service.limits.max_upload_mb):
            print(line, file=sys.stderr, flush=True)
    return app.launch(server_name=host, server_port=port, share=False, inbrowser=False, ssr_mode=False,
                      prevent_thread_lock=not block, quiet=quiet, show_error=False, theme=_theme(), css=CSS,
                      max_file_size=f"{service.limits.max_upload_mb:g}mb", allowed_paths=None,
                      app_kwargs={"middleware": [Middleware(_NoRemoteFiles)]},
                      footer_links=["api"], mcp_server=False, pwa=False, enable_monitoring=False)
