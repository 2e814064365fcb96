"""CPU deployment (xclip_hf.deploy): ONNX export of a tiny X-CLIP model trained here for a few steps, its graphs
against the torch model (the oracle), the pipeline / embed / search / CLI over the exported folder, int8 top-1
agreement, and the checks at load."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from _helpers_pipeline import LABELS, TOKENIZER_TEXTS, make_our_checkpoint, write_videos  # noqa: E402

from xclip_hf.data.synthetic import SYNTHETIC_CLASSES, render_video  # noqa: E402
from xclip_hf.models.loading import ModelLoadError, load_model_and_processor  # noqa: E402

# every test here runs on an ONNX export of a model (a module fixture exports it) or exports one
pytestmark = [pytest.mark.slow, pytest.mark.onnx]

TOL = 1e-4
RUNTIMES = ["onnxruntime", "openvino"]


def _runtime(name):
    if name == "openvino":
        pytest.importorskip("openvino")
    return name


def _synthetic_clips(processor, count, seed):
    """`count` processed clips (count, T, C, H, W) of the first len(LABELS) synthetic classes, and their classes."""
    rng = np.random.default_rng(seed)
    classes = list(SYNTHETIC_CLASSES)[:len(LABELS)]
    targets = [i % len(classes) for i in range(count)]
    videos = [render_video(classes[t], rng, size=32, num_frames=3) for t in targets]
    pixel_values = processor.video_processor(videos, return_tensors="pt", do_sample_frames=False)["pixel_values"]
    return pixel_values, torch.tensor(targets)


def _train(checkpoint, output, steps=12):
    """A few AdamW steps of the tiny model on synthetic motion classes named by LABELS; saved to `output`."""
    model, processor = load_model_and_processor(checkpoint)
    tokens = processor.tokenize_labels(LABELS, return_tensors="pt")
    pixel_values, targets = _synthetic_clips(processor, 40, seed=0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = torch.randperm(len(targets), generator=gen)[:10]
        loss = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                     pixel_values=pixel_values[batch], labels=targets[batch]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().save_pretrained(output)
    processor.save_pretrained(output)
    return str(output)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """Torch checkpoint (trained), its float32 export (Python API) and int8 export (CLI), and two videos."""
    from xclip_hf.cli import main
    from xclip_hf.deploy import export_onnx

    root = tmp_path_factory.mktemp("deploy")
    trained = _train(make_our_checkpoint(root / "init"), root / "trained")
    fp32 = export_onnx(trained, root / "onnx")
    assert main(["export-onnx", trained, str(root / "int8"), "--quantize", "int8"]) == 0
    return {"torch": trained, "fp32": fp32, "int8": str(root / "int8"), "videos": write_videos(str(root)),
            "root": root}


@pytest.fixture(scope="module")
def torch_model(deployed):
    return load_model_and_processor(deployed["torch"])


def _tokens(processor, k):
    texts = (TOKENIZER_TEXTS * 2)[:k]
    texts = [f"{t} {i}" if i >= len(TOKENIZER_TEXTS) else t for i, t in enumerate(texts)]
    return processor.tokenize_labels(texts, return_tensors="pt")


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("batch,labels", [(1, 1), (3, 7), (1, 7), (3, 1)])
def test_fp32_graphs_equal_torch(deployed, torch_model, runtime, batch, labels):
    model, processor = torch_model
    exported, _ = load_model_and_processor(deployed["fp32"], runtime=_runtime(runtime))
    assert exported.runtime == runtime and not isinstance(exported, type(model))
    pixel_values = torch.randn(batch, 3, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    tokens = _tokens(processor, labels)
    assert labels == 1 or (tokens["attention_mask"] == 0).any()  # padded texts: the mask is really used
    with torch.no_grad():
        video = model.get_video_features(pixel_values)
        text = model.get_text_features(**tokens).pooler_output
        logits = model(pixel_values=pixel_values, text_embeds=text).logits_per_video
    got_video = exported.get_video_features(pixel_values)
    for name in ("video_embeds", "video_context", "frame_embeds"):
        torch.testing.assert_close(getattr(got_video, name), getattr(video, name), rtol=0, atol=TOL)
    got_text = exported.get_text_features(**tokens).pooler_output
    torch.testing.assert_close(got_text, text, rtol=0, atol=TOL)
    out = exported(pixel_values=pixel_values, text_embeds=text)
    assert out.logits_per_video.shape == (batch, labels)
    torch.testing.assert_close(out.logits_per_video, logits, rtol=0, atol=TOL)
    torch.testing.assert_close(exported(pixel_values=pixel_values, **tokens).logits_per_video, logits, rtol=0,
                               atol=TOL)


def _assert_same_ranking(got, want):
    assert [p["label"] for p in got] == [p["label"] for p in want]
    np.testing.assert_allclose([p["score"] for p in got], [p["score"] for p in want], rtol=0, atol=TOL)


def test_pipeline_on_export_equals_torch_pipeline(deployed, monkeypatch):
    from transformers import pipeline

    from xclip_hf import XClipPreTrainedModel, ZeroShotVideoClassificationPipeline

    videos = deployed["videos"]
    reference = pipeline("zero-shot-video-classification", model=deployed["torch"])
    want_one = reference(videos[0], candidate_labels=LABELS)
    want_list = reference(videos, candidate_labels=LABELS, batch_size=2)
    windows = dict(candidate_labels=LABELS, chunk_length_s=0.2, stride_length_s=0.1, return_timestamps=True)
    want_windows = reference(videos[0], **windows)
    assert len(want_windows) > 1

    def no_torch_model(*args, **kwargs):
        raise AssertionError("a torch model was built for an exported folder")

    monkeypatch.setattr(XClipPreTrainedModel, "__init__", no_torch_model)
    exported = ZeroShotVideoClassificationPipeline(model=deployed["fp32"])  # detected from the folder
    _assert_same_ranking(exported(videos[0], candidate_labels=LABELS), want_one)
    for got, want in zip(exported(videos, candidate_labels=LABELS, batch_size=2), want_list, strict=True):
        _assert_same_ranking(got, want)
    got_windows = exported(videos[0], **windows)
    assert [w["timestamp"] for w in got_windows] == [w["timestamp"] for w in want_windows]
    for got, want in zip(got_windows, want_windows):
        _assert_same_ranking(got["labels"], want["labels"])
    assert exported.text_encoder_calls == 1  # one label set: encoded once, then the label cache
    # transformers' factory with the loaded object
    loaded = load_model_and_processor(deployed["fp32"], runtime="onnxruntime")
    factory = pipeline("zero-shot-video-classification", model=loaded.model, processor=loaded.processor)
    _assert_same_ranking(factory(videos[0], candidate_labels=LABELS), want_one)


def test_embed_and_search_on_export(deployed, tmp_path):
    from datasets import load_from_disk

    from xclip_hf import embed_videos, search_videos

    options = dict(num_workers=0, progress=False, save_context=True, save_frame_embeds=True)
    want = embed_videos(deployed["videos"], tmp_path / "torch", deployed["torch"], **options)
    got = embed_videos(deployed["videos"], tmp_path / "onnx", deployed["fp32"], **options)
    assert got["path"] == want["path"]
    for column in ("video_embeds", "frame_embeds", "video_context"):
        a = np.asarray(got[column], dtype=np.float64).reshape(len(got), -1)
        b = np.asarray(want[column], dtype=np.float64).reshape(len(want), -1)
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() >= 0.9999, (column, cosine)
    # search over the torch-made embeddings with the exported model: same hits, same re-ranked logits
    dataset = load_from_disk(str(tmp_path / "torch"))
    want_hits = search_videos(dataset, LABELS[:2], deployed["torch"], top_k=2)
    got_hits = search_videos(dataset, LABELS[:2], deployed["fp32"], top_k=2)
    for got_q, want_q in zip(got_hits, want_hits):
        assert [h["path"] for h in got_q] == [h["path"] for h in want_q]
        np.testing.assert_allclose([h["score"] for h in got_q], [h["score"] for h in want_q], rtol=0, atol=TOL)


def test_cli_classify_on_export(deployed, capsys):
    from xclip_hf.cli import main

    args = [*deployed["videos"], "--labels", ",".join(LABELS), "--json", "--no-progress"]
    assert main(["classify", *args, "--model", deployed["torch"]]) == 0
    want = json.loads(capsys.readouterr().out)
    assert main(["classify", *args, "--model", deployed["fp32"]]) == 0
    got = json.loads(capsys.readouterr().out)
    for g, w in zip(got, want, strict=True):
        _assert_same_ranking(g["predictions"], w["predictions"])


def test_int8_top1_agrees_with_fp32(deployed):
    """64 random (video, label set) pairs of the trained model: int8 picks fp32's top label on >= 95%."""
    fp32, processor = load_model_and_processor(deployed["fp32"])
    int8, _ = load_model_and_processor(deployed["int8"])
    assert int8.precision == "int8"
    pixel_values, _ = _synthetic_clips(processor, 64, seed=1)
    rng = np.random.default_rng(0)
    agree = []
    v32, v8 = fp32.get_video_features(pixel_values), int8.get_video_features(pixel_values)
    for i in range(64):
        chosen = rng.choice(len(TOKENIZER_TEXTS), size=int(rng.integers(2, len(TOKENIZER_TEXTS) + 1)), replace=False)
        tokens = processor.tokenize_labels([TOKENIZER_TEXTS[j] for j in chosen], return_tensors="pt")
        top = []
        for model, video in ((fp32, v32), (int8, v8)):
            text = model.get_text_features(**tokens).pooler_output
            logits = model.video_text_logits(video.video_embeds[i:i + 1], video.video_context[i:i + 1], text)[0]
            top.append(int(logits.argmax()))
        agree.append(top[0] == top[1])
    fraction = float(np.mean(agree))
    print(f"int8 vs fp32 top-1 agreement: {fraction:.3f} of {len(agree)} (video, label set) pairs")
    assert fraction >= 0.95


