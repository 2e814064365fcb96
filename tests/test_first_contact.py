"""What a new user meets first: a cheap `import xclip_hf` and `xclip-hf --help` (no torch), registration with
transformers that still happens when transformers loads its registries, quiet and honest output (no weight-loading
bar off a terminal, no tokenizer/config notice, no pixel-count metrics, `info` naming only what a model has), clear
errors for a missing model folder, and README/CI saying how torch is installed."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys

import pytest

from xclip_hf.cli import main

from _helpers_pipeline import make_our_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("torch", "transformers", "numpy", "av", "decord", "tqdm")


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)


def test_help_and_argument_errors_import_no_torch():
    proc = _python(
        "import json, sys\n"
        "import xclip_hf\n"
        "after_import = sorted(m for m in sys.modules if m.split('.')[0] in %r)\n"
        "from xclip_hf.cli import main\n"
        "codes = []\n"
        "for argv in (['--help'], ['classify', '--help'], ['info', '--help'], ['classify', 'x.mp4'], ['nope']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        codes.append(e.code)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in %r)\n"
        "print(json.dumps([after_import, heavy, codes]))\n" % (HEAVY, HEAVY)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    after_import, heavy, codes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert after_import == [] and heavy == [], (after_import, heavy)
    assert codes == [0, 0, 0, 2, 2]
    assert "the following arguments are required: --model" in proc.stderr


@pytest.mark.slow
def test_registration_happens_when_transformers_loads_its_registries():
    check = (
        "from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification, AutoProcessor, "
        "AutoVideoProcessor, pipeline\n"
        "from transformers.pipelines import PIPELINE_REGISTRY\n"
        "from transformers.models.auto.configuration_auto import CONFIG_MAPPING\n"
        "from transformers.models.auto.modeling_auto import MODEL_MAPPING, MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING\n"
        "from transformers.models.auto.processing_auto import PROCESSOR_MAPPING\n"
        "from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING\n"
        "import xclip_hf as x\n"
        "assert CONFIG_MAPPING['xclip_hf'] is x.XClipConfig\n"
        "assert CONFIG_MAPPING['xclip_hf_vision_model'] is x.XClipVisionConfig\n"
        "assert MODEL_MAPPING[x.XClipConfig] is x.XClipModel and MODEL_MAPPING[x.XClipTextConfig] is x.XClipTextModel\n"
        "assert MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING[x.XClipConfig] is x.XClipForVideoClassification\n"
        "assert PROCESSOR_MAPPING[x.XClipConfig] is x.XClipProcessor\n"
        "assert x.XClipVideoProcessor in VIDEO_PROCESSOR_MAPPING[x.XClipConfig].values()  # per backend\n"
        "task = PIPELINE_REGISTRY.supported_tasks['zero-shot-video-classification']\n"
        "from xclip_hf.models.loading import ExportedFolder\n"
        "assert task['impl'] is x.ZeroShotVideoClassificationPipeline\n"
        "assert task['pt'] == (ExportedFolder, x.XClipModel)  # an exported folder first, then the torch model\n"
        "print('ok')\n"
    )
    # the README's order: `import xclip_hf` (cheap), then transformers' pipeline / Auto classes
    first = _python("import sys\nimport xclip_hf\nassert 'torch' not in sys.modules\n" + check)
    assert first.returncode == 0 and first.stdout.strip() == "ok", first.stderr[-3000:]
    # registries already loaded, and our pipeline module (which itself imports transformers.pipelines) imported first
    second = _python("from transformers import AutoModel\nimport xclip_hf.pipelines.zero_shot_video_classification\n"
                     + check)
    assert second.returncode == 0 and second.stdout.strip() == "ok", second.stderr[-3000:]
    # a transformers module whose own imports load a registry (modeling_layers -> ... -> modeling_auto, as importing
    # transformers' XCLIPModel does): registering then would import our models against a half-run modeling_layers
    third = _python("import xclip_hf\nfrom transformers import XCLIPModel\n" + check)
    assert third.returncode == 0 and third.stdout.strip() == "ok", third.stderr[-3000:]
    assert "could not register" not in first.stderr + second.stderr + third.stderr


def test_registration_has_one_home():
    """Only `_registration.py` registers with transformers' Auto classes, and no module registers at import time
    (a module-level call would import transformers' registries with it and bypass the deferred registration)."""
    import ast
    import pathlib

    root = pathlib.Path(REPO) / "xclip_hf"
    auto_calls, import_time = [], []
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id.startswith(("Auto", "CONFIG_"))):
                auto_calls.append(name)
        for node in tree.body:  # module-level statements
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                func = node.value.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if "regist" in called or "install" in called:
                    import_time.append(f"{name}: {called}()")
    assert sorted(set(auto_calls)) == ["_registration.py"], auto_calls
    assert import_time == ["__init__.py: install()"]  # the package's one `_registration.install()`


