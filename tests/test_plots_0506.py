"""The figures of notebooks 05-06: what they must show (ranges, marked points, one panel per kernel)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mnist_lab.config import TrainConfig  # noqa: E402
from mnist_lab.history import History  # noqa: E402
from mnist_lab.plots import plot_feature_maps, plot_histories, plot_kernels, plot_t1_figure  # noqa: E402


def _history(name="alexnet", val=True) -> History:
    history = History(name, "cpu", TrainConfig(epochs=4).to_dict())
    for epoch, (test_loss, test_acc) in enumerate([(2.3, 0.11), (0.6, 0.81), (0.1, 0.96), (0.05, 0.99)], start=1):
        history.append(
            epoch, 1.0 / epoch, 0.9, test_loss, test_acc, 1.0, val=(0.3 - epoch * 0.01, 0.97) if val else None
        )
    return history


def test_t1_figure_keeps_t1s_ranges_and_marks_points_outside_them():
    fig = plot_t1_figure(_history())
    ax_loss, ax_log, ax_err, ax_acc = fig.axes
    assert ax_loss.get_ylim() == (0.0, 0.5) and ax_acc.get_ylim() == pytest.approx((0.9, 1.01))
    off_top = [line for line in ax_loss.lines if line.get_marker() == "^" and len(line.get_xdata())]
    assert [list(line.get_xdata()) for line in off_top] == [[1, 2]]  # test losses 2.3 and 0.6 are above 0.5
    assert list(off_top[0].get_ydata()) == [0.5, 0.5]
    off_bottom = [line for line in ax_acc.lines if line.get_marker() == "v" and len(line.get_xdata())]
    assert [list(line.get_xdata()) for line in off_bottom] == [[1, 2]]  # 11 % and 81 % are below 90 %
    assert ax_log.get_yscale() == "log" and ax_err.get_yscale() == "log"
    assert {t.get_text() for t in ax_err.get_legend().get_texts()} == {"train", "validation", "test"}


def test_histories_mark_the_epoch_the_validation_loss_chooses():
    history = _history()
    history.val_loss = [0.4, 0.2, 0.25, 0.3]  # lowest after epoch 2
    fig = plot_histories({"alexnet": history})
    stars = [line for line in fig.axes[1].lines if line.get_marker() == "*"]
    assert len(stars) == 1 and list(stars[0].get_xdata()) == [2] and list(stars[0].get_ydata()) == [0.2]


def test_histories_without_validation_have_two_panels():
    assert len(plot_histories({"mlp": _history("mlp", val=False)}).axes) == 2


def test_kernels_draw_every_kernel_once_per_row():
    rows = {"before": torch.randn(10, 5, 5), "after": torch.randn(32, 5, 5)}
    fig = plot_kernels(rows)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 10 + 32
    drawn = [np.asarray(ax.images[0].get_array()) for ax in images[:10]]
    assert all(np.allclose(d, k.numpy()) for d, k in zip(drawn, rows["before"]))


def test_feature_maps_share_one_symmetric_colour_scale_per_row():
    maps = torch.randn(10, 26, 26)
    fig = plot_feature_maps(torch.zeros(1, 28, 28), {"conv1": maps}, cols=4)
    shown = [ax.images[0] for ax in fig.axes if ax.images][1:]  # the first image is the digit
    limits = {image.get_clim() for image in shown}
    top = float(maps[:4].abs().max())
    assert len(shown) == 4 and limits == {(-top, top)}
    assert all(ax.title.get_fontsize() >= 8 for ax in fig.axes if ax.images)
