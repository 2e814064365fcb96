"""The one loader: a model source (folder, hub id, exported folder or object) -> an X-CLIP model and its processor.

Errors are `ModelLoadError` (a `ValueError`) naming the source and the file at fault; a wrong object type is a
`TypeError`.
"""

from __future__ import annotations

import importlib
import os
from typing import Callable, NamedTuple, Protocol, Union

from ..utils.messages import one_line

__all__ = ["ModelLoadError", "LoadedModel", "load_model", "load_model_and_processor", "resolve_model_source",
           "model_file_names", "ExportRuntime", "register_runtime", "runtime_names", "TORCH_RUNTIME",
           "ExportedFolder", "claimed_by_runtime", "is_exported_model"]

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
PROCESSOR_FILES = ("processor_config.json", "video_preprocessor_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")


class ModelLoadError(ValueError):
    """A model source that cannot be turned into a model + processor; the message names the source (and file)."""


class ExportRuntime(Protocol):
    """A way to run exported models without a torch model (see `register_runtime`)."""

    names: tuple[str, ...]  # the values of `runtime=` it serves, e.g. ("onnxruntime", "openvino")
    model_class: type  # the class of the models it loads (accepted as model objects too)

    def claims(self, directory: str) -> bool:
        """Whether the local folder `directory` is an export this runtime loads."""

    def load(self, directory: str, *, runtime: str | None, need_text: bool, dtype):
        """The model of `directory` (runtime None: the export's default); `ModelLoadError` naming the file at fault."""

    def check_processor(self, model, processor, source: str) -> None:
        """`ModelLoadError` when `processor` does not fit the exported model (frame count, input size)."""


TORCH_RUNTIME = "torch"
RuntimeSource = Union[str, Callable[[], "ExportRuntime"]]
# registered runtimes, resolved on first use: module names (each defines RUNTIME) or functions returning one
_RUNTIMES: list[RuntimeSource] = []


def register_runtime(source: RuntimeSource) -> None:
    """Register a runtime for exported folders: a module name (its `RUNTIME`) or a function returning one."""
    if source not in _RUNTIMES:
        _RUNTIMES.append(source)


def _resolve_runtime(source: RuntimeSource) -> ExportRuntime:
    """The `ExportRuntime` a registered module name or function stands for."""
    return importlib.import_module(source).RUNTIME if isinstance(source, str) else source()


def _runtimes() -> list[ExportRuntime]:
    return [_resolve_runtime(source) for source in _RUNTIMES]


def runtime_names() -> tuple[str, ...]:
    """Values `runtime=` accepts: "torch" and those of every registered runtime."""
    return (TORCH_RUNTIME,) + tuple(n for r in _runtimes() for n in r.names)


def _export_runtime(name: str, runtime: str | None) -> ExportRuntime | None:
    """The registered runtime that claims folder `name` (None: torch weights), checked against `runtime=`."""
    if runtime is not None and runtime not in runtime_names():
        raise ValueError(f"runtime must be None or one of {runtime_names()}, got {runtime!r}")
    owner = next((r for r in _runtimes() if r.claims(name)), None) if os.path.isdir(name) else None
    if owner is None and runtime not in (None, TORCH_RUNTIME):
        raise ModelLoadError(f"runtime={runtime!r} runs an exported model, and {name!r} is not one (no export "
                             "manifest): export it first with `xclip-hf export-onnx`")
    if owner is not None and runtime == TORCH_RUNTIME:
        raise ModelLoadError(f"model folder {name!r} holds exported graphs, not torch weights: load the folder it "
                             "was exported from for the torch model")
    if owner is not None and runtime is not None and runtime not in owner.names:
        raise ModelLoadError(f"model folder {name!r} runs on {owner.names}, not runtime={runtime!r}")
    return owner


def claimed_by_runtime(source) -> bool:
    """Whether `source` is a local folder that a registered runtime claims (an exported model)."""
    return isinstance(source, (str, os.PathLike)) and os.path.isdir(source) and any(
        r.claims(os.fspath(source)) for r in _runtimes())