# ------------------------------------------------------------------------------------------------ checks at load
def _copy(deployed, tmp_path, name="copy", folder="fp32"):
    target = tmp_path / name
    shutil.copytree(deployed[folder], target)
    return str(target)


def _edit_json(path, **changes):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    for key, value in changes.items():
        target = data
        *parents, last = key.split(".")
        for parent in parents:
            target = target[parent]
        target[last] = value
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


@pytest.mark.parametrize("change,message", [
    ({"format_version": 99}, "export format version 99"),
    ({"opset": 11}, "opset 11"),
])
def test_manifest_from_another_version_is_an_error(deployed, tmp_path, change, message):
    folder = _copy(deployed, tmp_path)
    _edit_json(os.path.join(folder, "xclip_onnx.json"), **change)
    with pytest.raises(ModelLoadError, match=message) as info:
        load_model_and_processor(folder)
    assert "xclip_onnx.json" in str(info.value)


def test_config_that_does_not_fit_the_graphs_is_an_error(deployed, tmp_path):
    folder = _copy(deployed, tmp_path)
    _edit_json(os.path.join(folder, "config.json"), **{"vision_config.num_frames": 5})
    with pytest.raises(ModelLoadError, match="config.json.* does not match the graphs .*num_frames 5 vs 3"):
        load_model_and_processor(folder)


