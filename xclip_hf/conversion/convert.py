"""A checkpoint of the original X-CLIP code -> a model directory: `convert_original_checkpoint` (`xclip-hf convert`)."""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from ..models.configuration_xclip import XClipConfig
from ..utils.messages import one_line
from .original import load_original, read_original

__all__ = ["ORIGINAL_MEAN_255", "ORIGINAL_STD_255", "ConvertedCheckpoint", "convert_original_checkpoint",
           "original_video_processor", "progress_bar", "write_converted", "convert_with"]

# the original code normalises 0-255 frames with the ImageNet statistics
ORIGINAL_MEAN_255 = (123.675, 116.28, 103.53)
ORIGINAL_STD_255 = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ConvertedCheckpoint:
    """What `convert_original_checkpoint` wrote: model directory, inferred config, notes, tokenizer, classifier."""

    output_dir: str
    config: XClipConfig
    notes: tuple[str, ...] = ()
    has_tokenizer: bool = False
    classifier_dir: str | None = None
    class_names: tuple[str, ...] = ()

    def __fspath__(self) -> str:
        return self.output_dir


def original_video_processor(config):
    """The original evaluation preprocessing: short side 256/224 of the input size, centre crop, ImageNet mean/std."""
    from transformers.image_utils import PILImageResampling

    from ..models.video_processing_xclip import XClipVideoProcessor

    crop = config.vision_config.image_size
    return XClipVideoProcessor(
        num_frames=config.vision_config.num_frames, size={"shortest_edge": int(crop * 256 / 224 + 0.5)},
        crop_size={"height": crop, "width": crop}, resample=PILImageResampling.BILINEAR, do_rescale=True,
        rescale_factor=1 / 255, image_mean=[round(m / 255, 10) for m in ORIGINAL_MEAN_255],
        image_std=[round(s / 255, 10) for s in ORIGINAL_STD_255],
    )


@contextlib.contextmanager
def _writing(path: str):
    """Name `path` in any failure while writing it (disk full, read-only file system: writers often name no file)."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - whatever the writer raised, the output could not be written
        raise OSError(f"cannot write {path!r}: {type(err).__name__}: {one_line(err)}") from err


def _check_inputs(checkpoint: str, output_dir: str, bpe, labels, template: str, num_frames, clip_source=None,
                  alpha=None) -> None:
    """Cheap checks before any heavy work: bad values (`ValueError`), then missing files, each naming the input."""
    _check_weight_ensembling(clip_source, alpha)
    if labels is not None and bpe is None:
        raise ValueError(f"labels={labels!r} needs bpe (CLIP's BPE merges file): the class names are tokenized "
                         "with CLIP's tokenizer")
    if "{}" not in template:
        raise ValueError(f"template {template!r} has no '{{}}' for the class name")
    if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1):
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    files = [("checkpoint", checkpoint), ("bpe", bpe)] + ([("labels", labels)] if _is_path(labels) else [])
    for name, value in files:
        if value is not None and not os.path.isfile(value):
            raise FileNotFoundError(f"{name} file {os.fspath(value)!r} does not exist")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise NotADirectoryError(f"output directory {output_dir!r} exists and is not a directory")


def _check_weight_ensembling(clip_source, alpha) -> None:
    """`clip_source` and `alpha` go together, `alpha` a number in [0, 1] (`ValueError` naming them)."""
    from ..models.weight_ensembling import check_alpha

    if (clip_source is None) != (alpha is None):
        raise ValueError(f"clip_source={clip_source!r} and alpha={alpha!r}: weight-space ensembling needs both")
    if alpha is not None:
        check_alpha(alpha)


def _is_path(labels) -> bool:
    """Whether `labels` names a labels CSV (rather than being the class names themselves)."""
    return isinstance(labels, (str, os.PathLike))


def _class_names(labels) -> list[str] | None:
    """The class names of `labels`: read from an `id,name` CSV path, or given as a sequence of names."""
    if labels is None:
        return None
    if _is_path(labels):
        from ..data.annotations import read_labels_file

        return read_labels_file(labels)
    if not isinstance(labels, Sequence) or not labels or not all(isinstance(n, str) and n.strip() for n in labels):
        raise ValueError(f"labels must be the path of an id,name CSV or a non-empty list of class names, got {labels!r}")
    return list(labels)


def _check_num_frames(checkpoint: str, ckpt, num_frames) -> None:
    """Refuse a checkpoint trained with another number of frames than the caller expects."""
    frames = ckpt.config.vision_config.num_frames
    if num_frames is not None and num_frames != frames:
        raise ValueError(f"{checkpoint} was trained with {frames} frames per clip (mit.positional_embedding "
                         f"{tuple(ckpt.state_dict['mit.positional_embedding'].shape)}), not num_frames={num_frames}")


def _tokenizer_for(bpe: str, config: XClipConfig):
    """CLIP's tokenizer from the merges file `bpe`, checked to fit the model's vocabulary (nothing written)."""
    from .clip_bpe import build_tokenizer_from_bpe

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer_from_bpe(bpe, tmp)
    if len(tokenizer) != config.text_config.vocab_size:
        raise ValueError(f"bpe file {bpe!r} gives {len(tokenizer)} tokens but the checkpoint's token_embedding has "
                         f"{config.text_config.vocab_size} rows")
    return tokenizer


def _save_processor(video_processor, tokenizer, directory):
    """XClipProcessor (video processor + tokenizer), or the video processor alone without a tokenizer."""
    from ..models.processing_xclip import XClipProcessor

    if tokenizer is None:
        video_processor.save_pretrained(directory)
        return None
    processor = XClipProcessor(video_processor=video_processor, tokenizer=tokenizer)
    processor.save_pretrained(directory)
    return processor


def _save_classifier(model, processor, class_names, template, directory):
    """An XClipForVideoClassification with the class names as its classifier, weights from `model`."""
    from transformers.initialization import no_init_weights

    from ..models.modeling_xclip_classification import XClipForVideoClassification

    config = copy.deepcopy(model.config)
    config.id2label = dict(enumerate(class_names))
    config.label2id = {name: i for i, name in enumerate(class_names)}
    config.architectures = ["XClipForVideoClassification"]
    with no_init_weights():
        classifier = XClipForVideoClassification(config)
    classifier.xclip.load_state_dict(model.state_dict(), strict=True)
    classifier.set_class_texts(processor.tokenizer, template)
    with _writing(directory):
        classifier.eval().save_pretrained(directory)
        processor.save_pretrained(directory)


def progress_bar(steps: int, progress: bool):
    """The conversion's tqdm bar on stderr (hidden when `progress` is False or stderr is not a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc="converting", unit="step", disable=None if progress else True, file=sys.stderr)


