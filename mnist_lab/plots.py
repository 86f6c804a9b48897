"""Plain plotting functions: each takes data and returns a matplotlib `Figure`.

Nothing here trains or loads anything; pass tensors, arrays or a `History`. In a
notebook the figure shows itself; elsewhere save it with `mnist_lab.files.save_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .history import History


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


# --- notebooks 05-06 (issue 13): training curves with validation, kernels, feature maps, activation scales


def _as_numpy(values) -> np.ndarray:
    return values.detach().float().cpu().numpy() if hasattr(values, "detach") else np.asarray(values, dtype=float)


def plot_t1_figure(history: History, loss_range=(0.0, 0.5), acc_range=(0.9, 1.01)) -> Figure:
    """T1's twin-axis figure with T1's fixed ranges, next to the same run on log scales.

    Left: test loss (red circles, left axis) and test accuracy (blue circles, right
    axis) on T1's ranges; a point outside them is drawn as an open triangle on the
    edge it crossed, so nothing widens the axes. Middle: training, validation (when
    the run held some out) and test loss, log scale. Right: the error rate (1 -
    accuracy), log scale, where 99.0 % and 99.4 % are visibly apart.
    """
    fig, (ax_loss, ax_log, ax_err) = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    ax_acc = ax_loss.twinx()
    epochs = np.asarray(history.epoch)
    for ax, values, (low, high), colour in (
        (ax_loss, np.asarray(history.test_loss), loss_range, "red"),
        (ax_acc, np.asarray(history.test_acc), acc_range, "blue"),
    ):
        inside = (values >= low) & (values <= high)
        ax.plot(epochs[inside], values[inside], "o", color=colour, markersize=4)
        ax.plot(epochs[values > high], np.full((values > high).sum(), high), "^", mfc="none", color=colour)
        ax.plot(epochs[values < low], np.full((values < low).sum(), low), "v", mfc="none", color=colour)
        ax.set_ylim(low, high)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("test loss", color="red")
    ax_acc.set_ylabel("test accuracy", color="blue")
    ax_loss.set_title("T1's figure, T1's ranges (open triangles: off the axis)", fontsize=10)
    curves = [("train", history.train_loss, history.train_acc, "grey")]
    if history.val_acc:
        curves.append(("validation", history.val_loss, history.val_acc, "green"))
    curves.append(("test", history.test_loss, history.test_acc, "tab:blue"))
    for label, losses, accs, colour in curves:
        ax_log.plot(epochs, losses, marker="o", markersize=3, color=colour, label=f"{label} loss")
        ax_err.plot(epochs, 100 * (1 - np.asarray(accs)), marker="o", markersize=3, color=colour, label=label)
    ax_log.set_title("loss, log scale", fontsize=10)
    ax_err.set_title("error rate = 100 % - accuracy, log scale", fontsize=10)
    for ax in (ax_log, ax_err):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ax_err.set_ylabel("error (%)")
    fig.suptitle(f"{history.model} on {history.device}: {history.epochs} epoch(s)")
    return fig


def plot_histories(histories: dict[str, History]) -> Figure:
    """Several runs side by side: training loss, validation loss (lowest marked) and test accuracy per epoch."""
    with_val = any(h.val_loss for h in histories.values())
    panels = 3 if with_val else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), layout="constrained")
    for name, history in histories.items():
        (line,) = axes[0].plot(history.epoch, history.train_loss, marker="o", markersize=3, label=name)
        axes[-1].plot(history.epoch, [100 * a for a in history.test_acc], marker="o", markersize=3, label=name)
        if with_val and history.val_loss:
            axes[1].plot(history.epoch, history.val_loss, marker="o", markersize=3, color=line.get_color(), label=name)
            best = history.best_val_epoch()
            axes[1].plot(best, history.val_loss[history.epoch.index(best)], "*", color=line.get_color(), markersize=14)
    axes[0].set_title("training loss (mean over each epoch)", fontsize=10)
    if with_val:
        axes[1].set_title("validation loss (★ lowest: the epoch count it chooses)", fontsize=10)
    axes[-1].set_title("test accuracy (%), reported at the last epoch", fontsize=10)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    for ax in axes[:-1]:
        ax.set_yscale("log")
    return fig


def plot_kernels(rows: dict[str, object], cols: int = 16) -> Figure:
    """Rows of first-layer kernels, e.g. ``{"convnet, untrained": w0, "convnet, trained": w1}``.

    Each value is ``(C, F, F)`` (one input channel). Every row has its own symmetric
    colour scale (red positive, blue negative, white 0) and its colour bar, because
    trained kernels are often larger than their random start.
    """
    kernels = {title: _as_numpy(values) for title, values in rows.items()}
    lines = {title: -(-len(k) // cols) for title, k in kernels.items()}
    width = 1.0 * min(cols, max(len(k) for k in kernels.values())) + 1.5
    fig = plt.figure(figsize=(width, 1.2 * sum(lines.values()) + 0.6 * len(rows)), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(rows), 1, height_ratios=[lines[t] + 0.5 for t in kernels]))
    for subfig, (title, k) in zip(subfigs, kernels.items()):
        n_cols = min(cols, len(k))
        axes = subfig.subplots(lines[title], n_cols, squeeze=False)
        scale = float(np.abs(k).max()) or 1.0
        for ax in axes.flat:
            ax.set_axis_off()
        for ax, kernel in zip(axes.flat, k):
            image = ax.imshow(kernel, cmap="bwr", vmin=-scale, vmax=scale)
        subfig.colorbar(image, ax=axes, shrink=0.9, label="weight")
        subfig.suptitle(f"{title}: {len(k)} kernels {k.shape[-2]}×{k.shape[-1]}", fontsize=10)
    return fig


def plot_feature_maps(image, maps: dict[str, object], cols: int = 8) -> Figure:
    """A digit and, row by row, the first `cols` feature maps of some layers, each row on one colour scale.

    `maps` maps a row title to ``(C, H, W)``. A diverging scale centred on 0 with a
    colour bar: white is 0, so a map's background colour is the sign of what a blank
    window produces (the kernel's bias, for a convolution).
    """
    fig = plt.figure(figsize=(1.55 * (cols + 1) + 1, 1.9 * len(maps) + 0.4), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(maps), 1))
    for row, (subfig, (title, values)) in enumerate(zip(subfigs, maps.items())):
        values = _as_numpy(values)
        axes = subfig.subplots(1, cols + 1)
        for ax in axes:
            ax.set_axis_off()
        if row == 0:
            axes[0].imshow(_as_images(image)[0], cmap="gray")
            axes[0].set_title("input", fontsize=9)
        scale = float(np.abs(values[:cols]).max()) or 1.0
        for c, ax in enumerate(axes[1:][: len(values)]):
            shown = ax.imshow(values[c], cmap="RdBu_r", vmin=-scale, vmax=scale)
            ax.set_title(f"map {c}", fontsize=9)
        subfig.colorbar(shown, ax=axes[1:], shrink=0.9, label="activation")
        subfig.suptitle(f"{title}: {values.shape[0]} maps of {values.shape[1]}×{values.shape[2]}", fontsize=10)
    return fig


def plot_activation_stats(records: dict[str, dict[str, list[float]]], layers: Sequence[str]) -> Figure:
    """fastbook-style activation statistics over training steps, one line per run.

    ``records[run]`` holds ``"step"``, ``"loss"`` and, for every name in `layers`,
    that layer's output standard deviation at each recorded step.
    """
    fig, axes = plt.subplots(1, len(layers) + 1, figsize=(4.6 * (len(layers) + 1), 3.8), layout="constrained")
    for run, record in records.items():
        for ax, layer in zip(axes, layers):
            ax.plot(record["step"], record[layer], label=run)
        axes[-1].plot(record["step"], record["loss"], label=run)
    for ax, layer in zip(axes, layers):
        ax.set_title(f"std of the output of {layer}", fontsize=10)
        ax.set_yscale("log")
    axes[-1].set_title("training loss of the batch", fontsize=10)
    for ax in axes:
        ax.set_xlabel("optimiser step")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return fig


def plot_layer_scales(scales: dict[str, Sequence[float]], layer_names: Sequence[str]) -> Figure:
    """The standard deviation of the activations after each layer, one line per model variant, log scale."""
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    for label, values in scales.items():
        ax.plot(range(len(values)), values, marker="o", label=label)
    ax.set_xticks(range(len(layer_names)), layer_names, fontsize=8, rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("standard deviation")
    ax.set_title("activation scale at initialisation, one batch of digits", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    return fig
