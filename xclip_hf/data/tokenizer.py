"""Build a small CLIP-style byte-level BPE tokenizer locally (the hub is unreachable in tests and demos).

The files follow OpenAI CLIP's layout so that ``transformers.CLIPTokenizer`` (and ``CLIPTokenizerFast``,
the same class in transformers 5) load them with ``from_pretrained``:

* ``vocab.json``: the 256 byte-level symbols, the same 256 symbols with the end-of-word suffix ``</w>``,
  one entry per merge (in merge order), then ``<|startoftext|>`` and ``<|endoftext|>``. ``<|endoftext|>``
  has the HIGHEST id and ``<|startoftext|>`` the second highest, as in CLIP: the text encoder pools at
  ``argmax(input_ids)``, which is the end-of-text position only under this ordering.
* ``merges.txt``: a ``#version: 0.2`` header line, then one merge per line.

Merges are learned with the ``tokenizers`` library's ``BpeTrainer`` on the given texts, using CLIP's
normalisation (NFC, whitespace collapse, lowercase) and pre-tokenisation.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable

__all__ = ["build_clip_tokenizer", "save_clip_tokenizer", "byte_symbols", "clip_base_tokens", "BOS_TOKEN", "EOS_TOKEN",
           "END_OF_WORD"]

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
# CLIP's pre-tokenisation pattern (contractions, letter runs, single digits, punctuation runs).
_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def byte_symbols() -> list[str]:
    """The 256 byte-level BPE symbols in CLIP's vocabulary order: printable Latin-1 bytes (as themselves) first,
    then the remaining bytes mapped to code points 256, 257, ... (CLIP's byte table; the one copy in the package)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    others = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + n) for n in range(len(others))]


def clip_base_tokens() -> list[str]:
    """The first 512 tokens of a CLIP vocabulary: the byte symbols, then the same symbols ending a word (``</w>``)."""
    symbols = byte_symbols()
    return symbols + [s + END_OF_WORD for s in symbols]


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
    """Train a CLIP-style BPE tokenizer on ``texts`` and return a ``CLIPTokenizerFast`` (saved if a directory is given)."""
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
