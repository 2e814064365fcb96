"""One exit-code contract for every `xclip-hf` subcommand (xclip_hf/cli/common.py `exit_status`):

0 success; 1 a runtime failure (a file, a model, a video, an OS error such as a read-only output or a full disk),
one line naming the file; 2 bad arguments only (argparse errors, option values invalid on their face).

One table of bad inputs, run against every subcommand it applies to, in this process (`cli.main`); each case
checks the status and that the one `xclip-hf CMD: error:` line on stderr names the input.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil

import pytest
import torch

from xclip_hf.cli import main

from _helpers_conversion import SPECS, original_state_dict, save_original, stride0_checkpoint, tiny_model
from _helpers_pipeline import make_our_checkpoint, write_videos

COMMANDS = ("classify", "info", "embed", "search", "convert", "export")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good and bad inputs of every kind, made once."""
    from xclip_hf import embed_videos

    root = tmp_path_factory.mktemp("exit_codes")
    model = make_our_checkpoint(root / "model")
    video = write_videos(str(root))[0]
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all" * 64)
    bad_weights = root / "bad_weights"
    shutil.copytree(model, bad_weights)
    (bad_weights / "model.safetensors").write_bytes(b"not a safetensors file")
    bad_config = root / "bad_config"
    shutil.copytree(model, bad_config)
    (bad_config / "config.json").write_text("{not json")
    exportable = root / "exportable"  # heads = width // 64, as the original code needs
    tiny_model().save_pretrained(exportable)
    pth = save_original(root / "good.pth", original_state_dict(SPECS["tiny-1frame"]))
    data = open(pth, "rb").read()
    truncated = root / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    plain = root / "plain.pth"
    plain.write_bytes(pickle.dumps({"model": {"visual.proj": [[0.0]]}}))
    notes = root / "notes.txt"
    notes.write_text("not a model")
    dataset = root / "dataset"
    embed_videos([video], dataset, model, progress=False)
    return {"root": root, "model": model, "video": video, "corrupt": str(corrupt), "bad_weights": str(bad_weights),
            "bad_config": str(bad_config), "exportable": str(exportable), "pth": pth, "truncated": str(truncated),
            "plain": str(plain), "stride0": stride0_checkpoint(root / "stride0.pth"), "notes": str(notes),
            "dataset": str(dataset), "missing": str(root / "no-such-thing")}


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """A folder nothing can be written into: mode 0o555, or, for root (which ignores mode bits), sysfs."""
    folder = tmp_path_factory.mktemp("read_only")
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        yield str(folder)
        folder.chmod(0o755)
        return
    try:
        os.mkdir("/sys/xclip-hf-probe")
    except OSError:
        yield "/sys"
    else:
        os.rmdir("/sys/xclip-hf-probe")
        pytest.skip("no folder here refuses writes")


@contextlib.contextmanager
def disk_full(limit=20_000):
    """Writes past `limit` bytes of one file fail with EFBIG, as on a full disk (RLIMIT_FSIZE, SIGXFSZ ignored)."""
    import resource
    import signal

    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, handler)


def command(name, f, out, video=None, model=None, pth=None, output=None, extra=()):
    """The argv of subcommand `name` on good inputs, with one of them (or extra options) replaced."""
    model = model or (f["exportable"] if name == "export" else f["model"])
    video = video or f["video"]
    argv = {
        "classify": ["classify", video, "--labels", "cooking pasta,dancing ballet", "--model", model, "--no-progress"],
        "info": ["info", pth or model],
        "embed": ["embed", video, "--model", model, "--output", output or os.path.join(out, "emb"), "--num-workers",
                  "0", "--no-progress"],
        "search": ["search", f["dataset"], "cooking", "--model", model, "--no-progress"],
        "convert": ["convert", pth or f["pth"], output or os.path.join(out, "converted"), "--no-progress"],
        "export": ["export", model, output or os.path.join(out, "exported.pth")],
    }[name]
    return argv + list(extra)


# bad input -> {subcommand: (argv maker (files, tmp dir, read-only folder) -> argv, status, text the line names)}
def _each(commands, status, needle, **replace):
    return {c: (lambda f, out, ro, c=c: command(c, f, out, **{k: v(f, out, ro) for k, v in replace.items()}),
                status, needle) for c in commands}


