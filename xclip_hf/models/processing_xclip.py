"""XClipProcessor: the X-CLIP video processor and a CLIP tokenizer behind one call, with the label checks."""

from __future__ import annotations

import os

from transformers import AutoTokenizer
from transformers.image_processing_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging
from transformers.video_processing_utils import VideoProcessorMixin

from .video_processing_xclip import XClipVideoProcessor

logger = logging.get_logger(__name__)

__all__ = ["XClipProcessor", "MAX_TEXT_LENGTH", "check_label_tokens", "check_tokenizer_vocabulary", "load_tokenizer"]

# Files from which a tokenizer can be built: a fast tokenizer.json, a BPE vocab.json + merges.txt (CLIP), or the
# vocabulary files of other tokenizer kinds.
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("tokenizer.model",), ("spiece.model",),
                       ("vocab.txt",))
MIN_VOCABULARY = 3  # fewer tokens: built from nothing (special tokens only)

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


def load_tokenizer(pretrained_model_name_or_path, **kwargs):
    """`AutoTokenizer.from_pretrained`, refusing a local directory without tokenizer files (naming them)."""
    path = os.fspath(pretrained_model_name_or_path)
    folder = os.path.join(path, kwargs.get("subfolder") or "")
    if os.path.isdir(folder):
        present = set(os.listdir(folder))
        if not any(all(name in present for name in names) for names in TOKENIZER_FILE_SETS):
            found = ", ".join(sorted(present)[:12]) or "nothing"
            raise FileNotFoundError(
                f"{folder!r} has no tokenizer files: missing tokenizer.json, or vocab.json and merges.txt (found: "
                f"{found}). Save the tokenizer there (tokenizer.save_pretrained({folder!r})) or pass a tokenizer; "
                "without them transformers builds an empty tokenizer and every label would get the same score."
            )
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    check_tokenizer_vocabulary(tokenizer, path)
    return tokenizer


def check_tokenizer_vocabulary(tokenizer, source, vocab_size: int | None = None) -> None:
    """ValueError when the tokenizer's vocabulary is empty or under a tenth of the text encoder's `vocab_size`."""
    size = len(tokenizer)
    if size < MIN_VOCABULARY or (vocab_size is not None and size * 10 < vocab_size):
        expected = f" the text encoder has {vocab_size} token embeddings;" if vocab_size is not None else ""
        raise ValueError(
            f"The tokenizer of {source!r} has a vocabulary of {size} tokens;{expected} it is not the model's tokenizer "
            "(were its vocab.json / merges.txt or tokenizer.json missing?). Every label would tokenize alike. Pass the "
            "tokenizer the model was trained with."
        )


def check_label_tokens(labels, input_ids, attention_mask=None, vocab_size: int | None = None,
                       distinct: bool = True) -> None:
    """ValueError naming distinct labels with identical ids (unless not `distinct`), or ids outside [0, vocab_size)."""
    ids = input_ids.tolist() if hasattr(input_ids, "tolist") else [list(row) for row in input_ids]
    if attention_mask is not None:
        mask = attention_mask.tolist() if hasattr(attention_mask, "tolist") else attention_mask
        ids = [[t for t, m in zip(row, mrow) if m] for row, mrow in zip(ids, mask)]
    if vocab_size is not None:
        bad = sorted({t for row in ids for t in row if not 0 <= t < vocab_size})
        if bad:
            where = [label for label, row in zip(labels, ids) if any(not 0 <= t < vocab_size for t in row)]
            raise ValueError(
                f"token ids {bad[:10]}{' ...' if len(bad) > 10 else ''} (labels {where[:3]!r}) are outside the text "
                f"encoder's vocabulary of {vocab_size} tokens: the tokenizer does not belong to this model."
            )
    if not distinct:
        return
    groups: dict[tuple, list[str]] = {}
    for label, row in zip(labels, ids):
        groups.setdefault(tuple(row), []).append(label)
    clashes = [group for group in groups.values() if len(group) > 1]
    if clashes:
        shown = "; ".join(" = ".join(repr(label) for label in group) for group in clashes[:5])
        raise ValueError(
            f"labels that tokenize to the same ids: {shown}. The model cannot tell them apart and would split their "
            "probability (CLIP's tokenizer lowercases and normalises white space; a tokenizer without its vocabulary "
            "maps every word to one token). Keep one of each, or use the model's tokenizer."
        )


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

    def tokenize_labels(self, text, padding=True, max_length: int | None = None, return_tensors=None,
                        vocab_size: int | None = None, distinct: bool = True) -> dict:
        """Tokenize labels, padded to the longest, truncated past ``max_length`` (77) with a warning, then checked."""
        labels = _as_label_list(text)
        max_length = max_length or MAX_TEXT_LENGTH
        lengths = [len(ids) for ids in self.tokenizer(labels, add_special_tokens=True, verbose=False)["input_ids"]]
        too_long = [(label, n) for label, n in zip(labels, lengths) if n > max_length]
        if too_long:
            shown = ", ".join(f"{label[:40]!r} ({n} tokens)" for label, n in too_long[:3])
            logger.warning(
                f"{len(too_long)} label(s) exceed {max_length} tokens and are truncated (end-of-text kept): {shown}"
            )
        tokens = self.tokenizer(
            labels, padding=padding, truncation=True, max_length=max_length, return_tensors=return_tensors
        )
        check_label_tokens(labels, tokens["input_ids"], tokens.get("attention_mask"), vocab_size, distinct)
        return tokens

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
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Our video processor (own or published config) and the CLIP tokenizer, each loaded by its own class."""
        video_processor = XClipVideoProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
        tokenizer = load_tokenizer(pretrained_model_name_or_path, **kwargs)
        return cls(video_processor=video_processor, tokenizer=tokenizer)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]
