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
from xclip_hf.pipelines.label_cache import LabelEmbeddingCache, build_label_set

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
    mp4 = workdir["videos"][0]
    cached = pipeline(TASK, model=workdir["model"], device="cpu")
    uncached = pipeline(TASK, model=cached.model, processor=cached.processor, device="cpu", label_cache_size=0)
    weight = cached.model.text_model.text_projection.weight
    gen = torch.Generator().manual_seed(0)
    for round_ in range(20):
        weight.data = torch.randn(weight.shape, generator=gen)  # the old tensor is freed: its address can come back
        got = cached(mp4, candidate_labels=LABELS)
        want = uncached(mp4, candidate_labels=LABELS)
        assert [x["label"] for x in got] == [x["label"] for x in want], f"round {round_}"
        np.testing.assert_allclose([x["score"] for x in got], [x["score"] for x in want], atol=1e-6,
                                   err_msg=f"round {round_}")


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
    reference = pipe._encode_texts(label_set).clone()
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
