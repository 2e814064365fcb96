"""Fine-tune X-CLIP for video classification with the Trainer and the paper's recipe (supplementary Sec. 2-3).

    python -m xclip_hf.training.run_video_classification --model_name_or_path CKPT --train_file train.txt \\
        --validation_file val.txt --labels_file labels.csv --video_root videos/ --output_dir out \\
        --do_train --do_eval --per_device_train_batch_size 8 --num_train_epochs 30

Options and data formats: examples/README.md.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field

import datasets
import transformers
from transformers import AutoTokenizer, HfArgumentParser, TrainingArguments, set_seed

from .. import XClipConfig, XClipForVideoClassification, XClipProcessor
from ..models.configuration_xclip import POSITION_EMBEDDING_INITS
from ..models.video_processing_xclip import XClipVideoProcessor
from ..version import package_version
from . import (
    BAD_VIDEO_POLICIES,
    BadVideoCallback,
    MixupCutmix,
    SkipBadSamplesCollator,
    VideoClipTransform,
    VideoTrainAugmentation,
    XClipTrainer,
    check_disjoint_label_sets,
    check_videos,
    load_topk_accuracy,
    load_video_dataset,
    read_labels_file,
    sample_k_shot,
)

__all__ = ["ModelArguments", "DataTrainingArguments", "VideoTrainingArguments", "parse_overrides", "config_from_variant",
           "match_special_tokens", "build_model", "build_video_processor", "load_data", "validate_eval_settings",
           "screen_videos", "main"]

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    """Which X-CLIP to start from, and which parts of it to train."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "X-CLIP checkpoint (ours or the published format) to fine-tune."})
    init_from_clip: str | None = field(default=None, metadata={"help": "A transformers CLIP checkpoint to expand into X-CLIP (paper Sec. 3.2, Initialization)."})
    model_variant: str | None = field(default=None, metadata={"help": "Train from scratch: a variant of XClipConfig.from_variant, e.g. xclip-tiny."})
    config_overrides: str | None = field(default=None, metadata={"help": "Config overrides 'key=value,...' for --init_from_clip / --model_variant, e.g. 'use_mit=false,use_cross_frame_attention=false' (CLIP-Mean); a field of both towers as vision_config.<field> / text_config.<field> (XClipConfig.from_variant's rule, route_overrides)."})
    num_frames: int = field(default=8, metadata={"help": "Frames per clip for --init_from_clip / --model_variant (a checkpoint keeps its own)."})
    position_init: str = field(default="random", metadata={"help": "--model_variant only: the model's vision_config.position_embedding_init, 'random' (CLIP's init) or 'sincos' (a fixed 2-D sin-cos pattern, still trained, scaled to the patch embedding's output; a small ViT from scratch otherwise sees a bag of patches).", "choices": ["random", "sincos"]})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer directory (default: the model or CLIP checkpoint)."})
    video_processor_name: str | None = field(default=None, metadata={"help": "Video processor directory (default: the checkpoint's, else one sized for the model)."})
    prompt_template: str = field(default="{}", metadata={"help": "Text template of the class names; the paper uses the bare label."})
    new_lr_scale: float = field(default=10.0, metadata={"help": "Learning-rate multiplier of the randomly initialised modules (supp. Sec. 2.1)."})
    freeze_text_encoder: bool = field(default=False, metadata={"help": "Freeze the text encoder and cache the class features (paper Tab. 7)."})
    freeze_vision_encoder: bool = field(default=False, metadata={"help": "Freeze the pretrained image encoder; new modules still train (paper Tab. 7)."})