MODEL_COMMANDS = ("classify", "embed", "search", "export")
CASES = {
    "missing video": _each(("classify", "embed"), 1, "no-such-thing.mp4",
                           video=lambda f, out, ro: f["missing"] + ".mp4"),
    "corrupt video": _each(("classify", "embed"), 1, "corrupt.mp4", video=lambda f, out, ro: f["corrupt"]),
    "missing model folder": _each(MODEL_COMMANDS + ("info",), 1, "no-such-thing",
                                  model=lambda f, out, ro: f["missing"]),
    "model folder with bad weights": _each(MODEL_COMMANDS, 1, os.path.join("bad_weights", "model.safetensors"),
                                           model=lambda f, out, ro: f["bad_weights"]),
    "model folder with a broken config.json": _each(MODEL_COMMANDS + ("info",), 1,
                                                    os.path.join("bad_config", "config.json"),
                                                    model=lambda f, out, ro: f["bad_config"]),
    "a file as --model": _each(MODEL_COMMANDS + ("info",), 1, "notes.txt", model=lambda f, out, ro: f["notes"]),
    "dir/config.json as --model": _each(MODEL_COMMANDS + ("info",), 1, os.path.join("model", "config.json"),
                                        model=lambda f, out, ro: os.path.join(f["model"], "config.json")),
    "missing .pth": _each(("info", "convert"), 1, "no-such-thing.pth", pth=lambda f, out, ro: f["missing"] + ".pth"),
    "truncated .pth": _each(("info", "convert"), 1, "truncated.pth", pth=lambda f, out, ro: f["truncated"]),
    "plain-pickle .pth": _each(("info", "convert"), 1, "plain.pth", pth=lambda f, out, ro: f["plain"]),
    "stride-0 .pth": _each(("info", "convert"), 1, "stride0.pth", pth=lambda f, out, ro: f["stride0"]),
    "missing embedding dataset": {"search": (lambda f, out, ro: ["search", f["missing"], "cooking", "--model",
                                                                 f["model"]], 1, "no-such-thing"),
                                  "index": (lambda f, out, ro: ["index", f["missing"]], 1, "no-such-thing")},
    "output is a file": _each(("embed", "convert"), 1, "notes.txt", output=lambda f, out, ro: f["notes"]),
    "read-only output": {
        **_each(("embed", "convert"), 1, "ro-out", output=lambda f, out, ro: os.path.join(ro, "ro-out")),
        "export": (lambda f, out, ro: command("export", f, out, output=os.path.join(ro, "ro-out.pth")), 1,
                   "ro-out.pth"),
        "classify": (lambda f, out, ro: command("classify", f, out, extra=["--chunk-length", "0.2", "--plot",
                                                                           os.path.join(ro, "ro-out.png")]), 1,
                     "ro-out.png"),
    },
    "disk full": {  # run under `disk_full()`
        "convert": (lambda f, out, ro: command("convert", f, out), 1, "converted"),
        "export": (lambda f, out, ro: command("export", f, out), 1, "exported.pth"),
        "classify": (lambda f, out, ro: command("classify", f, out, extra=[
            "--chunk-length", "0.2", "--plot", os.path.join(out, "t.png")]), 1, "t.png"),
    },
    "--device tpu": _each(("classify", "embed", "search"), 2, "--device", extra=lambda f, out, ro: ["--device", "tpu"]),
    "--num-frames 0": _each(("classify", "embed", "info", "convert"), 2, "--num-frames",
                            extra=lambda f, out, ro: ["--num-frames", "0"]),
    "--top-k 0": _each(("classify", "search"), 2, "--top-k", extra=lambda f, out, ro: ["--top-k", "0"]),
    "--stride without --chunk-length": _each(("classify", "embed"), 2, "--stride",
                                             extra=lambda f, out, ro: ["--stride", "1"]),
    "--stride longer than --chunk-length": _each(("classify", "embed"), 2, "stride",
                                                 extra=lambda f, out, ro: ["--chunk-length", "1", "--stride", "2"]),
    "template without {}": _each(("classify", "search"), 2, "no-placeholder",
                                 extra=lambda f, out, ro: ["--template", "no-placeholder"]),
    "empty query": {"search": (lambda f, out, ro: ["search", f["dataset"], " ", "--model", f["model"]], 2,
                               "non-empty")},
    "--labels with an empty label": {"classify": (lambda f, out, ro: ["classify", f["video"], "--labels", "a,,b",
                                                                      "--model", f["model"]], 2, "a,,b")},
    "missing labels file": {"classify": (lambda f, out, ro: ["classify", f["video"], "--labels-file", f["missing"],
                                                             "--model", f["model"]], 1, "no-such-thing")},
    "--labels without --bpe": {"convert": (lambda f, out, ro: command("convert", f, out, extra=[
        "--labels", f["notes"]]), 2, "--labels")},
}
# the newer subcommands, on the model-source rows (their other inputs are tested in their own files)
for _case, _bad in (("missing model folder", lambda f: f["missing"]),
                    ("dir/config.json as --model", lambda f: os.path.join(f["model"], "config.json"))):
    _needle = CASES[_case]["classify"][2]
    CASES[_case]["export-onnx"] = (lambda f, out, ro, b=_bad: ["export-onnx", b(f), os.path.join(out, "onnx")], 1,
                                   _needle)
    CASES[_case]["evaluate"] = (lambda f, out, ro, b=_bad: ["evaluate", "closed-set", "--model", b(f), "--data",
                                                            f["notes"], "--labels", "kinetics400", "--output",
                                                            os.path.join(out, "eval")], 1, _needle)
    CASES[_case]["app"] = (lambda f, out, ro, b=_bad: ["app", "--model", b(f), "--port", "1"], 1, _needle)
    CASES[_case]["calibrate"] = (lambda f, out, ro, b=_bad: ["calibrate", "--model", b(f), "--data", f["notes"],
                                                              "--labels", "kinetics400", "--output",
                                                              os.path.join(out, "cal.json")], 1, _needle)
