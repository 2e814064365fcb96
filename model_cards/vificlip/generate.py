"""Generate the model cards of the released ViFi-CLIP checkpoints, as converted by `xclip-hf convert --from vificlip`.

Run from the repository root:

    HF_HUB_OFFLINE=1 python model_cards/vificlip/generate.py           # (re)write model_cards/vificlip/*.md
    HF_HUB_OFFLINE=1 python model_cards/vificlip/generate.py --check   # exit 1 if a card is missing or out of date

The accuracy figures are transcribed from the Model Zoo tables of the ViFi-CLIP README (github.com/muzairkhattak/
ViFi-CLIP, Rasheed et al., "Fine-tuned CLIP models are efficient video learners", CVPR 2023), only the rows of the
fully fine-tuned ViFi-CLIP (the prompt-learning rows are not convertible); GFLOPs are counted by
`xclip_hf.count_flops` on the configuration the conversion writes.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from dataclasses import dataclass

from huggingface_hub import EvalResult, ModelCardData

CARD_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_URL = "https://github.com/muzairkhattak/ViFi-CLIP"
PAPER_URL = "https://arxiv.org/abs/2212.03640"
TAGS = ["video-classification", "zero-shot-video-classification", "vifi-clip", "xclip_hf"]
DATASETS = {"k400": ("Kinetics-400", "kinetics-400"), "k600": ("Kinetics-600", "kinetics-600"),
            "hmdb": ("HMDB-51", "hmdb51"), "ucf": ("UCF-101", "ucf101"), "ssv2": ("Something-Something v2", "ssv2")}
FEW_SHOT_DIRS = {"hmdb": "hmdb51", "ucf": "ucf101", "ssv2": "ssv2"}


@dataclass(frozen=True)
class Figure:
    """One accuracy figure of the ViFi-CLIP README."""

    dataset: str  # key of DATASETS
    metric: str
    value: float
    protocol: str


@dataclass(frozen=True)
class Release:
    """One released (fully fine-tuned) ViFi-CLIP checkpoint, or a group of seeds, as its README lists it."""

    name: str
    setting: str
    frames: int
    trained_on: str
    config: str  # their config file or folder
    figures: tuple[Figure, ...]
    readme_gflops: int | None = None
    checkpoints: int = 1  # seeds released for the row


def _base_to_novel(key: str, base: float, novel: float, hm: float) -> Release:
    protocol = "base-to-novel, mean of 3 seeds"
    return Release(f"vificlip-b16-base2novel-{key}", "base-to-novel generalization", 32,
                   f"the base classes of {DATASETS[key][0]}", f"configs/base2novel/finetuning_base2novel/{key}",
                   (Figure(key, "Base top-1 accuracy", base, protocol),
                    Figure(key, "Novel top-1 accuracy", novel, protocol),
                    Figure(key, "Harmonic mean of base and novel top-1", hm, protocol)), checkpoints=3)


def _few_shot(key: str, shots: int, top1: float) -> Release:
    return Release(f"vificlip-b16-{key}-{shots}-shot", f"{shots}-shot", 32,
                   f"{shots} videos per class of {DATASETS[key][0]}",
                   f"configs/few_shot/finetuning_few_shot/{FEW_SHOT_DIRS[key]}/16_32_vifi_clip_{shots}_shot.yaml",
                   (Figure(key, "Top-1 accuracy", top1, f"{shots}-shot"),))


ZERO_SHOT = "zero-shot, trained on Kinetics-400"
RELEASES: dict[str, Release] = {r.name: r for r in (
    Release("vificlip-b16-zero-shot", "zero-shot", 32, "Kinetics-400",
            "configs/zero_shot/train/k400/16_16_vifi_clip.yaml",
            (Figure("hmdb", "Top-1 accuracy", 51.3, ZERO_SHOT), Figure("ucf", "Top-1 accuracy", 76.8, ZERO_SHOT),
             Figure("k600", "Top-1 accuracy", 71.2, ZERO_SHOT + ", the Kinetics-600 classes not in Kinetics-400"))),
    Release("vificlip-b16-k400", "fully supervised", 16, "Kinetics-400",
            "configs/fully_supervised/k400/16_16_vifi_clip.yaml",
            (Figure("k400", "Top-1 accuracy", 83.9, "4 clips x 3 crops"),
             Figure("k400", "Top-5 accuracy", 96.3, "4 clips x 3 crops")), readme_gflops=281),
    _base_to_novel("k400", 76.4, 61.1, 67.9), _base_to_novel("hmdb", 73.8, 53.3, 61.9),
    _base_to_novel("ucf", 92.9, 67.7, 78.3), _base_to_novel("ssv2", 16.2, 12.1, 13.9),
    *(_few_shot(key, k, v) for key, values in (("hmdb", (57.2, 62.7, 64.5, 66.8)), ("ucf", (80.7, 85.1, 90.0, 92.7)),
                                               ("ssv2", (6.2, 7.4, 8.5, 12.4)))
      for k, v in zip((2, 4, 8, 16), values)),
)}

BIBTEX = """@inproceedings{hanoonavificlip,
    title={Finetuned CLIP models are efficient video learners},
    author={Rasheed, Hanoona and khattak, Muhammad Uzair and Maaz, Muhammad and Khan, Salman and Khan, Fahad Shahbaz},
    booktitle={The IEEE/CVF Conference on Computer Vision and Pattern Recognition},
    year={2023}
}"""


def release_config(release: Release):
    """The `XClipConfig` `convert --from vificlip` writes for a released (ViT-B/16) checkpoint."""
    from xclip_hf import XClipConfig

    return XClipConfig.from_variant("xclip-base-patch16", num_frames=release.frames, use_mit=False,
                                    use_cross_frame_attention=False, prompt_layers=0, prompt_alpha=0.0,
                                    mit_num_hidden_layers=0)


def count_gflops(release: Release) -> float:
    from xclip_hf import count_flops

    return count_flops(release_config(release)) / 1e9


# ----------------------------------------------------------------------------------------------- rendering
def _front_matter(r: Release) -> str:
    results = [EvalResult(task_type="video-classification", task_name="Video classification",
                          dataset_type=DATASETS[f.dataset][1], dataset_name=DATASETS[f.dataset][0],
                          metric_type="accuracy", metric_value=f.value, metric_name=f"{f.metric} ({f.protocol})",
                          source_name="ViFi-CLIP README, Model Zoo (Rasheed et al., CVPR 2023)", source_url=REPO_URL)
               for f in r.figures]
    train = ["kinetics-400"] if r.trained_on == "Kinetics-400" else [DATASETS[r.figures[0].dataset][1]]
    data = ModelCardData(license="other", library_name="transformers", tags=list(TAGS), datasets=train,
                         metrics=["accuracy"], pipeline_tag="video-classification",
                         base_model="openai/clip-vit-base-patch16", model_name=r.name, eval_results=results)
    return "---\n" + data.to_yaml() + "\n---\n"


def _wrap(text: str, indent: str = "") -> str:
    return textwrap.fill(text, width=116, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def render_card(name: str, gflops: float) -> str:
    """The Markdown text of one card, given the counted GFLOPs per view of its configuration."""
    r = RELEASES[name]
    seeds = f" ({r.checkpoints} checkpoints, one per seed)" if r.checkpoints > 1 else ""
    rows = "\n".join(f"| {DATASETS[f.dataset][0]} | {f.metric} | {f.value} | {f.protocol} |" for f in r.figures)
    paper_gflops = "not reported" if r.readme_gflops is None else str(r.readme_gflops)
    return f"""{_front_matter(r)}