class ExportedFolder:
    """An exported folder as transformers' `pipeline()` factory hands it to the pipeline, unopened."""

    # what the factory passes to every model class, meaningless for a local export: ignored
    HUB_KWARGS = ("_from_pipeline", "revision", "token", "trust_remote_code", "local_files_only", "cache_dir",
                  "code_revision")

    def __init__(self, directory: str, model_kwargs: dict):
        self.directory, self.model_kwargs = directory, model_kwargs

    @classmethod
    def from_pretrained(cls, source, **model_kwargs):
        """The folder, unopened, if a registered runtime claims it; OSError otherwise."""
        if not claimed_by_runtime(source):
            raise OSError(f"{source!r} is not an exported model folder (loaded as torch weights instead)")
        return cls(os.fspath(source), model_kwargs)

    @property
    def device(self):
        """The CPU (the factory reads it when given a `device_map`, which `load_arguments` then refuses)."""
        import torch

        return torch.device("cpu")

    def load_arguments(self) -> dict:
        """The factory's model arguments that apply (`dtype`); `ModelLoadError` for torch-only ones (`device_map`)."""
        wanted = sorted(k for k, v in self.model_kwargs.items() if k not in self.HUB_KWARGS + ("dtype",)
                        and v is not None)
        if wanted:
            raise ModelLoadError(f"the exported model {self.directory!r} runs its own graphs on the CPU; "
                                 f"{', '.join(wanted)}: for torch models only (load the folder it was exported from)")
        return {"dtype": self.model_kwargs.get("dtype")}


def _runtime_of(model) -> ExportRuntime | None:
    """The registered runtime whose models include the object `model`, or None."""
    return next((r for r in _runtimes() if isinstance(model, r.model_class)), None)


def is_exported_model(model) -> bool:
    """Whether the object `model` is run by a registered runtime (exported graphs, not a torch module)."""
    return _runtime_of(model) is not None


