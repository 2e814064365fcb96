"""xclip_hf installed from a wheel and run from another folder (no checkout on the path): evaluation reports carry
the paper's figures (package data), `evaluate few-shot --train` trains through the package's own module, and the
code version comes from the installed metadata without git.

The wheel is built from a copy of this checkout (`pip wheel --no-deps --no-build-isolation`) and installed, not
editable, into a fresh virtual environment without pip; the dependencies of the interpreter running the tests are
made visible to it by a `.pth` file that lists their folders (their own `.pth` files, such as an editable
xclip_hf's finder, are not run), so the only xclip_hf it can import is the installed one.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel and a venv, trains a tiny model

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["moving left", "moving right"]
_NOT_SOURCE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "outputs",
                                     "demo_output", ".whl", ".benchmarks", "tests", "benchmarks", "docs")


def _run(cmd, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    """Run `cmd`; a failure shows its output."""
    done = subprocess.run([os.fspath(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def build_wheel(tmp: Path) -> Path:
    """A wheel of this checkout, built from a copy (the checkout gets no build/ or egg-info)."""
    source = tmp / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", tmp / "dist", source], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("xclip_hf-*.whl")
    return wheel


def fresh_environment(tmp: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed (not editable) and our dependencies visible; its python."""
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / "bin" / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip()
    dependencies = [p for p in site.getsitepackages() if os.path.isdir(p)]
    Path(purelib, "_test_dependencies.pth").write_text("\n".join(dependencies) + "\n", encoding="utf-8")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], cwd=tmp)
    return python


def isolated_env(tmp: Path) -> dict:
    """The environment of the installed runs: no PYTHONPATH (no checkout), offline, one thread."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1", "HOME": os.fspath(tmp)}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of the fresh environment, its bin folder, a folder outside any checkout, the environment)."""
    tmp = tmp_path_factory.mktemp("wheel")
    python = fresh_environment(tmp, build_wheel(tmp))
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return {"python": python, "bin": python.parent, "cwd": elsewhere, "env": isolated_env(tmp), "venv": tmp / "venv"}


def _source_version() -> str:
    """The version of the checkout the wheel was built from."""
    import xclip_hf

    return xclip_hf.__version__


def _installed_python(installed, code: str) -> dict:
    """Run `code` (which prints one JSON line) with the installed package, from the other folder."""
    done = _run([installed["python"], "-c", textwrap.dedent(code)], cwd=installed["cwd"], env=installed["env"])
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_installed_reports_carry_the_papers_figures_and_the_installed_version(installed):
    got = _installed_python(installed, """
        import json, xclip_hf
        from xclip_hf.evaluation.report import build_report, find_paper_figures, paper_figure, to_markdown
        from xclip_hf.evaluation.labels import load_label_list
        model = {"variant": "xclip-base-patch32", "num_frames": 16, "source": "m", "fingerprint": "sha256:" + "0" * 64}
        paper = paper_figure(find_paper_figures(), "closed-set", "kinetics400", model)
        report = build_report("closed-set", {}, model, {"summary": {"top1": 80.0, "top5": 94.0}}, [], paper)
        print(json.dumps({"file": xclip_hf.__file__, "paper": paper, "md": to_markdown(report),
                          "code_version": report["code_version"], "labels": len(load_label_list("hmdb51"))}))
    """)
    assert Path(got["file"]).is_relative_to(installed["venv"]), got["file"]  # the installed copy, not a checkout
    assert got["paper"] == {"table": "Tab. 1", "top1": 81.1, "top5": 95.5, "views": "4x3"}
    assert "| top-1 (%) | 80.0 | 81.1 |" in got["md"] and got["labels"] == 51
    assert got["code_version"] == {"xclip_hf": _source_version(), "git": None}  # the wheel's; no checkout: no git


def _tiny_checkpoint(root: Path) -> str:
    """A tiny X-CLIP with its tokenizer, saved as a user's starting checkpoint."""
    import torch

    from xclip_hf import XClipConfig, XClipModel
    from xclip_hf.data.tokenizer import build_clip_tokenizer

    tokenizer = build_clip_tokenizer(CLASSES, save_directory=root / "start")
    torch.manual_seed(0)
    XClipModel(XClipConfig.from_variant("xclip-tiny", num_frames=4, vocab_size=len(tokenizer))).save_pretrained(root / "start")
    return os.fspath(root / "start")


def test_installed_few_shot_trains_from_another_folder(installed, tmp_path):
    """`xclip-hf evaluate few-shot --train` (the installed console script) trains K=1 through the package's module,
    then evaluates the trained model."""
    from xclip_hf.data.synthetic import generate_synthetic_dataset

    data = generate_synthetic_dataset(tmp_path / "data", 2, seed=0, classes=CLASSES, size=32, min_frames=8,
                                      max_frames=8, splits=(1, 0, 1))
    out = tmp_path / "few_shot"
    _run([installed["bin"] / "xclip-hf", "evaluate", "few-shot", "--model", _tiny_checkpoint(tmp_path),
          "--train-file", data.train_file, "--data", data.test_file, "--labels", data.labels_file, "--k", "1",
          "--output", out, "--train", "--no-progress"], cwd=installed["cwd"], env=installed["env"])
    assert "-m xclip_hf.training.run_video_classification" in (out / "commands.sh").read_text()
    assert json.loads((out / "model_1shot_seed0" / "train_results.json").read_text())["train_samples_seen"] == 100
    report = json.loads((out / "report.json").read_text())
    assert report["results"]["splits"]["K=1"]["num_videos"] == 2
    assert report["code_version"] == {"xclip_hf": _source_version(), "git": None}
