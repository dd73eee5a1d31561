"""Tokenisers: byte-level (vocab 256, the default) and a byte-level BPE trained locally with ``tokenizers``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = ["BPETokenizer", "ByteTokenizer", "Tokenizer", "train_bpe"]


class Tokenizer(Protocol):
    """Text -> token ids."""

    vocab_size: int

    def encode(self, text: str) -> np.ndarray: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens: no training, no unknown tokens, and losses convert exactly to bits per byte."""

    vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        """``text`` -> uint16 ids of its UTF-8 bytes."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)


class BPETokenizer:
    """A byte-level BPE from the ``tokenizers`` library, saved as JSON beside the corpus cache."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self._tok = HFTokenizer.from_file(str(path))
        self.vocab_size = int(self._tok.get_vocab_size())

    def encode(self, text: str) -> np.ndarray:
        """``text`` -> uint32 ids."""
        return np.asarray(self._tok.encode(text).ids, dtype=np.uint32)


def train_bpe(texts: Iterable[str], vocab_size: int, path: Path) -> BPETokenizer:
    """Train a byte-level BPE of ``vocab_size`` tokens on ``texts`` locally and save it to ``path``."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return BPETokenizer(path)
