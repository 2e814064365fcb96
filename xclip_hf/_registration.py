"""The one place that registers: our classes and pipeline with transformers (post-import hooks), deploy's runtime."""

from __future__ import annotations

import importlib.abc
import sys
import threading
import warnings

__all__ = ["install", "registered"]


def _register_configs():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from .models.configuration_xclip import XClipConfig, XClipTextConfig, XClipVisionConfig

    for config in (XClipConfig, XClipTextConfig, XClipVisionConfig):
        CONFIG_MAPPING.register(config.model_type, config, exist_ok=True)


def _register_models():
    from transformers.models.auto.modeling_auto import AutoModel, AutoModelForVideoClassification

    from .models.configuration_xclip import XClipConfig, XClipTextConfig, XClipVisionConfig
    from .models.modeling_xclip import XClipModel, XClipTextModel, XClipVisionModel
    from .models.modeling_xclip_classification import XClipForVideoClassification

    for config, model in ((XClipConfig, XClipModel), (XClipTextConfig, XClipTextModel),
                          (XClipVisionConfig, XClipVisionModel)):
        AutoModel.register(config, model, exist_ok=True)
    AutoModelForVideoClassification.register(XClipConfig, XClipForVideoClassification, exist_ok=True)


def _register_processor():
    from transformers.models.auto.processing_auto import AutoProcessor

    from .models.configuration_xclip import XClipConfig
    from .models.processing_xclip import XClipProcessor

    AutoProcessor.register(XClipConfig, XClipProcessor, exist_ok=True)


def _register_video_processor():
    from transformers.models.auto.video_processing_auto import AutoVideoProcessor

    from .models.configuration_xclip import XClipConfig
    from .models.video_processing_xclip import XClipVideoProcessor

    AutoVideoProcessor.register(XClipConfig, XClipVideoProcessor, exist_ok=True)


def _register_pipeline():
    from .pipelines.zero_shot_video_classification import register_pipeline

    register_pipeline()


def _deploy_runtime():
    """The ONNX Runtime / OpenVINO runtime of exported folders (imported, with torch, on first use)."""
    from .deploy.runtime import RUNTIME

    return RUNTIME


def _register_runtimes() -> None:
    """Offer exported folders to the one loader: it names no runtime, the package root registers deploy's."""
    from .models.loading import register_runtime

    register_runtime(_deploy_runtime)


# transformers module holding a registry -> what to register in it
REGISTRATIONS = {
    "transformers.models.auto.configuration_auto": _register_configs,
    "transformers.models.auto.modeling_auto": _register_models,
    "transformers.models.auto.processing_auto": _register_processor,
    "transformers.models.auto.video_processing_auto": _register_video_processor,
    "transformers.pipelines": _register_pipeline,
}
_PACKAGE = __name__.rpartition(".")[0]
_done: set[str] = set()
_lock = threading.Lock()
_again = False  # an import finished while another thread was registering: run one more pass
_importing: set[str] = set()  # watched modules running their top-level code now (nested imports included)


def registered() -> set[str]:
    """The transformers modules whose registries already hold our classes."""
    return set(_done)


def _executing(name: str, finished: str | None) -> bool:
    """Whether module `name` is still running its top-level code (`finished` has just run it to the end)."""
    module = sys.modules.get(name)
    return name != finished and bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _sync(finished: str | None = None) -> None:
    """Run every registration whose registry is loaded, unless one of our submodules is still executing."""
    global _again
    if not _lock.acquire(blocking=False):  # the same or another thread is registering: it will pass again
        _again = True
        return
    try:
        progress = True
        while (progress or _again) and len(_done) < len(REGISTRATIONS):
            progress, _again = False, False
            # registering imports our modules, which import transformers' (e.g. modeling_layers): never while one of
            # them is half-run, e.g. when modeling_layers' own imports load modeling_auto; its end calls _sync again
            if _importing - {finished}:
                return
            if any(n.startswith(_PACKAGE + ".") and _executing(n, finished) for n in list(sys.modules)):
                return  # that module's end calls _sync again
            for name, register in REGISTRATIONS.items():
                if name in _done or name not in sys.modules or _executing(name, finished):
                    continue
                _done.add(name)
                progress = True
                try:
                    register()
                except Exception as err:  # a broken registration must not break the user's transformers import
                    warnings.warn(f"{_PACKAGE}: could not register with {name} ({type(err).__name__}: {err})",
                                  RuntimeWarning, stacklevel=2)
    finally:
        _lock.release()


def _watched(fullname: str) -> bool:
    return fullname.startswith(("transformers.", _PACKAGE + "."))


class _AfterImportLoader(importlib.abc.Loader):
    """Wraps a module's loader: runs the module as usual, then the pending registrations."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # the module sees its real loader (resources, source lookups); we only need to run after it
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        _importing.add(module.__name__)
        try:
            self._loader.exec_module(module)
        finally:
            _importing.discard(module.__name__)
        _sync(finished=module.__name__)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Finds watched modules with the other finders and wraps their loaders in `_AfterImportLoader`."""

    def find_spec(self, fullname, path, target=None):
        if not _watched(fullname):
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or isinstance(finder, _AfterImportFinder) or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _AfterImportLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Register the export runtimes, and our classes now or when their transformers registries load (idempotent)."""
    if not any(isinstance(finder, _AfterImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImportFinder())
    _register_runtimes()
    _sync()