# an opset torch's exporter does not write (it wrote opset 18 graphs and recorded the number asked for)
for _opset in ("7", "17", "99"):
    CASES[f"--opset {_opset}"] = {"export-onnx": (lambda f, out, ro, o=_opset: [
        "export-onnx", f["model"], os.path.join(out, "onnx"), "--opset", o], 2, "opset must be an integer from 18")}
TABLE = [(case, name) for case, commands in CASES.items() for name in commands]


def run_cli(argv, capsys):
    """(status, stderr) of `xclip-hf ARGV` in this process; argparse's exits give their status."""
    capsys.readouterr()
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


def error_lines(err: str, name: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"xclip-hf {name}: error:")]


def test_table_covers_every_subcommand():
    from xclip_hf.cli import COMMANDS as registered

    assert {name for _, name in TABLE} == set(registered)
    assert set(COMMANDS) <= set(registered)


@pytest.mark.parametrize("name", COMMANDS)
def test_the_table_argv_succeeds_on_good_inputs(files, tmp_path, name, capsys):
    """Each bad case changes one thing of a command that succeeds as it stands."""
    status, err = run_cli(command(name, files, str(tmp_path)), capsys)
    assert status == 0, err


@pytest.mark.parametrize("case,name", TABLE, ids=[f"{name}: {case}" for case, name in TABLE])
def test_exit_status_and_one_line_naming_the_input(files, read_only, tmp_path, case, name, capsys):
    make, status, needle = CASES[case][name]
    argv = make(files, str(tmp_path), read_only)
    with disk_full() if case == "disk full" else contextlib.nullcontext():
        code, err = run_cli(argv, capsys)
    lines = error_lines(err, name)
    assert code == status, err
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err and "weights_only" not in err


def test_debug_variable_shows_tracebacks_only_when_set_true(files, monkeypatch, capsys):
    argv = ["info", files["missing"]]
    for value in ("0", "", "false", "no", "off"):
        monkeypatch.setenv("XCLIP_HF_DEBUG", value)
        assert run_cli(argv, capsys)[0] == 1, value
    for value in ("1", "true", "YES"):
        monkeypatch.setenv("XCLIP_HF_DEBUG", value)
        with pytest.raises(ValueError, match="no-such-thing"):
            main(argv)


def test_exit_status_is_decided_in_one_place():
    """Every error path goes through `exit_status`: a UsageError is 2, anything else (ValueError included) is 1."""
    from xclip_hf.cli.common import CommandFailure, UsageError, exit_status
    from xclip_hf.models.loading import ModelLoadError

    assert exit_status(UsageError("x")) == 2
    for err in (ValueError("x"), ModelLoadError("x"), OSError(28, "No space left on device"), RuntimeError("x"),
                CommandFailure("x"), PermissionError(13, "denied", "/x")):
        assert exit_status(err) == 1, err
