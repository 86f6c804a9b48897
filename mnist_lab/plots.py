"""Plain plotting functions: each takes data and returns a matplotlib `Figure`.

Nothing here trains or loads anything; pass tensors, arrays or a `History`. In a
notebook the figure shows itself; elsewhere save it with `mnist_lab.io.save_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .train import History


def _as_images(images) -> np.ndarray:
    """Any (N, 28, 28) / (N, 1, 28, 28) tensor or array -> numpy (N, 28, 28)."""
    array = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    return array.reshape(-1, 28, 28)


def _as_list(values) -> list[int] | None:
    if values is None:
        return None
    return [int(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


def plot_digit_grid(
    images,
    labels=None,
    nrows: int = 5,
    ncols: int = 5,
    predicted=None,
    title: str | None = None,
    cell_size: float = 1.2,
) -> Figure:
    """A grid of digits, grey, axes off; the first ``nrows * ncols`` images are shown.

    With `labels` only, each label is written under its digit (T1's 5×5, T4's 2×10).
    With `predicted` too, each digit is titled with its prediction, in red when it is
    wrong (T2's 8×8 prediction grid, in English).
    """
    images = _as_images(images)[: nrows * ncols]
    labels, predicted = _as_list(labels), _as_list(predicted)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * cell_size, nrows * cell_size * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(images):
            continue
        ax.imshow(images[i], cmap="gray")
        if predicted is not None:
            wrong = labels is not None and labels[i] != predicted[i]
            ax.set_title(f"pred {predicted[i]}", fontsize=9, color="red" if wrong else "black")
        elif labels is not None:
            ax.text(0.5, -0.12, str(labels[i]), transform=ax.transAxes, ha="center", va="top", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(history: History) -> Figure:
    """T0's four curves, one panel each: train loss, train accuracy, test loss, test accuracy."""
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True)
    panels = [
        ("train_loss", "train loss"),
        ("train_acc", "train accuracy"),
        ("test_loss", "test loss"),
        ("test_acc", "test accuracy"),
    ]
    for ax, (key, label) in zip(axes.flat, panels):
        ax.plot(history.epoch, getattr(history, key), marker="o", markersize=3)
        ax.set_title(label)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    fig.suptitle(f"{history.model} on {history.device}")
    fig.tight_layout()
    return fig


def plot_loss_accuracy(history: History, loss_range=(0.0, 0.5), acc_range=(0.9, 1.01)) -> Figure:
    """T1's twin-axis figure: test loss (red circles, left axis) and test accuracy (blue, right)."""
    fig, ax_loss = plt.subplots(figsize=(7, 4))
    ax_acc = ax_loss.twinx()
    ax_loss.plot(history.epoch, history.test_loss, "ro", label="test loss")
    ax_acc.plot(history.epoch, history.test_acc, "bo", label="test accuracy")
    ax_loss.set_ylim(*loss_range)
    ax_acc.set_ylim(*acc_range)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("test loss", color="red")
    ax_acc.set_ylabel("test accuracy", color="blue")
    ax_loss.set_title(f"{history.model}: test loss and accuracy per epoch")
    fig.tight_layout()
    return fig