def test_transformers_progress_bars_follow_no_progress_and_terminals(monkeypatch):
    from transformers.utils import logging as hf_logging

    from xclip_hf.cli.common import library_progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    def weight_bar_shown():
        bar = hf_logging.tqdm(range(2), desc="Loading weights", file=sys.stderr)
        shown = not getattr(bar, "disable", True)
        bar.close()
        return shown

    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert hf_logging.is_progress_bar_enabled()
    with library_progress(no_progress=False):
        assert weight_bar_shown()  # both terminals: the bar stays
    with library_progress(no_progress=True):
        assert not hf_logging.is_progress_bar_enabled() and not weight_bar_shown()
    assert hf_logging.is_progress_bar_enabled()  # restored
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # stdout piped to a file
    with library_progress(no_progress=False):
        assert not weight_bar_shown()


def test_classify_prints_no_weight_loading_bar_off_a_terminal(tmp_path, capsys):
    import numpy as np

    from xclip_hf.data.video_writer import write_video

    model = make_our_checkpoint(tmp_path / "model")
    video = str(tmp_path / "v.mp4")
    write_video(video, np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), fps=6)
    capsys.readouterr()  # the checkpoint's own "Writing model shards" bar
    assert main(["classify", video, "--labels", "cooking pasta,dancing ballet", "--model", model, "--json"]) == 0
    captured = capsys.readouterr()  # captured streams are not terminals
    assert json.loads(captured.out)[0]["predictions"]
    assert "Loading weights" not in captured.err and "%|" not in captured.err, captured.err


def test_missing_model_folder_is_named(tmp_path, capsys):
    missing = str(tmp_path / "no-such-model")
    assert main(["classify", __file__, "--labels", "a,b", "--model", missing]) == 1
    err = capsys.readouterr().err
    assert f"model folder {missing!r} does not exist" in err and "alphanumeric" not in err
    assert main(["info", "./no-such-model"]) == 1
    err = capsys.readouterr().err
    assert "model folder './no-such-model' does not exist" in err and "alphanumeric" not in err


def test_hub_id_gets_one_early_note_unless_offline(monkeypatch, capsys):
    from huggingface_hub import constants

    from xclip_hf.cli import common

    monkeypatch.setattr(common, "_hub_note_printed", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="not in the local hub cache"):  # offline: refused at once, no note
        common.check_model_source("someone/some-model")
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    common.check_model_source("someone/some-model")
    common.check_model_source("someone/other-model")
    err = capsys.readouterr().err
    assert err.count("HF_HUB_OFFLINE=1") == 1 and "'someone/some-model'" in err


