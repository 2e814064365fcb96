"""CPU deployment: torch fp32 vs ONNX Runtime fp32 / int8 vs OpenVINO fp32 / int8, on random B/32-8f weights.

The model is built here (random weights, a throw-away tokenizer), exported with `xclip_hf.deploy.export_onnx` and
quantised with `quantize_export` (per-channel int8 weights, the default, and per-tensor) and with
`quantize_static_export` (static int8, "int8s" columns: calibrated on synthetic videos written here and read through
the model's processor); every engine then runs the same inputs
through the same model surface (`ExportedXClipModel` / `XClipModel`), alternately in each round so that machine
noise hits every column alike. Rows: the video tower (a batch of videos), the text tower (a label set), the head
(prompt generator + scaled cosine, videos x labels) and a zero-shot step (video tower + head with cached labels,
what the pipeline runs per batch). Then the accuracy cost on these random weights, on other synthetic videos than the
calibration ones: cosine of int8 vs fp32 video and text embeddings (min and median), the logit differences (max, mean)
and top-1 agreement on random (video, label subset) pairs (near-ties on random weights: a trained model's figures are
in README). Usage:

    HF_HUB_OFFLINE=1 python benchmarks/bench_onnx.py [--variant xclip-base-patch32] [--frames 8] [--batch 4]
        [--labels 400] [--rounds 5] [--engines torch ort ort-int8 ort-int8pt ov ov-int8 ort-int8s ov-int8s]
        [--calibration-size 16] [--keep DIR]
"""

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from xclip_hf import XClipConfig, XClipModel
from xclip_hf.models.loading import load_model_and_processor

ENGINES = {  # column -> (export folder, runtime)
    "torch": (None, "torch"),
    "ort": ("fp32", "onnxruntime"),
    "ort-int8": ("int8", "onnxruntime"),  # per-channel int8 weights (the default of --quantize int8)
    "ort-int8pt": ("int8pt", "onnxruntime"),  # per-tensor int8 weights
    "ov": ("fp32", "openvino"),
    "ov-int8": ("int8", "openvino"),
    "ort-int8s": ("int8s", "onnxruntime"),  # static int8 (--quantize int8-static): the video graph calibrated
    "ov-int8s": ("int8s", "openvino"),
}


def build_model(args, folder):
    """Random B/32 weights + a processor (throw-away tokenizer) saved to `folder`."""
    from xclip_hf.data.tokenizer import build_clip_tokenizer
    from xclip_hf.models.processing_xclip import XClipProcessor
    from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

    torch.manual_seed(0)
    config = XClipConfig.from_variant(args.variant, num_frames=args.frames)
    XClipModel(config).eval().save_pretrained(folder)
    size = config.vision_config.image_size
    tokenizer = build_clip_tokenizer(["a video of people doing things outdoors and indoors"] * 4, vocab_size=600)
    video_processor = XClipVideoProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                          num_frames=args.frames)
    XClipProcessor(video_processor=video_processor, tokenizer=tokenizer).save_pretrained(folder)
    return config


def write_synthetic_videos(folder, count, seed, size=256, num_frames=32):
    """`count` synthetic motion videos (mp4) in `folder`, classes in turn; returns their paths."""
    from xclip_hf.data.synthetic import SYNTHETIC_CLASSES, render_video
    from xclip_hf.data.video_writer import write_video

    os.makedirs(folder, exist_ok=True)
    rng, classes = np.random.default_rng(seed), sorted(SYNTHETIC_CLASSES)
    return [write_video(os.path.join(folder, f"v{i:03d}.mp4"),
                        render_video(classes[i % len(classes)], rng, size=size, num_frames=num_frames))
            for i in range(count)]


def export_all(source, root, needed, calibration_size=16):
    from xclip_hf.deploy import export_onnx, is_export_dir, quantize_export
    from xclip_hf.deploy.static import quantize_static_export

    folders = {name: os.path.join(root, name) for name in ("fp32", "int8", "int8pt", "int8s")
               if is_export_dir(os.path.join(root, name))}  # a --keep folder of an earlier run: reused
    start = time.perf_counter()
    if "fp32" not in folders:
        folders["fp32"] = export_onnx(source, os.path.join(root, "fp32"))
        print(f"export fp32: {time.perf_counter() - start:.0f} s", flush=True)
    for name, per_channel in (("int8", True), ("int8pt", False)):
        if name in needed and name not in folders:
            start = time.perf_counter()
            folders[name] = quantize_export(folders["fp32"], os.path.join(root, name), per_channel=per_channel)
            print(f"quantise {name}: {time.perf_counter() - start:.0f} s", flush=True)
    if "int8s" in needed and "int8s" not in folders:
        calibration = os.path.join(root, "calibration")
        write_synthetic_videos(calibration, calibration_size, seed=1)
        start = time.perf_counter()
        folders["int8s"] = quantize_static_export(folders["fp32"], os.path.join(root, "int8s"), calibration,
                                                  calibration_size=calibration_size)
        print(f"quantise int8s (static, {calibration_size} videos): {time.perf_counter() - start:.0f} s", flush=True)
    for name, folder in folders.items():
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.endswith(".onnx"))
        print(f"  {name}: {size / 1e6:.0f} MB of graphs", flush=True)
    return folders


