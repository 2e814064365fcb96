"""CLIP's tokenizer from its BPE merges file (``bpe_simple_vocab_16e6.txt.gz``, shipped with the original code).

CLIP uses the file's first 49152 - 256 - 2 = 48894 merges, in CLIP's vocabulary order (`models.clip_vocabulary`).
"""

from __future__ import annotations

import gzip
import os

from ..models.clip_vocabulary import BOS_TOKEN, EOS_TOKEN, clip_base_tokens, save_clip_tokenizer

__all__ = ["CLIP_NUM_MERGES", "read_bpe_merges", "clip_vocab_from_merges", "build_tokenizer_from_bpe"]

CLIP_NUM_MERGES = 49152 - 256 - 2  # the merges CLIP's tokenizer uses (vocabulary of 49408 tokens)


def read_bpe_merges(path, max_merges: int = CLIP_NUM_MERGES) -> list[tuple[str, str]]:
    """The first `max_merges` merges of a bpe_simple_vocab-format file (gzip or plain text; header line skipped)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BPE merges file {path!r} does not exist")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"BPE merges file {path!r} is not gzip'd UTF-8 text ({type(err).__name__}: {err})") from err
    lines = text.split("\n")[1:1 + max_merges]
    while lines and not lines[-1].strip():
        lines.pop()
    merges = []
    for number, line in enumerate(lines, start=2):
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"BPE merges file {path!r} line {number}: expected 'left right', got {line!r}")
        merges.append((parts[0], parts[1]))
    if not merges:
        raise ValueError(f"BPE merges file {path!r} holds no merges after its header line")
    return merges


def clip_vocab_from_merges(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's token -> id: bytes, bytes + '</w>', one token per merge, then <|startoftext|>, <|endoftext|>."""
    tokens = clip_base_tokens() + [left + right for left, right in merges] + [BOS_TOKEN, EOS_TOKEN]
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if token in vocab:
            raise ValueError(f"merge {index - 511} yields {token!r}, which is already token {vocab[token]}: "
                             "not a CLIP merges file (CLIP's merges each add a new token)")
        vocab[token] = index
    for number, (left, right) in enumerate(merges, start=1):
        if left not in vocab or right not in vocab:
            raise ValueError(f"merge {number} ({left!r} {right!r}) uses a symbol that is not in the vocabulary")
    return vocab


def build_tokenizer_from_bpe(path, save_directory, max_merges: int = CLIP_NUM_MERGES, model_max_length: int = 77):
    """Write CLIP's tokenizer files to `save_directory`; returns the `CLIPTokenizer` loaded from them."""
    merges = read_bpe_merges(path, max_merges)
    return save_clip_tokenizer(clip_vocab_from_merges(merges), merges, save_directory, model_max_length)
