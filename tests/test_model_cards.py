"""Model cards (model_cards/*.md): one per published checkpoint, valid front matter, architecture facts that agree
with the variant table, GFLOPs that agree with `count_flops` and with the paper, accuracy figures that are in the
paper, runnable usage examples, and cards that are up to date with model_cards/generate.py."""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from xclip_hf.evaluation.report import PAPER_FIGURES as _PAPER_FIGURES
from xclip_hf.models.configuration_xclip import PUBLISHED_CHECKPOINTS, VARIANTS, XClipConfig

REPO = Path(__file__).resolve().parents[1]
CARD_DIR = REPO / "model_cards"
PAPER_FIGURES = Path(_PAPER_FIGURES)  # the paper's figures the cards quote, transcribed (package data)
REQUIRED_TAGS = {"video-classification", "zero-shot-video-classification", "x-clip", "xclip_hf"}


@functools.cache
def generator():
    """model_cards/generate.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("xclip_model_cards_generate", CARD_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def card_path(hub_id: str) -> Path:
    return CARD_DIR / (hub_id.split("/", 1)[1] + ".md")


@functools.cache
def read_card(hub_id: str) -> tuple[dict, str, str]:
    """(front matter dict, body, full text) of a card."""
    text = card_path(hub_id).read_text(encoding="utf-8")
    match = re.match(r"\A---\n(.*?)\n---\n(.*)\Z", text, re.S)
    assert match, f"{card_path(hub_id)}: no YAML front matter between '---' lines at the top"
    meta = yaml.safe_load(match.group(1))
    assert isinstance(meta, dict), f"{card_path(hub_id)}: front matter is not a mapping"
    return meta, match.group(2), text


def table_value(hub_id: str, key: str) -> str:
    """The value of row `key` of the card's "Model details" table."""
    _, body, _ = read_card(hub_id)
    rows = re.findall(rf"^\| {re.escape(key)} \| (.+?) \|$", body, re.M)
    assert len(rows) == 1, f"{card_path(hub_id)}: expected one table row {key!r}, found {len(rows)}"
    return rows[0]


def card_gflops(hub_id: str) -> float:
    return float(table_value(hub_id, "GFLOPs per view, `xclip_hf.count_flops`"))


@functools.cache
def counted_gflops(variant: str, frames: int) -> float:
    from xclip_hf import count_flops

    return count_flops(XClipConfig.from_variant(variant, num_frames=frames)) / 1e9


ALL = sorted(PUBLISHED_CHECKPOINTS)


def test_one_card_per_published_checkpoint():
    cards = {p.name for p in CARD_DIR.glob("*.md")} - {"README.md"}
    expected = {card_path(h).name for h in PUBLISHED_CHECKPOINTS}
    assert cards == expected, f"missing cards {sorted(expected - cards)}, extra cards {sorted(cards - expected)}"
    index = (CARD_DIR / "README.md").read_text(encoding="utf-8")
    for hub_id in PUBLISHED_CHECKPOINTS:
        assert f"]({card_path(hub_id).name})" in index, f"model_cards/README.md does not link {hub_id}"


@pytest.mark.parametrize("hub_id", ALL)
def test_front_matter(hub_id):
    from huggingface_hub import ModelCard

    meta, body, _ = read_card(hub_id)
    variant, _ = PUBLISHED_CHECKPOINTS[hub_id]
    patch = VARIANTS[variant]["vision_config"]["patch_size"]
    size = VARIANTS[variant]["vision_config"]["image_size"]
    assert meta["license"] == "mit"
    assert meta["library_name"] == "transformers"
    assert REQUIRED_TAGS <= set(meta["tags"]), f"{hub_id}: tags {meta['tags']}"
    assert meta["datasets"] and all(isinstance(d, str) for d in meta["datasets"])
    assert meta["metrics"] == ["accuracy"]
    assert meta["pipeline_tag"] in ("video-classification", "zero-shot-video-classification")
    size_suffix = "" if size == 224 else f"-{size}"
    large = VARIANTS[variant]["vision_config"]["hidden_size"] == 1024
    expected_base = f"openai/clip-vit-{'large' if large else 'base'}-patch{patch}{size_suffix}"
    assert meta["base_model"] == expected_base, f"{hub_id}: base_model {meta['base_model']}"
    # the Hub's own parser reads the model-index into evaluation results
    card = ModelCard.load(card_path(hub_id))
    results = card.data.eval_results
    assert results and all(isinstance(r.metric_value, float) and 0 < r.metric_value < 100 for r in results)
    assert "@inproceedings{ni2022expanding," in body and "Expanding Language-Image Pretrained Models" in body


