"""Bad data never costs a run and never gives a silent answer (issue 12).

Label cache (stale weights, poisoned features, threads), duplicate labels after tokenizer normalisation, input
values (float [0, 1] frames, NaN/Inf, integer pixel_values, extreme aspect ratios), decoder errors naming the file
and frame, the training bad-sample policy, and the CLI's exit codes.
"""

from __future__ import annotations

import os
import random
import sys
import threading

import numpy as np
import pytest
import torch
from transformers import pipeline

import xclip_hf  # noqa: F401  (registers the task)
from xclip_hf.models.text_features import LabelEmbeddingCache, build_label_set

from _helpers_pipeline import LABELS, make_our_checkpoint, tiny_tokenizer, video_frames, write_videos

TASK = "zero-shot-video-classification"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_data")
    return {"root": root, "model": make_our_checkpoint(root / "model"), "videos": write_videos(str(root))}


def write_mid_file_corrupt_video(path, num_frames=40, seed=0):
    """An mp4 that opens (header and index intact) but whose frame data is garbage from 50 % to 90 %."""
    from xclip_hf.data.video_writer import write_video

    frames = np.random.default_rng(seed).integers(0, 255, (num_frames, 32, 32, 3), dtype=np.uint8)
    write_video(path, frames)  # noise compresses badly: every frame has its own bytes in the media data
    data = bytearray(open(path, "rb").read())
    at = data.find(b"mdat")
    start, end = at + 4, at - 4 + int.from_bytes(data[at - 4:at], "big")
    rng = random.Random(seed)
    for k in range(start + (end - start) // 2, start + 9 * (end - start) // 10):
        data[k] = rng.randrange(256)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


# ----------------------------------------------------------------------------------------------- label cache
def test_cache_never_serves_features_of_replaced_weights(workdir):
    """`param.data = fresh random` (20 rounds): freed storage may be reused at the same address with version 0."""
    cached = pipeline(TASK, model=workdir["model"], device="cpu")
    uncached = pipeline(TASK, model=cached.model, processor=cached.processor, device="cpu", label_cache_size=0)
    label_set = build_label_set(LABELS)
    weight = cached.model.text_model.text_projection.weight
    gen = torch.Generator().manual_seed(0)
    for round_ in range(20):
        weight.data = torch.randn(weight.shape, generator=gen)  # the old tensor is freed: its address can come back
        torch.testing.assert_close(cached.text_features(label_set), uncached.text_features(label_set), atol=0, rtol=0,
                                   msg=f"round {round_}")
    assert uncached.text_encoder_calls == 20 and cached.text_encoder_calls == 20


def test_cache_key_holds_tokenizer_and_text_config_settings(workdir):
    pipe = pipeline(TASK, model=workdir["model"], device="cpu")
    label_set = build_label_set(LABELS)
    first = pipe.text_features(label_set)
    pipe.tokenizer.model_max_length = 3  # truncates every label to 3 tokens
    short = pipe.text_features(label_set)
    assert not torch.allclose(first, short)
    eos = pipe.model.config.text_config.eos_token_id
    pipe.model.config.text_config.eos_token_id = 2  # pool another token
    other = pipe.text_features(label_set)
    assert pipe.text_encoder_calls == 3
    pipe.model.config.text_config.eos_token_id = eos


def test_returned_features_cannot_poison_the_cache(workdir):
    mp4 = workdir["videos"][0]
    pipe = pipeline(TASK, model=workdir["model"], device="cpu")
    label_set = build_label_set(LABELS)
    reference = pipe.text_encoder._encode(label_set.texts).clone()
    before = pipe(mp4, candidate_labels=LABELS)
    pipe.text_features(label_set).mul_(0).add_(1)  # a hit: edit the returned tensor in place
    pipe.text_features(label_set).zero_()
    torch.testing.assert_close(pipe.text_features(label_set), reference)
    assert pipe(mp4, candidate_labels=LABELS) == before

    fresh = pipeline(TASK, model=workdir["model"], device="cpu")
    fresh.text_features(label_set).zero_()  # a miss: the computed tensor handed out must not be the stored one
    torch.testing.assert_close(fresh.text_features(label_set), reference)


def test_cache_is_thread_safe():
    cache = LabelEmbeddingCache(max_entries=4)
    keys = [("key", i) for i in range(8)]
    errors, wrong = [], []

    def worker(seed):
        rng = random.Random(seed)
        try:
            for _ in range(3000):
                i = rng.randrange(len(keys))
                value = cache.get(keys[i])
                if value is None:
                    cache.put(keys[i], torch.full((2, 3), float(i)))
                elif not bool((value == i).all()):
                    wrong.append((i, value))
        except Exception as err:  # noqa: BLE001 - any exception is a failure of the test
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up at once
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, f"{len(errors)} errors, e.g. {errors[0]!r}"
    assert not wrong
    assert len(cache) <= 4


def test_labels_equal_after_tokenizer_normalisation_are_refused(workdir):
    pipe = pipeline(TASK, model=workdir["model"], device="cpu")
    with pytest.raises(ValueError, match=r"'Cat' = 'cat' = ' CAT'"):
        pipe(workdir["videos"][0], candidate_labels=["Cat", "cat", " CAT", "dog"])
    with pytest.raises(ValueError, match="'Dog'"):
        build_label_set(["dog", "Dog"], tokenizer=tiny_tokenizer())
    assert len(build_label_set(["dog", "Dog"])) == 2  # without a tokenizer only exact duplicates are known


# ----------------------------------------------------------------------------------------------- input values
def _processor():
    from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

    return XClipVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, num_frames=3)