@pytest.mark.parametrize("change,message", [
    ({"num_frames": 4}, "samples 4 frames per video; the exported graphs .* take num_frames=3"),
    ({"crop_size": {"height": 48, "width": 48}}, "crops 48x48; the exported graphs .* take 32x32"),
])
def test_processor_that_does_not_fit_the_graphs_is_an_error(deployed, tmp_path, change, message):
    folder = _copy(deployed, tmp_path)
    processor_file = os.path.join(folder, "processor_config.json")
    with open(processor_file, encoding="utf-8") as f:
        has_nested = "video_processor" in json.load(f)
    _edit_json(processor_file, **{(f"video_processor.{k}" if has_nested else k): v for k, v in change.items()})
    with pytest.raises(ModelLoadError, match=message):
        load_model_and_processor(folder)


def test_unreadable_graph_is_an_error_naming_it(deployed, tmp_path):
    folder = _copy(deployed, tmp_path)
    with open(os.path.join(folder, "head.onnx"), "wb") as f:
        f.write(b"not a graph")
    with pytest.raises(ModelLoadError, match="head.onnx"):
        load_model_and_processor(folder)


def test_runtime_choice_is_checked(deployed):
    with pytest.raises(ModelLoadError, match="not one"):
        load_model_and_processor(deployed["torch"], runtime="onnxruntime")
    with pytest.raises(ModelLoadError, match="exported graphs, not torch weights"):
        load_model_and_processor(deployed["fp32"], runtime="torch")
    with pytest.raises(ValueError, match="runtime must be"):
        load_model_and_processor(deployed["fp32"], runtime="tensorrt")
    with pytest.raises(ModelLoadError, match="dtype"):
        load_model_and_processor(deployed["fp32"], dtype="bfloat16")


def _message(fn):
    with pytest.raises(ValueError) as info:
        fn()
    return str(info.value)


