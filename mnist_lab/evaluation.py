"""Reading a trained model's test predictions (notebook 07): losses, confusions, calibration, paired tests.

Every function takes what `mnist_lab.train.collect_predictions` returns, ``probs``
``(N, 10)`` class probabilities and ``labels`` ``(N,)``, or two models' correctness on
the same N test digits. Nothing here trains or loads anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def per_sample_loss(probs: Tensor, labels: Tensor) -> Tensor:
    """``-log p(true class)`` for every digit, ``(N,)``: the cross-entropy of each prediction.

    A probability that underflowed to 0 gives a large finite loss (log of the smallest float), not inf.
    """
    p_true = probs.gather(1, labels[:, None]).squeeze(1)  # (N,)
    return -torch.log(p_true.clamp(min=torch.finfo(probs.dtype).tiny))


def top_losses(probs: Tensor, labels: Tensor, k: int, wrong_only: bool = True) -> Tensor:
    """Indices of the `k` digits with the largest loss, largest first (fastai's ``top_losses``).

    With `wrong_only` only misclassified digits are candidates, so fewer than `k` may come back.
    """
    loss = per_sample_loss(probs, labels)
    candidates = torch.nonzero(probs.argmax(dim=1) != labels).flatten() if wrong_only else torch.arange(len(labels))
    order = torch.argsort(loss[candidates], descending=True, stable=True)
    return candidates[order][:k]


def most_confused(matrix: Tensor, min_count: int = 1) -> list[tuple[int, int, int]]:
    """Off-diagonal cells of a confusion matrix as ``(true, predicted, count)``, most frequent first.

    Like fastai's ``most_confused``: only cells with at least `min_count` digits; ties in
    count are ordered by (true, predicted).
    """
    cells = [
        (int(t), int(p), int(matrix[t, p]))
        for t in range(matrix.shape[0])
        for p in range(matrix.shape[1])
        if t != p and matrix[t, p] >= min_count
    ]
    return sorted(cells, key=lambda cell: (-cell[2], cell[0], cell[1]))


@dataclass(frozen=True)
class Calibration:
    """A reliability table: digits binned by the model's confidence (its top probability).

    ``edges`` has ``bins + 1`` entries; per bin: ``count`` digits, their mean
    ``confidence`` and their ``accuracy`` (NaN for an empty bin). ``ece`` is the expected
    calibration error: the count-weighted mean of ``|accuracy - confidence|`` over bins.
    """

    edges: list[float]
    count: list[int]
    confidence: list[float]
    accuracy: list[float]
    ece: float


def calibration(probs: Tensor, labels: Tensor, bins: int = 10) -> Calibration:
    """Bin the top probability into `bins` equal-width bins over [0, 1] and compare it with the accuracy.

    Bins are right-closed, ``(lo, hi]``, with the first one ``[0, hi]``, so a confidence of
    exactly 1.0 falls into the last bin.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}.")
    confidence, predicted = probs.double().max(dim=1)  # (N,), (N,)
    correct = (predicted == labels).double()
    which = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)  # (N,) bin index
    count, conf, acc, ece = [], [], [], 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        count.append(n)
        conf.append(confidence[mask].mean().item() if n else math.nan)
        acc.append(correct[mask].mean().item() if n else math.nan)
        ece += n / len(labels) * abs(acc[-1] - conf[-1]) if n else 0.0
    edges = [b / bins for b in range(bins + 1)]
    return Calibration(edges, count, conf, acc, ece)


@dataclass(frozen=True)
class McNemar:
    """The exact McNemar test of two models on the same digits.

    ``only_a``: digits model A gets right and B wrong; ``only_b``: the reverse. Digits
    both get right (or both wrong) say nothing about which is better. ``p_value``: the
    two-sided probability of a split at least this uneven if each of the
    ``only_a + only_b`` disagreements were a fair coin flip.
    """

    only_a: int
    only_b: int
    p_value: float


def mcnemar(correct_a: Tensor, correct_b: Tensor) -> McNemar:
    """Exact (binomial) McNemar test for two boolean ``(N,)`` correctness vectors over the same digits."""
    if correct_a.shape != correct_b.shape:
        raise ValueError(
            f"both models must be scored on the same digits: shapes {correct_a.shape} and {correct_b.shape}."
        )
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((~correct_a & correct_b).sum())
    n = only_a + only_b
    if n == 0:
        return McNemar(0, 0, 1.0)
    # P(X <= min) for X ~ Binomial(n, 1/2), exactly in integers, then doubled (two-sided)
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    p_value = min(1.0, 2 * tail / 2**n)
    return McNemar(only_a, only_b, p_value)
