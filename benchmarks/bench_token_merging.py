"""Token merging (`token_merging_ratio`): video-tower speed on random B/32-8f weights, held-out top-1 on the demo model.

Speed: the video tower (`XClipVisionModel`, sdpa, batch 4) at each ratio, timed alternately in one run (fp32, then
bf16), `--runs` times; prints the tokens left per layer, videos/s and the speed-up over ratio 0 (median of each
run's rounds; the range over runs). Accuracy (`--demo-dir`, the output folder of `python examples/demo.py`): top-1 of
its trained X-CLIP on the held-out videos through the evaluation code (`xclip-hf evaluate closed-set`) at each ratio.

    HF_HUB_OFFLINE=1 python benchmarks/bench_token_merging.py [--ratios 0 0.1 0.2 0.3] [--runs 2] [--rounds 5]
        [--dtypes fp32 bf16] [--batch 4] [--demo-dir DIR] [--no-speed]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from xclip_hf import XClipConfig
from xclip_hf.models.modeling_xclip import XClipVisionModel
from xclip_hf.models.token_merging import merge_count


def tokens_per_layer(ratio: float, patches: int, layers: int) -> list[int]:
    """Patch tokens per frame entering the first layer, then after each layer."""
    counts = [patches]
    for _ in range(layers):
        counts.append(counts[-1] - merge_count(ratio, counts[-1]))
    return counts


def tower_macs(config, ratio: float) -> int:
    """Multiply-accumulates of one video through the video tower at `ratio` (meta device, eager attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = XClipVisionModel._from_config(config, attn_implementation="eager").eval()
        pixels = torch.zeros(1, config.num_frames, 3, config.image_size, config.image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(pixels, token_merging_ratio=ratio)
    return counter.get_total_flops() // 2


def timed(fn) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call."""
    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        fn()
    return time.perf_counter() - start, time.process_time() - cpu


def speed(args):
    """Videos/s of the video tower per dtype and ratio, alternated, `args.runs` times."""
    config = XClipConfig.from_variant(args.variant, num_frames=args.frames).vision_config
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    fp32 = XClipVisionModel(config).eval()
    patches = (config.image_size // config.patch_size) ** 2
    print(f"{args.variant} {args.frames}f video tower, batch {args.batch}, sdpa, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    macs = {ratio: tower_macs(config, ratio) for ratio in args.ratios}
    for ratio in args.ratios:
        layers = tokens_per_layer(ratio, patches, config.num_hidden_layers)
        print(f"  ratio {ratio}: patch tokens per frame by layer {layers}; {macs[ratio] / 1e9:.1f} GMACs per video "
              f"(bound {macs[args.ratios[0]] / macs[ratio]:.2f}x)")
    pixels = torch.randn(args.batch, args.frames, 3, config.image_size, config.image_size)
    for name in args.dtypes:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
        model = fp32 if dtype == torch.float32 else XClipVisionModel(config).to(dtype).eval()
        if model is not fp32:
            model.load_state_dict(fp32.state_dict())
        x = pixels.to(dtype)
        runs = {ratio: (lambda r=ratio: model(x, token_merging_ratio=r)) for ratio in args.ratios}
        per_run = {ratio: [] for ratio in args.ratios}  # (videos/s by wall clock, CPU seconds per video)
        for run in range(args.runs):
            for fn in runs.values():  # warm-up
                timed(fn)
            times = {ratio: [] for ratio in args.ratios}
            for _ in range(args.rounds):  # alternate so that machine noise hits every ratio alike
                for ratio, fn in runs.items():
                    times[ratio].append(timed(fn))
            for ratio in args.ratios:
                wall, cpu = zip(*times[ratio])
                per_run[ratio].append((args.batch / statistics.median(wall), statistics.median(cpu) / args.batch))
            print(f"  {name} run {run + 1}: " + ", ".join(f"{r}: {per_run[r][-1][0]:.2f} v/s" for r in args.ratios)
                  + f" (load {os.getloadavg()[0]:.1f})", flush=True)
        print(f"{name:>5} {'ratio':>6} {'videos/s':>16} {'x ratio 0 (wall)':>17} {'x ratio 0 (CPU s)':>18}")
        for ratio in args.ratios:
            vps = [v for v, _ in per_run[ratio]]
            wall = [v / base[0] for (v, _), base in zip(per_run[ratio], per_run[args.ratios[0]])]
            cpu = [base[1] / c for (_, c), base in zip(per_run[ratio], per_run[args.ratios[0]])]
            print(f"{'':>5} {ratio:>6} {min(vps):7.2f} - {max(vps):6.2f} {min(wall):8.2f} - {max(wall):5.2f} "
                  f"{min(cpu):9.2f} - {max(cpu):5.2f}")


def accuracy(args):
    """Held-out top-1 of the demo's trained X-CLIP at each ratio (`evaluate_closed_set` over a merging pipeline)."""
    from xclip_hf.evaluation import evaluate_closed_set
    from xclip_hf.pipelines.zero_shot_video_classification import build_pipeline

    model_dir, data = os.path.join(args.demo_dir, "xclip"), os.path.join(args.demo_dir, "data")
    config = XClipConfig.from_pretrained(model_dir).vision_config
    patches = (config.image_size // config.patch_size) ** 2
    print(f"demo model {model_dir}: {config.image_size}x{config.image_size} frames, patch {config.patch_size} -> "
          f"{patches} patch tokens per frame, {config.num_hidden_layers} layers")
    print(f"{'ratio':>6} {'patch tokens by layer':>24} {'top-1':>7} {'same top-1 as 0':>16} {'videos':>7} {'s':>6}")
    first = None
    for ratio in args.ratios:
        start = time.perf_counter()
        report = evaluate_closed_set(build_pipeline(model_dir, token_merging_ratio=ratio),
                                     os.path.join(data, "test.txt"), os.path.join(data, "labels.csv"),
                                     video_root=data, batch_size=16, on_bad_video="raise", progress=False)
        predicted = [p["predicted"] for p in report["results"]["predictions"]]
        first = first or predicted
        same = sum(a == b for a, b in zip(predicted, first)) / len(first)
        layers = tokens_per_layer(ratio, patches, config.num_hidden_layers)
        print(f"{ratio:>6} {str(layers):>24} {report['results']['summary']['top1']:6.2f}% {same:16.1%} "
              f"{len(predicted):>7} {time.perf_counter() - start:6.1f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="xclip-base-patch32")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--demo-dir", default=None, help="output folder of examples/demo.py: held-out top-1 per ratio")
    parser.add_argument("--no-speed", action="store_true", help="skip the B/32 speed table")
    args = parser.parse_args()
    if not args.no_speed:
        speed(args)
    if args.demo_dir:
        accuracy(args)


if __name__ == "__main__":
    main()
