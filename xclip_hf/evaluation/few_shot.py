"""Few-shot protocol, paper Sec. 4.3: seeded K-shot lists, their training commands, and top-1 on split 1 (one view)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from .closed_set import read_annotations
from .labels import resolve_labels
from .options import EvaluationOptions, check_unused, evaluation_options

__all__ = ["write_k_shot_lists", "training_command", "prepare_few_shot", "run_training", "evaluate_few_shot"]

TRAINING_MODULE = "xclip_hf.training.run_video_classification"
PAPER_HYPERPARAMETERS = {"per_device_train_batch_size": 64, "learning_rate": 2e-6, "num_train_epochs": 50}


def write_k_shot_lists(train_file, labels, ks, output_dir, seed: int = 0, video_root=None) -> dict[int, str]:
    """One annotation file per K (`train_{K}shot_seed{S}.txt`, exactly K videos per class); returns {K: path}."""
    class_names, _ = resolve_labels(labels)
    videos, refs = read_annotations(train_file, class_names, video_root)
    from ..data.few_shot import sample_k_shot

    os.makedirs(output_dir, exist_ok=True)
    lists = {}
    for k in ks:
        keep = sample_k_shot(refs, int(k), seed=seed, label_names=class_names)
        path = os.path.join(output_dir, f"train_{int(k)}shot_seed{seed}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{videos[i]} {refs[i]}\n" for i in keep)
        lists[int(k)] = path
    return lists


def training_command(train_list: str, val_file, labels_file: str, output_dir: str, init_args: list[str],
                     seed: int = 0, script: str | None = None, extra_args: list[str] = ()) -> list[str]:
    """The argv that fine-tunes on one K-shot list with the paper's few-shot recipe (supplementary Tab. 1)."""
    program = ["-m", TRAINING_MODULE] if script is None else [os.path.abspath(os.fspath(script))]
    hp = PAPER_HYPERPARAMETERS
    return [sys.executable, *program, *init_args, "--train_file", train_list, "--validation_file", os.fspath(val_file),
            "--labels_file", labels_file, "--output_dir", output_dir, "--do_train", "--do_eval",
            "--per_device_train_batch_size", str(hp["per_device_train_batch_size"]),
            "--learning_rate", str(hp["learning_rate"]), "--num_train_epochs", str(hp["num_train_epochs"]),
            "--num_temporal_clips", "1", "--num_spatial_crops", "1", "--save_strategy", "no", "--report_to", "none",
            "--seed", str(seed), "--data_seed", str(seed), *extra_args]


def prepare_few_shot(train_file, val_file, labels, ks, output_dir, init_args: list[str], seed: int = 0,
                     video_root=None, script: str | None = None, extra_args: list[str] = ()) -> dict:
    """Write the K-shot lists, a labels csv and `commands.sh`; returns {"lists", "commands", "models", "script"}."""
    from .labels import label_list_path

    class_names, key = resolve_labels(labels)
    lists = write_k_shot_lists(train_file, class_names, ks, output_dir, seed, video_root)
    labels_file = label_list_path(key) if key else os.path.abspath(os.fspath(labels))
    models = {k: os.path.join(output_dir, f"model_{k}shot_seed{seed}") for k in lists}
    commands = {k: training_command(lists[k], val_file, labels_file, models[k], init_args, seed, script, extra_args)
                for k in lists}
    script_path = os.path.join(output_dir, "commands.sh")
    with open(script_path, "w", encoding="utf-8") as f:
        f.write("#!/bin/sh\n# few-shot training, one model per K (paper supplementary Tab. 1 hyperparameters)\nset -e\n")
        f.writelines(" ".join(shlex.quote(a) for a in cmd) + "\n" for cmd in commands.values())
    return {"lists": lists, "commands": commands, "models": models, "script": script_path}


def run_training(commands: dict) -> None:
    """Run the training commands one after the other (a failure names the K)."""
    for k, cmd in commands.items():
        status = subprocess.run(cmd).returncode
        if status != 0:
            raise RuntimeError(f"few-shot training for K={k} failed (exit {status}): {' '.join(map(shlex.quote, cmd))}")


def evaluate_few_shot(models: dict, eval_file, labels, *, settings: dict | None = None,
                      options: EvaluationOptions | None = None, **overrides) -> dict:
    """Top-1 of each K-shot model on `eval_file` (split 1, one view by default), beside the paper's.

    `options` / `overrides`: the shared `EvaluationOptions` (`processor`: each model's own). With `output_dir`,
    resumable through `output_dir/predictions/{K}shot`.
    """
    from .closed_set import evaluate_classification, scoring_options
    from .predictions import predictions_dir
    from .report import build_report, find_paper_figures, model_identity, paper_figure, write_report
    from .runner import build_pipeline

    o = evaluation_options(options, overrides)
    check_unused(o, "few-shot", ("processor",), "each K-shot model is loaded with its own processor")
    class_names, key = resolve_labels(labels)
    dataset = o.dataset or key
    videos, refs = read_annotations(eval_file, class_names, o.video_root)
    figures = find_paper_figures(o.paper_figures)
    per_k, bad, identity = {}, {}, None
    for k, model in sorted(models.items()):
        pipe = build_pipeline(model, device=o.device, dtype=o.dtype)
        job = {"protocol": "few-shot", "data_file": os.path.abspath(eval_file)}
        out = evaluate_classification(pipe, videos, refs, class_names,
                                      **scoring_options(o, predictions_dir(o.output_dir, f"{k}shot"), job))
        identity = model_identity(pipe.model, model if isinstance(model, (str, os.PathLike)) else None)
        paper = paper_figure(figures, "few-shot", dataset, identity, shots=int(k))
        per_k[f"K={k}"] = {"top1": out["figures"]["top1"], "num_videos": out["figures"]["num_videos"],
                           "paper_top1": paper["top1"] if paper else None, "model": identity["source"]}
        bad.update({b["video"]: b for b in out["bad_videos"]})
    results = {"splits": per_k, "summary": {}}
    settings = {"eval_file": os.fspath(eval_file), "dataset": dataset,
                "views": f"{o.num_temporal_clips}x{o.num_spatial_crops}", "template": o.template, **(settings or {})}
    report = build_report("few-shot", settings, identity, results, list(bad.values()))
    if o.output_dir is not None:
        report["files"] = write_report(o.output_dir, report)
    return report
