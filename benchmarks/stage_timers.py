"""Stage timers for the zero-shot benchmarks: wrappers around the pipeline's own functions that split a call's time.

`bench_stages.py` reads the fine stages (open, decode, convert, resize, crop+normalise, model, other);
`bench_zero_shot.py` the coarse ones of `COARSE_STAGES` (decode, preprocess, text, video, rest), for our pipeline and
for the transformers recipe alike.
"""

from __future__ import annotations

import collections
import contextlib
import time

# decode: container open + seek + decode + YUV -> RGB of the sampled frames; preprocess: the video processor (resize,
# crop, normalise); text: encoding the label set; video: the rest of the model call (video tower + head); rest: what
# the calls spend outside these (batching, bookkeeping, softmax and ranking)
COARSE_STAGES = ("decode", "preprocess", "text", "video", "rest")


def coarse_stages(decode: float, preprocess: float, text: float, model: float, total: float) -> dict:
    """Seconds per `COARSE_STAGES` entry from timers (`model` includes `text`; `total` includes everything)."""
    out = {"decode": decode, "preprocess": preprocess, "text": text, "video": max(0.0, model - text)}
    out["rest"] = max(0.0, total - sum(out.values()))
    return out


class StageClock:
    """Seconds per stage, accumulated by wrappers around the pipeline's functions; frames decoded and converted."""

    def __init__(self):
        self.seconds = collections.Counter()
        self.frames = collections.Counter()

    @contextlib.contextmanager
    def wrapped(self, pipe):
        """Wrap the reader, the processor and the forward of `pipe` for the duration of the block."""
        from xclip_hf.models import video_processing_xclip as vp
        from xclip_hf.video import reader

        saved = []

        def patch(owner, attr, stage, count=None):
            original = getattr(owner, attr)

            def timed(*args, **kwargs):
                start = time.perf_counter()
                try:
                    result = original(*args, **kwargs)
                finally:
                    self.seconds[stage] += time.perf_counter() - start
                if count is not None:
                    self.frames[count] += 1
                return result

            saved.append((owner, attr, original))
            setattr(owner, attr, timed)

        def patch_generator(owner, attr, stage):
            original = getattr(owner, attr)

            def timed(*args, **kwargs):
                inner = original(*args, **kwargs)
                while True:
                    start = time.perf_counter()
                    try:
                        item = next(inner)
                    except StopIteration:
                        self.seconds[stage] += time.perf_counter() - start
                        return
                    self.seconds[stage] += time.perf_counter() - start
                    self.frames["decoded"] += 1
                    yield item

            saved.append((owner, attr, original))
            setattr(owner, attr, timed)

        patch(reader._PyAVBackend, "__init__", "open")
        patch_generator(reader._PyAVBackend, "_decode_from", "read")  # seek + decode (conversion runs between items)
        patch(reader._PyAVBackend, "_to_rgb", "convert", count="converted")
        patch(vp, "resize_short_side", "resize")
        patch(vp.XClipVideoProcessor, "process_clips", "processor")
        patch(type(pipe), "_forward", "model")
        patch(type(pipe), "text_features", "text")  # inside the forward: the label set's encoding (or cache hit)
        try:
            yield self
        finally:
            for owner, attr, original in reversed(saved):
                setattr(owner, attr, original)

    def stages(self, total: float) -> dict:
        """Seconds per named stage; `total`: the wall time of the call (`other` is what the stages leave)."""
        s = self.seconds
        out = {"open": s["open"], "decode": s["read"], "convert": s["convert"],
               "resize": s["resize"], "crop+normalise": max(0.0, s["processor"] - s["resize"]), "model": s["model"]}
        out["other"] = max(0.0, total - sum(out.values()))
        return out

    def coarse(self, total: float) -> dict:
        """Seconds per `COARSE_STAGES` entry; `total`: the wall time of the calls (`rest` is what the others leave)."""
        s = self.seconds
        return coarse_stages(decode=s["open"] + s["read"] + s["convert"], preprocess=s["processor"],
                             text=s["text"], model=s["model"], total=total)
