"""The one hook through which checkpoint layouts other than ours (e.g. `models.published`) enter `from_pretrained`."""

from __future__ import annotations

import importlib
import json
from typing import Protocol

__all__ = ["CheckpointFormat", "register_checkpoint_format", "native_config_dict", "model_loading_kwargs",
           "native_video_processor_dict", "read_config_dict", "read_json_file", "HUB_KWARGS", "select_hub_kwargs"]

# from_pretrained kwargs that locate files (passed on when a layout reads a file of the checkpoint)
HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")


def select_hub_kwargs(kwargs: dict) -> dict:
    """The `HUB_KWARGS` among from_pretrained `kwargs` (what a layout passes on when it reads a checkpoint file)."""
    return {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}


class CheckpointFormat(Protocol):
    """What a foreign checkpoint layout provides (each method returns None for checkpoints that are not its own)."""

    name: str

    def config_dict(self, config_dict: dict) -> dict | None:
        """config.json of this layout -> an `XClipConfig` dict (both towers), else None."""

    def key_mapping(self, config_dict: dict) -> dict[str, str] | None:
        """Weight-name regexes (checkpoint -> `XClipModel` names) for a config.json of this layout, else None."""

    def video_processor_dict(self, path, found: dict | None, hub_kwargs: dict) -> dict | None:
        """`XClipVideoProcessor` settings for checkpoint `path` (`found`: the dict transformers read), else None."""


# module names, imported on first use; the one registration of transformers' published "xclip" layout:
_REGISTERED: list[str] = ["xclip_hf.models.published"]


def register_checkpoint_format(module_name: str) -> None:
    """Make our configs, models and video processor read the layout of module `module_name` (`CHECKPOINT_FORMAT`)."""
    if module_name not in _REGISTERED:
        _REGISTERED.append(module_name)


def _formats() -> list[CheckpointFormat]:
    return [importlib.import_module(name).CHECKPOINT_FORMAT for name in _REGISTERED]


def native_config_dict(config_dict: dict) -> dict:
    """`config_dict` converted to ours by the first layout that recognises it (unchanged when none does)."""
    for fmt in _formats():
        converted = fmt.config_dict(config_dict)
        if converted is not None:
            return converted
    return config_dict


def native_video_processor_dict(path, found: dict | None, hub_kwargs: dict) -> dict | None:
    """Video-processor settings of `path`: converted by a layout that recognises the checkpoint, else `found`."""
    for fmt in _formats():
        converted = fmt.video_processor_dict(path, found, hub_kwargs)
        if converted is not None:
            return converted
    return found


def read_json_file(path_or_hub_id, filename: str, **hub_kwargs) -> dict | None:
    """A JSON file of a local directory or hub repo, or None when it cannot be resolved (offline, missing)."""
    from transformers.utils import cached_file

    try:
        resolved = cached_file(path_or_hub_id, filename, _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False, **hub_kwargs)
    except (OSError, ValueError):
        return None
    if resolved is None:
        return None
    with open(resolved, encoding="utf-8") as f:
        return json.load(f)


def read_config_dict(path_or_hub_id, **hub_kwargs) -> dict | None:
    """config.json of a local directory or hub repo, or None when it cannot be resolved (offline, missing)."""
    return read_json_file(path_or_hub_id, "config.json", **hub_kwargs)


def _sub_model_mapping(mapping: dict, prefix: str) -> dict:
    """Key mapping for a sub-model (`prefix` "vision_model." / "text_model."): the two-tower renames, `prefix` cut."""
    sub = {src: tgt[len(prefix):] if tgt.startswith(prefix) else tgt for src, tgt in mapping.items()}
    sub["^" + prefix.replace(".", r"\.")] = ""
    return sub


def model_loading_kwargs(model_cls, path_or_hub_id, kwargs: dict, two_tower_config_cls) -> dict:
    """from_pretrained kwargs (config, key_mapping) loading another layout or a two-tower checkpoint in `model_cls`."""
    if path_or_hub_id is None or not isinstance(kwargs.get("config", None), (type(None), str)):
        return kwargs
    raw = read_config_dict(path_or_hub_id, **select_hub_kwargs(kwargs))
    if raw is None:
        return kwargs
    sub_key = model_cls.config_class.base_config_key  # "" for two-tower models
    mapping = None
    for fmt in _formats():
        native = fmt.config_dict(raw)
        if native is not None:
            mapping = dict(fmt.key_mapping(raw) or {})
            break
    else:
        if raw.get("model_type") != "xclip_hf" or not sub_key:  # ours, loaded into the class it was saved from
            return kwargs
        native = raw
    kwargs = dict(kwargs)
    config = two_tower_config_cls.from_dict(native)
    kwargs["config"] = getattr(config, sub_key) if sub_key else config
    if sub_key:
        mapping = _sub_model_mapping(mapping or {}, sub_key.replace("_config", "_model."))
    if mapping:
        kwargs.setdefault("key_mapping", mapping)
    return kwargs
