"""mnist_lab.evaluation (notebook 07's analysis) and the plot functions of notebooks 07-08."""

from __future__ import annotations

import itertools
import math

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from mnist_lab.evaluation import calibration, mcnemar, most_confused, per_sample_loss, top_losses
from mnist_lab.plots import (
    plot_ablation,
    plot_accuracy_vs_time,
    plot_hardest_digits,
    plot_ladder,
    plot_leaderboard,
    plot_lr_schedule,
    plot_reliability,
    plot_time_breakdown,
    plot_top_losses,
)


def random_predictions(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = F.softmax(3 * torch.randn(n, 10, generator=g), dim=1)
    labels = torch.randint(0, 10, (n,), generator=g)
    return probs, labels


def test_per_sample_loss_is_the_cross_entropy_of_each_digit():
    probs, labels = random_predictions()
    want = F.nll_loss(torch.log(probs), labels, reduction="none")
    torch.testing.assert_close(per_sample_loss(probs, labels), want)
    # a probability that underflowed to 0 gives a large finite loss, not inf
    zero = torch.zeros(1, 10)
    zero[0, 3] = 1.0
    assert math.isfinite(per_sample_loss(zero, torch.tensor([0])).item())


def test_top_losses_are_the_wrong_digits_sorted_by_loss():
    probs, labels = random_predictions()
    picked = top_losses(probs, labels, k=10)
    loss = per_sample_loss(probs, labels)
    wrong = probs.argmax(dim=1) != labels
    assert len(picked) == 10 and wrong[picked].all()
    assert (loss[picked][:-1] >= loss[picked][1:]).all()  # largest first
    assert loss[picked][-1] >= loss[wrong].sort(descending=True).values[9]  # no larger wrong loss left out
    assert len(top_losses(probs, labels, k=10_000)) == int(wrong.sum())  # never more than the mistakes
    everything = top_losses(probs, labels, k=5, wrong_only=False)
    assert loss[everything[0]] == loss.max()


def test_most_confused_lists_off_diagonal_cells_most_frequent_first():
    m = torch.zeros(10, 10, dtype=torch.long)
    m.fill_diagonal_(100)
    m[4, 9], m[9, 4], m[7, 2], m[3, 5] = 6, 3, 6, 1
    assert most_confused(m) == [(4, 9, 6), (7, 2, 6), (9, 4, 3), (3, 5, 1)]
    assert most_confused(m, min_count=2) == [(4, 9, 6), (7, 2, 6), (9, 4, 3)]


def test_calibration_by_hand():
    # four digits: confidences 0.95 (right), 0.95 (wrong), 0.55 (right), 1.0 (right)
    probs = torch.zeros(4, 10)
    probs[0, 1], probs[0, 2] = 0.95, 0.05
    probs[1, 3], probs[1, 4] = 0.95, 0.05
    probs[2, 5], probs[2, 6] = 0.55, 0.45
    probs[3, 7] = 1.0
    labels = torch.tensor([1, 0, 5, 7])
    cal = calibration(probs, labels, bins=10)
    assert sum(cal.count) == 4 and cal.count[9] == 3 and cal.count[5] == 1  # 1.0 lands in the last bin
    assert cal.accuracy[9] == pytest.approx(2 / 3) and cal.confidence[9] == pytest.approx((0.95 + 0.95 + 1) / 3)
    assert math.isnan(cal.accuracy[0])  # an empty bin
    want = 3 / 4 * abs(2 / 3 - 2.9 / 3) + 1 / 4 * abs(1 - 0.55)
    assert cal.ece == pytest.approx(want)
    assert cal.edges[0] == 0 and cal.edges[-1] == 1 and len(cal.edges) == 11


def test_a_calibrated_model_has_a_small_ece():
    # labels drawn from the model's own probabilities: calibrated by construction
    g = torch.Generator().manual_seed(1)
    probs = F.softmax(2 * torch.randn(20_000, 10, generator=g), dim=1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)
    assert calibration(probs, labels).ece < 0.02
    overconfident = F.softmax(4 * torch.log(probs), dim=1)  # sharpened: same argmax, more confident
    assert calibration(overconfident, labels).ece > 0.1


def test_calibration_refuses_zero_bins():
    probs, labels = random_predictions()
    with pytest.raises(ValueError, match="bins"):
        calibration(probs, labels, bins=0)


def test_mcnemar_counts_disagreements_and_gives_the_exact_binomial_p():
    a = torch.tensor([True] * 5 + [False] * 0 + [True] * 90)
    b = torch.tensor([False] * 5 + [True] * 90)
    test = mcnemar(a, b)
    assert (test.only_a, test.only_b) == (5, 0)
    assert test.p_value == pytest.approx(2 / 2**5)  # both tails of Binomial(5, 1/2) at 0 and 5
    assert mcnemar(b, a).p_value == test.p_value and mcnemar(b, a).only_b == 5
    assert mcnemar(a, a) == type(test)(0, 0, 1.0)
    scipy_stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        x, y = torch.rand(300, generator=g) < 0.9, torch.rand(300, generator=g) < 0.8
        got = mcnemar(x, y)
        want = scipy_stats.binomtest(got.only_a, got.only_a + got.only_b, 0.5).pvalue
        assert got.p_value == pytest.approx(want, rel=1e-9)


def test_mcnemar_refuses_different_digits():
    with pytest.raises(ValueError, match="same digits"):
        mcnemar(torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool))


