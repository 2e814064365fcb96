"""The one loader (`xclip_hf.models.loading`): every entry point (pipeline, embed, search) accepts the same sources
and gives the same error for the same bad source; search encodes a repeated query once."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from _helpers_pipeline import make_our_checkpoint, make_published_checkpoint, write_videos

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from xclip_hf import XClipModel, XClipVideoProcessor, embed_videos

    root = tmp_path_factory.mktemp("loading")
    ckpt = make_our_checkpoint(root / "ckpt")
    published = make_published_checkpoint(root / "published")
    videos = write_videos(str(root))
    index = root / "index"
    embed_videos(videos[:1], index, ckpt, progress=False)
    bad_weights = root / "bad_weights"
    shutil.copytree(ckpt, bad_weights)
    for name in os.listdir(bad_weights):
        if name.endswith(".safetensors"):
            (bad_weights / name).write_bytes(b"not a safetensors file")
    no_tokenizer = root / "no_tokenizer"
    XClipModel.from_pretrained(ckpt).save_pretrained(no_tokenizer)
    XClipVideoProcessor.from_pretrained(ckpt).save_pretrained(no_tokenizer)
    return {"root": root, "ckpt": ckpt, "published": published, "videos": videos, "index": index,
            "bad_weights": str(bad_weights), "no_tokenizer": str(no_tokenizer)}


def _error(call):
    with pytest.raises(Exception) as info:
        call()
    return type(info.value), str(info.value)


def _entry_points(setup, tmp_path):
    """source -> error of each entry point that loads a model with a text tower, and of embed (video only)."""
    from xclip_hf import ZeroShotVideoClassificationPipeline, embed_videos, search_videos

    counter = iter(range(100))
    return {
        # the pipeline class itself: transformers' `pipeline()` factory resolves a model string with its own
        # AutoConfig before any pipeline class runs, so its errors for strings are transformers' own
        "pipeline": lambda source: ZeroShotVideoClassificationPipeline(model=source, device="cpu"),
        "search": lambda source: search_videos(setup["index"], "cooking", source),
        "embed": lambda source: embed_videos(setup["videos"][:1], tmp_path / f"out{next(counter)}", source,
                                             progress=False),
    }


@pytest.mark.parametrize("case", ["missing_relative", "missing_hub_id_offline", "config_file", "bad_weights",
                                  "not_a_model_object"])
def test_same_bad_source_same_error_everywhere(setup, tmp_path, case):
    from xclip_hf.models.loading import ModelLoadError

    source, needle, kind = {
        "missing_relative": ("./no/such/model", "./no/such/model", ModelLoadError),
        "missing_hub_id_offline": ("someone/no-such-model", "someone/no-such-model", ModelLoadError),
        "config_file": (os.path.join(setup["ckpt"], "config.json"), "config.json", ModelLoadError),
        "bad_weights": (setup["bad_weights"], "model.safetensors", ModelLoadError),
        "not_a_model_object": (object(), "object", TypeError),
    }[case]
    errors = {name: _error(lambda: call(source)) for name, call in _entry_points(setup, tmp_path).items()}
    assert {t for t, _ in errors.values()} == {kind}, errors
    assert len({m for _, m in errors.values()}) == 1, errors  # the same message from every entry point
    message = next(iter(errors.values()))[1]
    assert needle in message, message
    assert "huggingface.co" not in message  # never "couldn't connect" for a local or offline source


def test_text_errors_are_the_same_for_pipeline_and_search(setup, tmp_path):
    from xclip_hf import XClipModel, XClipVideoProcessor

    vision_only = tmp_path / "vision_only"
    XClipModel.from_pretrained(setup["ckpt"]).vision_model.save_pretrained(vision_only)
    XClipVideoProcessor.from_pretrained(setup["ckpt"]).save_pretrained(vision_only)
    points = _entry_points(setup, tmp_path)
    for source, needle in ((str(vision_only), "no text tower"), (setup["no_tokenizer"], "no tokenizer files")):
        errors = {name: _error(lambda: points[name](source)) for name in ("pipeline", "search")}
        assert len(set(errors.values())) == 1, errors
        assert needle in errors["search"][1] and source in errors["search"][1]
    # embed needs no text: a video tower alone and a folder without tokenizer files both embed
    assert len(points["embed"](str(vision_only))) == 1
    assert len(points["embed"](setup["no_tokenizer"])) == 1


def test_every_accepted_source_loads(setup):
    from xclip_hf import XClipForVideoClassification, XClipModel, XClipProcessor, XClipVideoProcessor
    from xclip_hf.models.loading import load_model_and_processor

    for source in (setup["ckpt"], setup["published"]):
        model, processor = load_model_and_processor(source)
        assert isinstance(model, XClipModel) and isinstance(processor, XClipProcessor) and not model.training
        model, processor = load_model_and_processor(source, need_text=False, dtype="bfloat16")
        assert isinstance(processor, XClipVideoProcessor) and next(model.parameters()).dtype.is_floating_point
        assert str(next(model.parameters()).dtype) == "torch.bfloat16"
    base = XClipModel.from_pretrained(setup["ckpt"])
    classifier = XClipForVideoClassification(base.config)
    model, _ = load_model_and_processor(classifier, processor=setup["ckpt"])
    assert model is classifier.base_model
    with pytest.raises(ValueError, match="dtype 'float99'"):
        load_model_and_processor(setup["ckpt"], dtype="float99")


def test_search_twice_encodes_the_query_once(setup):
    from xclip_hf import search_videos
    from xclip_hf.models.loading import load_model_and_processor

    model, processor = load_model_and_processor(setup["ckpt"])
    calls = []
    inner = model.get_text_features
    model.get_text_features = lambda *a, **k: calls.append(1) or inner(*a, **k)
    first = search_videos(setup["index"], "cooking pasta", model, processor=processor)
    second = search_videos(setup["index"], "cooking pasta", model, processor=processor)
    assert first == second and len(calls) == 1
    search_videos(setup["index"], "riding a bike", model, processor=processor)
    assert len(calls) == 2


class _FakeRuntime:
    """A runtime claiming folders that hold a `fake.export` file."""

    names = ("fake-engine",)
    model_class = type("FakeModel", (), {})

    def claims(self, directory):
        return os.path.isfile(os.path.join(directory, "fake.export"))


FAKE_RUNTIME = _FakeRuntime()


@pytest.mark.parametrize("source", [lambda: FAKE_RUNTIME, __name__])
def test_a_registered_runtime_claims_its_folders(tmp_path, monkeypatch, source):
    """`register_runtime` takes a function returning the runtime or a module name (its RUNTIME), idempotently."""
    from xclip_hf.models import loading

    monkeypatch.setattr(loading, "_RUNTIMES", list(loading._RUNTIMES))
    monkeypatch.setattr(sys.modules[__name__], "RUNTIME", FAKE_RUNTIME, raising=False)
    (tmp_path / "fake.export").write_text("")
    assert not loading.claimed_by_runtime(tmp_path)
    loading.register_runtime(source)
    loading.register_runtime(source)
    assert loading.claimed_by_runtime(tmp_path) and not loading.claimed_by_runtime(tmp_path / "..")
    assert loading.runtime_names().count("fake-engine") == 1
    assert loading.is_exported_model(FAKE_RUNTIME.model_class())


def test_the_loader_names_no_runtime():
    """The lower layer knows no upper one: no string of its code names deploy (the root's registration does)."""
    import ast
    import inspect

    from xclip_hf.models import loading

    tree = ast.parse(inspect.getsource(loading))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr)}
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
               and id(n) not in docstrings]
    assert not [s for s in strings if "deploy" in s]


def test_import_registers_the_deploy_runtime_without_importing_it():
    """In a fresh process, `import xclip_hf` registers deploy's runtime lazily (no torch, no runtime module)."""
    import subprocess

    code = ("import sys\nimport xclip_hf\nfrom xclip_hf.models import loading\n"
            "assert 'torch' not in sys.modules and 'xclip_hf.deploy.runtime' not in sys.modules\n"
            "print(loading.runtime_names())\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime" in proc.stdout and "openvino" in proc.stdout
