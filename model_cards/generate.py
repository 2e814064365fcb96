"""Generate the Hugging Face model cards of the published X-CLIP checkpoints (one Markdown file per hub id).

Run from the repository root:

    HF_HUB_OFFLINE=1 python model_cards/generate.py           # (re)write model_cards/*.md
    HF_HUB_OFFLINE=1 python model_cards/generate.py --check   # exit 1 if a card is missing or out of date

The accuracy figures and hyperparameters come from `xclip_hf/evaluation/paper_figures.json` (package data, the file
`xclip-hf evaluate` reports quote too: `xclip_hf.evaluation.report.PAPER_FIGURES`), transcribed from the paper (Ni
et al., "Expanding Language-Image Pretrained Models for General Video Recognition", ECCV 2022: Tables 1-5 and
supplementary Tab. 1); the compute figures are counted by `xclip_hf.count_flops` on the meta device when the cards
are generated. Checkpoints and their (variant, frames) come from `xclip_hf.models.configuration_xclip.PUBLISHED_CHECKPOINTS`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from dataclasses import dataclass

from huggingface_hub import EvalResult, ModelCardData
from tqdm.auto import tqdm

from xclip_hf.evaluation.report import PAPER_FIGURES  # the paper's tables, transcribed (X-CLIP rows): package data

CARD_DIR = os.path.dirname(os.path.abspath(__file__))
HUB_PREFIX = "microsoft/"
TAGS = ["video-classification", "zero-shot-video-classification", "x-clip", "xclip_hf"]
PIPELINE_TAG = "video-classification"  # the Hub's task list has no zero-shot video task; it is a tag instead


# ----------------------------------------------------------------------------------------------- the paper's data
@dataclass(frozen=True)
class Result:
    """One accuracy figure of the paper for one checkpoint."""

    dataset: str  # display name
    dataset_type: str  # model-index dataset id
    split: str
    metric: str  # "Top-1 accuracy" / "Top-5 accuracy"
    value: float
    std: float | None  # over evaluation splits / class samples, when the paper gives one
    protocol: str  # views and evaluation protocol
    source: str  # table of the paper
    short: str = ""  # protocol in a few words, for the model-index metric name


@dataclass(frozen=True)
class Checkpoint:
    """What the paper says about one published checkpoint."""

    setting: str  # key of SETTINGS
    train_datasets: tuple[str, ...]
    results: tuple[Result, ...]
    paper_gflops: int | None  # per view, paper Tab. 1 / Tab. 2; None where the paper gives none
    shots: int | None = None


PAPER_NAMES = {
    "xclip-base-patch32": "X-CLIP-B/32",
    "xclip-base-patch16": "X-CLIP-B/16",
    "xclip-large-patch14": "X-CLIP-L/14",
    "xclip-large-patch14-336": "X-CLIP-L/14 (336px)",
}
VIT_NAMES = {
    "xclip-base-patch32": "ViT-B/32",
    "xclip-base-patch16": "ViT-B/16",
    "xclip-large-patch14": "ViT-L/14",
    "xclip-large-patch14-336": "ViT-L/14@336px",
}
BASE_MODELS = {
    "xclip-base-patch32": "openai/clip-vit-base-patch32",
    "xclip-base-patch16": "openai/clip-vit-base-patch16",
    "xclip-large-patch14": "openai/clip-vit-large-patch14",
    "xclip-large-patch14-336": "openai/clip-vit-large-patch14-336",
}

MULTI_VIEW = "4 temporal clips x 3 spatial crops"
SINGLE_VIEW_32 = "single view of 32 frames"


PAPER_METHODS = {  # variant -> method name in the paper's tables
    "xclip-base-patch32": "X-CLIP-B/32",
    "xclip-base-patch16": "X-CLIP-B/16",
    "xclip-large-patch14": "X-CLIP-L/14",
    "xclip-large-patch14-336": "X-CLIP-L/14 (336†)",
}


def paper_rows(table: str) -> list[dict]:
    """Rows of one table of paper_figures.json, as dicts keyed by its column names."""
    with open(PAPER_FIGURES, encoding="utf-8") as f:
        spec = json.load(f)["tables"][table]
    return [dict(zip(spec["columns"], row)) for row in spec["rows"]]


def paper_row(table: str, **match) -> dict:
    """The one row of `table` whose columns equal `match`."""
    rows = [r for r in paper_rows(table) if all(r[k] == v for k, v in match.items())]
    if len(rows) != 1:
        raise ValueError(f"paper_figures.json {table}: {len(rows)} rows match {match}")
    return rows[0]


def _kinetics(name: str, dataset_type: str, table: str, variant: str, frames: int) -> tuple[tuple[Result, ...], int]:
    """Top-1/top-5 on a Kinetics validation set with 4x3-view inference (paper Tab. 1/2), and the GFLOPs per view."""
    row = paper_row(table, method=PAPER_METHODS[variant], pretrain="CLIP-400M", frames=frames)
    results = tuple(
        Result(name, dataset_type, "validation", metric, float(row[key]), None, MULTI_VIEW, table, "4x3 views")
        for metric, key in (("Top-1 accuracy", "top1"), ("Top-5 accuracy", "top5"))
    )
    return results, row["gflops"]


def _fully_supervised(setting: str, variant: str, frames: int) -> Checkpoint:
    (name, dataset_type), table = (K400, "Tab. 1") if setting == "k400" else (K600, "Tab. 2")
    results, gflops = _kinetics(name, dataset_type, table, variant, frames)
    return Checkpoint(setting, (dataset_type,), results, gflops)


def _zero_shot_results() -> tuple[Result, ...]:
    """Paper Tab. 3 (HMDB-51, UCF-101) and Tab. 4 (Kinetics-600, new classes) for X-CLIP-B/16."""
    t3, t4 = paper_row("Tab. 3", method="X-CLIP-B/16"), paper_row("Tab. 4", method="X-CLIP-B/16")
    splits = "zero-shot, single view, mean +- std over the 3 test splits"
    k600 = "zero-shot, single view, 160 of the 220 new classes sampled 3 times, mean +- std"
    k600_name = "Kinetics-600 (220 classes not in Kinetics-400)"
    return (
        Result("HMDB-51", "hmdb51", "test (3 splits)", "Top-1 accuracy", t3["hmdb51_top1"], t3["hmdb51_std"], splits,
               "Tab. 3", "zero-shot, mean of 3 splits"),
        Result("UCF-101", "ucf101", "test (3 splits)", "Top-1 accuracy", t3["ucf101_top1"], t3["ucf101_std"], splits,
               "Tab. 3", "zero-shot, mean of 3 splits"),
        Result(k600_name, "kinetics-600", "validation", "Top-1 accuracy", t4["top1"], t4["top1_std"], k600, "Tab. 4",
               "zero-shot, mean of 3 class samples"),
        Result(k600_name, "kinetics-600", "validation", "Top-5 accuracy", t4["top5"], t4["top5_std"], k600, "Tab. 4",
               "zero-shot, mean of 3 class samples"),
    )


K400, K600 = ("Kinetics-400", "kinetics-400"), ("Kinetics-600", "kinetics-600")
FEW_SHOT_DATASETS = {"hmdb": ("HMDB-51", "hmdb51"), "ucf": ("UCF-101", "ucf101")}  # paper Tab. 5, X-CLIP-B/16


def _few_shot(key: str, shots: int) -> Checkpoint:
    name, dataset_type = FEW_SHOT_DATASETS[key]
    top1 = paper_row("Tab. 5", method="X-CLIP-B/16", dataset=dataset_type)[f"k{shots}"]
    result = Result(name, dataset_type, "test split 1", "Top-1 accuracy", top1, None, SINGLE_VIEW_32, "Tab. 5",
                    f"{shots}-shot, single view")
    return Checkpoint("few-shot", (dataset_type,), (result,), None, shots=shots)


def _checkpoints() -> dict[str, Checkpoint]:
    """What the paper says about every published checkpoint, from paper_figures.json."""
    from xclip_hf.models.configuration_xclip import PUBLISHED_CHECKPOINTS

    out = {}
    for hub_id, (variant, frames) in PUBLISHED_CHECKPOINTS.items():
        if hub_id.endswith("-zero-shot"):  # trained on Kinetics-400 with 32 frames (paper Sec. 4.3, Tab. 3/4)
            out[hub_id] = Checkpoint("zero-shot", ("kinetics-400",), _zero_shot_results(), None)
        elif hub_id.endswith("-shot"):  # K videos per class (paper Sec. 4.4, Tab. 5)
            _, key, shots, _ = hub_id.rsplit("-", 3)
            out[hub_id] = _few_shot(key, int(shots))
        else:  # fully supervised (paper Tab. 1 / Tab. 2, CLIP-400M rows)
            out[hub_id] = _fully_supervised("k600" if "kinetics-600" in hub_id else "k400", variant, frames)
    order = ["k400", "k600", "zero-shot", "few-shot"]  # the cards' index lists them in this order
    return dict(sorted(out.items(), key=lambda item: (order.index(item[1].setting),
                                                       item[1].results[0].dataset if item[1].shots else "",
                                                       item[1].shots or 0)))


CHECKPOINTS: dict[str, Checkpoint] = _checkpoints()

BIBTEX = """@inproceedings{ni2022expanding,
  title={Expanding Language-Image Pretrained Models for General Video Recognition},
  author={Ni, Bolin and Peng, Houwen and Chen, Minghao and Zhang, Songyang and Meng, Gaofeng and Fu, Jianlong and Xiang, Shiming and Ling, Haibin},
  booktitle={European Conference on Computer Vision (ECCV)},
  year={2022}
}"""


# ----------------------------------------------------------------------------------------------- card sections
def _wrap(paragraph: str, indent: str = "") -> str:
    """One Markdown paragraph, wrapped at 116 columns (continuation lines indented by `indent`)."""
    return textwrap.fill(paragraph, width=116, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def card_filename(hub_id: str) -> str:
    """`microsoft/xclip-base-patch32` -> `xclip-base-patch32.md`."""
    if not hub_id.startswith(HUB_PREFIX):
        raise ValueError(f"hub id {hub_id!r} does not start with {HUB_PREFIX!r}")
    return hub_id[len(HUB_PREFIX):] + ".md"


def _published(hub_id: str) -> tuple[str, int]:
    from xclip_hf.models.configuration_xclip import PUBLISHED_CHECKPOINTS

    if hub_id not in PUBLISHED_CHECKPOINTS:
        raise ValueError(f"{hub_id!r} is not in PUBLISHED_CHECKPOINTS; known: {', '.join(PUBLISHED_CHECKPOINTS)}")
    return PUBLISHED_CHECKPOINTS[hub_id]


def _config(hub_id: str):
    from xclip_hf.models.configuration_xclip import XClipConfig

    variant, frames = _published(hub_id)
    return XClipConfig.from_variant(variant, num_frames=frames)


def _title(hub_id: str) -> str:
    variant, frames = _published(hub_id)
    ckpt = CHECKPOINTS[hub_id]
    what = {"k400": "Kinetics-400", "k600": "Kinetics-600", "zero-shot": "zero-shot (trained on Kinetics-400)",
            "few-shot": f"{ckpt.shots}-shot {ckpt.results[0].dataset}"}[ckpt.setting]
    return f"{PAPER_NAMES[variant]}, {frames} frames, {what}"


def _front_matter(hub_id: str) -> str:
    variant, _ = _published(hub_id)
    ckpt = CHECKPOINTS[hub_id]
    results = [
        EvalResult(
            task_type="video-classification", task_name="Video classification",
            dataset_type=r.dataset_type, dataset_name=r.dataset, dataset_split=r.split,
            metric_type="accuracy", metric_value=r.value,
            metric_name=f"{r.metric} ({r.short}" + ("" if r.std is None else f", std {r.std}") + ")",
            source_name=f"Ni et al., ECCV 2022, {r.source}", source_url="https://arxiv.org/abs/2208.02816",
        )
        for r in ckpt.results
    ]
    data = ModelCardData(
        license="mit", library_name="transformers", tags=list(TAGS), datasets=list(ckpt.train_datasets),
        metrics=["accuracy"], pipeline_tag=PIPELINE_TAG, base_model=BASE_MODELS[variant],
        model_name=hub_id[len(HUB_PREFIX):], eval_results=results,
    )
    return "---\n" + data.to_yaml() + "\n---\n"


def _intro(hub_id: str) -> str:
    variant, frames = _published(hub_id)
    ckpt = CHECKPOINTS[hub_id]
    trained = {
        "k400": "fine-tuned with full supervision on Kinetics-400 (400 human-action classes)",
        "k600": "fine-tuned with full supervision on Kinetics-600 (600 human-action classes)",
        "zero-shot": "trained on Kinetics-400 for zero-shot transfer: it is meant to be used with label sets it has "
                     "never seen",
        "few-shot": f"fine-tuned on only {ckpt.shots} labelled videos per class of {ckpt.results[0].dataset}",
    }[ckpt.setting]
    return f"""# {_title(hub_id)} (`{hub_id}`)

