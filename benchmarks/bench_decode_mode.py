"""Accuracy cost of the approximate `decode_mode="keyframes"` on the demo's trained model (held-out top-1).

Needs the output folder of `python examples/demo.py --output_dir DIR` (its trained X-CLIP in DIR/xclip, the held-out
list and labels in DIR/data). The held-out videos are scored through the evaluation code (the zero-shot pipeline),
once per decoding mode, as they are (x264's default GOP: one key frame per clip) and re-encoded with a key frame
every ``--gops`` frames: losslessly from the decoded YUV frames, so the exact mode reads the same pixels (checked).
Printed per file set: the sampled frames the mode moves to a key frame, top-1 exact vs keyframes, the videos whose
top-1 changes, and the wall time of each scoring run.

    python benchmarks/bench_decode_mode.py --demo-dir DIR [--gops 0 8 4]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402


def read_split(data_dir: str) -> tuple[list[str], np.ndarray, list[str]]:
    """(video paths, class ids, class names) of the demo's held-out list."""
    with open(os.path.join(data_dir, "labels.csv"), newline="") as handle:
        names = [row["name"] for row in csv.DictReader(handle)]
    paths, labels = [], []
    with open(os.path.join(data_dir, "test.txt")) as handle:
        for line in handle:
            if line.strip():
                path, label = line.split()
                paths.append(os.path.join(data_dir, path))
                labels.append(int(label))
    return paths, np.asarray(labels), names


def reencode(path: str, out: str, gop: int) -> str:
    """`path` re-encoded losslessly (x264 qp 0 from its decoded YUV frames) with a key frame every `gop` frames."""
    import av

    with av.open(path) as source, av.open(out, "w") as target:
        stream_in = source.streams.video[0]
        rate = stream_in.average_rate or 30
        stream = target.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = stream_in.width, stream_in.height, "yuv420p"
        stream.options = {"qp": "0", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for index, frame in enumerate(source.decode(stream_in)):
            frame.pts, frame.time_base = index, 1 / rate
            target.mux(stream.encode(frame))
        target.mux(stream.encode())
    return out


def moved_samples(paths: list[str], num_frames: int) -> tuple[int, int]:
    """(sampled frames the mode moves to a key frame, videos with one or more moved)."""
    from xclip_hf.video.reader import VideoFile
    from xclip_hf.video.sampling import snap_to_key_frames, sparse_sample_indices

    moved = videos = 0
    for path in paths:
        with VideoFile(path, backend="pyav") as video:
            indices = sparse_sample_indices(video.num_frames, num_frames)
            changed = int((snap_to_key_frames(indices, video.key_frames) != indices).sum())
        moved, videos = moved + changed, videos + (changed > 0)
    return moved, videos


def score(pipe, paths: list[str], names: list[str], mode: str) -> tuple[np.ndarray, float]:
    """Top-1 class ids of `paths` with the processor's decode mode set to `mode`, and the seconds it took."""
    from xclip_hf.evaluation import score_videos

    pipe.video_processor.decode_mode = mode
    start = time.perf_counter()
    scored = score_videos(pipe, paths, names, batch_size=16, on_bad_video="raise", progress=False)
    return scored.scores.argmax(1), time.perf_counter() - start


def full_decode(path: str) -> np.ndarray:
    """Every frame of `path` as RGB, decoded in order (the oracle of the re-encoding check)."""
    import av

    with av.open(path) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-dir", required=True, help="output folder of examples/demo.py")
    parser.add_argument("--gops", nargs="+", type=int, default=[0, 8, 4],
                        help="key-frame intervals of the re-encoded sets (0: the demo's files as they are)")
    args = parser.parse_args(argv)
    from xclip_hf.evaluation import build_pipeline

    paths, labels, names = read_split(os.path.join(args.demo_dir, "data"))
    pipe = build_pipeline(os.path.join(args.demo_dir, "xclip"))
    num_frames = pipe.model.config.vision_config.num_frames
    print(f"{len(paths)} held-out videos, {num_frames} frames sampled each, load {os.getloadavg()[0]:.1f}")
    print("| files | sampled frames moved (videos) | top-1 exact | top-1 keyframes | top-1 changed (videos) | "
          "s exact / keyframes |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for gop in args.gops:
            if gop:
                files = [reencode(p, os.path.join(work, f"g{gop}_{i}.mp4"), gop) for i, p in enumerate(paths)]
                same = all(np.array_equal(full_decode(a), full_decode(b)) for a, b in zip(paths, files))
                name = f"key frame every {gop}" + ("" if same else " (NOT the same pixels)")
            else:
                files, name = paths, "as written (x264 default GOP)"
            moved, videos = moved_samples(files, num_frames)
            exact, exact_s = score(pipe, files, names, "exact")
            keyframes, keyframes_s = score(pipe, files, names, "keyframes")
            print(f"| {name} | {moved} of {num_frames * len(files)} ({videos}) | {100 * np.mean(exact == labels):.2f}% | "
                  f"{100 * np.mean(keyframes == labels):.2f}% | {int((exact != keyframes).sum())} | "
                  f"{exact_s:.1f} / {keyframes_s:.1f} |", flush=True)
    pipe.video_processor.decode_mode = "exact"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