def test_float_frames_in_unit_range_warn_and_do_rescale_false_is_respected():
    from transformers.utils import logging as hf_logging

    frames = video_frames(6, 40, 48, seed=3)
    unit = frames.astype(np.float32) / 255
    processor = _processor()
    logger = hf_logging.get_logger("xclip_hf.models.video_processing_xclip")
    logger.warning_once.cache_clear()
    messages = []
    handler = type("H", (__import__("logging").Handler,), {"emit": lambda self, r: messages.append(r.getMessage())})()
    logger.addHandler(handler)
    try:
        processor(unit, return_tensors="pt")
        assert any("already rescaled" in m and "do_rescale=False" in m for m in messages), messages
        messages.clear()
        logger.warning_once.cache_clear()
        processor(frames, return_tensors="pt")  # uint8 0..255: nothing to warn about
        assert not any("already rescaled" in m for m in messages)
    finally:
        logger.removeHandler(handler)
    want = processor(frames, return_tensors="pt")["pixel_values"]
    got = processor(unit, do_rescale=False, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(got, want, atol=0.02, rtol=0)  # uint8 input is rounded after resizing


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_frames_are_refused_naming_the_video(bad):
    frames = video_frames(6, 40, 48, seed=3).astype(np.float32)
    frames[:, 5, 5, 1] = bad
    with pytest.raises(ValueError, match=r"video 1: 3 frame value\(s\) are NaN or infinite"):
        _processor()([video_frames(6, 40, 48).astype(np.float32), frames], return_tensors="pt")


def test_integer_pixel_values_are_refused_by_the_model(workdir):
    from xclip_hf import XClipModel

    model = XClipModel.from_pretrained(workdir["model"])
    config = model.config.vision_config
    pixels = torch.randint(0, 255, (1, config.num_frames, 3, config.image_size, config.image_size), dtype=torch.uint8)
    with pytest.raises(ValueError, match="dtype torch.uint8.*XClipVideoProcessor"):
        model.get_video_features(pixel_values=pixels)


def test_extreme_aspect_ratio_is_cropped_before_resizing():
    """1 x 100000 frames: resizing the whole frame first made 3.2 M-pixel-wide frames (15 s, 4 GB)."""
    import xclip_hf.models.video_processing_xclip as vp

    frames = np.random.default_rng(0).integers(0, 255, (3, 1, 100000, 3), dtype=np.uint8)
    calls = []
    original = vp._interpolate

    def spy(x, new_h, new_w, resample):
        calls.append(new_h * new_w)
        return original(x, new_h, new_w, resample)

    vp._interpolate = spy
    try:
        out = _processor()(frames, num_spatial_crops=3, return_tensors="pt")["pixel_values"]
    finally:
        vp._interpolate = original
    assert out.shape == (1, 3, 3, 3, 32, 32)
    assert all(n <= 1 << 20 for n in calls)  # no full-frame resize
    # same pixels as resizing the whole frame, on a frame small enough to resize whole (independent: torch directly)
    small = np.random.default_rng(1).integers(0, 255, (3, 2, 9000, 3), dtype=np.uint8)
    got = _processor()(small, num_spatial_crops=3, do_normalize=False, do_rescale=False, return_tensors="pt")
    whole = torch.nn.functional.interpolate(torch.from_numpy(small).permute(0, 3, 1, 2).float(), size=(32, 144000),
                                            mode="bilinear", align_corners=False, antialias=True).round().clamp(0, 255)
    for k, left in enumerate((0, (144000 - 32) // 2, 144000 - 32)):
        torch.testing.assert_close(got["pixel_values"][0, k], whole[..., left:left + 32], atol=0, rtol=0)


def test_processor_mean_of_two_values_is_a_config_error(workdir, tmp_path):
    import json
    import shutil

    from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

    with pytest.raises(ValueError, match=r"config: image_mean must be 3 finite numbers.*0.5, 0.5"):
        XClipVideoProcessor(image_mean=[0.5, 0.5])
    with pytest.raises(ValueError, match="config: image_std"):
        _processor()(video_frames(4, 32, 32), image_std=[0.2, 0.2], return_tensors="pt")
    model_dir = tmp_path / "model"
    shutil.copytree(workdir["model"], model_dir)
    for name in os.listdir(model_dir):
        if "preprocessor_config" in name or name == "processor_config.json":
            path = model_dir / name
            config = json.loads(path.read_text())
            target = config.get("video_processor", config)
            target["image_mean"] = [0.5, 0.5]
            path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"cannot load the processor .*model.*image_mean must be 3"):
        pipeline(TASK, model=str(model_dir), device="cpu")


# ----------------------------------------------------------------------------------------------- decoding
def test_mid_file_corruption_is_one_error_naming_file_and_frame(tmp_path):
    from xclip_hf.video.reader import VideoDecodeError, read_video

    path = write_mid_file_corrupt_video(tmp_path / "mid.mp4")
    for backend in ("auto", "decord", "pyav"):
        with pytest.raises(VideoDecodeError, match=r"mid\.mp4'? (at frame \d+|reading frames \d+\.\.\d+)") as err:
            read_video(path, backend=backend)
        assert err.value.path == path and err.value.frame is not None


def test_decoder_noise_is_captured_into_the_error(tmp_path):
    """decord/FFmpeg print their own error lines to the terminal (file descriptor 2); they belong in the message."""
    import tempfile

    from xclip_hf.video.reader import read_video

    bad = tmp_path / "text.mp4"
    bad.write_text("not a video\n" * 50)
    mid = write_mid_file_corrupt_video(tmp_path / "mid.mp4")
    messages = []
    saved = os.dup(2)
    with tempfile.TemporaryFile() as err:
        os.dup2(err.fileno(), 2)
        try:
            for path in (str(bad), mid):
                with pytest.raises(ValueError) as caught:
                    read_video(path)
                messages.append(str(caught.value))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        printed = err.read().decode()
    assert printed == ""
    assert "text.mp4" in messages[0] and "ERROR opening" in messages[0]  # decord's own line, inside the message
    assert "mid.mp4" in messages[1]


# ----------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    """6 synthetic videos + 1 mid-file-corrupt one in the training list; a tokenizer."""
    from xclip_hf.data.synthetic import generate_synthetic_dataset
    from xclip_hf.data.tokenizer import build_clip_tokenizer

    root = tmp_path_factory.mktemp("bad_train")
    data = generate_synthetic_dataset(root / "data", 3, seed=0, classes=["moving left", "moving right"], size=32,
                                      min_frames=8, max_frames=10, splits=(1, 0, 0))
    corrupt = write_mid_file_corrupt_video(os.path.join(data.root, "corrupt.mp4"))
    with open(data.train_file, "a") as f:
        f.write("corrupt.mp4 1\n")
    build_clip_tokenizer(["moving left", "moving right"], save_directory=root / "tokenizer", vocab_size=520)
    return {"data": data, "corrupt": corrupt, "tokenizer": str(root / "tokenizer"), "root": root}


def _train_args(train_data, output_dir, *extra):
    d = train_data["data"]
    return ["--model_variant", "xclip-tiny", "--tokenizer_name", train_data["tokenizer"], "--train_file", d.train_file,
            "--labels_file", d.labels_file, "--output_dir", str(output_dir), "--do_train",
            "--per_device_train_batch_size", "2", "--num_train_epochs", "1", "--report_to", "none",
            "--use_cpu", "--disable_tqdm", "true", "--seed", "0", "--logging_steps", "1", "--save_strategy", "no",
            "--config_overrides", "vision_config.num_frames=4", *extra]


def _script():
    import importlib.util
    import sys

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                        "run_video_classification.py")
    spec = importlib.util.spec_from_file_location("run_video_classification_bad_data", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_training_skips_a_corrupt_video_names_and_counts_it(train_data, tmp_path, caplog):
    import json

    out = tmp_path / "run"
    with caplog.at_level("WARNING"):
        trainer = _script().main(_train_args(train_data, out, "--max_bad_video_fraction", "0.2"))
    corrupt = train_data["corrupt"]
    assert trainer.state.global_step == 4  # 7 listed videos, batches of 2: the run completed
    assert sum(corrupt in r.getMessage() and "skipping bad video" in r.getMessage() for r in caplog.records) == 1
    assert json.loads((out / "train_results.json").read_text())["train_bad_videos"] == 1
    state = json.loads((out / "trainer_state.json").read_text())["stateful_callbacks"]["BadVideoCallback"]
    assert list(state["attributes"]["failures"]) == [corrupt]
    assert "VideoDecodeError" in state["attributes"]["failures"][corrupt]
    assert (out / "model.safetensors").exists()


@pytest.mark.slow
def test_resumed_training_keeps_the_bad_video_record(train_data, tmp_path, caplog):
    """Resuming from a checkpoint: the corrupt file (met in each epoch) is not logged again, counts go on."""
    import json

    out = tmp_path / "run"
    _script().main(_train_args(train_data, out, "--save_strategy", "epoch", "--max_bad_video_fraction", "0.2"))
    checkpoint = out / "checkpoint-4"
    saved = json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"]["BadVideoCallback"]
    assert saved["attributes"]["num_failures"] == 1
    second = _train_args(train_data, out, "--save_strategy", "epoch", "--max_bad_video_fraction", "0.2",
                         "--resume_from_checkpoint", str(checkpoint))
    second[second.index("--num_train_epochs") + 1] = "2"
    caplog.clear()
    with caplog.at_level("WARNING"):
        trainer = _script().main(second)
    corrupt = train_data["corrupt"]
    assert trainer.state.global_step == 8
    assert not [r for r in caplog.records if "skipping bad video" in r.getMessage()]  # known before the checkpoint
    state = json.loads((out / "trainer_state.json").read_text())["stateful_callbacks"]["BadVideoCallback"]
    assert list(state["attributes"]["failures"]) == [corrupt]
    assert state["attributes"]["num_failures"] == 2  # one failed read per epoch, across the resume
    assert json.loads((out / "train_results.json").read_text())["train_bad_videos"] == 1


def test_bad_video_limit_stops_with_a_clear_error():
    from xclip_hf.training import BadVideoCallback, TooManyBadVideosError

    tracker = BadVideoCallback(num_videos=20, max_fraction=0.1)
    tracker.record([("a.mp4", "VideoDecodeError: ..."), ("b.mp4", "x"), ("a.mp4", "again")])  # 2 of 20: allowed
    assert tracker.summary()["bad_videos"] == 2 and tracker.summary()["bad_video_reads"] == 3
    with pytest.raises(TooManyBadVideosError, match=r"3 of 20 videos.*max_bad_video_fraction 0.1.*a\.mp4, b\.mp4, c\.mp4"):
        tracker.record([("c.mp4", "x")])


def test_training_raise_policy_and_checks_stop_naming_the_file(train_data, tmp_path):
    script = _script()
    with pytest.raises(ValueError, match=r"corrupt\.mp4.*could not be read"):
        script.main(_train_args(train_data, tmp_path / "raise", "--on_bad_video", "raise"))
    with pytest.raises(ValueError, match=r"(?s)--check_videos: 1 broken video.*corrupt\.mp4"):  # before training
        script.main(_train_args(train_data, tmp_path / "check", "--check_videos", "--on_bad_video", "raise"))
    assert not (tmp_path / "check" / "model.safetensors").exists()
    with pytest.raises(ValueError, match="num_spatial_crops must be 1 or 3"):  # validation settings, before training
        script.main(_train_args(train_data, tmp_path / "eval", "--do_eval", "--validation_file",
                                train_data["data"].train_file, "--num_spatial_crops", "2"))


# ----------------------------------------------------------------------------------------------- CLI exit codes
def _run_cli(argv, capsys):
    from xclip_hf.cli import main

    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("xclip-hf") and "--device not given" not in line], err


def test_cli_exit_codes(workdir, tmp_path, capsys):
    import json
    import shutil

    model, mp4 = workdir["model"], workdir["videos"][0]
    base = ["classify", mp4, "--labels", "a,b", "--no-progress"]

    code, lines, _ = _run_cli(base + ["--model", model, "--device", "tpu"], capsys)
    assert code == 2 and len(lines) == 1 and "unknown device 'tpu'" in lines[0]

    code, lines, err = _run_cli(base + ["--model", os.path.join(model, "config.json")], capsys)
    assert code == 1 and len(lines) == 1 and "config.json" in lines[0] and "is a file" in lines[0]
    assert "weights_only" not in err

    code, lines, err = _run_cli(["info", "xclip-tiny", "--num-frames", "0"], capsys)
    assert code == 2 and "--num-frames" in err and "positive integer" in err

    truncated = tmp_path / "truncated"
    shutil.copytree(model, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, lines, err = _run_cli(base + ["--model", str(truncated)], capsys)
    assert code == 1 and len(lines) == 1 and str(weights) in lines[0], err
    assert "Traceback" not in err and "weights_only" not in err

    mean2 = tmp_path / "mean2"
    shutil.copytree(model, mean2)
    config_path = mean2 / "processor_config.json"
    config = json.loads(config_path.read_text())
    config["video_processor"]["image_mean"] = [0.5, 0.5]
    config_path.write_text(json.dumps(config))
    code, lines, err = _run_cli(base + ["--model", str(mean2)], capsys)
    assert code == 1 and len(lines) == 1 and "processor config" in lines[0] and "image_mean" in lines[0], err
    assert str(config_path) in lines[0] and mp4 not in err  # a config error, not a failure of the video


@pytest.mark.slow
def test_evaluation_skips_bad_videos_with_and_without_check_videos(train_data, tmp_path):
    import json

    d = train_data["data"]
    script = _script()
    for name, extra in (("lazy", []), ("checked", ["--check_videos"])):
        args = [a for a in _train_args(train_data, tmp_path / name, *extra) if a != "--do_train"]
        i = args.index("--train_file")
        args[i:i + 2] = ["--validation_file", d.train_file, "--do_eval", "--per_device_eval_batch_size", "3",
                         "--max_bad_video_fraction", "0.2"]
        trainer = script.main(args)
        metrics = json.loads((tmp_path / name / "eval_results.json").read_text())
        assert metrics["eval_bad_videos"] == 1, name
        assert any(train_data["corrupt"] in getattr(cb, "failures", {}) for cb in trainer.callback_handler.callbacks)
