"""One CLI vocabulary: each shared flag (--model, --index, --device, --dtype, --num-workers) has one spelling, one
help text and one validation in every subcommand that takes it; numeric flags use the shared argparse types; old
spellings still parse, hidden from --help; the default device is chosen by one function."""

from __future__ import annotations

import argparse
import json
import os

import pytest

from xclip_hf.cli import build_parser, common, main

# leaf subcommand -> a minimal valid command line (each flag under test is removed or replaced in it)
BASE = {
    "classify": ["classify", "v.mp4", "--labels", "a,b", "--model", "M"],
    "embed": ["embed", "v.mp4", "--model", "M", "--output", "out"],
    "search": ["search", "--index", "D", "a query", "--model", "M"],
    "index": ["index", "D"],
    "app": ["app"],
    "info": ["info", "--model", "M"],
    "export": ["export", "--model", "M", "out.pth"],
    "export-onnx": ["export-onnx", "--model", "M", "out"],
    "evaluate closed-set": ["evaluate", "closed-set", "--model", "M", "--data", "d.txt", "--output", "out"],
    "evaluate zero-shot": ["evaluate", "zero-shot", "--model", "M", "--data", "d.txt", "--output", "out"],
    "evaluate few-shot": ["evaluate", "few-shot", "--model", "M", "--data", "d.txt", "--output", "out",
                          "--train-file", "t.txt"],
    "evaluate localisation": ["evaluate", "localisation", "--model", "M", "--data", "d.csv", "--output", "out",
                              "--chunk-length", "2"],
    "evaluate retrieval": ["evaluate", "retrieval", "--model", "M", "--captions", "c.csv", "--index", "E",
                           "--output", "out"],
    "convert": ["convert", "x.pth", "out"],
    "calibrate": ["calibrate", "--model", "M", "--data", "d.txt", "--labels", "l.csv", "--output", "cal.json"],
}
EVALUATE_VIDEO = ["evaluate closed-set", "evaluate zero-shot", "evaluate few-shot", "evaluate localisation"]

# the flag table: shared flag -> the subcommands that take it (exactly those)
FLAGS = {
    "--model": ["classify", "embed", "search", "app", "info", "export", "export-onnx", *EVALUATE_VIDEO,
                "evaluate retrieval", "calibrate"],
    "--index": ["search", "app", "evaluate retrieval"],
    "--device": ["classify", "embed", "search", "app", *EVALUATE_VIDEO, "evaluate retrieval", "calibrate"],
    "--dtype": ["classify", "embed", *EVALUATE_VIDEO, "calibrate"],
    "--num-workers": ["classify", "embed", "evaluate closed-set", "evaluate zero-shot", "evaluate few-shot",
                      "calibrate"],
}
HELP = {"--model": common.MODEL_HELP, "--index": common.INDEX_HELP, "--device": common.DEVICE_HELP,
        "--dtype": common.DTYPE_HELP, "--num-workers": common.NUM_WORKERS_HELP}
BAD = {"--device": "tpu", "--dtype": "float8", "--num-workers": "-1"}

# numeric flags: a bad value each, and the subcommands that take them (all through common's types)
NUMERIC = {
    ("--chunk-length", "0"): ["classify", "embed", "evaluate localisation"],
    ("--stride", "-1"): ["classify", "embed", "evaluate localisation"],
    ("--num-frames", "0"): ["classify", "embed", "info", *EVALUATE_VIDEO, "convert", "calibrate"],
    ("--batch-size", "0"): ["classify", "embed", *EVALUATE_VIDEO, "calibrate"],
    ("--eps", "1"): ["calibrate"],
    ("--top-k", "0"): ["classify", "search"],
    ("--min-duration", "-0.5"): ["evaluate localisation"],
    ("--max-upload-mb", "0"): ["app"],
    ("--url-timeout", "nan"): ["app"],
    ("--memory-gb", "0"): ["index"],
    ("--recall", "-1"): ["index"],
    ("--alpha", "1.5"): ["classify", "convert"],
    ("--bank-size", "0"): ["search", "evaluate retrieval"],
    ("--qbnorm-beta", "0"): ["search", "evaluate retrieval"],
}
SHARED_TYPES = {common.positive_int, common.nonnegative_int, common.positive_float, common.nonnegative_float,
                common.nonempty_text, common.device_arg}
