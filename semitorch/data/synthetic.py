"""Synthetic tasks of the paper's experiments (Du et al. 2023, §5.1 and App. B).

- :func:`first_token_repeated`: sequences over tokens 1..19 (0 = pad); label 1 iff the
  first token appears again later. Balanced.
- :func:`threshold_task`: x ∈ [0, 1]^4, label 1 iff x0 > 0.5 (the MLP entropy experiment).
"""

from __future__ import annotations

import numpy as np


def first_token_repeated(
    n: int, seq_len: int = 10, vocab: int = 19, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` balanced examples of the "first token repeated once" task.

    Returns ``(ids, labels, repeat_pos)``: ids (n, seq_len) int64 over 1..vocab,
    labels (n,) in {0, 1}, and for positives the position of the repetition
    (-1 for negatives). In a positive the first token appears exactly once more;
    in a negative it appears only at position 0.
    """
    if n < 0 or seq_len < 2 or vocab < 2:
        raise ValueError(f"first_token_repeated: need n >= 0, seq_len >= 2, vocab >= 2 (got {n}, {seq_len}, {vocab})")
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, seq_len), dtype=np.int64)
    labels = np.arange(n) % 2
    rng.shuffle(labels)
    rep = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        first = int(rng.integers(1, vocab + 1))
        others = rng.integers(1, vocab, size=seq_len - 1)
        others = others + (others >= first)  # any token but the first
        ids[i, 0] = first
        ids[i, 1:] = others
        if labels[i]:
            p = int(rng.integers(1, seq_len))
            ids[i, p] = first
            rep[i] = p
    return ids, labels.astype(np.int64), rep


def threshold_task(n: int, dim: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform in [0, 1]^dim with label 1 iff x0 > 0.5."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, dim))
    return x, (x[:, 0] > 0.5).astype(np.int64)
