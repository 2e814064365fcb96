"""Fixtures-in-functions for the pipeline and CLI tests: tiny checkpoints (ours and published format) and videos."""

from __future__ import annotations

import os

import numpy as np
import torch

LABELS = ["playing guitar", "riding a bike", "cooking pasta", "swimming in a pool", "dancing ballet"]
TOKENIZER_TEXTS = LABELS + ["a video of people doing things outdoors and indoors", "running jumping walking"]
NUM_FRAMES = 3
IMAGE_SIZE = 32


def tiny_tokenizer(save_directory=None):
    """A CLIP-style BPE tokenizer trained on the test labels (600 tokens)."""
    from xclip_hf.data.tokenizer import build_clip_tokenizer

    return build_clip_tokenizer(TOKENIZER_TEXTS, save_directory=save_directory, vocab_size=600)


def tiny_processor(tokenizer):
    """Our XClipProcessor for 32 px, 3-frame tiny models."""
    from xclip_hf.models.processing_xclip import XClipProcessor
    from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

    video_processor = XClipVideoProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, num_frames=NUM_FRAMES
    )
    return XClipProcessor(video_processor=video_processor, tokenizer=tokenizer)


def _perturb(model, seed):
    """Spread the random weights so that scores differ clearly between labels (init is nearly uniform)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 1 and p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=gen) * 0.2)


def make_our_checkpoint(directory, seed=0):
    """Save a tiny `XClipModel` and its processor to `directory`; returns the directory."""
    from xclip_hf import XClipConfig, XClipModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    config = XClipConfig.from_variant("xclip-tiny", num_frames=NUM_FRAMES, vocab_size=len(tokenizer))
    model = XClipModel(config).eval()
    _perturb(model, seed)
    model.save_pretrained(directory)
    tiny_processor(tokenizer).save_pretrained(directory)
    return str(directory)


def make_published_checkpoint(directory, seed=0):
    """Save transformers' own tiny `XCLIPModel` + `XCLIPProcessor` (the microsoft/xclip-* layout) to `directory`."""
    from transformers import VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    config = XCLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=IMAGE_SIZE, patch_size=8, num_frames=NUM_FRAMES, mit_hidden_size=16,
                           mit_intermediate_size=32, mit_num_hidden_layers=1, mit_num_attention_heads=2),
        projection_dim=16, prompt_layers=2, prompt_num_attention_heads=2, prompt_alpha=0.1,
    )
    model = XCLIPModel(config).eval()
    _perturb(model, seed)
    model.save_pretrained(directory)
    image_processor = VideoMAEImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    )
    XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    # the microsoft/xclip-* repos also hold a top-level preprocessor_config.json (older transformers layout)
    image_processor.save_pretrained(directory)
    return str(directory)


def video_frames(num_frames=12, height=48, width=64, seed=0):
    """Smoothly moving coloured blobs as uint8 (T, H, W, 3) frames (compress well, differ per seed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.integers(0, 255, size=3)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        cx, cy = (t * 3 + seed * 7) % width, (t * 2 + seed * 5) % height
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (6 + seed) ** 2))
        for c in range(3):
            frames[t, :, :, c] = np.clip(base[c] * (1 - blob) + (255 - base[c]) * blob, 0, 255)
    return frames


def write_videos(directory):
    """Write an h264 .mp4 (48x64) and a vp9 .webm of odd size (45x61); returns their paths."""
    from xclip_hf.data.video_writer import write_video

    mp4 = write_video(os.path.join(directory, "clip_a.mp4"), video_frames(12, 48, 64, seed=1))
    webm = write_video(os.path.join(directory, "clip_b.webm"), video_frames(10, 45, 61, seed=2))
    return [mp4, webm]
