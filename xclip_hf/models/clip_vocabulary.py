"""CLIP's byte-level BPE vocabulary layout and tokenizer files, as ``transformers.CLIPTokenizer`` loads them.

``vocab.json``: 256 byte symbols, the same with ``</w>``, one entry per merge, then ``<|startoftext|>`` and
``<|endoftext|>`` (the highest id: the text encoder pools at ``argmax(input_ids)``); ``merges.txt``: a
``#version: 0.2`` header, then one merge per line.
"""

from __future__ import annotations

import json
import os

__all__ = ["save_clip_tokenizer", "byte_symbols", "clip_base_tokens", "BOS_TOKEN", "EOS_TOKEN", "END_OF_WORD"]

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"


def byte_symbols() -> list[str]:
    """The 256 byte-level BPE symbols in CLIP's order: printable Latin-1 bytes, then the rest mapped to 256, 257, ..."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    others = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + n) for n in range(len(others))]


def clip_base_tokens() -> list[str]:
    """The first 512 tokens of a CLIP vocabulary: the byte symbols, then the same symbols ending a word (``</w>``)."""
    symbols = byte_symbols()
    return symbols + [s + END_OF_WORD for s in symbols]


def save_clip_tokenizer(vocab: dict[str, int], merges, save_directory, model_max_length: int = 77):
    """Write CLIP's tokenizer files (vocab.json, merges.txt, tokenizer config) and return the loaded tokenizer."""
    from transformers import CLIPTokenizerFast

    save_directory = os.fspath(save_directory)
    os.makedirs(save_directory, exist_ok=True)
    with open(os.path.join(save_directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(save_directory, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.writelines(f"{left} {right}\n" for left, right in merges)
    tokenizer = CLIPTokenizerFast.from_pretrained(save_directory, model_max_length=model_max_length)
    tokenizer.save_pretrained(save_directory)
    return tokenizer
