"""CLIP-style tokenizer builder and XClipProcessor (video processor + tokenizer)."""

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, CLIPTokenizer, CLIPTokenizerFast
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging as hf_logging

import xclip_hf  # noqa: F401  (registers the Auto classes)
from _helpers_video import index_frames
from xclip_hf.data.tokenizer import build_clip_tokenizer
from xclip_hf.data.video_writer import write_video
from xclip_hf.models.processing_xclip import XClipProcessor
from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

LABELS = ["playing guitar", "riding a bike", "jumping jacks", "Playing basketball", "sky diving", "café au lait"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    build_clip_tokenizer(LABELS * 3, save_directory=d, vocab_size=600)
    return d


def test_tokenizer_files_follow_clip_layout(tokenizer_dir):
    vocab = json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    ids = sorted(vocab.values())
    assert ids == list(range(len(vocab)))
    assert vocab["<|endoftext|>"] == len(vocab) - 1 and vocab["<|startoftext|>"] == len(vocab) - 2
    merges = (tokenizer_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version") and len(merges) > 1
    assert all(a + b in vocab for a, b in (m.split(" ") for m in merges[1:]))
    # 256 byte symbols then the same with the end-of-word suffix
    assert list(vocab)[:3] == ["!", '"', "#"] and list(vocab)[256] == "!</w>"


def test_tokenizer_loads_with_transformers_from_vocab_and_merges_only(tokenizer_dir, tmp_path):
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tokenizer_dir / name, tmp_path / name)
    for cls in (CLIPTokenizer, CLIPTokenizerFast):
        tok = cls.from_pretrained(tmp_path)
        enc = tok(["Playing  GUITAR", "riding"], padding=True)
        eot, sot = tok.convert_tokens_to_ids(["<|endoftext|>", "<|startoftext|>"])
        assert enc["input_ids"][0][0] == sot and enc["input_ids"][0][-1] == eot
        assert tok.pad_token_id == eot
        tokens = tok.convert_ids_to_tokens(enc["input_ids"][0])
        assert tokens[1:-1] == ["playing</w>", "guitar</w>"]  # lowercased, learned merges, end-of-word suffix
        # the text encoder pools at argmax(input_ids): that must be the (first) end-of-text position
        ids = torch.tensor(enc["input_ids"])
        assert ids.argmax(-1).tolist() == [3, 2]


def test_tokenizer_builder_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty list"):
        build_clip_tokenizer([])
    with pytest.raises(ValueError, match="vocab_size"):
        build_clip_tokenizer(["a b"], vocab_size=100)


@pytest.fixture
def processor(tokenizer_dir):
    tok = CLIPTokenizerFast.from_pretrained(tokenizer_dir)
    return XClipProcessor(XClipVideoProcessor(num_frames=4, size=32, crop_size=32), tok)


def test_processor_call_returns_model_inputs(processor, tmp_path):
    paths = [write_video(tmp_path / f"v{i}.mp4", index_frames(6 + i, 40, 48)) for i in range(2)]
    out = processor(text=["playing guitar", "sky diving", "riding a bike"], videos=paths, return_tensors="pt")
    assert set(out) == {"input_ids", "attention_mask", "pixel_values"}
    assert out["pixel_values"].shape == (2, 4, 3, 32, 32) and out["pixel_values"].dtype == torch.float32
    ids, mask = out["input_ids"], out["attention_mask"]
    lengths = [len(processor.tokenizer(t)["input_ids"]) for t in ["playing guitar", "sky diving", "riding a bike"]]
    assert ids.shape == (3, max(lengths))  # padded to the longest label
    assert mask.sum(-1).tolist() == lengths
    eot = processor.tokenizer.eos_token_id
    assert (ids.gather(1, ids.argmax(-1, keepdim=True)) == eot).all()
    text_only = processor(text="jumping jacks", return_tensors="pt")
    assert set(text_only) == {"input_ids", "attention_mask"} and text_only["input_ids"].shape[0] == 1
    multi = processor(videos=paths[0], num_temporal_clips=2, num_spatial_crops=3, return_tensors="pt")
    assert multi["pixel_values"].shape == (1, 6, 4, 3, 32, 32)


def test_long_labels_are_truncated_with_a_warning(processor):
    long_label = "playing guitar " * 60
    logger = hf_logging.get_logger("xclip_hf.models.processing_xclip")
    with CaptureLogger(logger) as captured:
        out = processor(text=[long_label, "sky diving"], return_tensors="pt")
    assert "truncated" in captured.out and "playing guitar" in captured.out
    assert out["input_ids"].shape == (2, 77)
    assert out["input_ids"][0, -1].item() == processor.tokenizer.eos_token_id


def test_processor_rejects_bad_text(processor):
    with pytest.raises(ValueError, match=r"text\[1\]"):
        processor(text=["ok", 3])
    with pytest.raises(ValueError, match="needs text"):
        processor()


def test_processor_save_load_round_trip(processor, tmp_path):
    processor.video_processor.num_spatial_crops = 3
    processor.save_pretrained(tmp_path)
    for loaded in (XClipProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        assert type(loaded) is XClipProcessor
        assert loaded.video_processor.to_dict() == processor.video_processor.to_dict()
        assert loaded.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
        video = index_frames(5, 40, 48)
        a = loaded(text=LABELS, videos=video, return_tensors="pt")
        b = processor(text=LABELS, videos=video, return_tensors="pt")
        for key in a:
            torch.testing.assert_close(a[key], b[key])


def test_processor_loads_a_published_format_directory(tokenizer_dir, tmp_path):
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tokenizer_dir / name, tmp_path / name)
    specials = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **specials})
    )
    (tmp_path / "special_tokens_map.json").write_text(json.dumps(specials))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "do_center_crop": True, "crop_size": {"height": 224, "width": 224}, "do_normalize": True, "do_resize": True,
        "do_rescale": True, "rescale_factor": 1 / 255, "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225], "image_processor_type": "VideoMAEImageProcessor",
        "processor_class": "XCLIPProcessor", "resample": 2, "size": {"shortest_edge": 224},
    }))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "xclip", "vision_config": {"num_frames": 16}}))
    proc = XClipProcessor.from_pretrained(tmp_path)
    vp = proc.video_processor
    assert type(vp) is XClipVideoProcessor and vp.num_frames == 16  # frames from the model config
    assert vp.size.shortest_edge == 224 and vp.crop_size.height == 224
    assert proc.tokenizer.model_max_length == 77
    out = proc(text=["playing guitar"], videos=np.zeros((20, 240, 320, 3), np.uint8), return_tensors="pt")
    assert out["pixel_values"].shape == (1, 16, 3, 224, 224)
    assert out["input_ids"][0, 0].item() == proc.tokenizer.bos_token_id


def test_processor_loads_what_transformers_xclip_processor_saves(tokenizer_dir, tmp_path):
    """transformers 5's XCLIPProcessor.save_pretrained nests the image processor in processor_config.json."""
    from transformers import VideoMAEImageProcessorPil, XCLIPProcessor

    theirs = XCLIPProcessor(image_processor=VideoMAEImageProcessorPil(size={"shortest_edge": 224}, crop_size=224),
                            tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir))
    theirs.save_pretrained(tmp_path)
    assert not (tmp_path / "preprocessor_config.json").exists()
    ours = XClipProcessor.from_pretrained(tmp_path)
    frames = np.random.default_rng(0).integers(0, 256, (8, 120, 160, 3), dtype=np.uint8)
    want = theirs(videos=list(frames), return_tensors="pt").pixel_values
    got = ours(videos=frames, return_tensors="pt").pixel_values
    assert got.shape == want.shape == (1, 8, 3, 224, 224)
    diff = (got - want).abs()
    assert diff.mean() <= 0.005 and diff.max() <= 0.1
    labels = ["playing guitar", "sky diving"]
    assert ours(text=labels)["input_ids"] == theirs(text=labels, padding=True)["input_ids"]
