"""XClipProcessor: the X-CLIP video processor and a CLIP tokenizer behind one call.

``processor(text=labels, videos=videos, return_tensors="pt")`` returns ``input_ids`` and ``attention_mask``
(padded to the longest label by default; labels longer than the text encoder's 77 positions are truncated,
keeping the end-of-text token, with a logged warning) and ``pixel_values`` (see
:mod:`xclip_hf.video_processing_xclip` for shapes). ``from_pretrained`` reads our own saved processors and
published X-CLIP directories (a VideoMAE-style ``preprocessor_config.json`` plus CLIP tokenizer files).
"""

from __future__ import annotations

from transformers import AutoTokenizer
from transformers.image_processing_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging
from transformers.video_processing_utils import VideoProcessorMixin

from .video_processing_xclip import XClipVideoProcessor

logger = logging.get_logger(__name__)

__all__ = ["XClipProcessor", "MAX_TEXT_LENGTH"]

MAX_TEXT_LENGTH = 77  # CLIP text encoder positions (paper Sec. 3.3 uses CLIP's text encoder unchanged)


def _as_label_list(text) -> list[str]:
    """A label or list of labels -> list[str]; ValueError naming the bad entry otherwise."""
    labels = [text] if isinstance(text, str) else text
    if not isinstance(labels, (list, tuple)) or len(labels) == 0:
        raise ValueError(f"text must be a string or a non-empty list of strings, got {type(text).__name__}")
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise ValueError(f"text[{i}] must be a string, got {type(label).__name__}: {label!r}")
    return list(labels)


class XClipProcessor(ProcessorMixin):
    """Video processor + CLIP tokenizer for X-CLIP (paper Sec. 3: video encoder and text encoder inputs)."""

    def __init__(self, video_processor=None, tokenizer=None, **kwargs):
        if video_processor is None:
            video_processor = XClipVideoProcessor()
        if tokenizer is None:
            raise ValueError("XClipProcessor needs a tokenizer (a CLIPTokenizer / CLIPTokenizerFast)")
        super().__init__(video_processor, tokenizer, **kwargs)

    def check_argument_for_proper_class(self, argument_name, argument):
        """Type check; the video processor is checked directly (transformers' lookup needs torchvision)."""
        if argument_name == "video_processor":
            if not isinstance(argument, VideoProcessorMixin):
                raise TypeError(f"video_processor must be a video processor, got {type(argument).__name__}")
            return type(argument)
        return super().check_argument_for_proper_class(argument_name, argument)

    def tokenize_labels(self, text, padding=True, max_length: int | None = None, return_tensors=None) -> dict:
        """Tokenize labels, padding to the longest and truncating past ``max_length`` (77) with a warning."""
        labels = _as_label_list(text)
        max_length = max_length or MAX_TEXT_LENGTH
        lengths = [len(ids) for ids in self.tokenizer(labels, add_special_tokens=True, verbose=False)["input_ids"]]
        too_long = [(label, n) for label, n in zip(labels, lengths) if n > max_length]
        if too_long:
            shown = ", ".join(f"{label[:40]!r} ({n} tokens)" for label, n in too_long[:3])
            logger.warning(
                f"{len(too_long)} label(s) exceed {max_length} tokens and are truncated (end-of-text kept): {shown}"
            )
        return self.tokenizer(
            labels, padding=padding, truncation=True, max_length=max_length, return_tensors=return_tensors
        )

    def __call__(self, text=None, videos=None, return_tensors=None, padding=True, max_length=None, **video_kwargs):
        """Tokenize ``text`` and/or process ``videos``; returns input_ids, attention_mask, pixel_values."""
        if text is None and videos is None:
            raise ValueError("XClipProcessor needs text, videos or both")
        data = {}
        if text is not None:
            data.update(self.tokenize_labels(text, padding=padding, max_length=max_length, return_tensors=return_tensors))
        if videos is not None:
            data.update(self.video_processor(videos, return_tensors=return_tensors, **video_kwargs))
        return BatchFeature(data=data, tensor_type=return_tensors)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """Load our video processor (own or published VideoMAE-style config) and the CLIP tokenizer."""
        video_processor = XClipVideoProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return [video_processor, tokenizer]

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def register_processor() -> None:
    """Register XClipProcessor with AutoProcessor for XClipConfig."""
    from transformers import AutoProcessor

    try:
        from .configuration_xclip import XClipConfig
    except ImportError:
        return
    AutoProcessor.register(XClipConfig, XClipProcessor, exist_ok=True)

register_processor()
