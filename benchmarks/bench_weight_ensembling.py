"""Weight-space ensembling (`XClipModel.interpolate_weights`): held-out top-1 of the demo's trained models per alpha.

The demo (`examples/demo.py`) trains from random weights, not from CLIP, so its theta_CLIP is the random initial
weights of the CLIP-shaped parameters: rebuilt here as the demo's training script built them (`build_model` of
`xclip_hf.training.run_video_classification` after `set_seed(seed)`, the same variant, overrides and sin-cos position
init), checked by a property the trained model still carries (its frozen text encoder must equal the rebuilt one bit
for bit, and must not equal another seed's), and saved as a transformers CLIPModel (`extract_clip`): the CLIP source.
Each alpha then blends the trained model with it and scores the 132 held-out videos through the evaluation code
(`evaluate_closed_set`, 1 view, as the demo does).

    HF_HUB_OFFLINE=1 python benchmarks/bench_weight_ensembling.py [--demo-dir demo_output]
        [--alphas 0 0.25 0.5 0.75 1] [--models xclip clip_mean] [--save-clip DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))

from demo import CLIP_MEAN_OVERRIDES, MODEL_OVERRIDES  # noqa: E402  (the demo's own settings)

OVERRIDES = {"xclip": MODEL_OVERRIDES, "clip_mean": f"{MODEL_OVERRIDES},{CLIP_MEAN_OVERRIDES}"}


def initial_model(demo_dir: str, overrides: str, seed: int):
    """The classifier as the demo's training run built it before its first step (seeded, from the variant)."""
    from transformers import AutoTokenizer, set_seed

    from xclip_hf.data.annotations import read_labels_file
    from xclip_hf.training.run_video_classification import ModelArguments, build_model

    tokenizer = AutoTokenizer.from_pretrained(os.path.join(demo_dir, "tokenizer"))
    class_names = read_labels_file(os.path.join(demo_dir, "data", "labels.csv"))
    set_seed(seed)  # run_video_classification.main: set_seed, then (no torch draws) the model
    args = ModelArguments(model_variant="xclip-tiny", config_overrides=overrides, position_init="sincos",
                          freeze_text_encoder=True)
    return build_model(args, class_names, tokenizer)


def check_initial_weights(model_dir: str, init, other) -> dict:
    """Frozen (text-encoder) tensors of the trained model equal to the rebuilt init, bit for bit, among those a
    different seed changes; and the median centred cosine of each trained vision CLIP weight with its init."""
    from safetensors.torch import load_file

    trained = load_file(os.path.join(model_dir, "model.safetensors"))
    init_p, other_p = dict(init.named_parameters()), dict(other.named_parameters())
    frozen = [n for n, p in init_p.items() if not p.requires_grad]
    seeded = [n for n in frozen if not torch.equal(init_p[n], other_p[n])]  # drawn from the RNG, not constants
    new = init.new_parameter_names()
    vision = [n for n in init_p if n not in new and n not in frozen and init_p[n].numel() > 1
              and not torch.equal(init_p[n], other_p[n])]

    def cosine(a, b):
        a, b = a.detach().flatten().double(), b.detach().flatten().double()
        return float(torch.nn.functional.cosine_similarity(a - a.mean(), b - b.mean(), dim=0))

    return {"frozen": len(frozen), "seeded": len(seeded),
            "equal": sum(torch.equal(init_p[n], trained[n]) for n in seeded),
            "equal_other_seed": sum(torch.equal(other_p[n], trained[n]) for n in seeded),
            "vision": len(vision),
            "cos": statistics.median(cosine(trained[n], init_p[n]) for n in vision),
            "cos_other_seed": statistics.median(cosine(trained[n], other_p[n]) for n in vision)}


def top1_per_alpha(model_dir: str, clip_dir: str, data: str, alphas) -> list[dict]:
    """Held-out top-1 of the trained model blended with the CLIP source at each alpha (evaluation code, 1 view)."""
    from xclip_hf.evaluation import evaluate_closed_set
    from xclip_hf.models.loading import load_model
    from xclip_hf.pipelines.zero_shot_video_classification import build_pipeline

    rows = []
    for alpha in alphas:
        start = time.perf_counter()
        model = load_model(model_dir).interpolate_weights(clip_dir, alpha)
        report = evaluate_closed_set(build_pipeline(model), os.path.join(data, "test.txt"),
                                     os.path.join(data, "labels.csv"), video_root=data, batch_size=16,
                                     on_bad_video="raise", progress=False)
        matrix = torch.tensor(report["results"]["confusion_matrix"])
        pairs = [float((matrix[i, i] + matrix[i + 1, i + 1]) / matrix[i:i + 2].sum()) for i in range(0, len(matrix), 2)]
        rows.append({"alpha": alpha, "top1": report["results"]["summary"]["top1"], "pairs": pairs,
                     "videos": int(matrix.sum()), "seconds": time.perf_counter() - start})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", default="demo_output", help="output folder of examples/demo.py")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--models", nargs="+", default=["xclip", "clip_mean"], choices=sorted(OVERRIDES))
    parser.add_argument("--save-clip", default=None, help="folder for the rebuilt initial CLIP(s), one per model "
                                                          "(default: a temporary folder)")
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    from xclip_hf.models.weight_ensembling import extract_clip

    hf_logging.disable_progress_bar()  # one loading bar per alpha otherwise

    seed = json.load(open(os.path.join(args.demo_dir, "results.json")))["seed"]
    data = os.path.join(args.demo_dir, "data")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model_dir = os.path.join(args.demo_dir, name)
            init = initial_model(args.demo_dir, OVERRIDES[name], seed)
            check = check_initial_weights(model_dir, init, initial_model(args.demo_dir, OVERRIDES[name], seed + 1))
            print(f"\n[{name}] {model_dir}: theta_CLIP = its initial weights (seed {seed}, rebuilt). Frozen text "
                  f"tensors drawn from the seed: {check['equal']} of {check['seeded']} equal the trained model's bit "
                  f"for bit ({check['equal_other_seed']} with seed {seed + 1}); trained vision CLIP weights vs init: "
                  f"median centred cosine {check['cos']:.3f} over {check['vision']} tensors "
                  f"({check['cos_other_seed']:.3f} vs seed {seed + 1}'s)", flush=True)
            if check["equal"] != check["seeded"] or check["seeded"] == 0:
                sys.exit(f"{model_dir}: the rebuilt initial weights are not the demo's; the table would be wrong")
            clip_dir = os.path.join(args.save_clip or tmp, f"{name}_init_clip")
            extract_clip(init.xclip).save_pretrained(clip_dir)
            print(f"  CLIP source: {clip_dir}")
            print(f"  {'alpha':>5}  {'top-1':>7}  {'left/right':>10}  {'grow/shrink':>11}  {'appear/disappear':>16}  "
                  f"{'videos':>6}  {'s':>5}")
            for row in top1_per_alpha(model_dir, clip_dir, data, args.alphas):
                left, grow, appear = row["pairs"]
                print(f"  {row['alpha']:>5}  {row['top1']:6.2f}%  {left:10.1%}  {grow:11.1%}  {appear:16.1%}  "
                      f"{row['videos']:>6}  {row['seconds']:5.1f}", flush=True)


if __name__ == "__main__":
    main()