def plot_confusion_matrix(matrix, class_names: Sequence[str] | None = None, title: str = "Confusion matrix") -> Figure:
    """A confusion matrix (rows: true class, columns: predicted) with every count written in."""
    counts = matrix.cpu().numpy() if hasattr(matrix, "cpu") else np.asarray(matrix)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(counts))]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    # log scale so the few errors are visible next to the large diagonal
    shown = np.log1p(counts)
    im = ax.imshow(shown, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        dark = shown[row, col] > shown.max() / 2
        ax.text(col, row, str(value), ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    return fig


def plot_misclassified(images, labels, probs, ncols: int = 8, max_images: int = 24) -> Figure:
    """The digits a model got wrong: true vs predicted and the top-3 probabilities.

    `probs` is ``(N, 10)`` for the same N images; only misclassified ones are drawn.
    """
    images = _as_images(images)
    probs = probs.detach().cpu().numpy() if hasattr(probs, "detach") else np.asarray(probs)
    labels = np.asarray(_as_list(labels))
    wrong = np.flatnonzero(probs.argmax(axis=1) != labels)[:max_images]
    nrows = max(1, -(-len(wrong) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 1.5, nrows * 1.9), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, wrong):
        top = np.argsort(probs[i])[::-1][:3]
        ax.imshow(images[i], cmap="gray")
        ax.set_title(f"true {labels[i]} → {top[0]}", fontsize=9, color="red")
        text = "\n".join(f"{c}: {probs[i, c]:.2f}" for c in top)
        ax.text(0.5, -0.05, text, transform=ax.transAxes, ha="center", va="top", fontsize=7)
    fig.suptitle(f"{len(wrong)} misclassified digit(s) shown")
    fig.tight_layout()
    return fig


# --- your own handwriting (mnist_lab.handwriting) ---------------------------------


def plot_preprocessing_steps(steps: dict[str, np.ndarray], title: str | None = None) -> Figure:
    """The steps of `mnist_lab.handwriting.preprocess` side by side, each with its size.

    The last panel (the centred 28×28 digit) marks the frame's centre (14, 14) and the
    digit's centre of mass, with a legend. A refused picture has fewer steps.
    """
    from .handwriting import CENTRE, PREPROCESS_STEPS, centre_of_mass

    names = [name for name in PREPROCESS_STEPS if name in steps] + [n for n in steps if n not in PREPROCESS_STEPS]
    fig, axes = plt.subplots(1, len(names), figsize=(2.0 * len(names), 2.9), squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[0], names)):
        picture = steps[name]
        ax.imshow(picture, cmap=None if picture.ndim == 3 else "gray", vmin=0, vmax=255)
        ax.set_title(f"{i + 1}. {name}\n{picture.shape[1]}×{picture.shape[0]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if name == "centred" and picture.any():
            cy, cx = centre_of_mass(picture.astype(np.float64))
            ax.plot([CENTRE], [CENTRE], "r+", markersize=12, label="(14, 14)")
            ax.plot([cx], [cy], "c.", markersize=6, label="centre of mass")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93) if title else (0, 0, 1, 1))
    return fig


def plot_digit_predictions(
    originals: list[np.ndarray],
    digits: list,
    predictions: list[list[tuple[int, float]]],
    labels: list[int | None] | None = None,
    title: str | None = None,
) -> Figure:
    """One column per image: the original above, the 28×28 digit below, titled with the top-k.

    `digits` holds 28×28 tensors or arrays; `predictions` holds `predict_digit`'s lists
    (an empty list, with ``None`` as the digit, for a refused picture); with `labels`, a
    wrong top guess is red.
    """
    n = len(originals)
    labels = labels if labels is not None else [None] * n
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n + 0.4, 4.6), squeeze=False)
    for j in range(n):
        top, bottom = axes[0, j], axes[1, j]
        original = originals[j]
        top.imshow(original, cmap=None if original.ndim == 3 else "gray", vmin=0, vmax=255)
        digit = digits[j].numpy() if hasattr(digits[j], "numpy") else digits[j]  # a tensor or an array
        bottom.imshow(digit if digit is not None else np.zeros((28, 28)), cmap="gray", vmin=0, vmax=255)
        guesses = predictions[j]
        head = f"true {labels[j]}\n" if labels[j] is not None else ""
        if guesses:
            wrong = labels[j] is not None and guesses[0][0] != labels[j]
            top.set_title(f"{head}guess {guesses[0][0]}", fontsize=10, color="red" if wrong else "black")
            text = "\n".join(f"{d}: {p:.2f}" for d, p in guesses)
        else:
            top.set_title(f"{head}refused", fontsize=10, color="darkorange")
            text = "no digit read"
        bottom.text(0.5, -0.06, text, transform=bottom.transAxes, ha="center", va="top", fontsize=8)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94) if title else (0, 0, 1, 1))
    return fig