class LoadedModel(NamedTuple):
    """What `load_model_and_processor` returns: the model (eval mode) and its processor."""

    model: object
    processor: object


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def resolve_model_source(source) -> str:
    """A model given by name: an existing folder as is; `ModelLoadError` for a file, a missing path or hub id."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    text = os.fspath(source)
    if os.path.isdir(text):
        return text
    if os.path.exists(text):
        parent = os.path.dirname(text) or "."
        raise ModelLoadError(f"model {text!r} is a file; pass the folder that holds its config.json ({parent!r})")
    try:
        validate_repo_id(text)
    except HFValidationError:
        raise ModelLoadError(f"model folder {text!r} does not exist (and it is not a hub id either)") from None
    if text.startswith((".", "~")) or os.path.isabs(text):
        raise ModelLoadError(f"model folder {text!r} does not exist")
    if _offline() and not _in_hub_cache(text):
        raise ModelLoadError(f"model {text!r} is not a local folder, and with HF_HUB_OFFLINE=1 the hub id is not in "
                             "the local hub cache either")
    return text


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)


def model_file_names(source: str, kind: str) -> list[str]:
    """The files of a local model folder that a failure of `kind` ("weights", "config", "processor") concerns."""
    if not os.path.isdir(source):
        return []
    names = sorted(os.listdir(source))
    if kind == "weights":
        return [os.path.join(source, n) for n in names if n.endswith(WEIGHT_SUFFIXES)]
    if kind == "config":
        return [os.path.join(source, "config.json")] if "config.json" in names else []
    return [os.path.join(source, n) for n in PROCESSOR_FILES if n in names]


def _failure(source: str, what: str, kind: str, err: BaseException) -> ModelLoadError:
    files = model_file_names(source, kind)
    where = ", ".join(repr(f) for f in files) if files else repr(source)
    return ModelLoadError(f"cannot load the {what} {where}: {type(err).__name__}: {one_line(err)}")


def _model_class(source: str, need_text: bool):
    """XClipModel, or XClipVisionModel for a saved video tower (only where no text is needed)."""
    from transformers import PretrainedConfig

    from .modeling_xclip import XClipModel, XClipVisionModel

    try:
        config_dict, _ = PretrainedConfig.get_config_dict(source)
    except Exception as err:
        raise _failure(source, "model config", "config", err) from err
    model_type = config_dict.get("model_type")
    if model_type == XClipVisionModel.config_class.model_type:
        if need_text:
            raise ModelLoadError(f"model {source!r} is a video tower alone (model_type {model_type!r}): it has no text "
                                 "tower, and this needs a full X-CLIP model with its text encoder")
        return XClipVisionModel
    if model_type not in ("xclip_hf", "xclip"):
        raise ModelLoadError(f"model {source!r} is not an X-CLIP model (model_type {model_type!r})")
    return XClipModel


def _as_model(model, need_text: bool):
    """Our model for an object: XClipModel, the base of an XClipForVideoClassification, or an XClipVisionModel."""
    from .modeling_xclip import XClipModel, XClipVisionModel

    if isinstance(model, XClipModel) or (not need_text and isinstance(model, XClipVisionModel)):
        return model
    inner = getattr(model, "base_model", None)
    if isinstance(inner, XClipModel):
        return inner
    name = getattr(model, "name_or_path", "") or ""
    hint = f" (pass its folder {name!r} instead to load it with xclip_hf)" if name else ""
    raise TypeError(f"model must be an xclip_hf XClipModel, an XClipForVideoClassification (or, where no text is "
                    f"needed, an XClipVisionModel), or a folder / hub id to load one, got {type(model).__name__}{hint}")


def _torch_dtype(dtype):
    import torch

    if dtype in (None, "auto"):
        return dtype
    if isinstance(dtype, str):
        value = getattr(torch, dtype, None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"dtype {dtype!r} is not a torch dtype (e.g. 'float32', 'bfloat16')")
        return value
    return dtype


def _load_processor(source: str, need_text: bool):
    from .processing_xclip import XClipProcessor
    from .video_processing_xclip import XClipVideoProcessor

    if need_text:
        if os.path.isdir(source) and not any(os.path.isfile(os.path.join(source, n)) for n in TOKENIZER_FILES):
            raise ModelLoadError(f"model folder {source!r} has no tokenizer files ({', '.join(TOKENIZER_FILES)}): "
                                 "text needs the model's tokenizer (pass processor=, or save the tokenizer there)")
        cls, what = XClipProcessor, "processor"
    else:
        cls, what = XClipVideoProcessor, "video processor"
    try:
        return cls.from_pretrained(source)
    except Exception as err:
        raise _failure(source, what, "processor", err) from err


def _check_processor(processor, need_text: bool):
    from .processing_xclip import XClipProcessor
    from .video_processing_xclip import XClipVideoProcessor

    if need_text:
        if not isinstance(processor, XClipProcessor) or getattr(processor, "tokenizer", None) is None:
            raise TypeError(f"processor must be an xclip_hf XClipProcessor with a tokenizer, got "
                            f"{type(processor).__name__}; build one with XClipProcessor(video_processor=..., "
                            "tokenizer=...) or omit it to load it from the model folder")
        return processor
    processor = getattr(processor, "video_processor", processor)
    if not isinstance(processor, XClipVideoProcessor):
        raise TypeError(f"processor must be an XClipProcessor or XClipVideoProcessor, got {type(processor).__name__}")
    return processor


def load_model(source, *, need_text: bool = True, dtype=None):
    """The model alone (eval mode), with the checks and errors of `load_model_and_processor`."""
    name = resolve_model_source(source)
    cls = _model_class(name, need_text)
    dtype = _torch_dtype(dtype)
    kwargs = {} if dtype in (None, "auto") else {"dtype": dtype}
    try:
        model = cls.from_pretrained(name, **kwargs)
    except ModelLoadError:
        raise
    except Exception as err:
        raise _failure(name, "model weights", "weights", err) from err
    return model.eval()


def load_model_and_processor(source, *, processor=None, need_text: bool = True, dtype=None,
                             device=None, runtime: str | None = None) -> LoadedModel:
    """(model, processor) for a model source, in eval mode.

    Args:
        source: a folder (ours, the published "xclip" layout, an `XClipForVideoClassification` folder, an export), a
            hub id, or a model object (with ``need_text=False`` also an `XClipVisionModel`).
        processor: an `XClipProcessor` (``need_text=False``: an `XClipVideoProcessor`) or a folder; default: the
            model's folder.
        need_text: True -> an `XClipModel` and an `XClipProcessor` with a tokenizer; False -> any video tower.
        dtype: a torch dtype or its name ("bfloat16"), or "auto"/None (as stored); device: where to put the model.
        runtime: None (an export on its default runtime, anything else on torch), "torch", "onnxruntime" or "openvino".
    """
    dtype = _torch_dtype(dtype)
    exported = None
    if isinstance(source, (str, os.PathLike)):
        name = resolve_model_source(source)
        exported = _export_runtime(name, runtime)
    if exported is not None:
        model = exported.load(name, runtime=runtime, need_text=need_text, dtype=dtype)
    elif isinstance(source, (str, os.PathLike)):
        model = load_model(name, need_text=need_text, dtype=dtype)
    else:
        exported = _runtime_of(source)
        if runtime is not None and (exported is None) != (runtime == TORCH_RUNTIME):
            raise ValueError(f"runtime={runtime!r} does not apply to a {type(source).__name__} object; pass the "
                             "folder instead")
        model = source if exported is not None else _as_model(source, need_text)
        name = getattr(model, "name_or_path", "") or ""
        if dtype not in (None, "auto"):
            model = model.to(dtype)
    if processor is None:
        if not name:
            raise ModelLoadError("the model was not loaded from a folder, so no processor can be found: pass "
                                 "processor= (an XClipProcessor)")
        processor = _load_processor(name, need_text)
    elif isinstance(processor, (str, os.PathLike)):
        processor = _load_processor(resolve_model_source(processor), need_text)
    processor = _check_processor(processor, need_text)
    if exported is not None:
        exported.check_processor(model, processor, name)
    if device is not None:
        model = model.to(device)
    if getattr(model, "training", False):  # eval() walks every module: skip it for a model already in eval mode
        model = model.eval()               # (search calls the loader once per query with the same object)
    return LoadedModel(model, processor)