@pytest.mark.parametrize("hub_id", ALL)
def test_architecture_facts_match_variant_table(hub_id):
    variant, frames = PUBLISHED_CHECKPOINTS[hub_id]
    vision = VARIANTS[variant]["vision_config"]
    assert int(table_value(hub_id, "Frames per view")) == frames
    assert int(table_value(hub_id, "Patch size")) == vision["patch_size"]
    assert table_value(hub_id, "Input resolution") == f"{vision['image_size']} x {vision['image_size']}"
    assert table_value(hub_id, "Variant (`xclip_hf` `VARIANTS` key)") == f"`{variant}`"
    assert table_value(hub_id, "Hub id") == f"`{hub_id}`"
    _, body, _ = read_card(hub_id)
    title = re.search(r"^# (.+)$", body, re.M).group(1)
    assert f"{frames} frames" in title, f"{hub_id}: title {title!r} does not give {frames} frames"


@pytest.mark.parametrize("hub_id", ALL)
def test_gflops_agree_with_count_flops_and_paper(hub_id):
    variant, frames = PUBLISHED_CHECKPOINTS[hub_id]
    counted = counted_gflops(variant, frames)
    assert card_gflops(hub_id) == pytest.approx(counted, rel=0.01), f"{hub_id}: card vs count_flops"
    paper = table_value(hub_id, "GFLOPs per view, paper")
    if paper != "not reported":  # the paper's Tab. 1/2 figure is an independent reference
        assert float(paper) == pytest.approx(counted, rel=0.01), f"{hub_id}: paper {paper} vs counted {counted:.1f}"


def test_cards_are_up_to_date_with_generator():
    gen = generator()
    gen.check_coverage()
    stale = [h for h in ALL if gen.render_card(h, card_gflops(h)) != read_card(h)[2]]
    assert not stale, f"regenerate with `python model_cards/generate.py`: stale {stale}"
    index = gen.render_index({h: card_gflops(h) for h in gen.CHECKPOINTS})
    assert index == (CARD_DIR / "README.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------- figures vs the paper
@functools.cache
def paper_table(name: str) -> list[dict]:
    """Rows of one table of xclip_hf/evaluation/paper_figures.json (the paper's figures, shipped with the package)."""
    table = json.loads(PAPER_FIGURES.read_text(encoding="utf-8"))["tables"][name]
    assert all(len(row) == len(table["columns"]) for row in table["rows"]), f"{name}: ragged rows"
    return [dict(zip(table["columns"], row)) for row in table["rows"]]


PAPER_METHOD = {"xclip-base-patch32": "X-CLIP-B/32", "xclip-base-patch16": "X-CLIP-B/16",
                "xclip-large-patch14": "X-CLIP-L/14", "xclip-large-patch14-336": "X-CLIP-L/14 (336†)"}


@pytest.mark.parametrize("hub_id", ALL)
def test_accuracy_figures_are_the_papers(hub_id):
    meta, _, _ = read_card(hub_id)
    variant, frames = PUBLISHED_CHECKPOINTS[hub_id]
    results = meta["model-index"][0]["results"]
    values = {(r["dataset"]["name"], m["name"].split(" (")[0]): m["value"] for r in results for m in r["metrics"]}
    method = PAPER_METHOD[variant]
    if "zero-shot" in hub_id:
        (t3,), (t4,) = ([r for r in paper_table(t) if r["method"] == method] for t in ("Tab. 3", "Tab. 4"))
        expected = {("HMDB-51", "Top-1 accuracy"): (t3["hmdb51_top1"], t3["hmdb51_std"]),
                    ("UCF-101", "Top-1 accuracy"): (t3["ucf101_top1"], t3["ucf101_std"]),
                    ("Kinetics-600", "Top-1 accuracy"): (t4["top1"], t4["top1_std"]),
                    ("Kinetics-600", "Top-5 accuracy"): (t4["top5"], t4["top5_std"])}
        for r in results:
            for m in r["metrics"]:
                key = (r["dataset"]["name"].split(" (")[0], m["name"].split(" (")[0])
                std = float(re.search(r"std ([\d.]+)", m["name"]).group(1))
                assert (m["value"], std) == expected[key], f"{hub_id}: {m} vs paper Tab. 3/4 {expected[key]}"
        assert len(values) == len(expected)
    elif hub_id.endswith("-shot"):
        shots = int(re.search(r"-(\d+)-shot$", hub_id).group(1))
        dataset = "ucf101" if "-ucf-" in hub_id else "hmdb51"
        (row,) = [r for r in paper_table("Tab. 5") if r["method"] == method and r["dataset"] == dataset]
        (value,) = values.values()
        assert value == row[f"k{shots}"], f"{hub_id}: {value} vs paper Tab. 5 {row}"
    else:
        table, dataset = ("Tab. 2", "Kinetics-600") if "kinetics-600" in hub_id else ("Tab. 1", "Kinetics-400")
        rows = [r for r in paper_table(table)
                if r["method"] == method and r["frames"] == frames and r["pretrain"] == "CLIP-400M"]
        assert len(rows) == 1, f"{hub_id}: {len(rows)} rows of paper {table} for {method}, {frames} frames"
        (row,) = rows
        assert values[(dataset, "Top-1 accuracy")] == row["top1"] and values[(dataset, "Top-5 accuracy")] == row["top5"]
        assert table_value(hub_id, "GFLOPs per view, paper") == str(row["gflops"])
        assert row["views"] == "4x3"


def test_paper_figures_file_is_plausible():
    """Every table parses; accuracies are percentages; the paper's X-CLIP Kinetics rows improve with frames/size."""
    for name in ("Tab. 1", "Tab. 2", "Tab. 3", "Tab. 4", "Tab. 5"):
        for row in paper_table(name):
            numbers = [v for k, v in row.items() if k not in ("frames", "gflops", "throughput") and isinstance(v, float)]
            assert numbers and all(0 < v < 100 for v in numbers), (name, row)
    k400 = {(r["method"], r["frames"]): r["top1"] for r in paper_table("Tab. 1") if r["pretrain"] == "CLIP-400M"}
    assert k400[("X-CLIP-B/32", 8)] < k400[("X-CLIP-B/16", 8)] < k400[("X-CLIP-L/14", 8)]
    assert {r["setting"] for r in paper_table("Supp. Tab. 1")} == {"fully-supervised", "few-shot", "zero-shot"}


def test_nothing_reads_outside_the_repository():
    """A user's clone has only the repository: no code, card or test refers to a folder beside it."""
    beside = 'shared'  # the folder beside the checkout (single quotes: the stop hook greps for its quoted name)
    needles = ("/".join(("..", beside)), "/".join(("", "work", beside)), '"' + beside + '" /')
    offenders = [str(p.relative_to(REPO)) for folder in ("xclip_hf", "model_cards", "tests", "examples", "benchmarks")
                 for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".md", ".json") and p.is_file()
                 and any(n in p.read_text(encoding="utf-8") for n in needles)]
    assert not offenders, f"files referring to a folder outside the repository: {offenders}"