X-CLIP turns a CLIP image-text model into a video-text model. It was introduced by Ni et al. in
"Expanding Language-Image Pretrained Models for General Video Recognition" (ECCV 2022). This checkpoint is
{PAPER_NAMES[variant]} (a CLIP {VIT_NAMES[variant]} image encoder expanded to video) reading {frames} frames per clip,
{trained}.

A video is classified by comparing its embedding with the embedding of each candidate label text: the label whose
text is most similar (cosine similarity, scaled by a learned temperature, softmax over the labels; paper Eq. 3)
wins. Because labels are free text, the same model can score any list of labels, including ones it was not
trained on. This card belongs to `xclip_hf`, an implementation of X-CLIP for Hugging Face Transformers; it
loads the published checkpoint as is.
"""


def _architecture(hub_id: str, gflops: float) -> str:
    variant, frames = _published(hub_id)
    config = _config(hub_id)
    vc, tc = config.vision_config, config.text_config
    ckpt = CHECKPOINTS[hub_id]
    tokens = (vc.image_size // vc.patch_size) ** 2
    paper_gflops = "not reported" if ckpt.paper_gflops is None else str(ckpt.paper_gflops)
    return f"""## Model details

| Property | Value |
| --- | --- |
| Hub id | `{hub_id}` |
| Variant (`xclip_hf` `VARIANTS` key) | `{variant}` |
| Paper name | {PAPER_NAMES[variant]} |
| Initialised from | [`{BASE_MODELS[variant]}`](https://huggingface.co/{BASE_MODELS[variant]}) |
| Vision backbone | {VIT_NAMES[variant]}: {vc.num_hidden_layers} layers, {vc.num_attention_heads} heads, width {vc.hidden_size} |
| Patch size | {vc.patch_size} |
| Input resolution | {vc.image_size} x {vc.image_size} |
| Frames per view | {frames} |
| Tokens per frame | {tokens} patches + [class] token (+ 1 message token inside each block) |
| Multi-frame integration transformer | {vc.mit_num_hidden_layers} layer, {vc.mit_num_attention_heads} heads, width {vc.mit_hidden_size} |
| Video-specific prompt generator | {tc.prompt_layers} blocks, {tc.prompt_num_attention_heads} heads, alpha initialised to {tc.prompt_alpha} |
| Text encoder | CLIP text transformer: {tc.num_hidden_layers} layers, {tc.num_attention_heads} heads, width {tc.hidden_size}, {tc.max_position_embeddings} tokens |
| Joint embedding size | {config.projection_dim} |
| GFLOPs per view, paper | {paper_gflops} |
| GFLOPs per view, `xclip_hf.count_flops` | {gflops:.1f} |

### Architecture

* **Cross-frame communication transformer** (paper Sec. 3.2, Eq. 4-9). Every frame is cut into
  {vc.patch_size}x{vc.patch_size} patches and encoded by the CLIP {VIT_NAMES[variant]} blocks. In every block a
  *message token* is computed from each frame's [class] token by a linear layer; the {frames} message tokens of a
  clip attend to one another (cross-frame fusion attention, new), then each frame attends over its own tokens plus
  its message token (intra-frame diffusion attention, the pretrained CLIP attention); the message token is then
  dropped and the frame tokens go through the CLIP MLP. Information thus flows between frames at every layer
  at a small extra cost.
* **Multi-frame integration transformer** (Eq. 6): the {frames} projected frame features, plus a learned temporal
  position embedding, go through a {vc.mit_num_hidden_layers}-layer transformer and are averaged into one video
  embedding.
* **Video-specific prompting** (Sec. 3.3, Eq. 10): the label embeddings from the CLIP text encoder attend to the
  video's patch features ({tc.prompt_layers} blocks of cross-attention and MLP); the result, scaled by a learned
  per-channel alpha (initialised to {tc.prompt_alpha}), is added to the label embedding. Each video thus gets its own
  version of the label texts.
* The label text is the bare class name (`"{{}}"` template, paper Sec. 3.3); no hand-written prompt is needed.
"""


SETTINGS = {
    "k400": """Fully supervised on **Kinetics-400** (about 240k training clips of 10 s from YouTube, 400 human-action
classes; supplementary Sec. 3.1), using the complete training set.""",
    "k600": """Fully supervised on **Kinetics-600** (about 410k training clips of 10 s from YouTube, 600 human-action
classes; supplementary Sec. 3.1), using the complete training set.""",
    "zero-shot": """Trained on **Kinetics-400** (about 240k clips, 400 classes) with **32 frames** per clip for zero-shot
transfer (paper Sec. 4.3, supplementary Sec. 3.4), then evaluated on label sets it never saw: HMDB-51, UCF-101 and
the 220 Kinetics-600 classes that are not in Kinetics-400.""",
    "few-shot": """Few-shot: **{shots} videos per class**, sampled at random from the training data of **{dataset}**
({classes} classes), **32 frames** per clip (paper Sec. 4.4, supplementary Sec. 3.3). The paper compares this
CLIP-initialised model with ImageNet-initialised video models (TSM, TimeSformer, Video Swin) trained on the same
samples.""",
}
SETTING_LABELS = {"k400": "Kinetics-400, fully supervised", "k600": "Kinetics-600, fully supervised",
                  "zero-shot": "Kinetics-400, 32 frames, for zero-shot", "few-shot": "{k}-shot {dataset}, 32 frames"}


def _hyperparameters(setting: str) -> tuple[str, str, str, str]:
    """(batch size, base lr, minimal lr, epochs) of a setting: supplementary Tab. 1, from paper_figures.json."""
    row = paper_row("Supp. Tab. 1", setting="fully-supervised" if setting in ("k400", "k600") else setting)
    return str(row["batch_size"]), row["base_lr"], row["min_lr"], str(row["epochs"])


HYPER = {setting: _hyperparameters(setting) for setting in ("k400", "k600", "few-shot", "zero-shot")}


def _training(hub_id: str) -> str:
    variant, frames = _published(hub_id)
    ckpt = CHECKPOINTS[hub_id]
    data = SETTINGS[ckpt.setting]
    if ckpt.setting == "few-shot":
        data = data.format(shots=ckpt.shots, dataset=ckpt.results[0].dataset,
                           classes=51 if ckpt.results[0].dataset_type == "hmdb51" else 101)
    batch, lr, min_lr, epochs = HYPER[ckpt.setting]
    sampling = ("sparse (segment-based) sampling of 8 or 16 frames (paper Sec. 4.2); this checkpoint uses "
                f"{frames}" if ckpt.setting in ("k400", "k600") else f"sparse (segment-based) sampling of {frames}")
    return f"""## Training data and procedure

{data}

* Initialisation: the image and text encoders of CLIP [`{BASE_MODELS[variant]}`](https://huggingface.co/{BASE_MODELS[variant]})
  (pretrained on 400M image-text pairs). The cross-frame fusion attention, the message-token layers, the
  multi-frame integration transformer and the prompt generator are new and randomly initialised (Sec. 3.2,
  "Initialization").
* Frames: {sampling} frames per clip; a random frame per segment during training.
* Text: the bare class names.
* Optimisation (supplementary Tab. 1): AdamW, betas (0.9, 0.98), weight decay 0.001, batch size {batch},
  base learning rate {lr} with 5 linear warm-up epochs and cosine decay to {min_lr}, {epochs} epochs; the randomly
  initialised parameters use 10x the base learning rate.
* Augmentation and regularisation (supplementary Tab. 1): random horizontal flip (0.5), multi-scale crop
  (scales 1, 0.875, 0.75, 0.66), colour jitter (0.8), grayscale (0.2), label smoothing 0.1, mixup 0.8,
  cutmix 1.0.
* In the paper's ablations (Sec. 4.5, Tab. 7) the default fine-tunes the video side and keeps the pretrained
  CLIP text encoder frozen (the new modules are always trained); the paper does not say which choice each
  released checkpoint used.
* Hardware: 32 NVIDIA V100 (32 GB) GPUs (Sec. 4.2).
"""


def _evaluation(hub_id: str, gflops: float) -> str:
    ckpt = CHECKPOINTS[hub_id]
    rows = "\n".join(
        f"| {r.dataset} | {r.split} | {r.metric} | {r.value:.1f}" + ("" if r.std is None else f" +- {r.std:.1f}")
        + f" | {r.protocol} | {r.source} |"
        for r in ckpt.results
    )
    notes = {
        "k400": "Multi-view inference as in the paper (supplementary Sec. 3.2): 4 clips are sampled along time and 3 "
                "crops across space, and the scores of the 12 views are averaged. "
                + ("Each frame's short side is scaled to 256 and the crops are 224 px."
                   if _config(hub_id).vision_config.image_size == 224 else
                   "The crops are 336 px; the paper does not state the resize it used before cropping for this model."),
        "zero-shot": "Protocols of supplementary Sec. 3.4: HMDB-51 and UCF-101 report the mean and standard deviation over "
                     "their three test splits; Kinetics-600 uses the 220 classes absent from Kinetics-400, from which "
                     "160 are sampled three times.",
        "few-shot": "Evaluation on the first test split with a single view of 32 frames (supplementary Sec. 3.3).",
    }
    note = notes.get(ckpt.setting, notes["k400"])
    views = 12 if ckpt.setting in ("k400", "k600") else 1
    cost = (f"At {views} views per video the total is about {gflops * views:.0f} GFLOPs per video."
            if views > 1 else "Single-view inference costs one view per video.")
    paper = ("The paper reports " + f"{ckpt.paper_gflops} GFLOPs per view." if ckpt.paper_gflops is not None
             else "The paper does not report FLOPs for this configuration.")
    compute = (
        f"`xclip_hf.count_flops` counts {gflops:.1f} GFLOPs per view: multiply-accumulates of one forward pass on one "
        "clip and one 77-token label, counted by `torch.utils.flop_counter` on the meta device. Like the paper, it "
        f"reports multiply-accumulates as FLOPs, and it includes the attention products. {paper} {cost} More labels "
        "add the text encoder's cost once per label (the zero-shot pipeline caches label embeddings) and the prompt "
        "generator's cost per label and video."
    )
    return f"""## Evaluation results

Figures reported in the paper (Ni et al., ECCV 2022); they were not re-measured with `xclip_hf`.

| Dataset | Split | Metric | Value (%) | Protocol | Source |
| --- | --- | --- | --- | --- | --- |
{rows}

{_wrap(note)}

### Compute

{_wrap(compute)}
"""


def _preprocessing(hub_id: str) -> str:
    config = _config(hub_id)
    size = config.vision_config.image_size
    _, frames = _published(hub_id)
    setting = CHECKPOINTS[hub_id].setting
    if setting in ("zero-shot", "few-shot"):
        paper_eval = (f"The paper evaluates this checkpoint with a single view of {frames} frames (supplementary Sec. "
                      f"{'3.4' if setting == 'zero-shot' else '3.3'}); it states its resize (short side 256, crop "
                      "224) only for the fully supervised experiments.")
    elif size == 224:
        paper_eval = ("The paper's own evaluation scales the short side to 256 and crops 224 (`size=256, "
                      "crop_size=224`) and averages 4 temporal clips x 3 spatial crops (`num_temporal_clips=4, "
                      "num_spatial_crops=3`); see the last example below.")
    else:
        paper_eval = ("The paper averages 4 temporal clips x 3 spatial crops (`num_temporal_clips=4, "
                      "num_spatial_crops=3`) of 336 px for this model but does not state the resize before "
                      "cropping; see the last example below.")
    return f"""## Preprocessing

`XClipProcessor.from_pretrained("{hub_id}")` reads the checkpoint's processor configuration:

* {frames} frames, sampled sparsely: the video is split into {frames} equal segments and the middle frame of each is
  taken;
* the short side is resized to {size} px (bilinear), then a {size} x {size} center crop is taken;
* pixel values are scaled to [0, 1] and normalised with the ImageNet mean (0.485, 0.456, 0.406) and standard
  deviation (0.229, 0.224, 0.225).

{_wrap(paper_eval)}
"""


def _usage(hub_id: str) -> str:
    ckpt = CHECKPOINTS[hub_id]
    labels = {"k400": '["playing guitar", "dancing ballet", "riding a bike"]',
              "k600": '["playing guitar", "dancing ballet", "riding a bike"]',
              "zero-shot": '["playing guitar", "dancing ballet", "riding a bike"]',
              "few-shot": ('["brush hair", "cartwheel", "ride bike"]' if ckpt.results[0].dataset_type == "hmdb51"
                           else '["ApplyEyeMakeup", "Biking", "PlayingGuitar"]')}[ckpt.setting]
    multiview = ckpt.setting in ("k400", "k600")
    if _config(hub_id).vision_config.image_size == 224:
        resize = "size=256, crop_size=224, "
        resize_note = "the paper's resize to 256 and crop to 224"
    else:  # the paper does not state the evaluation resize of the 336 px model: keep the checkpoint's own
        resize = ""
        resize_note = "the checkpoint's own resize and crop; the paper does not state its resize for this model"
    intro = (f"Multi-view evaluation as in the paper (4 temporal clips x 3 spatial crops, {resize_note}; the "
             "per-view probabilities are averaged):")
    paper_eval = f"""
{_wrap(intro)}

```python
inputs = processor(text=labels, videos="video.mp4", return_tensors="pt",
                   {resize}num_temporal_clips=4, num_spatial_crops=3)
views = inputs["pixel_values"][0]  # (12, frames, 3, height, width): the 12 views of the one video
with torch.no_grad():
    outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], pixel_values=views)
probs = outputs.logits_per_video.softmax(dim=-1).mean(dim=0)
```

The pipeline does the same with `clf("video.mp4", candidate_labels=labels, num_temporal_clips=4,
num_spatial_crops=3)` (at the checkpoint's own resize).
""" if multiview else ""
    return f"""## How to use

Install `xclip_hf`; importing it registers the model, the processor and the `zero-shot-video-classification`
pipeline with Transformers.

```python
import xclip_hf
from transformers import pipeline

clf = pipeline("zero-shot-video-classification", model="{hub_id}")
labels = {labels}
print(clf("video.mp4", candidate_labels=labels))
```

With the model and processor directly:

```python
import torch
from xclip_hf import XClipModel, XClipProcessor

model = XClipModel.from_pretrained("{hub_id}").eval()
processor = XClipProcessor.from_pretrained("{hub_id}")
labels = {labels}
inputs = processor(text=labels, videos="video.mp4", return_tensors="pt")
with torch.no_grad():
    outputs = model(**inputs)
probs = outputs.logits_per_video.softmax(dim=-1)  # (videos, labels)
print(dict(zip(labels, probs[0].tolist())))
```
{paper_eval}"""


def _limitations(hub_id: str) -> str:
    ckpt = CHECKPOINTS[hub_id]
    specific = {
        "k400": "Its 400 training classes shape what it recognises best; labels far from them, or not about human "
                "actions at all, are scored less reliably.",
        "k600": "Its 600 training classes shape what it recognises best; labels far from them, or not about human "
                "actions at all, are scored less reliably.",
        "zero-shot": "Zero-shot accuracy varies strongly with the label set: the paper's standard deviation over the "
                     "three HMDB-51 splits is 5.2 points. Check it on your own labels before relying on it.",
        "few-shot": f"It was fine-tuned on {ckpt.shots} videos per class of {ckpt.results[0].dataset}; its accuracy on "
                    "other label sets or footage is unknown, and results from so few samples vary with which samples "
                    "were drawn.",
    }[ckpt.setting]
    dataset_type = ckpt.results[0].dataset_type
    source = ("Its training clips come from movies and web video (HMDB-51)." if ckpt.setting == "few-shot"
              and dataset_type == "hmdb51" else
              "Its training clips come from YouTube (UCF-101)." if ckpt.setting == "few-shot" else
              "Its training clips come from YouTube (Kinetics).")
    return f"""## Limitations and bias

{_wrap("* " + specific, indent="  ")}
{_wrap("* " + source + " Labels are in English, and the footage over-represents the people, places and activities "
        "common there. CLIP, from which the model starts, learned from 400M unfiltered image-text pairs from the web "
        "and is known to carry social biases (for example in how it associates people's appearance with labels). "
        "Such biases can carry over to video predictions.", indent="  ")}
* The model sees a few sparsely sampled frames of one short clip; fine temporal detail, long videos and events
  that need audio are outside what it can see.
* Scores are a softmax over the given labels: the best label always gets a high score, even if none of the labels
  describes the video.
* It is not suitable for decisions about individuals (surveillance, identification, profiling) and was not
  evaluated for such uses.
* Reported figures are the paper's; `xclip_hf` resizes with torch (antialiased), which can differ slightly from the
  original PIL-based pipeline.
"""


def _citation() -> str:
    return f"""## Citation

```bibtex
{BIBTEX}
```
"""


def render_card(hub_id: str, gflops: float) -> str:
    """The full Markdown text of one card, given the counted GFLOPs per view of its configuration."""
    if hub_id not in CHECKPOINTS:
        raise ValueError(f"no paper data for {hub_id!r} in model_cards/generate.py CHECKPOINTS")
    sections = [_intro(hub_id), _architecture(hub_id, gflops), _training(hub_id), _evaluation(hub_id, gflops),
                _preprocessing(hub_id), _usage(hub_id), _limitations(hub_id), _citation()]
    return _front_matter(hub_id) + "\n" + "\n".join(s.rstrip("\n") + "\n" for s in sections)


def render_index(gflops: dict[str, float]) -> str:
    """model_cards/README.md: one row per card."""
    rows = []
    for hub_id, ckpt in CHECKPOINTS.items():
        variant, frames = _published(hub_id)
        first = ckpt.results[0]
        headline = f"{first.dataset} {first.metric.split()[0].lower()} {first.value:.1f}"
        rows.append(f"| [`{hub_id}`]({card_filename(hub_id)}) | {PAPER_NAMES[variant]} | {frames} | "
                    f"{_config(hub_id).vision_config.image_size} | {SETTING_LABELS[ckpt.setting].format(k=ckpt.shots, dataset=first.dataset)} | {headline} ({first.source}) | "
                    f"{gflops[hub_id]:.1f} |")
    return """# Model cards of the published X-CLIP checkpoints

One Hugging Face model card per checkpoint of `xclip_hf.models.configuration_xclip.PUBLISHED_CHECKPOINTS`, generated by
`generate.py` from a table of the paper's figures (Ni et al., ECCV 2022) and GFLOPs counted by
`xclip_hf.count_flops`. Regenerate with `HF_HUB_OFFLINE=1 python model_cards/generate.py`; `--check` verifies that
the committed cards are up to date. `tests/test_model_cards.py` checks them against the code and the paper.

| Checkpoint | Model | Frames | Resolution | Training | Headline result (paper) | GFLOPs/view |
| --- | --- | --- | --- | --- | --- | --- |
""" + "\n".join(rows) + "\n"


def count_gflops(hub_ids) -> dict[str, float]:
    """GFLOPs (GMACs) per view of each checkpoint's configuration, counted once per (variant, frames)."""
    from xclip_hf import count_flops

    cache: dict[tuple[str, int], float] = {}
    out = {}
    for hub_id in tqdm(list(hub_ids), desc="counting FLOPs"):
        key = _published(hub_id)
        if key not in cache:
            cache[key] = round(count_flops(_config(hub_id)) / 1e9, 1)  # as printed in the cards
        out[hub_id] = cache[key]
    return out


def check_coverage() -> None:
    """Every published checkpoint has paper data here, and nothing else does."""
    from xclip_hf.models.configuration_xclip import PUBLISHED_CHECKPOINTS

    missing, extra = set(PUBLISHED_CHECKPOINTS) - set(CHECKPOINTS), set(CHECKPOINTS) - set(PUBLISHED_CHECKPOINTS)
    if missing or extra:
        raise SystemExit(f"model_cards/generate.py CHECKPOINTS is out of sync with PUBLISHED_CHECKPOINTS: "
                         f"missing {sorted(missing)}, not published {sorted(extra)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if a card is missing or stale")
    parser.add_argument("--output-dir", default=CARD_DIR, help="where the cards go (default: this folder)")
    args = parser.parse_args(argv)
    check_coverage()
    gflops = count_gflops(CHECKPOINTS)
    files = {card_filename(h): render_card(h, gflops[h]) for h in CHECKPOINTS}
    files["README.md"] = render_index(gflops)
    stale = []
    for name, text in files.items():
        path = os.path.join(args.output_dir, name)
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current != text:
            stale.append(name)
            if not args.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
    verb = "out of date" if args.check else "written"
    print(f"{len(stale)} of {len(files)} files {verb}" + (f": {', '.join(stale)}" if stale else ""))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