PLAIN_NUMBERS_ALLOWED = {"--seed", "--opset", "--port", "--num-spatial-crops"}  # any int / checked elsewhere


def _leaf_parsers(parser=None, prefix=()):
    """{'classify': parser, 'evaluate closed-set': parser, ...}: every subcommand that takes arguments."""
    parser = parser or build_parser()
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_leaf_parsers(sub, (*prefix, name)))
            return found
    return {" ".join(prefix): parser}


LEAVES = _leaf_parsers()


def _option(parser, flag):
    return next((a for a in parser._actions if flag in a.option_strings), None)


def _without(argv, flag):
    """``argv`` without ``flag`` and its value."""
    if flag not in argv:
        return list(argv)
    i = argv.index(flag)
    return argv[:i] + argv[i + 2:]


def _parse_error(argv, capsys) -> str:
    """The stderr of a parse that must fail with exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2, argv
    return capsys.readouterr().err


def test_base_command_lines_parse():
    assert set(BASE) == set(LEAVES)
    for argv in BASE.values():
        build_parser().parse_args(argv)


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_shared_flag_is_in_exactly_the_table_commands(flag):
    """A subcommand that adds a shared flag without the table (or drops one) fails here."""
    assert sorted(name for name, p in LEAVES.items() if _option(p, flag)) == sorted(FLAGS[flag])


@pytest.mark.parametrize("flag,command", [(f, c) for f, cs in FLAGS.items() for c in cs])
def test_shared_flag_has_one_help_text(flag, command, capsys):
    action = _option(LEAVES[command], flag)
    assert action.help.startswith(HELP[flag]), (command, action.help)
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command.split(), "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert flag in text and " ".join(HELP[flag].replace("%(default)s", "").split()[:4]) in text


@pytest.mark.parametrize("flag,command", [(f, c) for f in BAD for c in FLAGS[f]])
def test_shared_flag_bad_value_exits_2_naming_it(flag, command, capsys):
    err = _parse_error([*_without(BASE[command], flag), flag, BAD[flag]], capsys)
    assert f"argument {flag}:" in err and BAD[flag] in err


def test_shared_flags_keep_one_definition():
    """Same type, choices and default rule wherever the flag appears (num-workers' default may differ)."""
    for flag in ("--device", "--dtype", "--num-workers"):
        actions = [_option(LEAVES[c], flag) for c in FLAGS[flag]]
        assert len({(a.type, tuple(a.choices or ()), a.help) for a in actions}) == 1, flag
    assert {_option(LEAVES[c], "--device").default for c in FLAGS["--device"]} == {None}  # resolve_device decides
    assert _option(LEAVES["classify"], "--num-workers").default == 0
    assert _option(LEAVES["embed"], "--num-workers").default == 2


@pytest.mark.parametrize("command", [c for c in FLAGS["--model"] if c != "app"])
def test_missing_model_exits_2_naming_it(command, capsys):
    argv = _without(BASE[command], "--model")
    assert "--model" in _parse_error(argv, capsys)


@pytest.mark.parametrize("command", ["search", "evaluate retrieval"])
def test_missing_index_exits_2_naming_it(command, capsys):
    assert "--index" in _parse_error(_without(BASE[command], "--index"), capsys)


@pytest.mark.parametrize("flag_value,command", [(fv, c) for fv, cs in NUMERIC.items() for c in cs])
def test_numeric_flag_bad_value_exits_2_naming_it(flag_value, command, capsys):
    flag, value = flag_value
    err = _parse_error([*_without(BASE[command], flag), flag, value], capsys)
    assert f"argument {flag}:" in err


def test_numeric_flags_use_the_shared_types():
    """No subcommand parses a number with a bare int/float (app's own `_positive` is gone)."""
    plain = sorted(f"{name} {a.option_strings[0]}" for name, p in LEAVES.items() for a in p._actions
                   if a.type in (int, float) and not set(a.option_strings) & PLAIN_NUMBERS_ALLOWED)
    assert plain == []
    from xclip_hf.cli import app

    assert not hasattr(app, "_positive")
    assert _option(LEAVES["app"], "--max-video-s").type is common.positive_float


def test_localisation_stride_longer_than_window_exits_2(capsys):
    code = main([*BASE["evaluate localisation"], "--stride", "3"])
    assert code == 2 and "stride_length_s=3.0 is longer than chunk_length_s=2.0" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ old spellings
OLD = [
    (["info", "M"], "model", "M"),
    (["export", "M", "out.pth"], "model", "M"),
    (["export-onnx", "M", "out"], "model", "M"),
    (["export", "M", "out.pth", "--model", "M"], "model", "M"),  # both, equal: fine
    (["search", "D", "a query", "--model", "M"], "index", "D"),
    (["search", "--model", "M", "D", "a query", "another"], "index", "D"),
    (["evaluate", "retrieval", "--model", "M", "--captions", "c.csv", "--embeddings", "E", "--output", "out"],
     "index", "E"),
]


@pytest.mark.parametrize("argv,dest,value", OLD)
def test_old_spellings_still_parse(argv, dest, value):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    assert not hasattr(args, "model_positional") and not hasattr(args, "index_embeddings")


def test_search_queries_with_and_without_index():
    assert build_parser().parse_args(["search", "D", "q1", "q2", "--model", "M"]).queries == ["q1", "q2"]
    args = build_parser().parse_args(["search", "--model", "M", "--index", "D", "q1", "q2"])
    assert (args.index, args.queries) == ("D", ["q1", "q2"])


@pytest.mark.parametrize("argv,named", [
    (["info", "M", "--model", "N"], "positional MODEL"),
    (["export", "M", "out.pth", "--model", "N"], "positional MODEL"),
    (["export-onnx", "M", "out", "--model", "N"], "positional MODEL"),
    (["evaluate", "retrieval", "--model", "M", "--captions", "c.csv", "--embeddings", "E", "--index", "F",
      "--output", "out"], "--embeddings"),
])
def test_old_and_new_spelling_differing_exits_2(argv, named, capsys):
    err = _parse_error(argv, capsys)
    assert named in err and ("--model" in err or "--index" in err)


@pytest.mark.parametrize("command,hidden", [("info", "model_positional"), ("export", "model_positional"),
                                            ("export-onnx", "model_positional"), ("evaluate retrieval", "--embeddings"),
                                            ("search", "DATASET")])
def test_old_spellings_are_hidden_from_help(command, hidden, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command.split(), "--help"])
    out = capsys.readouterr().out
    assert hidden not in out and "--model" in out