def test_bad_inputs_give_the_torch_models_messages(deployed, torch_model):
    model, processor = torch_model
    exported, _ = load_model_and_processor(deployed["fp32"])
    for bad in (torch.randn(3, 3, 32, 32), torch.zeros(1, 3, 3, 32, 32, dtype=torch.uint8),
                torch.randn(1, 3, 4, 32, 32), torch.randn(1, 0, 3, 32, 32), torch.randn(1, 3, 3, 30, 30)):
        assert _message(lambda: exported.get_video_features(bad)) == _message(
            lambda: model.get_video_features(bad, interpolate_pos_encoding=True))
    for bad in (torch.ones(2, 3, 4, dtype=torch.long), torch.ones(1, 78, dtype=torch.long),
                torch.ones(0, 5, dtype=torch.long)):
        assert _message(lambda: exported.get_text_features(bad)) == _message(lambda: model.get_text_features(bad))
    text = torch.randn(2, model.config.projection_dim + 1)
    assert (_message(lambda: exported(pixel_values=torch.randn(1, 3, 3, 32, 32), text_embeds=text))
            == _message(lambda: model(pixel_values=torch.randn(1, 3, 3, 32, 32), text_embeds=text)))
    assert "must be integers" in _message(lambda: exported.get_text_features(torch.ones(1, 5)))
    assert "outside the vocabulary" in _message(lambda: exported.get_text_features(torch.full((1, 5), 10**6)))
    # another frame count or size: the torch model resamples its position tables on request, the graphs cannot
    for bad, words in ((torch.randn(1, 5, 3, 32, 32), ("5 frames", "num_frames=3")),
                       (torch.randn(1, 3, 3, 40, 40), ("40x40", "expects 32x32"))):
        for interpolate in (False, True):
            message = _message(lambda: exported.get_video_features(bad, interpolate_pos_encoding=interpolate))
            assert all(word in message for word in words), message


def _signal_stack_size():
    import ctypes

    class Stack(ctypes.Structure):
        _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]

    stack = Stack()
    if ctypes.CDLL(None).sigaltstack(None, ctypes.byref(stack)) != 0:
        pytest.skip("sigaltstack is not available")
    return stack.ss_size


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack via glibc")
def test_openvino_leaves_the_callers_signal_stack_alone(deployed):
    """OpenVINO's compile_model installs an 11 KB alternate signal stack on the calling thread; Python runs its signal
    handlers there (SA_ONSTACK), and a SIGCHLD from a dying DataLoader worker then overflowed it (a segfault of the
    whole process, seen in tests/test_embed.py's crashing-decoder test run after these tests)."""
    _runtime("openvino")
    before = _signal_stack_size()
    load_model_and_processor(deployed["fp32"], runtime="openvino")
    assert _signal_stack_size() == before


# ------------------------------------------------------------------------------ transformers' pipeline() factory
@pytest.mark.parametrize("folder,runtime", [("fp32", None), ("int8", None), ("fp32", "onnxruntime"),
                                            ("int8", "openvino")])
def test_factory_on_an_export_equals_the_direct_pipeline(deployed, monkeypatch, folder, runtime):
    """`pipeline(task, model=<export folder>)`, through transformers' own factory, runs the export's graphs (the
    float32 folder defaults to OpenVINO, the int8 one to ONNX Runtime; `runtime=` chooses) with the scores of
    `ZeroShotVideoClassificationPipeline(model=<folder>)`; no torch model is built."""
    from transformers import pipeline

    from xclip_hf import XClipPreTrainedModel, ZeroShotVideoClassificationPipeline
    from xclip_hf.deploy.manifest import default_runtime, read_manifest
    from xclip_hf.deploy.runtime import ExportedXClipModel

    expected = runtime or default_runtime(read_manifest(deployed[folder]))
    _runtime(expected)

    def no_torch_model(*args, **kwargs):
        raise AssertionError("a torch model was built for an exported folder")

    monkeypatch.setattr(XClipPreTrainedModel, "__init__", no_torch_model)
    options = {} if runtime is None else {"runtime": runtime}
    factory = pipeline("zero-shot-video-classification", model=deployed[folder], **options)
    direct = ZeroShotVideoClassificationPipeline(model=deployed[folder], **options)
    assert isinstance(factory.model, ExportedXClipModel) and factory.model.runtime == direct.model.runtime == expected
    assert factory.device == torch.device("cpu")
    got = factory(deployed["videos"], candidate_labels=LABELS, batch_size=2)
    want = direct(deployed["videos"], candidate_labels=LABELS, batch_size=2)
    for g, w in zip(got, want, strict=True):
        assert [p["label"] for p in g] == [p["label"] for p in w]
        np.testing.assert_allclose([p["score"] for p in g], [p["score"] for p in w], rtol=0, atol=1e-6)


