"""Which model a job's rows come from: a sha256 fingerprint of the model's video side (or of the whole model)."""

from __future__ import annotations

import hashlib
import json
import weakref

__all__ = ["model_fingerprint", "short", "what_differs"]

# config entries that do not change the rows: bookkeeping, output flags, initialisation and training-only settings
_NOT_ROW_SHAPING = {"transformers_version", "architectures", "output_hidden_states", "output_attentions",
                    "return_dict", "dtype", "torch_dtype", "chunk_size_feed_forward", "is_encoder_decoder", "id2label",
                    "label2id", "problem_type", "initializer_range", "initializer_factor", "drop_path_rate",
                    "attention_dropout", "use_cache", "tie_word_embeddings"}
_FORMAT = "xclip-video-side-v1"
_WHOLE_FORMAT = "xclip-whole-model-v1"

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _video_side(model):
    """The module the rows come from: an XClipModel's `vision_model`, or an XClipVisionModel itself."""
    return getattr(model, "vision_model", model)


def _config_text(config) -> str:
    items = {k: v for k, v in config.to_dict().items() if not k.startswith("_") and k not in _NOT_ROW_SHAPING}
    return json.dumps(items, sort_keys=True, default=str)


def _hash(module, whole: bool = False) -> str:
    import torch

    digest = hashlib.sha256((_WHOLE_FORMAT if whole else _FORMAT).encode())
    digest.update(_config_text(module.config).encode())
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach()
        digest.update(f"\n{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        if tensor.numel():
            data = tensor.to("cpu").contiguous().reshape(-1).view(torch.uint8)
            digest.update(memoryview(data.numpy()))
    return "sha256:" + digest.hexdigest()


def model_fingerprint(model, whole: bool = False) -> str:
    """``"sha256:<hex>"`` of the model's video side (``whole=True``: the whole model), config and weights.

    Kept per object until its weights change; an exported model gives its source's (``+int8`` for int8 graphs).
    """
    from ..models.fingerprint import weights_key

    # an exported model: the fingerprint of its source, recorded at export
    recorded = getattr(model, "source_whole_fingerprint" if whole else "source_fingerprint", None)
    if recorded:
        return recorded
    module = model if whole else _video_side(model)
    weights, keepalive = weights_key(module)
    key = (weights, _config_text(module.config), whole)
    cached = _CACHE.get(module)
    if cached is not None and cached[0] == key:
        return cached[2]
    fingerprint = _hash(module, whole)
    _CACHE[module] = (key, keepalive, fingerprint)  # keepalive: no new weights can take the addresses the key names
    return fingerprint


def short(fingerprint: str | None) -> str:
    """A fingerprint shortened for messages (an export's precision mark kept: ``78bec30715d1+int8``)."""
    if not fingerprint:
        return "none"
    digest, plus, precision = fingerprint.split(":", 1)[-1].partition("+")
    return digest[:12] + plus + precision


def _precision(fingerprint: str) -> str:
    return fingerprint.partition("+")[2] or "float32"


def what_differs(recorded: str | None, fingerprint: str | None) -> str:
    """What differs between two fingerprints when only an export's precision does, else ``""``."""
    if not recorded or not fingerprint or recorded.partition("+")[0] != fingerprint.partition("+")[0]:
        return ""
    return f"; the same source model at another precision: {_precision(recorded)} vs {_precision(fingerprint)}"
