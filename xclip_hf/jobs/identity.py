"""Which model a job's rows come from: a fingerprint of the model side they depend on (the code version that wrote
them: `xclip_hf.version.package_version`).

Rows of `embed` depend only on the model's video side (the `XClipVisionModel`: frame encoder, MIT, projection and
the prompt context z-bar), so that is what is fingerprinted: its config (minus bookkeeping such as the transformers
version, output flags and initialisation settings) and every weight's name, dtype, shape and bytes (sha256). The
same model therefore has the same fingerprint however it is named (``./model``, an absolute path, another working
directory, an object), and new weights saved under the same path have another one. A model whose text tower alone
changed keeps its fingerprint: its rows are the same vectors. Weights are hashed as given: the same checkpoint
cast to another dtype is another model.

`model_fingerprint(model, whole=True)` hashes the whole model the same way (video and text sides, prompt generator,
logit scale): what a classifier's scores depend on (`xclip-hf evaluate`'s predictions).

Hashing reads every weight once (for X-CLIP B/32, about 350 MB on the video side: a fraction of a second); the
result is kept per model object and recomputed only when its weights change (`models.fingerprint.weights_key`).
"""

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
    """``"sha256:<hex>"`` of the model's video side (config and weights; ``whole=True``: of the whole model); kept
    per object until its weights change. An exported model gives its source model's (marked ``+int8`` for int8
    graphs)."""
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
    """For a message about two fingerprints: what differs when it is only the precision of an export of the same
    model (``"; the same source model at another precision: float32 vs int8"``), else ``""``."""
    if not recorded or not fingerprint or recorded.partition("+")[0] != fingerprint.partition("+")[0]:
        return ""
    return f"; the same source model at another precision: {_precision(recorded)} vs {_precision(fingerprint)}"