def write_converted(model, config: XClipConfig, output_dir: str, *, bpe, class_names, template: str, bar,
                    notes=(), clip_source=None, alpha: float | None = None,
                    video_processor=original_video_processor) -> ConvertedCheckpoint:
    """Write a converted `model` (blended with `clip_source` at `alpha` first: weight-space ensembling): weights,
    processor (`video_processor(config)` + tokenizer from `bpe`), classifier of `class_names`."""
    notes = list(notes)
    if clip_source is not None:
        model.interpolate_weights(clip_source, alpha)
        notes.append(f"weights blended with the CLIP {clip_source}: {1 - alpha:g} * CLIP + {alpha:g} * the "
                     "checkpoint's")
    tokenizer = _tokenizer_for(bpe, config) if bpe else None  # must fit the model before anything is written
    with _writing(output_dir):  # disk full and friends name no file: name the output
        model.save_pretrained(output_dir)
        bar.update()
        processor = _save_processor(video_processor(config), tokenizer, output_dir)
        bar.update()
    classifier_dir = None
    if class_names:
        classifier_dir = os.path.join(output_dir, "classifier")
        _save_classifier(model, processor, class_names, template, classifier_dir)
        bar.update()
    bar.close()
    return ConvertedCheckpoint(output_dir, config, tuple(notes), tokenizer is not None, classifier_dir,
                               tuple(class_names or ()))


def convert_with(read, load, checkpoint, output_dir, *, bpe=None, labels=None, template: str = "{}",
                 num_frames: int | None = None, progress: bool = True, clip_source=None, alpha: float | None = None,
                 video_processor=original_video_processor) -> ConvertedCheckpoint:
    """The steps every converter shares: check the inputs, `read(path)` a checkpoint, `load(it)` as a model, write."""
    checkpoint, output_dir = os.fspath(checkpoint), os.fspath(output_dir)
    bpe = None if bpe is None else os.fspath(bpe)
    _check_inputs(checkpoint, output_dir, bpe, labels, template, num_frames, clip_source, alpha)
    class_names = _class_names(labels)
    bar = progress_bar(3 + (1 if class_names else 0), progress)  # read, model, processor, classifier
    ckpt = read(checkpoint)
    for note in ckpt.notes:
        bar.write(f"{checkpoint}: {note}", file=sys.stderr)
    bar.update()
    with _writing(output_dir):  # a read-only place fails now, not after the model is built
        os.makedirs(output_dir, exist_ok=True)
    model = load(ckpt)  # refuses, before building, a model that does not fit in memory
    return write_converted(model, ckpt.config, output_dir, bpe=bpe, class_names=class_names, template=template,
                           bar=bar, notes=ckpt.notes, clip_source=clip_source, alpha=alpha,
                           video_processor=video_processor)


def convert_original_checkpoint(checkpoint, output_dir, *, bpe=None, labels=None, template: str = "{}",
                                num_frames: int | None = None, trust_pickle: bool = False,
                                progress: bool = True, clip_source=None, alpha: float | None = None
                                ) -> ConvertedCheckpoint:
    """Convert an original X-CLIP .pth to a model directory (+ tokenizer from `bpe`, classifier from `labels`;
    weights blended with the CLIP checkpoint `clip_source` at `alpha`, `XClipModel.interpolate_weights`)."""
    def read(path):
        ckpt = read_original(path, trust_pickle=trust_pickle)
        _check_num_frames(path, ckpt, num_frames)
        return ckpt

    return convert_with(read, load_original, checkpoint, output_dir, bpe=bpe, labels=labels, template=template,
                        num_frames=num_frames, progress=progress, clip_source=clip_source, alpha=alpha)
