"""The maths of a classifier written out by hand: softmax, cross-entropy, and their gradient.

Everything here uses plain tensor operations (no autograd, no ``nn.Module``) so a
learner can read each formula next to its code. ``tests/test_scratch.py`` checks every
function against PyTorch's own (``torch.softmax``, ``F.cross_entropy``, autograd): the
framework is the reference answer, so these functions hold only the maths (no input
checks: give them the shapes their docstrings name). Notebook 02 teaches from this
module; the rest of the package uses PyTorch's versions.

Shapes: ``N`` samples, ``C`` classes (10 for MNIST), ``D`` input features (784).
Softmax regression here uses ``X @ W + b`` with ``W`` of shape ``(D, C)``, so column
``W[:, k]`` is the template of class ``k`` (``nn.Linear`` stores the transpose).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from ..data import NUM_CLASSES
from ..errors import DivergenceWarning

# --- activations ------------------------------------------------------------------


def sigmoid(z: Tensor) -> Tensor:
    """The logistic function ``1 / (1 + exp(-z))``: a score in R -> a probability in (0, 1).

    Written so that ``exp`` only ever sees non-positive numbers: for ``z < 0`` the
    equal form ``exp(z) / (1 + exp(z))`` is used, so ``z = -1000`` gives 0, not a
    warning about ``exp(1000)``.
    """
    e = torch.exp(-z.abs())  # in (0, 1]: cannot overflow
    return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))


def naive_softmax(z: Tensor, dim: int = -1) -> Tensor:
    """``exp(z) / sum(exp(z))`` exactly as the formula reads. Kept to show why it breaks.

    ``exp(1000)`` is ``inf`` in float32 and float64, and ``inf / inf`` is ``nan``: large
    logits turn this into nonsense. Use `softmax`.
    """
    e = torch.exp(z)
    return e / e.sum(dim=dim, keepdim=True)


def softmax(z: Tensor, dim: int = -1) -> Tensor:
    """Scores -> probabilities that are positive and sum to 1 along `dim`, computed stably.

    ``softmax(z) = softmax(z - c)`` for any constant ``c`` (the ``exp(-c)`` cancels);
    with ``c = max(z)`` the largest exponent is ``exp(0) = 1``, so nothing overflows.
    ``z``: ``(N, C)`` logits -> ``(N, C)`` probabilities.
    """
    shifted = z - z.amax(dim=dim, keepdim=True)  # (N, C), every entry <= 0
    e = torch.exp(shifted)
    return e / e.sum(dim=dim, keepdim=True)


def log_softmax(z: Tensor, dim: int = -1) -> Tensor:
    """``log(softmax(z))`` without ever forming the probabilities: ``z - logsumexp(z)``.

    ``log(softmax(z))`` computed naively gives ``log(0) = -inf`` for a class whose
    probability underflows; the shifted log-sum-exp keeps it finite (e.g. -1000).
    """
    # z - logsumexp(z) with logsumexp(z) = m + log(sum_j exp(z_j - m)), rearranged so that m is
    # subtracted first: adding m back to a small log would round it (float32 keeps ~7 digits of 1000.3).
    shifted = z - z.amax(dim=dim, keepdim=True)  # (N, C), every entry <= 0
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))


# --- targets and losses -----------------------------------------------------------


def one_hot(y: Tensor, num_classes: int = NUM_CLASSES, dtype: torch.dtype = torch.float32) -> Tensor:
    """Class indices ``(N,)`` -> one-hot rows ``(N, num_classes)``: 1 at the class, 0 elsewhere."""
    out = torch.zeros(len(y), num_classes, dtype=dtype, device=y.device)
    return out.scatter_(1, y.long().unsqueeze(1), 1.0)


def nll(log_probs: Tensor, y: Tensor) -> Tensor:
    """Negative log-likelihood: ``-log p[y]`` averaged over the batch (``NLLLoss``).

    `log_probs` ``(N, C)`` must already be log-probabilities (e.g. from `log_softmax`);
    this only picks the entry of the true class in each row.
    """
    picked = log_probs.gather(1, y.long().unsqueeze(1)).squeeze(1)  # (N,) log p of the true class
    return -picked.mean()


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy ``-sum_i y_i log p_i`` with one-hot ``y`` and ``p = softmax(logits)``, batch mean.

    `logits` ``(N, C)`` are raw scores (no softmax applied); `y` ``(N,)`` class indices.
    Equal to ``F.cross_entropy(logits, y)`` and to ``nll(log_softmax(logits), y)``.
    """
    targets = one_hot(y, logits.shape[1], dtype=logits.dtype)  # (N, C)
    per_sample = -(targets * log_softmax(logits, dim=1)).sum(dim=1)  # (N,)
    return per_sample.mean()


