"""The silent-tokenizer trap closed at the boundary: missing tokenizer files, a vocabulary that cannot be the
model's, labels that tokenize alike and token ids outside the text encoder's vocabulary are clear errors."""

from __future__ import annotations

import os

import pytest
import torch
from transformers import pipeline

import xclip_hf  # noqa: F401  (registers the task)
from xclip_hf import XClipConfig, XClipModel, XClipProcessor

from _helpers_pipeline import (LABELS, NUM_FRAMES, make_our_checkpoint, make_published_checkpoint, tiny_processor,
                               tiny_tokenizer)

TASK = "zero-shot-video-classification"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def _strip_tokenizer(directory):
    removed = [name for name in TOKENIZER_FILES if os.path.exists(os.path.join(directory, name))]
    for name in removed:
        os.remove(os.path.join(directory, name))
    assert "vocab.json" in removed or "tokenizer.json" in removed
    return directory


@pytest.mark.parametrize("make", [make_our_checkpoint, make_published_checkpoint], ids=["ours", "published"])
def test_model_directory_without_tokenizer_files_is_a_clear_error(make, tmp_path):
    directory = _strip_tokenizer(make(tmp_path / "model"))
    for load in (lambda: XClipProcessor.from_pretrained(directory), lambda: pipeline(TASK, model=directory)):
        with pytest.raises((OSError, ValueError)) as err:
            load()
        message = str(err.value)
        assert directory in message and "no tokenizer files" in message, message
        assert "vocab.json" in message and "tokenizer.json" in message  # what is missing


def _model(vocab_size, seed=0):
    torch.manual_seed(seed)
    config = XClipConfig.from_variant("xclip-tiny", num_frames=NUM_FRAMES, vocab_size=vocab_size)
    return XClipModel(config).eval()


def test_tokenizer_far_smaller_than_the_text_encoder_is_refused():
    tokenizer = tiny_tokenizer()  # 600 tokens
    with pytest.raises(ValueError, match=rf"vocabulary of {len(tokenizer)} tokens.*10000 token embeddings"):
        pipeline(TASK, model=_model(10000), processor=tiny_processor(tokenizer))


def test_labels_that_tokenize_alike_are_refused():
    processor = tiny_processor(tiny_tokenizer())  # CLIP-style: lower-cases
    with pytest.raises(ValueError, match="tokenize to the same ids: 'Dancing ballet' = 'dancing ballet'"):
        processor(text=["Dancing ballet", "dancing ballet"])
    pipe = pipeline(TASK, model=_model(len(processor.tokenizer)), processor=processor)
    frames = torch.zeros(NUM_FRAMES, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="tokenize to the same ids: 'Dancing ballet' = 'dancing ballet'"):
        pipe(frames, candidate_labels=["Dancing ballet", "dancing ballet"])


def test_token_ids_beyond_the_vocabulary_name_the_ids_and_the_size():
    processor = tiny_processor(tiny_tokenizer())
    tokens = processor(text=LABELS)["input_ids"]
    high = sorted({t for row in tokens for t in row if t >= 500})
    assert high  # the tokenizer has 600 tokens: the end-of-text id (599) at least is beyond 500
    with pytest.raises(ValueError, match=rf"token ids \[{high[0]}.*vocabulary of 500 tokens"):
        processor.tokenize_labels(LABELS, vocab_size=500)
    pipe = pipeline(TASK, model=_model(500), processor=processor)
    frames = torch.zeros(NUM_FRAMES, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="outside the text encoder's vocabulary of 500 tokens"):
        pipe(frames, candidate_labels=LABELS)
    ok = pipeline(TASK, model=_model(len(processor.tokenizer)), processor=processor)
    assert len(ok(frames, candidate_labels=LABELS)) == len(LABELS)