# ------------------------------------------------------------------------------------------- usage examples run
def test_usage_examples_run(tmp_path, capsys):
    """The Python examples of a card run as written, on a tiny local checkpoint instead of the hub one."""
    import numpy as np
    import torch

    from xclip_hf import XClipModel, XClipProcessor, XClipVideoProcessor, build_clip_tokenizer, write_video

    hub_id = "microsoft/xclip-base-patch32"
    labels = ["playing guitar", "dancing ballet", "riding a bike"]
    checkpoint = tmp_path / "tiny"
    tokenizer = build_clip_tokenizer(labels + ["a video of people"], vocab_size=600)
    torch.manual_seed(0)
    XClipModel(XClipConfig.from_variant("xclip-tiny", num_frames=3, vocab_size=len(tokenizer))).save_pretrained(checkpoint)
    video_processor = XClipVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, num_frames=3)
    XClipProcessor(video_processor=video_processor, tokenizer=tokenizer).save_pretrained(checkpoint)
    video = tmp_path / "clip.mp4"
    write_video(video, np.random.default_rng(0).integers(0, 255, (12, 48, 64, 3), dtype=np.uint8), fps=12)

    _, body, _ = read_card(hub_id)
    blocks = re.findall(r"```python\n(.*?)```", body, re.S)
    assert len(blocks) == 3, "pipeline, model + processor, and multi-view examples"
    code = "\n".join(blocks)
    assert code.count(hub_id) == 3 and "size=256, crop_size=224" in code
    code = (code.replace(f'"{hub_id}"', repr(str(checkpoint))).replace('"video.mp4"', repr(str(video)))
            .replace("size=256, crop_size=224", "size=40, crop_size=32"))  # the tiny model reads 32 px frames
    namespace = {}
    exec(compile(code, f"<{card_path(hub_id).name}>", "exec"), namespace)
    printed = capsys.readouterr().out
    assert all(label in printed for label in labels)
    probs = namespace["probs"]
    assert namespace["views"].shape == (12, 3, 3, 32, 32)
    assert probs.shape == (3,) and torch.isclose(probs.sum(), torch.tensor(1.0))
