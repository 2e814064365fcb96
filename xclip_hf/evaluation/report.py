"""The evaluation report: `report.json` (figures, settings, model, code version, bad videos) and `report.md`."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from ..jobs.identity import model_fingerprint, short
from ..version import code_version

__all__ = ["model_identity", "code_version", "paper_figure", "build_report", "write_report", "find_paper_figures",
           "PAPER_FIGURES"]

PAPER_FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_figures.json")  # package data

# dataset key -> (table, column) of the paper per protocol
_TABLES = {
    ("closed-set", "kinetics400"): "Tab. 1",
    ("closed-set", "kinetics600"): "Tab. 2",
    ("zero-shot", "hmdb51"): "Tab. 3",
    ("zero-shot", "ucf101"): "Tab. 3",
    ("zero-shot", "kinetics600"): "Tab. 4",
    ("few-shot", "hmdb51"): "Tab. 5",
    ("few-shot", "ucf101"): "Tab. 5",
}


def model_identity(model, source=None) -> dict:
    """Source, variant, frames and the whole model's fingerprint (`jobs.identity`) for the report."""
    config = model.config
    variant = config.variant_name() if hasattr(config, "variant_name") else None
    return {"source": None if source is None or not isinstance(source, (str, os.PathLike)) else os.fspath(source),
            "variant": variant, "num_frames": int(config.vision_config.num_frames),
            "fingerprint": model_fingerprint(model, whole=True)}


def find_paper_figures(path=None) -> dict:
    """The paper's tables (`paper_figures.json`) from `path`, or the copy shipped with the package."""
    path = PAPER_FIGURES if path is None else os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the paper's figures {path!r}: {type(err).__name__}: {err}") from err


def _paper_method(variant: str | None) -> str | None:
    """'xclip-base-patch32' -> 'X-CLIP-B/32' (the paper's row name)."""
    if not variant or not variant.startswith("xclip-") or "patch" not in variant:
        return None
    size, patch = variant[len("xclip-"):].split("-patch")
    if not size or size[0] not in "bl" or not patch.isdigit():
        return None
    return f"X-CLIP-{size[0].upper()}/{patch}"


def paper_figure(figures: dict | None, protocol: str, dataset: str | None, model: dict, shots: int | None = None) -> dict | None:
    """The paper's figures for (protocol, dataset, variant, frames): {"table", "top1", "top5", "top1_std", ...} or None."""
    table_name = _TABLES.get((protocol, dataset))
    method = _paper_method(model.get("variant"))
    if figures is None or table_name is None or method is None:
        return None
    table = figures["tables"][table_name]
    columns = table["columns"]
    for row in table["rows"]:
        entry = dict(zip(columns, row))
        if entry["method"] != method:
            continue
        if "frames" in entry and entry["frames"] != model.get("num_frames"):
            continue
        if "pretrain" in entry and entry["pretrain"] != "CLIP-400M":
            continue
        if protocol == "zero-shot" and dataset in ("hmdb51", "ucf101"):
            return {"table": table_name, "top1": entry[f"{dataset}_top1"], "top1_std": entry[f"{dataset}_std"]}
        if protocol == "few-shot":
            if entry["dataset"] != dataset or shots is None or f"k{shots}" not in entry:
                continue
            return {"table": table_name, "top1": entry[f"k{shots}"]}
        return {"table": table_name, **{k: entry[k] for k in ("top1", "top5", "top1_std", "top5_std", "views") if k in entry}}
    return None


def build_report(protocol: str, settings: dict, model: dict, results: dict, bad_videos: list[dict],
                 paper: dict | None = None) -> dict:
    """The report as a JSON-able dict."""
    return {"protocol": protocol, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "code_version": code_version(), "model": model, "settings": settings, "results": results,
            "paper": paper, "bad_videos": {"count": len(bad_videos), "videos": bad_videos}}


def _fmt(value, std=None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" + (f" ± {std:.1f}" if std is not None else "")


def _rows(report: dict) -> list[tuple[str, str, str]]:
    """(figure, measured, paper) rows of the headline table."""
    results, paper = report["results"], report.get("paper") or {}
    rows = []
    summary = results.get("summary", results)
    for metric in ("top1", "top5"):
        if metric in summary:
            value = summary[metric]
            measured = _fmt(value["mean"], value["std"]) if isinstance(value, dict) else _fmt(value)
            rows.append((f"top-{metric[3:]} (%)", measured, _fmt(paper.get(metric), paper.get(f"{metric}_std"))))
    for metric, label in (("mean_class_accuracy", "mean class accuracy (%)"), ("frame_accuracy", "frame accuracy (%)")):
        if summary.get(metric) is not None:
            rows.append((label, _fmt(summary[metric]), "-"))
    for metric, value in summary.items():
        if metric.startswith(("t2v_", "v2t_", "mAP@")) and isinstance(value, (int, float)):
            rows.append((metric, f"{value:.2f}" if "rank" in metric else _fmt(value), "-"))
    return rows


def to_markdown(report: dict) -> str:
    """report.md: the settings, the headline table (measured beside the paper), per-split rows, bad videos."""
    model, settings = report["model"], report["settings"]
    lines = [f"# xclip-hf evaluate: {report['protocol']}", "",
             f"- model: `{model.get('source')}` (variant {model.get('variant') or 'custom'}, {model.get('num_frames')} frames, "
             f"fingerprint `{short(model.get('fingerprint'))}`)",
             f"- code: xclip_hf {report['code_version']['xclip_hf']} ({report['code_version']['git'] or 'no git'})",
             "- settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if not isinstance(v, (list, dict))), ""]
    paper = report.get("paper")
    lines += ["| figure | measured | paper" + (f" ({paper['table']})" if paper else "") + " |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in _rows(report)]
    splits = report["results"].get("splits")
    if splits:
        lines += ["", "| split | videos | top-1 (%) | top-5 (%) |", "|---|---|---|---|"]
        lines += [f"| {name} | {r['num_videos']} | {_fmt(r.get('top1'))} | {_fmt(r.get('top5'))} |" for name, r in splits.items()]
    bad = report["bad_videos"]
    lines += ["", f"Bad videos (skipped): {bad['count']}"]
    lines += [f"- `{item['video']}`: {item['error']}" for item in bad["videos"][:50]]
    if bad["count"] > 50:
        lines.append(f"- ... {bad['count'] - 50} more in report.json")
    return "\n".join(lines) + "\n"


def write_report(output_dir: str, report: dict) -> dict:
    """Write report.json and report.md into `output_dir` (main process only); returns their paths."""
    from .predictions import is_main_process

    paths = {"json": os.path.join(output_dir, "report.json"), "md": os.path.join(output_dir, "report.md")}
    if not is_main_process():
        return paths
    os.makedirs(output_dir, exist_ok=True)
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, sort_keys=False)
        f.write("\n")
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(to_markdown(report))
    return paths
