"""benchmarks/bench_zero_shot.py: its columns, the per-stage arithmetic and the bound, and a --quick smoke run of
torch, exported (ONNX Runtime, OpenVINO; dynamic and static int8) and token-merging columns."""

import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "bench_zero_shot.py")


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_zero_shot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts benchmarks/ on sys.path (its stage_timers helper)
    return module


bench = _load_script()


def test_columns_name_an_engine_an_export_and_token_merging():
    assert bench.parse_columns("fp32, ort-int8,ov-int8s-tome,fp32") == ["fp32", "ort-int8", "ov-int8s-tome"]
    assert bench.export_of("fp32-tome") is None
    assert bench.export_of("ort-int8") == ("int8", False)
    assert bench.export_of("ov-int8s-tome") == ("int8s", True)
    assert set(bench.DEFAULT_COLUMNS) <= set(bench.COLUMNS)
    with pytest.raises(ValueError, match="'ort-int4'"):
        bench.parse_columns("fp32,ort-int4")
    with pytest.raises(ValueError, match="unknown column"):
        bench.parse_columns(" , ")


def test_coarse_stages_split_the_model_call_and_keep_the_wall_time():
    stages = bench.coarse_stages(decode=1.0, preprocess=0.5, text=2.0, model=5.0, total=10.0)
    assert stages == {"decode": 1.0, "preprocess": 0.5, "text": 2.0, "video": 3.0, "rest": 3.5}
    assert sum(stages.values()) == 10.0


def test_the_bound_divides_the_recipe_by_decode_and_preprocess():
    stages = {"transformers": {"decode": 4.0, "preprocess": 2.0, "text": 20.0, "video": 14.0, "rest": 0.0},
              "ours": {"decode": 1.0, "preprocess": 1.0, "text": 1.0, "video": 5.0, "rest": 2.0}}
    bounds = bench.ratio_bounds(stages, videos=4)
    # the recipe: 40 s / 4 videos = 10 s per video; ours: 10 s / 4 = 2.5 s per video, floor 2 s / 4 = 0.5 s
    assert bounds["ours"] == pytest.approx((4.0, 0.5, 20.0, 10.0))
    assert bounds["transformers"][0] == pytest.approx(1.0)


@pytest.mark.slow
@pytest.mark.onnx
def test_quick_run_prints_every_table_for_torch_exported_and_merging_columns():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    columns = "fp32,fp32-tome,ort-int8,ov-int8s,ort-int8-tome"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, SCRIPT, "--quick", "--columns", columns], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for line in ("export fp32:", "export fp32-tome:", "quantise int8 (dynamic)", "quantise int8s (static",
                 "quantise int8-tome (dynamic)", "where the time goes", "the bound:", "15x goal"):
        assert line in out, line
    for column in ["transformers", *columns.split(",")]:
        assert out.count(f"| {column} |") == 2 + (column != "transformers"), column  # rates, stages, bound
    assert "| decode | preprocess | text | video | rest |" in out