# --- figures ---------------------------------------------------------------------------


def text_boxes(fig):
    """Window extents of every visible, non-empty title and text in the figure's axes."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for ax in fig.axes:
        for text in [ax.title, *ax.texts]:
            if text.get_visible() and text.get_text():
                boxes.append(text.get_window_extent(renderer))
    return boxes


def assert_no_overlap(fig):
    boxes = text_boxes(fig)
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), f"text boxes overlap: {a} and {b}"
    renderer = fig.canvas.get_renderer()
    images = [im.get_window_extent(renderer) for ax in fig.axes for im in ax.images]
    for box, image in itertools.product(boxes, images):
        assert not box.overlaps(image), "a title overlaps a digit"


def test_top_losses_figure_has_no_overlapping_text():
    probs, labels = random_predictions(n=300)
    images = torch.randint(0, 255, (300, 28, 28), dtype=torch.uint8)
    picked = top_losses(probs, labels, k=24)
    fig = plot_top_losses(images, labels, probs, picked, ncols=6)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 24
    first = picked[0].item()
    assert titles[0].startswith(f"{labels[first].item()} → {probs[first].argmax().item()}")
    assert_no_overlap(fig)
    plt.close(fig)


def test_hardest_digits_show_label_and_guess():
    images = torch.zeros(12, 28, 28)
    labels, predicted, counts = list(range(10)) + [1, 2], [9] * 12, [8] * 12
    fig = plot_hardest_digits(images, labels, predicted, counts, total_models=8)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == "label 0 → 9\n8/8 wrong" and len(titles) == 12
    assert_no_overlap(fig)
    plt.close(fig)


def test_reliability_and_other_figures_build():
    probs, labels = random_predictions()
    fig = plot_reliability(calibration(probs, labels))
    assert "ECE" in fig.axes[0].get_title() and fig.axes[0].get_legend() is not None
    plt.close(fig)
    fig = plot_time_breakdown(
        {"mlp": {"data": 10.0, "step": 1.5, "rest": -0.2}, "cnn": {"data": 9, "step": 8, "rest": 2}}
    )
    bars = [p for p in fig.axes[0].patches if p.get_width() < 0]
    assert not bars  # a negative part is drawn as 0
    assert fig.axes[0].get_legend() is not None
    assert_no_overlap(fig)
    plt.close(fig)
    fig = plot_ablation({"full": [0.992, 0.993, 0.991], "without bn": [float("nan"), 0.98, 0.985]})
    assert len(fig.axes[0].collections) == 3  # two rows of seed dots and one row of ×
    plt.close(fig)
    for fig in (
        plot_leaderboard({"a": (1000, 0.9), "b": (10**6, 0.99)}),
        plot_ladder({"mlp": [("tutorial", 12.0), ("device", 1.6), ("tuned", 1.5)]}),
        plot_lr_schedule([0.1, 0.2, 0.3, 0.2, 0.1], warmup=2),
        plot_accuracy_vs_time({"fast": ([10.0, 20.0], [0.98, 0.992])}),
    ):
        assert fig.axes
        plt.close(fig)
    fig = plot_lr_schedule([0.1, 0.2, 0.3, 0.2, 0.1], warmup=2)
    assert "warm-up" in " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    plt.close(fig)


def test_ablation_figure_keeps_a_failed_seed_visible_without_squashing_the_rest():
    fig = plot_ablation({"full": [0.993, 0.9925, 0.992], "without bn": [0.9893, 0.9579, 0.1135]})
    ax = fig.axes[0]
    assert ax.get_xlim()[0] > 90  # the axis is not stretched down to 11 %
    notes = [t.get_text() for t in ax.texts]
    assert "11.3 %" in notes and any(n.startswith("mean 68.") for n in notes)
    assert_no_overlap(fig)
    plt.close(fig)