@dataclass
class DataTrainingArguments:
    """Where the videos and labels are, and how to sample and augment them."""

    train_file: str | None = field(default=None, metadata={"help": "X-CLIP annotation .txt, or .csv/.json/.jsonl."})
    validation_file: str | None = field(default=None, metadata={"help": "Same formats as --train_file."})
    labels_file: str | None = field(default=None, metadata={"help": "Class names: csv with header id,name (X-CLIP format)."})
    eval_labels_file: str | None = field(default=None, metadata={"help": "Zero-shot: class names of --validation_file, disjoint from the training classes."})
    video_root: str | None = field(default=None, metadata={"help": "Folder the video paths are relative to (default: the data file's folder)."})
    video_column_name: str = field(default="video", metadata={"help": "Video path column of CSV/JSON files."})
    label_column_name: str = field(default="label", metadata={"help": "Label column of CSV/JSON files (ids or names)."})
    k_shot: int | None = field(default=None, metadata={"help": "Few-shot: keep K training videos per class, drawn with --seed (supp. Sec. 3.3)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set (debugging)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the evaluation set (debugging)."})
    mixup: bool = field(default=False, metadata={"help": "Mixup / cutmix on training batches (supp. Tab. 1)."})
    mixup_alpha: float = field(default=0.8, metadata={"help": "Mixup Beta(alpha, alpha)."})
    cutmix_alpha: float = field(default=1.0, metadata={"help": "Cutmix Beta(alpha, alpha)."})
    flip_prob: float = field(default=0.5, metadata={"help": "Horizontal flip probability. Set 0 when left/right is part of the label."})
    color_jitter_prob: float = field(default=0.8, metadata={"help": "Colour jitter probability."})
    grayscale_prob: float = field(default=0.2, metadata={"help": "Grayscale probability."})
    num_temporal_clips: int = field(default=1, metadata={"help": "Evaluation temporal views (paper: 4 fully supervised, 1 few/zero-shot)."})
    num_spatial_crops: int = field(default=1, metadata={"help": "Evaluation spatial crops: 1 (centre) or 3 (paper, fully supervised)."})
    on_bad_video: str = field(default="skip", metadata={"help": "A video that cannot be decoded or processed: 'skip' (drop it from its batch, log it once, count it) or 'raise' (stop, naming it).", "choices": list(BAD_VIDEO_POLICIES)})
    max_bad_video_fraction: float = field(default=0.1, metadata={"help": "With --on_bad_video skip: stop with an error when more than this fraction of the listed videos is broken."})
    check_videos: bool = field(default=False, metadata={"help": "Before training, open every listed video and decode one clip; broken files are reported (and skipped, or raise with --on_bad_video raise)."})


def _default(name: str, value):
    """A TrainingArguments field with our default value (supplementary Tab. 1 where it has one) and the original help."""
    return field(default=value, metadata=TrainingArguments.__dataclass_fields__[name].metadata)


@dataclass
class VideoTrainingArguments(TrainingArguments):
    """TrainingArguments with the paper's fully-supervised recipe as defaults (supplementary Tab. 1)."""

    learning_rate: float = _default("learning_rate", 8e-6)
    weight_decay: float = _default("weight_decay", 0.001)
    label_smoothing_factor: float = _default("label_smoothing_factor", 0.1)
    adam_beta2: float = _default("adam_beta2", 0.98)
    lr_scheduler_type: str = _default("lr_scheduler_type", "cosine")
    warmup_steps: float = _default("warmup_steps", 5 / 30)  # 5 warmup epochs of 30
    remove_unused_columns: bool = _default("remove_unused_columns", False)  # the lazy transform needs "video"
    ddp_find_unused_parameters: bool | None = _default("ddp_find_unused_parameters", False)  # every parameter is used