@pytest.mark.parametrize("arguments,message", [
    ({"device": "cuda"}, "runs on the CPU .*device cuda needs the torch model"),
    ({"device": torch.device("cuda", 1)}, "runs on the CPU .*device cuda:1 needs the torch model"),
    ({"dtype": torch.bfloat16}, "dtype torch.bfloat16 applies to torch models"),
    ({"dtype": "float16"}, "dtype torch.float16 applies to torch models"),
    ({"model_kwargs": {"dtype": torch.bfloat16}}, "dtype torch.bfloat16 applies to torch models"),
    ({"device_map": "auto"}, "device_map: for torch models only"),
    ({"model_kwargs": {"attn_implementation": "sdpa"}}, "attn_implementation: for torch models only"),
    ({"runtime": "tensorrt"}, "runtime must be None or one of"),
])
def test_factory_refuses_device_and_dtype_for_an_export(deployed, arguments, message):
    from transformers import pipeline

    with pytest.raises(ValueError, match=message) as info:
        pipeline("zero-shot-video-classification", model=deployed["int8"], **arguments)
    assert "runtime must be" in message or deployed["int8"] in str(info.value)


def test_pipeline_on_an_export_stays_on_the_cpu_beside_an_accelerator(deployed, monkeypatch):
    """transformers' default device is the first accelerator; the graphs run on the CPU, so an export is not moved
    (it used to fail with "device cuda:0 needs the torch model" on any machine with a GPU)."""
    import transformers.pipelines.base as base

    from xclip_hf import ZeroShotVideoClassificationPipeline

    monkeypatch.setattr(base, "is_torch_cuda_available", lambda: True)
    pipe = ZeroShotVideoClassificationPipeline(model=deployed["int8"])
    assert pipe.device == torch.device("cpu") and pipe.model.runtime == "onnxruntime"


# ------------------------------------------------------------------------ what an exported folder says it is
def test_opset_the_exporter_does_not_write_is_refused(deployed, tmp_path):
    """torch's exporter writes opset 18 graphs for --opset 17 or 99 (and up to 25 here): those are refused before
    any work, not recorded as if they were written."""
    from xclip_hf.deploy import export_onnx

    for opset in (17, 99, 7):
        out = tmp_path / f"opset{opset}"
        with pytest.raises(ValueError, match=f"opset must be an integer from 18 to .*got {opset}"):
            export_onnx(deployed["torch"], out, opset=opset)
        assert not out.exists()
    manifest = json.loads((deployed["root"] / "onnx" / "xclip_onnx.json").read_text())
    assert manifest["opset"] == 18  # read back from the graphs


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/etc/passwd", "../int8/video.onnx", "sub/video.onnx"])
def test_graph_file_outside_the_folder_is_refused(deployed, tmp_path, name):
    folder = _copy(deployed, tmp_path)
    _edit_json(os.path.join(folder, "xclip_onnx.json"), **{"graphs.video.file": name})
    with pytest.raises(ModelLoadError, match=f"names '{name}' as the video graph: graph files are plain"):
        load_model_and_processor(folder)


@pytest.mark.parametrize("folder,field,value", [
    ("fp32", "logit_scale", 4.6),
    ("fp32", "source_fingerprint", "sha256:" + "0" * 64),
    ("fp32", "source_whole_fingerprint", "sha256:" + "0" * 64),
    ("fp32", "opset", 19),
    ("int8", "quantization", None),
    ("int8", "precision", "float32"),
])
def test_edited_manifest_field_is_an_error_naming_it(deployed, tmp_path, folder, field, value):
    copy = _copy(deployed, tmp_path, folder=folder)
    _edit_json(os.path.join(copy, "xclip_onnx.json"), **{field: value})
    with pytest.raises(ModelLoadError, match=rf"xclip_onnx.json' was edited after export \({field}="):
        load_model_and_processor(copy)


def test_replaced_graph_file_is_an_error_naming_it(deployed, tmp_path):
    folder = _copy(deployed, tmp_path)
    shutil.copy(os.path.join(deployed["int8"], "text.onnx"), os.path.join(folder, "text.onnx"))
    with pytest.raises(ModelLoadError, match="text.onnx' is not the file the export wrote"):
        load_model_and_processor(folder)
    embed_side, _ = load_model_and_processor(folder, need_text=False)  # the video graph alone is still intact
    assert embed_side.runtime in RUNTIMES