# ViFi-CLIP ViT-B/16, {r.setting}, {r.frames} frames (`{r.name}`)

{_wrap(f"ViFi-CLIP (Rasheed et al., CVPR 2023) is CLIP fully fine-tuned on videos: every frame goes through the CLIP "
       f"image encoder, the frame features are averaged, and the video is compared with the text of each label. This "
       f"card describes the released checkpoint{seeds} of the ViFi-CLIP README row '{r.setting}' (config "
       f"`{r.config}`), trained on {r.trained_on}, as converted to `xclip_hf` by `xclip-hf convert --from vificlip`. "
       "The weights are not on the Hugging Face Hub: download them from the link in the ViFi-CLIP README and "
       "convert them.")}

## Model details

| Property | Value |
| --- | --- |
| Card name | `{r.name}` |
| Source | [{REPO_URL}]({REPO_URL}), config `{r.config}` |
| Conversion | `xclip-hf convert --from vificlip` |
| `xclip_hf` configuration | CLIP-Mean: `use_cross_frame_attention=False`, `use_mit=False`; `prompt_layers=0`, prompt alpha 0 |
| Initialised from | [`openai/clip-vit-base-patch16`](https://huggingface.co/openai/clip-vit-base-patch16) |
| Vision backbone | ViT-B/16: 12 layers, 12 heads, width 768 |
| Patch size | 16 |
| Input resolution | 224 x 224 |
| Frames per view | {r.frames} |
| Text encoder | CLIP text transformer: 12 layers, 8 heads, width 512, 77 tokens |
| Label template | `a photo of a {{}}.` |
| GFLOPs per view, ViFi-CLIP README | {paper_gflops} |
| GFLOPs per view, `xclip_hf.count_flops` | {gflops:.1f} |

`count_flops` counts multiply-accumulates of one clip and one 77-token label, text encoder included.

## Conversion

```bash
xclip-hf convert --from vificlip CHECKPOINT.pth {r.name} --clip openai/clip-vit-base-patch16 \\
    --num-frames {r.frames} --bpe bpe_simple_vocab_16e6.txt.gz
```

{_wrap("Their checkpoints leave out CLIP's token embedding (ViFi-CLIP never trains it): `--clip` supplies it, and the "
       "conversion checks it against the token vectors of the training prompts the checkpoint keeps. The checkpoint "
       "does not store its frame count: `--num-frames` sets the frames the processor samples.")}

## Evaluation results

Figures of the ViFi-CLIP README (Model Zoo); they were not re-measured with `xclip_hf`.

| Dataset | Metric | Value (%) | Protocol |
| --- | --- | --- | --- |
{rows}

## Preprocessing

{_wrap(f"{r.frames} frames sampled sparsely (one per equal segment); short side resized to 256 px (bilinear), "
       "224 x 224 "
       "centre crop; pixel values scaled to [0, 1] and normalised with the ImageNet mean (0.485, 0.456, 0.406) and "
       "standard deviation (0.229, 0.224, 0.225): the X-CLIP evaluation pipeline ViFi-CLIP's code is based on.")}

## How to use

```python
import xclip_hf
from transformers import pipeline

clf = pipeline("zero-shot-video-classification", model="{r.name}")
print(clf("video.mp4", candidate_labels=["archery", "juggling balls"], hypothesis_template="a photo of a {{}}."))
```

## Limitations and bias

* Scores are a softmax over the given labels: the best label always gets a high score, even if none of them fits.
* {_wrap("The training clips are web and film video with English labels; CLIP, the starting point, learned from "
         "unfiltered web image-text pairs and carries social biases that can carry over to video predictions.", "  ")}
* {_wrap("The weights' license is not stated in the ViFi-CLIP repository; check with its authors before reuse.", "  ")}

## Citation

```bibtex
{BIBTEX}
```
"""


def render_index(gflops: dict[str, float]) -> str:
    """model_cards/vificlip/README.md: one row per card."""
    rows = "\n".join(
        f"| [`{r.name}`]({r.name}.md) | {r.setting} | {r.frames} | {r.trained_on} | "
        f"{DATASETS[r.figures[0].dataset][0]} {r.figures[0].metric.lower()} {r.figures[0].value} | "
        f"{gflops[r.name]:.1f} |"
        for r in RELEASES.values())
    return f"""# Model cards of the released ViFi-CLIP checkpoints

{_wrap("One card per released, fully fine-tuned ViFi-CLIP ViT-B/16 checkpoint (github.com/muzairkhattak/ViFi-CLIP), "
       "as converted by `xclip-hf convert --from vificlip`; generated by `generate.py` from the figures of the "
       "ViFi-CLIP README. Regenerate with `HF_HUB_OFFLINE=1 python model_cards/vificlip/generate.py` (`--check`: "
       "verify). The prompt-learning ('bridge and prompt') checkpoints hold learned prompt tokens, which the "
       "conversion refuses: no cards.")}

| Card | Setting | Frames | Trained on | Headline (ViFi-CLIP README) | GFLOPs/view |
| --- | --- | --- | --- | --- | --- |
{rows}
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if a card is missing or stale")
    args = parser.parse_args(argv)
    gflops = {name: count_gflops(r) for name, r in RELEASES.items()}
    files = {f"{name}.md": render_card(name, gflops[name]) for name in RELEASES}
    files["README.md"] = render_index(gflops)
    stale = []
    for filename, text in files.items():
        path = os.path.join(CARD_DIR, filename)
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current != text:
            stale.append(filename)
            if not args.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
    if args.check and stale:
        print(f"stale or missing: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
