"""Plain plotting functions: each takes data and returns a matplotlib `Figure`.

Nothing here trains or loads anything; pass tensors, arrays or a `History`. In a
notebook the figure shows itself; elsewhere save it with `mnist_lab.files.save_figure`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from itertools import product

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .history import History


def _numpy(values) -> np.ndarray:
    """A tensor (any device) or array-like as a NumPy array, dtype kept."""
    return values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)


def _as_numpy(values) -> np.ndarray:
    return values.detach().float().cpu().numpy() if hasattr(values, "detach") else np.asarray(values, dtype=float)


def _as_images(images) -> np.ndarray:
    """Any (N, 28, 28) / (N, 1, 28, 28) tensor or array -> numpy (N, 28, 28)."""
    return _numpy(images).reshape(-1, 28, 28)


def _as_list(values) -> list[int] | None:
    if values is None:
        return None
    return [int(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


def _image_grid(n: int, ncols: int, cell: tuple[float, float], **kwargs) -> tuple[Figure, np.ndarray]:
    """A figure with rows of `ncols` axes (``cell`` inches each) for `n` images, every axes off."""
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * cell[0], nrows * cell[1]), squeeze=False, **kwargs)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


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
    for ax, (split, key) in zip(axes.flat, product(["train", "test"], ["loss", "acc"])):
        ax.plot(history.epoch, getattr(history, f"{split}_{key}"), marker="o", markersize=3)
        ax.set_title(f"{split} {'loss' if key == 'loss' else 'accuracy'}")
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    fig.suptitle(f"{history.model} on {history.device}")
    fig.tight_layout()
    return fig


def plot_confusion_matrix(matrix, class_names: Sequence[str] | None = None, title: str = "Confusion matrix") -> Figure:
    """A confusion matrix (rows: true class, columns: predicted) with every count written in."""
    counts = _numpy(matrix)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(counts))]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    shown = np.log1p(counts)  # log scale so the few errors are visible next to the large diagonal
    im = ax.imshow(shown, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        dark = shown[row, col] > shown.max() / 2
        ax.text(col, row, str(value), ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    return fig


def plot_misclassified(images, labels, probs, ncols: int = 8, max_images: int = 24) -> Figure:
    """The digits a model got wrong: true vs predicted and the top-3 probabilities.

    `probs` is ``(N, 10)`` for the same N images; only misclassified ones are drawn.
    """
    images, probs, labels = _as_images(images), _numpy(probs), np.asarray(_as_list(labels))
    wrong = np.flatnonzero(probs.argmax(axis=1) != labels)[:max_images]
    fig, axes = _image_grid(len(wrong), ncols, (1.5, 2.4))
    for ax, i in zip(axes.flat, wrong):
        top = np.argsort(probs[i])[::-1][:3]
        ax.imshow(images[i], cmap="gray")
        ax.set_title(f"true {labels[i]} → {top[0]}", fontsize=9, color="red")
        text = "\n".join(f"{c}: {probs[i, c]:.2f}" for c in top)
        ax.text(0.5, -0.05, text, transform=ax.transAxes, ha="center", va="top", fontsize=7)
    fig.suptitle(f"{len(wrong)} misclassified digit(s) shown")
    fig.tight_layout()
    return fig


# --- notebooks 01-04 (issue 12): the readable training figure, weight templates, T4's grid, 04's graph


def plot_training(history: History, title: str | None = None) -> Figure:
    """Train and test loss on one axes, train and test accuracy in % on another, per epoch.

    Both curves of a quantity share an axes so the gap between them (over-fitting) can be
    read off directly; the epochs are whole numbers. T0's four separate panels are
    `plot_curves`.
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label in [(ax_loss, "loss", "loss (mean over images)"), (ax_acc, "acc", "accuracy (%)")]:
        scale = 100 if key == "acc" else 1  # accuracies are stored as fractions
        for split, style in [("train", "o-"), ("test", "s--")]:
            values = [scale * v for v in getattr(history, f"{split}_{key}")]
            ax.plot(history.epoch, values, style, markersize=4, label=split)
        ax.set(xlabel="epoch", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if history.epoch:  # half an epoch of margin: a one-epoch run still gets the tick "1"
            ax.set_xlim(history.epoch[0] - 0.5, history.epoch[-1] + 0.5)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    fig.suptitle(title or f"{history.model} on {history.device}: train (during the epoch) and test (after it)")
    fig.tight_layout()
    return fig


def plot_weight_images(weights, title: str, class_names: Sequence[str] | None = None) -> Figure:
    """Ten weight vectors ``(10, 784)`` as a 2×5 grid of 28×28 images, red > 0 > blue, one colour scale."""
    images = _as_images(weights)
    limit = float(np.abs(images).max()) or 1.0  # symmetric colour scale centred at 0
    names = list(class_names) if class_names is not None else [f"class {k}" for k in range(len(images))]
    fig, axes = plt.subplots(2, 5, figsize=(10, 4.4))
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < len(images):
            shown = ax.imshow(images[k], cmap="bwr", vmin=-limit, vmax=limit)
            ax.set_title(names[k])
    fig.colorbar(shown, ax=axes, shrink=0.8, label="weight")
    fig.suptitle(title)
    return fig


def plot_labelled_digits(
    images, labels, nrows: int = 2, ncols: int = 10, title: str | None = None, cmap: str = "binary"
) -> Figure:
    """Digits with their labels underneath, black ink on white by default (T4's ``plt.cm.binary``).

    The labels are axis labels, so ``tight_layout`` leaves room for them between the rows.
    """
    images, labels = _as_images(images)[: nrows * ncols], _as_list(labels)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 1.1, nrows * 1.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set(xticks=[], yticks=[])
        if i >= len(images):
            ax.set_axis_off()
            continue
        ax.imshow(images[i], cmap=cmap)
        ax.set_xlabel(str(labels[i]), fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_bp_graph() -> Figure:
    """The computational graph of T2's 784-128-64-10 network: forward on top, backward below.

    Forward (black): ``a0 → z1 = a0 W1 + b1 → a1 = relu(z1) → ... → log p → L``; every
    ``a`` and ``z`` is kept in the cache. Backward (red): ``dz3 = (P − Y)/B``, then for each
    layer ``dW = aᵀ dz``, ``db = Σ dz``, ``da = dz Wᵀ`` and the ReLU mask ``dz = da ⊙ 1[z > 0]``.
    """
    shapes = [("a0", 784), ("z1", 128), ("a1", 128), ("z2", 64), ("a2", 64), ("z3", 10), ("log p", 10)]
    nodes = [f"{name}\n(B,{size})" for name, size in shapes] + ["L"]
    ops = ["@W1+b1", "ReLU", "@W2+b2", "ReLU", "@W3+b3", "log_softmax", "NLL"]
    grads = ["", "dz1", "da1", "dz2", "da2", "dz3", "", ""]
    back_ops = ["", "⊙1[z1>0]", "dz2 W2ᵀ", "⊙1[z2>0]", "dz3 W3ᵀ", "", ""]
    params = {0: "W1 (784,128)\nb1 (128)", 2: "W2 (128,64)\nb2 (64)", 4: "W3 (64,10)\nb3 (10)"}
    param_grads = {0: "dW1 = a0ᵀdz1\ndb1 = Σ dz1", 2: "dW2 = a1ᵀdz2\ndb2 = Σ dz2", 4: "dW3 = a2ᵀdz3\ndb3 = Σ dz3"}
    fig, ax = plt.subplots(figsize=(13, 4.6))
    ax.set(xlim=(-0.7, len(nodes) - 0.3), ylim=(-2.4, 2.3))
    ax.set_axis_off()
    box = {"boxstyle": "round,pad=0.3", "facecolor": "#eef3fb", "edgecolor": "black"}
    red_box = {**box, "facecolor": "#fdecec", "edgecolor": "red"}
    red_arrow = {"arrowstyle": "->", "lw": 1.4, "color": "red"}
    for i, name in enumerate(nodes):
        ax.text(i, 0.6, name, ha="center", va="center", fontsize=10, bbox=box)
        if grads[i]:
            ax.text(i, -0.9, grads[i], ha="center", va="center", fontsize=10, color="red", bbox=red_box)
    for i, op in enumerate(ops):  # forward arrows between nodes
        ax.annotate("", xy=(i + 0.68, 0.6), xytext=(i + 0.32, 0.6), arrowprops={"arrowstyle": "->", "lw": 1.4})
        ax.text(i + 0.5, 0.35, op, ha="center", va="top", fontsize=8)
    for i, op in enumerate(back_ops):  # backward arrows, right to left
        if op:
            ax.annotate("", xy=(i + 0.3, -0.9), xytext=(i + 0.7, -0.9), arrowprops=red_arrow)
            ax.text(i + 0.5, -1.25, op, ha="center", va="top", fontsize=8, color="red")
    ax.annotate("", xy=(5.3, -0.9), xytext=(7, 0.3), arrowprops={**red_arrow, "connectionstyle": "arc3,rad=-0.3"})
    for i, text in params.items():  # parameters feed the linear steps; their gradients come out below
        ax.text(i + 0.5, 1.75, text, ha="center", va="center", fontsize=8, bbox={**box, "facecolor": "#f4f4f4"})
        ax.annotate("", xy=(i + 0.5, 0.85), xytext=(i + 0.5, 1.45), arrowprops={"arrowstyle": "->", "lw": 0.8})
        ax.text(i + 0.5, -2.0, param_grads[i], ha="center", va="center", fontsize=8, color="red")
        arrow = {"arrowstyle": "->", "lw": 0.8, "color": "red", "linestyle": ":"}
        ax.annotate("", xy=(i + 0.5, -1.7), xytext=(i + 1, -1.1), arrowprops=arrow)
    ax.text(-0.65, 2.2, "forward: every a and z is kept in the cache", fontsize=9, va="top")
    ax.text(6.0, -0.25, "dz3 = (P−Y)/B", fontsize=9, color="red", ha="center")
    ax.text(7.2, -2.35, "backward (red): uses the cached a and z", fontsize=9, color="red", va="bottom", ha="right")
    fig.tight_layout()
    return fig


# --- mnist-lab batch sweeps (issue 18)


def plot_sweep(
    accuracies: dict[str, dict[object, Sequence[float]]],
    xlabel: str,
    title: str = "test accuracy",
    seeds_on_x: bool = False,
) -> Figure:
    """Accuracy against a swept parameter: every run as a dot, the mean over seeds with ±1 std bars.

    `accuracies` maps a series label (the other swept values, "" for none) to
    ``{x value: [accuracy of each seed]}``, accuracies as fractions. Numbers on the x axis are
    spaced by value (on a log scale when they are positive and span a factor of 10 or more),
    anything else is one category each. With ``seeds_on_x`` the x values are the seeds
    themselves (one run each): the mean over them is a dashed line in a ±1 std band.
    """
    xs = list(dict.fromkeys(x for series in accuracies.values() for x in series))
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    position = {x: (x if numeric else i) for i, x in enumerate(xs)}
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (label, series) in enumerate(accuracies.items()):
        color = f"C{i}"
        points = [(position[x], 100 * np.asarray(accs, dtype=float)) for x, accs in series.items() if len(accs)]
        for x, accs in points:  # one dot per run
            ax.plot(np.full(len(accs), x), accs, "o", color=color, alpha=1 if seeds_on_x else 0.35, markersize=4)
        if seeds_on_x:
            every = np.concatenate([accs for _, accs in points])
            mean, std = every.mean(), _std(every)
            ax.axhline(mean, color=color, linestyle="--", label=f"{label} mean {mean:.2f} %, std {std:.2f} pp".strip())
            ax.axhspan(mean - std, mean + std, color=color, alpha=0.15)
            continue
        means, stds = [accs.mean() for _, accs in points], [_std(accs) for _, accs in points]
        ax.errorbar([x for x, _ in points], means, yerr=stds, color=color, marker="s", capsize=4, label=label or None)
    if numeric and not seeds_on_x and min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    elif len(xs) <= 12:
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    if seeds_on_x or any(accuracies):
        ax.legend()
    fig.tight_layout()
    return fig


def _std(values: np.ndarray) -> float:
    """The sample standard deviation (ddof=1), 0 for a single value."""
    return values.std(ddof=1) if len(values) > 1 else 0.0


# --- notebooks 07-08 (issue 13): evaluation figures and where the training time goes ---


def plot_leaderboard(results: dict[str, tuple[int, float]], title: str = "Accuracy against size") -> Figure:
    """Test accuracy against parameter count (log scale), one labelled point per model.

    `results` maps a model name to ``(parameters, test accuracy in [0, 1])``.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, (parameters, acc) in results.items():
        ax.scatter(parameters, 100 * acc, s=40)
        ax.annotate(name, (parameters, 100 * acc), textcoords="offset points", xytext=(6, -3), fontsize=8)
    ax.set_xscale("log")
    xmin, xmax = ax.get_xlim()
    ax.set_xlim(xmin, xmax * 4)  # room for the right-most label
    ax.set(xlabel="parameters (log scale)", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_top_losses(images, labels, probs, indices, ncols: int = 6) -> Figure:
    """The digits at `indices` (largest loss first, see `mnist_lab.evaluation.top_losses`), fastai-style.

    Each title has two lines: ``true → predicted`` with the loss ``-log p(true)``, then
    the top-3 probabilities. The layout engine keeps titles from overlapping the row above.
    """
    images, probs, labels = _as_images(images), _numpy(probs), np.asarray(_as_list(labels))
    indices = _as_list(indices) or []
    fig, axes = _image_grid(len(indices), ncols, (1.9, 2.35), layout="constrained")
    for ax, i in zip(axes.flat, indices):
        top = np.argsort(probs[i])[::-1][:3]
        loss = -np.log(max(float(probs[i, labels[i]]), np.finfo(np.float32).tiny))
        ax.imshow(images[i], cmap="gray")
        first = f"{labels[i]} → {top[0]}   loss {loss:.1f}"
        second = "  ".join(f"{c}:{probs[i, c]:.2f}" for c in top)
        ax.set_title(f"{first}\n{second}", fontsize=8, color="firebrick")
    return fig


def plot_hardest_digits(images, labels, predicted, wrong_count, total_models: int, ncols: int = 10) -> Figure:
    """Digits many models get wrong: each titled ``label → best model's guess`` and ``k/total wrong``."""
    images = _as_images(images)
    labels, predicted, wrong_count = _as_list(labels), _as_list(predicted), _as_list(wrong_count)
    fig, axes = _image_grid(len(images), ncols, (1.35, 1.9), layout="constrained")
    for i, ax in enumerate(axes.flat[: len(images)]):
        ax.imshow(images[i], cmap="gray")
        title = f"label {labels[i]} → {predicted[i]}\n{wrong_count[i]}/{total_models} wrong"
        ax.set_title(title, fontsize=8, color="firebrick" if labels[i] != predicted[i] else "black")
    return fig


def plot_reliability(calibration, title: str = "Reliability diagram") -> Figure:
    """A reliability diagram from `mnist_lab.evaluation.calibration`, and how many digits fall in each bin.

    Left: accuracy per confidence bin against the diagonal of perfect calibration (bars
    below the diagonal: over-confident). Right: digits per bin, log scale.
    """
    edges = np.asarray(calibration.edges)
    width = np.diff(edges)
    centres = edges[:-1] + width / 2
    acc = np.asarray(calibration.accuracy, dtype=float)
    conf = np.asarray(calibration.confidence, dtype=float)
    fig, (ax, ax_n) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    shown = ~np.isnan(acc)
    ax.bar(centres[shown], acc[shown], width=width[shown] * 0.9, color="tab:blue", label="accuracy in the bin")
    ax.scatter(centres[shown], conf[shown], color="tab:orange", zorder=3, s=18, label="mean confidence in the bin")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence (top probability)", ylabel="accuracy")
    ax.set_title(f"{title}  (ECE {100 * calibration.ece:.2f} points)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax_n.bar(centres, np.maximum(calibration.count, 0), width=width * 0.9, color="tab:grey")
    ax_n.set_yscale("log")
    ax_n.set(xlim=(0, 1), xlabel="confidence (top probability)", ylabel="test digits in the bin (log scale)")
    ax_n.set_title("how many digits each bar stands for", fontsize=10)
    return fig


def plot_ladder(rows: dict[str, list[tuple[str, float]]], title: str = "") -> Figure:
    """Notebook 08's ladder: for each model, seconds per epoch of every rung, first rung red, last green.

    `rows` maps a model name to its ``(rung, seconds per epoch)`` pairs in ladder order.
    """
    height = 0.5 * max(len(r) for r in rows.values()) + 1.5
    fig, axes = plt.subplots(1, len(rows), figsize=(6 * len(rows), height), squeeze=False, layout="constrained")
    for ax, (name, pairs) in zip(axes[0], rows.items()):
        rungs, seconds = [p[0] for p in pairs], [p[1] for p in pairs]
        colors = ["tab:red"] + ["tab:blue"] * (len(pairs) - 2) + ["tab:green"]
        ax.barh(rungs, seconds, color=colors[: len(pairs)])
        ax.invert_yaxis()
        for y, s in enumerate(seconds):
            ax.text(s, y, f" {s:.2f} s ({seconds[0] / s:.1f}×)", va="center", fontsize=8)
        ax.set(xlim=(0, max(seconds) * 1.45), xlabel="seconds per epoch (60,000 images)", title=f"{name}{title}")
    return fig


def plot_time_breakdown(breakdown: dict[str, dict[str, float]], title: str = "Where a tutorial epoch goes") -> Figure:
    """One stacked horizontal bar per model: the parts of an epoch in seconds, labelled in place.

    `breakdown` maps a model name to ``{part: seconds}`` in stacking order (see
    `mnist_lab.speed.bench.time_breakdown`); a negative part (measurement noise) is drawn as 0.
    """
    colors = ["tab:red", "tab:orange", "tab:blue", "tab:green", "tab:purple"]
    names = list(breakdown)
    parts = list(next(iter(breakdown.values())))
    fig, ax = plt.subplots(figsize=(10, 1.1 * len(names) + 1.8), layout="constrained")
    for y, name in enumerate(names):
        left = 0.0
        for part, color in zip(parts, colors):
            seconds = breakdown[name][part]
            ax.barh(y, max(seconds, 0.0), left=left, color=color, label=part if y == 0 else None)
            if seconds > 0.06 * sum(max(v, 0) for v in breakdown[name].values()):
                ax.text(left + seconds / 2, y, f"{seconds:.1f} s", ha="center", va="center", color="white", fontsize=9)
            left += max(seconds, 0.0)
        ax.text(left, y, f"  {left:.1f} s", va="center", fontsize=9)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, ax.get_xlim()[1] * 1.12)
    ax.set(xlabel="seconds per epoch (60,000 images)", title=title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=len(parts), fontsize=8, frameon=False)
    return fig


def plot_lr_schedule(rates: Sequence[float], warmup: int, title: str = "learning rate per step") -> Figure:
    """The learning rate of every optimiser step, with the end of the warm-up marked and labelled."""
    fig, ax = plt.subplots(figsize=(6.5, 2.8), layout="constrained")
    ax.plot(rates, label="learning rate")
    ax.axvline(warmup, color="grey", linestyle=":", label=f"end of warm-up (step {warmup})")
    ax.set(xlabel="optimiser step", ylabel="learning rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_accuracy_vs_time(races: dict[str, tuple[list[float], list[float]]], target: float = 0.99) -> Figure:
    """Test accuracy after each epoch against cumulative training seconds, one line per recipe.

    `races` maps a label to ``(seconds, accuracies)``; the `target` is drawn as a dashed line.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    for label, (seconds, accs) in races.items():
        ax.plot(seconds, [100 * a for a in accs], marker="o", label=label)
    ax.axhline(100 * target, color="grey", linestyle="--", label=f"{target:.0%} target")
    ax.set(xlabel="training seconds (cumulative, evaluation excluded)", ylabel="test accuracy after the epoch (%)")
    ax.set_title("Time to 99 %, same device", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_ablation(rows: dict[str, list[float]], title: str = "Fast recipe, one ingredient removed") -> Figure:
    """Every seed's test accuracy per variant (dots) and their mean (bar), one row per variant.

    `rows` maps a variant to its accuracies in [0, 1]. The axis starts a little below the
    lowest accuracy above 90 %; a seed below that (a run that failed to learn) is drawn at
    the left edge as a red ◀ with its value written beside it, and NaN (a diverged run) as ×.
    """
    names = list(rows)
    finite = [100 * a for accs in rows.values() for a in accs if math.isfinite(a)]
    usable = [a for a in finite if a >= 90] or finite or [99.0]
    left, right = min(usable) - 0.3, max(max(usable) + 0.15, 99.1)
    fig, ax = plt.subplots(figsize=(8.5, 0.6 * len(names) + 1.7), layout="constrained")
    for y, name in enumerate(names):
        accs = [100 * a for a in rows[name] if math.isfinite(a)]
        if accs:
            mean = statistics.fmean(accs)
            ax.barh(y, max(mean, left) - left, left=left, color="tab:blue", alpha=0.3)
            shown = [a for a in accs if a >= left]
            ax.scatter(shown, [y] * len(shown), color="tab:blue", s=18, zorder=3)
            for k, low in enumerate(a for a in accs if a < left):
                ax.scatter([left], [y], marker="<", color="tab:red", s=40, zorder=3, clip_on=False)
                ax.annotate(f"{low:.1f} %", (left, y), xytext=(8, -10 - 9 * k), textcoords="offset points", fontsize=7)
            if mean < left:
                ax.annotate(f"mean {mean:.1f} %", (left, y), xytext=(8, 5), textcoords="offset points", fontsize=7)
        failed = len(rows[name]) - len(accs)
        if failed:
            ax.scatter([left] * failed, [y] * failed, marker="x", color="tab:red", zorder=3, clip_on=False)
    ax.axvline(99, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(names)), names)
    ax.tick_params(axis="y", pad=12)  # room for the ◀ markers at the left edge
    ax.invert_yaxis()
    ax.set_xlim(left, right)
    ax.set_xlabel("test accuracy (%): dots are seeds, bars their mean; dashed line 99 %; ◀ below the axis")
    ax.set_title(title, fontsize=10)
    return fig


# --- notebooks 05-06 (issue 13): training curves with validation, kernels, feature maps, activation scales


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
    ax.set(yscale="log", ylabel="standard deviation")
    ax.set_title("activation scale at initialisation, one batch of digits", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
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
        ax.set(xticks=[], yticks=[])
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
    for top, bottom, original, digit, guesses, label in zip(*axes, originals, digits, predictions, labels, strict=True):
        top.imshow(original, cmap=None if original.ndim == 3 else "gray", vmin=0, vmax=255)
        digit = digit.numpy() if hasattr(digit, "numpy") else digit  # a tensor or an array
        bottom.imshow(digit if digit is not None else np.zeros((28, 28)), cmap="gray", vmin=0, vmax=255)
        head = f"true {label}\n" if label is not None else ""
        if guesses:
            wrong = label is not None and guesses[0][0] != label
            top.set_title(f"{head}guess {guesses[0][0]}", fontsize=10, color="red" if wrong else "black")
            text = "\n".join(f"{d}: {p:.2f}" for d, p in guesses)
        else:
            top.set_title(f"{head}refused", fontsize=10, color="darkorange")
            text = "no digit read"
        bottom.text(0.5, -0.06, text, transform=bottom.transAxes, ha="center", va="top", fontsize=8)
        for ax in (top, bottom):
            ax.set(xticks=[], yticks=[])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94) if title else (0, 0, 1, 1))
    return fig