def test_info_names_only_the_parts_a_clip_mean_model_has(tmp_path, capsys):
    import torch

    from xclip_hf import XClipConfig, XClipModel

    config = XClipConfig.from_variant("xclip-tiny", num_frames=4, use_cross_frame_attention=False, use_mit=False)
    config.save_pretrained(tmp_path)
    assert main(["info", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    with torch.device("meta"):
        net = XClipModel(config)
    # independent count: everything outside CLIP's own modules is the prompt generator (and its visual context)
    prompt = sum(p.numel() for n, p in net.named_parameters()
                 if re.search(r"(^|\.)(prompt_generator|context_layernorm|context_projection)(\.|$)", n))
    assert summary["parameters_added_by_part"] == {"prompt generator": prompt}
    assert summary["parameters_added_to_clip"] == prompt
    assert main(["info", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    added = next(line for line in text.splitlines() if "added to CLIP" in line)
    assert "prompt generator" in added and "cross-frame" not in added and "MIT" not in added
    assert "mean over frames (CLIP-Mean)" in text

    assert main(["info", "xclip-tiny", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert list(full["parameters_added_by_part"]) == ["cross-frame attention", "MIT", "prompt generator"]
    assert sum(full["parameters_added_by_part"].values()) == full["parameters_added_to_clip"]


def _load_example():
    path = os.path.join(REPO, "examples", "run_video_classification.py")
    # a name of our own: test_examples keeps its module under "run_video_classification" (pickling looks it up)
    spec = importlib.util.spec_from_file_location("run_video_classification_first_contact", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_training_run_counts_videos_not_pixels_and_config_matches_tokenizer(tmp_path):
    import torch
    from transformers import AutoTokenizer
    from transformers.testing_utils import CaptureLogger
    from transformers.trainer_utils import align_special_tokens
    from transformers.utils import logging

    from xclip_hf import XClipForVideoClassification
    from xclip_hf.data.synthetic import generate_synthetic_dataset
    from xclip_hf.data.tokenizer import build_clip_tokenizer

    classes = ["moving left", "moving right"]
    data = generate_synthetic_dataset(tmp_path / "data", 2, seed=0, classes=classes, size=32, min_frames=8,
                                      max_frames=8, splits=(1, 0, 1))
    build_clip_tokenizer(classes, save_directory=tmp_path / "tok")
    out = tmp_path / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with CaptureLogger(logging.get_logger("transformers.trainer_utils")) as notices:
            trainer = _load_example().main([
                "--model_variant", "xclip-tiny", "--tokenizer_name", str(tmp_path / "tok"), "--train_file",
                data.train_file, "--labels_file", data.labels_file, "--output_dir", str(out), "--do_train",
                "--per_device_train_batch_size", "2", "--num_train_epochs", "1", "--logging_steps", "1",
                "--report_to", "none", "--use_cpu", "--disable_tqdm", "true", "--save_strategy", "no", "--seed", "0",
            ])
    finally:
        torch.set_num_threads(threads)
    assert "PAD/BOS/EOS" not in notices.out, notices.out  # config and tokenizer agreed before train()
    results = json.loads((out / "train_results.json").read_text())
    videos = sum(1 for line in open(data.train_file) if line.strip())  # one "path label" line per video
    assert results["train_samples_seen"] == videos == 2
    logged = [key for entry in trainer.state.log_history for key in entry] + list(results)
    assert not [key for key in logged if "token" in key], logged  # no pixel counts dressed up as tokens
    # the saved checkpoint's text config already holds the tokenizer's special ids: Trainer has nothing to align
    model = XClipForVideoClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = {n: getattr(model.config.text_config, n) for n in ("pad_token_id", "bos_token_id", "eos_token_id")}
    assert ids == {n: getattr(tokenizer, n) for n in ids} and None not in ids.values()
    align_special_tokens(model, tokenizer)
    assert {n: getattr(model.config.text_config, n) for n in ids} == ids


def test_readme_and_ci_install_torch_truthfully():
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    ci = open(os.path.join(REPO, ".ci", "run"), encoding="utf-8").read()
    cpu = r"pip install (-q )?torch==2\.13\.0 --index-url https://download\.pytorch\.org/whl/cpu"
    assert re.search(cpu, readme)  # the CPU build, wherever the machine is
    # CI runs README's command 2 itself, as written, in a fresh virtual environment
    command = re.search(r"^# 2\. the tests.*\n(.+)$", readme, re.M).group(1)
    assert re.search(cpu, command) and 'pip install -e ".[test]"' in command and "pytest" in command
    assert "awk '/^# 2\\. the tests/" in ci and "python3 -m venv" in ci and 'bash -c' in ci
    gpu = re.search(r"GPU[^`]*default wheel", readme)  # and the default wheel (Linux: CUDA) on GPU machines
    assert gpu and re.search(r"^pip install torch==2\.13\.0$", readme[gpu.end():], re.M)
    assert "HF_HUB_OFFLINE=1" in readme
    assert "git status --porcelain" in ci  # CI fails when the tests leave files behind