def accuracy(scores: Tensor, y: Tensor) -> float:
    """Fraction of rows whose largest score is the true class (correct / total, in [0, 1])."""
    return (scores.argmax(dim=1) == y).float().mean().item()


# --- softmax regression -----------------------------------------------------------


def softmax_regression_grad(X: Tensor, W: Tensor, b: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient of the mean cross-entropy of ``softmax(X @ W + b)`` w.r.t. ``W`` and ``b``, by hand.

    With ``z = X W + b`` and ``p = softmax(z)``, the loss ``L = mean_n -log p[n, y_n]``
    has ``dL/dz = (p - onehot(y)) / N``; the chain rule through ``z = X W + b`` gives
    ``dL/dW = X^T dL/dz`` and ``dL/db = sum_n dL/dz``.
    `X` ``(N, D)``, `W` ``(D, C)``, `b` ``(C,)``, `y` ``(N,)`` -> ``(dW (D, C), db (C,))``.
    """
    _, dW, db = _loss_and_grad(X, W, b, one_hot(y, W.shape[1], dtype=X.dtype))
    return dW, db


def _loss_and_grad(X: Tensor, W: Tensor, b: Tensor, Y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    # Y: (N, C) one-hot targets. Returns the summed loss (for logging) and the mean's gradient.
    z = X @ W + b  # (N, C) logits
    loss_sum = -(Y * log_softmax(z, dim=1)).sum()
    dz = (softmax(z, dim=1) - Y) / len(X)  # (N, C): the famous p - y, over N for the mean
    return loss_sum, X.T @ dz, dz.sum(dim=0)  # (), (D, C), (C,)


def init_softmax_regression(
    num_features: int, num_classes: int = NUM_CLASSES, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """Starting weights: ``W`` ``(D, C)`` from N(0, 0.01^2) (seeded), ``b`` ``(C,)`` zeros.

    The loss of softmax regression is convex, so any small start works; small random
    weights make every class start near probability 1/C (loss near log C).
    """
    generator = torch.Generator().manual_seed(seed)
    W = torch.randn(num_features, num_classes, generator=generator, dtype=dtype) * 0.01
    return W, torch.zeros(num_classes, dtype=dtype)


def train_softmax_regression(
    X: Tensor,
    y: Tensor,
    lr: float = 0.1,
    epochs: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    num_classes: int = NUM_CLASSES,
) -> tuple[Tensor, Tensor, list[float]]:
    """Minibatch SGD on softmax regression with the hand-derived gradient: no autograd, no nn.Module.

    `X` ``(N, D)`` float features (e.g. MNIST pixels / 255, flattened), `y` ``(N,)``
    labels. Each epoch visits the samples in a new random order (seeded by `seed`, as
    is the start `init_softmax_regression`) and takes one step ``W -= lr * dW`` per
    batch. Returns ``(W (D, C), b (C,), losses)`` where ``losses[e]`` is the mean
    training loss over the batches of epoch ``e``, weighted by batch size. Training
    stops early with a `DivergenceWarning` if the loss becomes NaN or infinite.
    """
    n = len(y)
    W, b = init_softmax_regression(X.shape[1], num_classes, seed, X.dtype)
    W, b = W.to(X.device), b.to(X.device)
    Y = one_hot(y, num_classes, dtype=X.dtype)  # (N, C), built once
    order_generator = torch.Generator().manual_seed(seed + 1)  # not the init's stream
    losses: list[float] = []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=order_generator).to(X.device)
        loss_sum = torch.zeros((), dtype=X.dtype, device=X.device)  # summed on the device, read once
        for lo in range(0, n, batch_size):
            idx = order[lo : lo + batch_size]
            batch_loss, dW, db = _loss_and_grad(X[idx], W, b, Y[idx])  # X[idx]: (B, D)
            loss_sum += batch_loss
            W -= lr * dW
            b -= lr * db
        mean_loss = loss_sum.item() / n
        if not math.isfinite(mean_loss):
            warnings.warn(
                f"Softmax regression diverged in epoch {epoch}: the loss became {mean_loss}. The learning "
                f"rate {lr:g} is too large for these inputs; try {lr / 10:g}.",
                DivergenceWarning,
                stacklevel=2,
            )
            break
        losses.append(mean_loss)
    return W, b, losses