def timed(fn):
    start = time.perf_counter()
    with torch.inference_mode():
        fn()
    return time.perf_counter() - start


def workloads(model, pixels, ids, mask, text, video):
    """name -> (callable, items per call) for one engine."""
    return {
        "video tower": lambda: model.get_video_features(pixels),
        "text tower": lambda: model.get_text_features(input_ids=ids, attention_mask=mask),
        "head": lambda: model.video_text_logits(video.video_embeds, video.video_context, text),
        "zero-shot step": lambda: model(pixel_values=pixels, text_embeds=text),
    }


def label_subsets(count, videos, labels, generator):
    """`count` (video index, label indices) pairs: a random video and a random subset of 2..labels labels."""
    pairs = []
    for _ in range(count):
        video = int(torch.randint(videos, (1,), generator=generator))
        k = int(torch.randint(2, labels + 1, (1,), generator=generator))
        pairs.append((video, torch.randperm(labels, generator=generator)[:k]))
    return pairs


def pair_top1(logits, pairs):
    """The top label of each (video, label subset) pair from the full logits (videos, labels)."""
    return [int(subset[logits[video, subset].argmax()]) for video, subset in pairs]


def gemm_peak(rounds, m=1600, k=768, n=3072):
    """ONNX Runtime's float32 MatMul vs int8 MatMulInteger (u8 x s8) on one (m, k) x (k, n) product: GOP/s each.

    The default shape is the MLP's first Linear of B/32 on a batch of 4 8-frame videos (4 x 8 x 50 tokens).
    """
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graphs = {
        "float32 MatMul": (helper.make_node("MatMul", ["a", "b"], ["y"]), TensorProto.FLOAT, TensorProto.FLOAT,
                           rng.standard_normal((m, k), dtype=np.float32),
                           rng.standard_normal((k, n), dtype=np.float32)),
        "int8 MatMulInteger": (helper.make_node("MatMulInteger", ["a", "b"], ["y"]), TensorProto.UINT8,
                               TensorProto.INT32, rng.integers(0, 256, (m, k), dtype=np.uint8),
                               rng.integers(-128, 128, (k, n), dtype=np.int8)),
    }
    rates = {}
    for name, (node, in_type, out_type, a, weight) in graphs.items():
        graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("a", in_type, [m, k])],
                                  [helper.make_tensor_value_info("y", out_type, [m, n])],
                                  [numpy_helper.from_array(weight, "b")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        session.run(None, {"a": a})
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            session.run(None, {"a": a})
            times.append(time.perf_counter() - start)
        rates[name] = 2 * m * k * n / statistics.median(times) / 1e9
    first = next(iter(rates.values()))
    print(f"\nGEMM peak, ONNX Runtime, ({m}, {k}) x ({k}, {n}), {rounds} rounds (median): "
          + ", ".join(f"{name} {rate:.0f} GOP/s ({rate / first:.2f}x)" for name, rate in rates.items()), flush=True)


def cosine_stats(a, b):
    cos = torch.nn.functional.cosine_similarity(a.flatten(1).double(), b.flatten(1).double(), dim=-1)
    return float(cos.min()), float(cos.median())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="xclip-base-patch32")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4, help="videos per call")
    parser.add_argument("--labels", type=int, default=400, help="labels of the text tower / head rows")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--accuracy-videos", type=int, default=16, help="synthetic videos for the accuracy rows")
    parser.add_argument("--pairs", type=int, default=256, help="(video, label subset) pairs for top-1 agreement")
    parser.add_argument("--calibration-size", type=int, default=16, help="videos calibrating the int8s export")
    parser.add_argument("--engines", nargs="+", default=["torch", "ort", "ort-int8", "ort-int8pt", "ov", "ov-int8",
                                                          "ort-int8s", "ov-int8s"], choices=list(ENGINES))
    parser.add_argument("--keep", default=None, help="write the model and exports here (default: a temp folder)")
    args = parser.parse_args()

    root = args.keep or tempfile.mkdtemp(prefix="bench-onnx-")
    source = os.path.join(root, "torch")
    config = build_model(args, source) if not os.path.isdir(source) else XClipConfig.from_pretrained(source)
    folders = export_all(source, root, {ENGINES[e][0] for e in args.engines}, args.calibration_size)
    models = {}
    for engine in args.engines:
        folder, runtime = ENGINES[engine]
        models[engine] = load_model_and_processor(source if folder is None else folders[folder], runtime=runtime).model

    g = torch.Generator().manual_seed(0)
    size, vocab = config.vision_config.image_size, config.text_config.vocab_size
    pixels = torch.randn(args.batch, args.frames, 3, size, size, generator=g)
    ids = torch.randint(1, vocab - 1, (args.labels, 12), generator=g)
    ids[:, -1] = vocab - 1  # end-of-text: the highest id
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        reference = models[args.engines[0]]
        text = reference.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        video = reference.get_video_features(pixels)
    runs = {engine: workloads(model, pixels, ids, mask, text, video) for engine, model in models.items()}
    per_call = {"video tower": (args.batch, "videos/s"), "text tower": (args.labels, "labels/s"),
                "head": (args.batch, f"videos/s x {args.labels} labels"),
                "zero-shot step": (args.batch, f"videos/s, {args.labels} cached labels")}

    print(f"\n{args.variant} {args.frames}f, batch {args.batch}, {args.labels} labels, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs, {args.rounds} rounds (median)")
    first = args.engines[0]
    ratio_names = [f"{e}/{first}" for e in args.engines[1:]]
    header = f"{'':<15}" + "".join(f"{e:>11}" for e in args.engines) + "".join(f"{r:>{len(r) + 2}}" for r in ratio_names)
    print(header)
    for row, (count, unit) in per_call.items():
        for engine in args.engines:  # warm-up (first-call allocations, OpenVINO shape specialisation)
            timed(runs[engine][row])
        times = {engine: [] for engine in args.engines}
        for _ in range(args.rounds):
            for engine in args.engines:
                times[engine].append(timed(runs[engine][row]))
        rate = {e: count / statistics.median(ts) for e, ts in times.items()}
        line = f"{row:<15}" + "".join(f"{rate[e]:11.2f}" for e in args.engines)
        line += "".join(f"{rate[e] / rate[first]:{len(r) + 2}.2f}" for e, r in zip(args.engines[1:], ratio_names))
        print(f"{line}   ({unit})", flush=True)

    gemm_peak(max(args.rounds, 5) * 4)

    # accuracy cost of int8 on random weights, on processed synthetic videos (not the calibration ones)
    fp32_engine = next((e for e in args.engines if e in ("torch", "ort", "ov")), None)
    if fp32_engine is None:
        return
    processor = load_model_and_processor(source)[1]
    paths = write_synthetic_videos(os.path.join(root, "accuracy"), args.accuracy_videos, seed=2)
    pixels = processor.video_processor(paths, return_tensors="pt")["pixel_values"]
    subsets = label_subsets(args.pairs, args.accuracy_videos, args.labels, g)
    with torch.inference_mode():
        base = models[fp32_engine]
        base_video = base.get_video_features(pixels)
        base_text = base.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        base_logits = base.video_text_logits(base_video.video_embeds, base_video.video_context, base_text)[0]
        base_top = pair_top1(base_logits, subsets)
        print(f"\naccuracy vs {fp32_engine} ({args.accuracy_videos} synthetic videos, {args.labels} labels; "
              f"cosine min / median; top-1 agreement on {args.pairs} (video, label subset) pairs)")
        for engine in args.engines:
            if engine == fp32_engine:
                continue
            model = models[engine]
            video = model.get_video_features(pixels)
            text_features = model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
            logits = model.video_text_logits(video.video_embeds, video.video_context, text_features)[0]
            v_min, v_med = cosine_stats(video.video_embeds, base_video.video_embeds)
            t_min, t_med = cosine_stats(text_features, base_text)
            diff = (logits - base_logits).abs()
            agree = float(np.mean([a == b for a, b in zip(pair_top1(logits, subsets), base_top)]))
            print(f"  {engine:<11} video {v_min:.5f} / {v_med:.5f}   text {t_min:.5f} / {t_med:.5f}   "
                  f"|logit diff| max {float(diff.max()):.4f} mean {float(diff.mean()):.4f}   top-1 agreement "
                  f"{agree:.3f} (logit scale {float(base.logit_scale.exp()):.1f})", flush=True)


if __name__ == "__main__":
    main()