# ------------------------------------------------------------------------------------------- the device
def test_default_device_is_the_best_available(monkeypatch):
    import torch

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert common.default_device() == "cuda"
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert common.default_device() == "cuda:1"  # this process's GPU under torchrun
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert common.default_device() == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert common.default_device() == "cpu"


def test_resolve_device_names_the_default_once(monkeypatch, tmp_path, capsys):
    from xclip_hf.deploy.manifest import MANIFEST_NAME

    monkeypatch.setattr(common, "_device_note_printed", False)
    monkeypatch.setattr(common, "default_device", lambda: "cuda")
    monkeypatch.delenv("RANK", raising=False)
    assert common.resolve_device("cpu", "search") == "cpu"  # given: used as is, nothing printed
    assert capsys.readouterr().err == ""
    assert common.resolve_device(None, "search") == "cuda"
    assert capsys.readouterr().err.strip() == "xclip-hf search: --device not given: using cuda"
    assert common.resolve_device(None, "search") == "cuda"
    assert capsys.readouterr().err == ""  # once per process
    (tmp_path / MANIFEST_NAME).write_text("{}")
    assert common.resolve_device(None, "classify", str(tmp_path)) == "cpu"  # exported graphs: their runtime


# ------------------------------------------------------------------------------- classify --num-workers
def test_classify_num_workers_gives_the_same_results(tmp_path, capsys):
    from _helpers_pipeline import LABELS, make_our_checkpoint, write_videos

    model, videos = make_our_checkpoint(tmp_path / "model"), write_videos(str(tmp_path))
    results = {}
    for workers in ("0", "2"):
        argv = ["classify", *videos, "--labels", ",".join(LABELS), "--model", model, "--json", "--no-progress",
                "--batch-size", "2", "--num-workers", workers, "--device", "cpu"]
        assert main(argv) == 0
        results[workers] = json.loads(capsys.readouterr().out)
    assert [r["video"] for r in results["2"]] == videos
    for a, b in zip(results["0"], results["2"]):
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        assert [p["score"] for p in a["predictions"]] == pytest.approx([p["score"] for p in b["predictions"]],
                                                                        abs=1e-5)
    assert len(videos) >= 2 and os.path.isdir(model)
