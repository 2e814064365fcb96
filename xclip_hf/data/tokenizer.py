"""Build a small CLIP-style byte-level BPE tokenizer locally (``tokenizers``' BpeTrainer, CLIP's order and rules)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable

from ..models.clip_vocabulary import (BOS_TOKEN, END_OF_WORD, EOS_TOKEN, byte_symbols, clip_base_tokens,
                                      save_clip_tokenizer)

__all__ = ["build_clip_tokenizer", "save_clip_tokenizer", "byte_symbols", "clip_base_tokens", "BOS_TOKEN", "EOS_TOKEN",
           "END_OF_WORD"]

# CLIP's pre-tokenisation pattern (contractions, letter runs, single digits, punctuation runs).
_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _learn_merges(texts: list[str], num_merges: int) -> list[tuple[str, str]]:
    """Learn up to ``num_merges`` BPE merges on ``texts`` with CLIP's normaliser and pre-tokeniser."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(end_of_word_suffix=END_OF_WORD, continuing_subword_prefix=""))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    base = 512  # the trainer's vocab counts the alphabet; ours always holds 512 base symbols
    trainer = trainers.BpeTrainer(
        vocab_size=base + num_merges,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix=END_OF_WORD,
        continuing_subword_prefix="",
    )
    tok.train_from_iterator(texts, trainer=trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]
    return merges[:num_merges]


def _clip_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP-ordered vocabulary: bytes, bytes + '</w>', merge results, then <|startoftext|>, <|endoftext|>."""
    tokens = clip_base_tokens()
    seen = set(tokens)
    for left, right in merges:
        if left not in seen or right not in seen:
            raise ValueError(f"build_clip_tokenizer: merge {left!r} + {right!r} uses a symbol outside the vocabulary")
        merged = left + right
        if merged not in seen:
            tokens.append(merged)
            seen.add(merged)
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {t: i for i, t in enumerate(tokens)}


def build_clip_tokenizer(texts: Iterable[str], save_directory=None, vocab_size: int = 1024):
    """Train a CLIP-style BPE tokenizer on ``texts``; a ``CLIPTokenizerFast`` (saved if a directory is given)."""
    texts = [t for t in texts]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"build_clip_tokenizer: texts must be a non-empty list of strings, got {texts[:3]!r}")
    if vocab_size < 514:
        raise ValueError(f"build_clip_tokenizer: vocab_size must be >= 514 (512 byte symbols + 2 specials), got {vocab_size}")
    merges = _learn_merges(texts, vocab_size - 514)
    vocab = _clip_vocab(merges)
    if save_directory is not None:
        return save_clip_tokenizer(vocab, merges, save_directory)
    with tempfile.TemporaryDirectory() as tmp:
        return save_clip_tokenizer(vocab, merges, tmp)