def parse_overrides(text: str | None) -> dict:
    """'a=1,b=false,c=x' -> {'a': 1, 'b': False, 'c': 'x'} (values parsed as JSON when they can be)."""
    overrides = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--config_overrides: expected key=value, got {item!r}")
        value = value.strip()
        try:
            overrides[key.strip()] = json.loads(value.lower() if value.lower() in ("true", "false", "null") else value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


def config_from_variant(variant: str, num_frames: int, overrides: dict) -> XClipConfig:
    """`XClipConfig.from_variant` with --config_overrides (each key goes to the config that owns it)."""
    try:
        return XClipConfig.from_variant(variant, num_frames=num_frames, **overrides)
    except ValueError as err:
        raise ValueError(f"--config_overrides: {err}") from err


def match_special_tokens(text_config, tokenizer) -> None:
    """Copy the tokenizer's PAD/BOS/EOS ids into the text config, so the saved config and tokenizer agree."""
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            setattr(text_config, name, value)


def build_model(model_args: ModelArguments, class_names: list[str], tokenizer) -> XClipForVideoClassification:
    """The classifier from a checkpoint, an expanded CLIP or a fresh variant, with the class texts set."""
    sources = [s for s in (model_args.model_name_or_path, model_args.init_from_clip, model_args.model_variant) if s]
    if len(sources) != 1:
        raise ValueError("pass exactly one of --model_name_or_path, --init_from_clip, --model_variant")
    if model_args.position_init not in POSITION_EMBEDDING_INITS:
        raise ValueError(f"--position_init: {model_args.position_init!r} is not one of {POSITION_EMBEDDING_INITS}")
    if model_args.position_init != "random" and not model_args.model_variant:
        raise ValueError("--position_init sincos applies to --model_variant (from scratch), not to pretrained weights")
    overrides = parse_overrides(model_args.config_overrides)
    id2label = dict(enumerate(class_names))
    if model_args.model_name_or_path:
        if overrides:
            raise ValueError("--config_overrides applies to --init_from_clip / --model_variant, not to a trained checkpoint")
        model = XClipForVideoClassification.from_pretrained(model_args.model_name_or_path)
    elif model_args.init_from_clip:
        try:
            model = XClipForVideoClassification.from_clip(model_args.init_from_clip, num_frames=model_args.num_frames,
                                                          **overrides)
        except ValueError as err:
            raise ValueError(f"--config_overrides: {err}") from err
    else:
        overrides.setdefault("vocab_size", len(tokenizer))
        if model_args.position_init != "random":
            overrides["vision_config.position_embedding_init"] = model_args.position_init
        model = XClipForVideoClassification(config_from_variant(model_args.model_variant, model_args.num_frames, overrides))
    match_special_tokens(model.config.text_config, tokenizer)
    model.set_class_texts(tokenizer, model_args.prompt_template, id2label=id2label)
    if model_args.freeze_text_encoder:
        model.freeze_text_encoder()
    if model_args.freeze_vision_encoder:
        model.freeze_vision_encoder()
    return model


def build_video_processor(model_args: ModelArguments, model) -> XClipVideoProcessor:
    """The checkpoint's video processor, or the paper's evaluation pipeline sized for the model (resize 256/224 x crop)."""
    source = model_args.video_processor_name or model_args.model_name_or_path
    configs = ("processor_config.json", "video_preprocessor_config.json", "preprocessor_config.json")
    if source and any(os.path.isfile(os.path.join(source, name)) for name in configs):
        return XClipVideoProcessor.from_pretrained(source)
    crop = model.config.vision_config.image_size
    return XClipVideoProcessor(
        num_frames=model.config.vision_config.num_frames,
        size={"shortest_edge": int(crop * 256 / 224 + 0.5)},
        crop_size={"height": crop, "width": crop},
    )


def load_data(data_args: DataTrainingArguments, training_args):
    """(train dataset or None, eval dataset or None, training class names, evaluation class names)."""
    train_ds = eval_ds = None
    class_names = read_labels_file(data_args.labels_file) if data_args.labels_file else None
    kwargs = dict(video_root=data_args.video_root, video_column=data_args.video_column_name, label_column=data_args.label_column_name)
    if training_args.do_train:
        if not data_args.train_file:
            raise ValueError("--do_train needs --train_file")
        train_ds, class_names = load_video_dataset(data_args.train_file, data_args.labels_file, **kwargs)
        if data_args.k_shot:
            keep = sample_k_shot(train_ds["label"], data_args.k_shot, seed=training_args.seed, label_names=class_names)
            train_ds = train_ds.select(keep)
            logger.info(f"{data_args.k_shot}-shot: kept {len(train_ds)} training videos ({len(class_names)} classes)")
        if data_args.max_train_samples is not None:
            train_ds = train_ds.shuffle(seed=training_args.seed).select(range(min(data_args.max_train_samples, len(train_ds))))
    eval_names = class_names
    if training_args.do_eval:
        if not data_args.validation_file:
            raise ValueError("--do_eval needs --validation_file")
        labels_file = data_args.eval_labels_file or data_args.labels_file
        eval_ds, eval_names = load_video_dataset(data_args.validation_file, labels_file, **kwargs)
        if data_args.eval_labels_file and class_names is not None:
            check_disjoint_label_sets(class_names, eval_names)
        if data_args.max_eval_samples is not None:
            eval_ds = eval_ds.select(range(min(data_args.max_eval_samples, len(eval_ds))))
    if class_names is None:
        class_names = eval_names
    if class_names is None:
        raise ValueError("nothing to do: pass --do_train and/or --do_eval with data files")
    return train_ds, eval_ds, class_names, eval_names


def validate_eval_settings(data_args: DataTrainingArguments, video_processor) -> None:
    """Run the evaluation views once on a blank clip, so impossible settings fail before training, not after."""
    import numpy as np

    if data_args.on_bad_video not in BAD_VIDEO_POLICIES:
        raise ValueError(f"--on_bad_video must be one of {BAD_VIDEO_POLICIES}, got {data_args.on_bad_video!r}")
    if not 0 <= data_args.max_bad_video_fraction <= 1:
        raise ValueError(f"--max_bad_video_fraction must be in [0, 1], got {data_args.max_bad_video_fraction}")
    blank = np.zeros((video_processor.num_frames, 8, 8, 3), dtype=np.uint8)
    try:
        video_processor(blank, num_temporal_clips=data_args.num_temporal_clips,
                        num_spatial_crops=data_args.num_spatial_crops, return_tensors="pt")
    except ValueError as err:
        raise ValueError(f"evaluation settings (--num_temporal_clips {data_args.num_temporal_clips}, "
                         f"--num_spatial_crops {data_args.num_spatial_crops}): {err}") from err


def screen_videos(data_args, train_ds, eval_ds, video_processor, tracker: BadVideoCallback, disable_progress):
    """--check_videos: decode one clip of every listed video; drop (skip) or report (raise) the broken ones."""
    paths = (list(train_ds["video"]) if train_ds is not None else []) + (list(eval_ds["video"]) if eval_ds is not None else [])
    broken = check_videos(paths, video_processor, disable_progress=disable_progress)
    if not broken:
        logger.info(f"--check_videos: all {len(set(paths))} videos are readable")
        return train_ds, eval_ds
    listing = "\n".join(f"  {path}: {error}" for path, error in broken.items())
    if data_args.on_bad_video == "raise":
        raise ValueError(f"--check_videos: {len(broken)} broken video(s):\n{listing}")
    logger.warning(f"--check_videos: {len(broken)} broken video(s) will be skipped:\n{listing}")
    tracker.record(list(broken.items()))
    keep = [i for i, path in enumerate(paths[: len(train_ds) if train_ds is not None else 0]) if path not in broken]
    if train_ds is not None:
        train_ds = train_ds.select(keep)
    if eval_ds is not None:
        eval_ds = eval_ds.select([i for i, path in enumerate(eval_ds["video"]) if path not in broken])
    return train_ds, eval_ds


def main(argv=None):
    """Parse the arguments (a list, default `sys.argv[1:]`, or one .json file), train and/or evaluate; the Trainer."""
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, VideoTrainingArguments))
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)])
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.info(f"xclip_hf {package_version()}; world size {training_args.world_size}; {training_args}")
    if data_args.eval_labels_file and training_args.do_train and training_args.eval_strategy != "no":
        raise ValueError("--eval_labels_file (zero-shot) evaluates a different label set after training: use --eval_strategy no")
    set_seed(training_args.seed)

    train_ds, eval_ds, class_names, eval_names = load_data(data_args, training_args)
    tokenizer_source = model_args.tokenizer_name or model_args.model_name_or_path or model_args.init_from_clip
    if not tokenizer_source:
        raise ValueError("--model_variant needs --tokenizer_name (e.g. one built by xclip_hf.data.tokenizer.build_clip_tokenizer)")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    model = build_model(model_args, class_names, tokenizer)
    video_processor = build_video_processor(model_args, model)

    validate_eval_settings(data_args, video_processor)
    listed = set(train_ds["video"] if train_ds is not None else []) | set(eval_ds["video"] if eval_ds is not None else [])
    eval_paths = set(eval_ds["video"]) if eval_ds is not None else set()  # listed; read before set_transform (decodes)
    tracker = BadVideoCallback(len(listed), data_args.max_bad_video_fraction)
    if data_args.check_videos:
        train_ds, eval_ds = screen_videos(data_args, train_ds, eval_ds, video_processor, tracker,
                                          disable_progress=training_args.disable_tqdm or None)

    # the video processor resizes, crops to the model's image size and normalises; this replaces its crop
    augmentation = VideoTrainAugmentation(flip_prob=data_args.flip_prob, color_jitter_prob=data_args.color_jitter_prob,
                                          grayscale_prob=data_args.grayscale_prob)
    if train_ds is not None:
        train_ds.set_transform(VideoClipTransform(video_processor, augmentation, on_bad_video=data_args.on_bad_video))
    if eval_ds is not None:
        eval_ds.set_transform(VideoClipTransform(video_processor, None, data_args.num_temporal_clips,
                                                 data_args.num_spatial_crops, on_bad_video=data_args.on_bad_video))
    mixup = None
    if data_args.mixup:
        mixup = MixupCutmix(len(class_names), data_args.mixup_alpha, data_args.cutmix_alpha, label_smoothing=training_args.label_smoothing_factor)

    metric = load_topk_accuracy()

    def compute_metrics(eval_pred):
        return metric.compute(predictions=eval_pred.predictions, references=eval_pred.label_ids)

    trainer = XClipTrainer(
        model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
        processing_class=XClipProcessor(video_processor=video_processor, tokenizer=tokenizer),  # saved with the model
        compute_metrics=compute_metrics, new_lr_scale=model_args.new_lr_scale, mixup=mixup,
        data_collator=SkipBadSamplesCollator(), callbacks=[tracker],
    )

    if training_args.do_train:
        resume = training_args.resume_from_checkpoint
        resume = True if str(resume).lower() == "true" else resume
        result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()
        metrics = {**result.metrics, "world_size": training_args.world_size}
        metrics["train_samples_seen"] = trainer.videos_seen()  # videos, all processes (samples/s: videos/s)
        metrics["train_bad_videos"] = len(tracker.failures)  # distinct files skipped (listed in trainer_state.json)
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()

    if training_args.do_eval:
        if data_args.eval_labels_file:  # zero-shot: score the videos against the unseen label set
            model.set_class_texts(tokenizer, model_args.prompt_template, id2label=dict(enumerate(eval_names)))
        metrics = trainer.evaluate()
        metrics["eval_bad_videos"] = len(eval_paths & set(tracker.failures))
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    return trainer


if __name__ == "__main__":
    main()
