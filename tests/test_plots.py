"""The figures of notebooks 01-04 (mnist_lab.plots, section "notebooks 01-04")."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mnist_lab.history import History  # noqa: E402
from mnist_lab.plots import plot_bp_graph, plot_labelled_digits, plot_training, plot_weight_images  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def three_epochs() -> History:
    history = History("mlp", "cpu", {}, 10)
    for epoch, (tl, ta, vl, va) in enumerate([(0.5, 0.85, 0.3, 0.9), (0.3, 0.92, 0.25, 0.93), (0.2, 0.95, 0.24, 0.94)]):
        history.append(epoch + 1, tl, ta, vl, va, 1.0)
    return history


def test_training_figure_overlays_train_and_test_with_accuracy_in_percent():
    fig = plot_training(three_epochs())
    ax_loss, ax_acc = fig.axes
    assert [line.get_label() for line in ax_loss.lines] == ["train", "test"]
    assert [line.get_label() for line in ax_acc.lines] == ["train", "test"]
    assert list(ax_loss.lines[1].get_ydata()) == [0.3, 0.25, 0.24]
    assert np.allclose(ax_acc.lines[0].get_ydata(), [85, 92, 95])  # %, not fractions
    assert np.allclose(ax_acc.lines[1].get_ydata(), [90, 93, 94])
    assert ax_acc.get_ylabel() == "accuracy (%)" and ax_loss.get_xlabel() == "epoch"
    fig.canvas.draw()
    ticks = [t for t in ax_loss.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)  # no 2.5-epoch ticks


def test_weight_images_share_one_colour_scale_centred_at_zero():
    weights = torch.linspace(-2, 1, 10 * 784).reshape(10, 784)
    fig = plot_weight_images(weights, "templates")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 10
    assert all(image.get_clim() == (-2.0, 2.0) for image in images)
    assert [ax.get_title() for ax in fig.axes if ax.images][3] == "class 3"


def test_labelled_digits_put_each_label_under_its_digit_in_black_on_white():
    images = torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8)
    labels = list(range(10)) * 2
    fig = plot_labelled_digits(images, labels, nrows=2, ncols=10, title="T4")
    assert [ax.get_xlabel() for ax in fig.axes] == [str(v) for v in labels]
    assert fig.axes[0].images[0].get_cmap().name == "binary"


def test_bp_graph_names_every_gradient_of_the_backward_pass():
    fig = plot_bp_graph()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for name in ("dz1", "da1", "dz2", "da2", "dz3", "dW1 = a0ᵀdz1", "db3 = Σ dz3", "log_softmax", "W1 (784,128)"):
        assert name in texts, name


def test_training_figure_of_one_epoch_has_the_single_tick_1():
    history = History("mlp", "cpu", {}, 10)
    history.append(1, 0.5, 0.8, 0.4, 0.85, 1.0)
    fig = plot_training(history)
    fig.canvas.draw()
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert [t for t in ax.get_xticks() if low <= t <= high] == [1.0]