def test_interrupted_export_is_named_an_incomplete_export(deployed, tmp_path, capsys):
    """An export killed with SIGKILL leaves graphs and no manifest (written last, atomically): loading it says so
    (it said "is not an X-CLIP model (model_type None)")."""
    import signal
    import subprocess
    import time

    from xclip_hf.cli import main

    out = tmp_path / "killed"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""), HF_HUB_OFFLINE="1")
    process = subprocess.Popen([sys.executable, "-m", "xclip_hf.cli", "export-onnx", deployed["torch"], str(out)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "video.onnx").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (out / "video.onnx").exists() and not (out / "xclip_onnx.json").exists()
    with pytest.raises(ModelLoadError, match="is an incomplete export: it holds .*video.onnx.* but no xclip_onnx.json"):
        load_model_and_processor(str(out))
    capsys.readouterr()
    assert main(["classify", deployed["videos"][0], "--labels", "a,b", "--model", str(out)]) == 1
    assert "incomplete export" in capsys.readouterr().err


@pytest.fixture(scope="module")
def search_index(deployed, tmp_path_factory):
    """The float32 export's embeddings of the two videos."""
    from xclip_hf import embed_videos

    out = tmp_path_factory.mktemp("index") / "emb"
    embed_videos(deployed["videos"], out, deployed["fp32"], progress=False, num_workers=0)
    return str(out)


def test_index_of_the_float32_export_refused_for_int8_names_the_precision(deployed, search_index):
    from xclip_hf import embed_videos, search_videos
    from xclip_hf.corpus.search import ModelMismatchError

    with pytest.raises(ModelMismatchError, match=r"fingerprint [0-9a-f]{12}\+int8; the same source model at another "
                                                  "precision: float32 vs int8"):
        search_videos(search_index, LABELS[:1], deployed["int8"])
    with pytest.raises(ValueError, match="another precision: float32 vs int8"):
        embed_videos(deployed["videos"], search_index, deployed["int8"], progress=False, num_workers=0)


# ------------------------------------------------------------------------- an export's fingerprint, text side
@pytest.fixture(scope="module")
def text_changed(deployed, tmp_path_factory):
    """The trained model with its text encoder alone changed, exported (float32)."""
    from xclip_hf.deploy import export_onnx

    root = tmp_path_factory.mktemp("text_changed")
    model, processor = load_model_and_processor(deployed["torch"])
    with torch.no_grad():
        for parameter in model.text_model.parameters():
            parameter.add_(0.01)
    model.save_pretrained(root / "torch")
    processor.save_pretrained(root / "torch")
    return export_onnx(str(root / "torch"), root / "onnx")


def test_text_only_change_of_an_export_is_noticed_by_evaluate(deployed, torch_model, text_changed, tmp_path):
    """Evaluate's resume check compares the whole model's fingerprint, text side included, also for exports (an
    export gave its source's video-side fingerprint for both); embed's compares the video side, whose rows a
    text-only change leaves the same, as for torch models."""
    from xclip_hf import embed_videos
    from xclip_hf.jobs.identity import model_fingerprint
    from xclip_hf.evaluation.zero_shot import evaluate_zero_shot

    exported = load_model_and_processor(deployed["fp32"]).model
    changed = load_model_and_processor(text_changed).model
    assert model_fingerprint(exported, whole=True) == model_fingerprint(torch_model.model, whole=True)
    assert model_fingerprint(changed, whole=True) != model_fingerprint(exported, whole=True)
    assert model_fingerprint(changed) == model_fingerprint(exported) == model_fingerprint(torch_model.model)

    split = tmp_path / "val.txt"
    split.write_text("".join(f"{video} {i}\n" for i, video in enumerate(deployed["videos"])))
    out = tmp_path / "eval"
    evaluate_zero_shot(deployed["fp32"], str(split), LABELS, output_dir=str(out), progress=False)
    with pytest.raises(ValueError, match="another model"):
        evaluate_zero_shot(text_changed, str(split), LABELS, output_dir=str(out), progress=False)
    emb = tmp_path / "emb"
    embed_videos(deployed["videos"][:1], emb, deployed["fp32"], progress=False, num_workers=0)
    embed_videos(deployed["videos"], emb, text_changed, progress=False, num_workers=0)  # the same video rows: resumed
