"""Reproducible batches of (input, target) windows drawn from a token array."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from brainsearch.errors import DataError, Problem

__all__ = ["BatchSampler"]


class BatchSampler:
    """Random windows of ``seq_len + 1`` tokens, offsets drawn from a seeded generator (same seed, same batches)."""

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int, split: str = "train") -> None:
        if tokens.size < seq_len + 1:
            raise DataError(
                [
                    Problem(
                        "data",
                        f"the {split} split has {tokens.size} tokens, fewer than one sequence "
                        f"of seq_len + 1 = {seq_len + 1}",
                    )
                ]
            )
        self.tokens, self.batch_size, self.seq_len = tokens, batch_size, seq_len
        self._gen = torch.Generator().manual_seed(seed)

    def get_state(self) -> list[int]:
        """The generator's state (the data position), JSON-able, for a checkpoint."""
        return [int(b) for b in self._gen.get_state().tolist()]

    def set_state(self, state: list[int]) -> None:
        """Continue from a :meth:`get_state`: the next batches are those that would have followed it."""
        self._gen.set_state(torch.tensor(state, dtype=torch.uint8))

    def skip(self, batches: int) -> None:
        """Pass over the next ``batches`` batches without reading them (their offsets are drawn, nothing else)."""
        for _ in range(batches):
            torch.randint(0, self.tokens.size - self.seq_len, (self.batch_size,), generator=self._gen)

    def next(self) -> tuple[Tensor, Tensor]:
        """``(inputs, targets)``, each ``[batch, seq_len]`` int64; targets are inputs shifted by one."""
        high = self.tokens.size - self.seq_len - 1
        offsets = torch.randint(0, high + 1, (self.batch_size,), generator=self._gen).tolist()
        rows = np.stack([np.asarray(self.tokens[o : o + self.seq_len + 1], dtype=np.int64) for o in offsets])
        window = torch.from_numpy(rows)
        return window[:, :-1], window[:, 1:]
