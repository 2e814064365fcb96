#!/usr/bin/env python
"""Peak memory and step time of one training step: full fine-tuning vs a frozen text branch (paper Tab. 7).

X-CLIP-B/32 with 8 frames, 400 classes (Kinetics-400 size), batch 2, AdamW over the paper's parameter groups.
"full": every parameter trains, so the text encoder runs forward and backward over all 400 class names at every
step and keeps gradients and AdamW states. "frozen": `model.freeze_text_encoder()`; the class-text features are
computed once and cached, only the video encoder, MIT and the prompt generator train. The paper reports 22G ->
6G of CUDA memory for this switch (Tab. 7, 0.27x); the goal here is <= 0.35x.

Both modes run in one invocation, each in a fresh subprocess so that their peaks do not mix. Memory is
`torch.cuda.max_memory_allocated` on GPU; on CPU it is the peak resident memory of the process above what it
held before the model was built (so parameters, gradients, optimizer states and activations, but not the
Python / torch libraries). Weights are random (nothing is downloaded); class names are made-up 1-5 word labels
with a locally trained CLIP-style BPE tokenizer, padded to the longest name as the classifier does.

    python benchmarks/bench_train_memory.py            # CPU: about 2 minutes on 2 cores
    python benchmarks/bench_train_memory.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import time

WORDS = ("playing riding making throwing cleaning doing climbing dancing eating cooking washing kicking swimming "
         "jumping running skiing surfing golf guitar piano drums ball rope horse bike car dishes hair dog tree wall "
         "rock ice snow water fire paper cards juggling tennis baseball").split()


def class_names(num_classes: int, seed: int = 0) -> list[str]:
    """Distinct made-up action labels of 1-5 words (Kinetics-like lengths)."""
    import random

    rng, names = random.Random(seed), set()
    while len(names) < num_classes:
        names.add(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5))))
    return sorted(names)


def _rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(mode: str, args: argparse.Namespace) -> dict:
    """Build the model, run warm-up + timed training steps in `mode`; returns peak memory and step time."""
    import torch

    from xclip_hf import XClipConfig, XClipForVideoClassification
    from xclip_hf.data.tokenizer import build_clip_tokenizer
    from xclip_hf.training import xclip_param_groups

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = class_names(args.num_classes)
    tokenizer = build_clip_tokenizer(names)
    config = XClipConfig.from_variant(args.variant, num_frames=args.num_frames)
    config.id2label = dict(enumerate(names))
    baseline = torch.cuda.memory_allocated(device) if device.type == "cuda" else _rss_bytes()
    model = XClipForVideoClassification(config).to(device)
    model.set_class_texts(tokenizer)
    if mode == "full-77":  # the original code runs the text encoder over CLIP's whole 77-token context; under the
        model.class_attention_mask.fill_(1)  # causal mask the pads after end-of-text leave the features unchanged
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if mode == "frozen":
        model.freeze_text_encoder()
    model.train()
    optimizer = torch.optim.AdamW(xclip_param_groups(model, 8e-6, 0.001), betas=(0.9, 0.98))
    size = config.vision_config.image_size
    pixel_values = torch.randn(args.batch_size, args.num_frames, 3, size, size, device=device)
    labels = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    times = []
    for step in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        loss = model(pixel_values=pixel_values, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    text_tokens = int(model.class_attention_mask.sum(dim=1).max())
    return {"mode": mode, "peak_bytes": int(peak), "step_seconds": sum(times) / len(times), "loss": loss.item(),
            "trainable_params": trainable, "class_text_length": text_tokens}


def _worker(mode, args, queue):
    queue.put(measure(mode, args))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="xclip-base-patch32")
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--num_classes", type=int, default=400)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after warm-up")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--paper_text_context", action="store_true",
                        help="also measure full fine-tuning with 77-token class texts, as the original code runs them "
                             "(B/32, 400 classes: ~15 GiB and minutes per step on CPU)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    context = mp.get_context("spawn")  # a fresh process per mode: separate peaks
    results = {}
    for mode in ("full", "frozen") + (("full-77",) if args.paper_text_context else ()):
        queue = context.Queue()
        process = context.Process(target=_worker, args=(mode, args, queue))
        process.start()
        results[mode] = queue.get()
        process.join()
        if process.exitcode:
            raise RuntimeError(f"the {mode!r} measurement failed with exit code {process.exitcode}")

    full, frozen = results["full"], results["frozen"]
    print(f"{args.variant}-{args.num_frames}f, {args.num_classes} classes (longest name {full['class_text_length']} "
          f"tokens), batch {args.batch_size}, device {args.device}, AdamW, {args.steps} timed steps")
    print(f"{'':26}{'peak memory (GiB)':>18}{'vs full':>9}{'step time (s)':>15}{'vs full':>9}{'trainable (M)':>15}")
    labels = {"full": "full fine-tuning", "frozen": "frozen text, cached", "full-77": "full, 77-token texts"}
    for mode, r in results.items():
        print(f"{labels[mode]:26}{r['peak_bytes'] / 2**30:18.2f}{r['peak_bytes'] / full['peak_bytes']:8.2f}x"
              f"{r['step_seconds']:15.2f}{r['step_seconds'] / full['step_seconds']:8.2f}x{r['trainable_params'] / 1e6:15.1f}")
    ratio = frozen["peak_bytes"] / full["peak_bytes"]
    print(f"goal <= 0.35x peak memory (paper Tab. 7: 22G -> 6G): {'met' if ratio <= 0.35 else 'NOT met'} ({ratio:.2f}x)")
    if "full-77" in results:
        print(f"against full fine-tuning with 77-token texts (the paper's setting): "
              f"{frozen['peak_bytes'] / results['full-77']['peak_bytes']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), **results, "memory_ratio": ratio}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
