"""The validation split: held out from the end of the training set, never trained on, reported per epoch."""

from __future__ import annotations

import pytest
import torch

import mnist_lab.data as data
from mnist_lab import TrainConfig, build_model, fit
from mnist_lab.data import mnist_loader, validation_split
from mnist_lab.errors import InvalidParameterError
from mnist_lab.history import History
from mnist_lab.train import evaluate

N_TRAIN, N_TEST = 600, 100


def _indexed_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n fake digits whose first two pixels spell their index (i // 256, i % 256); labels i % 10."""
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    index = torch.arange(n)
    images[:, 0, 0], images[:, 0, 1] = index // 256, index % 256
    images[:, 14, 10:18] = 255  # some ink, so the networks have something to look at
    return images, index % 10


def _index_of(batch: torch.Tensor) -> torch.Tensor:
    """Read the index back from normalised ``unit`` images (B, 1, 28, 28)."""
    pixels = (batch[:, 0, 0, :2] * 255).round().long()
    return pixels[:, 0] * 256 + pixels[:, 1]


@pytest.fixture()
def indexed_mnist(monkeypatch):
    fake = {"train": _indexed_images(N_TRAIN), "test": _indexed_images(N_TEST)}
    monkeypatch.setattr(data, "load_mnist", lambda split="train", data_dir=None, download=None: fake[split])
    return fake


def test_the_split_takes_the_last_images_and_shares_none():
    images, labels = _indexed_images(50)
    (train_x, train_y), (val_x, val_y) = validation_split(images, labels, 10)
    assert _index_of(train_x[:, None].float() / 255).tolist() == list(range(40))
    assert _index_of(val_x[:, None].float() / 255).tolist() == list(range(40, 50))
    assert len(train_y) == 40 and len(val_y) == 10


def test_no_validation_image_is_in_any_training_batch(indexed_mnist):
    config = TrainConfig(batch_size=32, normalize="unit", validation=150, limit=None)
    seen = torch.cat([_index_of(X) for X, _ in mnist_loader("train", config)])
    held_out = torch.cat([_index_of(X) for X, _ in mnist_loader("validation", config)])
    assert sorted(seen.tolist()) == list(range(N_TRAIN - 150))  # every training image once, shuffled
    assert held_out.tolist() == list(range(N_TRAIN - 150, N_TRAIN))
    assert not set(seen.tolist()) & set(held_out.tolist())


def test_fit_never_trains_on_validation_images_and_reports_them_every_epoch(indexed_mnist):
    model = build_model("mlp", seed=0)
    trained_on: list[int] = []

    def record(module, inputs):
        if module.training:  # evaluation runs in eval mode: only training batches are recorded
            trained_on.extend(_index_of(inputs[0]).tolist())

    model.register_forward_pre_hook(record)
    config = model.RECIPE.replace(epochs=2, batch_size=50, validation=100, test_limit=N_TEST)
    history = fit(model, config, device="cpu", progress=False, log=None)
    assert len(trained_on) == 2 * (N_TRAIN - 100)
    assert max(trained_on) < N_TRAIN - 100  # the last 100 were never in a training batch
    assert len(history.val_loss) == len(history.val_acc) == history.epochs == 2
    val_loss, val_acc = evaluate(model, mnist_loader("validation", config))
    assert history.val_loss[-1] == pytest.approx(val_loss)
    assert history.val_acc[-1] == pytest.approx(val_acc)
    assert "val loss" in history.line()
    assert history.best_val_epoch() in (1, 2)


def test_without_a_split_nothing_is_held_out(indexed_mnist):
    config = TrainConfig(batch_size=50, normalize="unit", test_limit=N_TEST)
    assert len(mnist_loader("train", config).labels) == N_TRAIN
    history = fit(build_model("mlp", seed=0), config.replace(epochs=1), device="cpu", progress=False, log=None)
    assert history.val_loss == [] and history.val_acc == []
    with pytest.raises(InvalidParameterError, match="no validation split"):
        mnist_loader("validation", config)
    with pytest.raises(InvalidParameterError, match="no validation split"):
        history.best_val_epoch()


def test_a_history_with_validation_survives_json_and_resume(indexed_mnist, tmp_path):
    config = build_model("mlp").RECIPE.replace(epochs=2, batch_size=50, validation=100, test_limit=N_TEST)

    def stop_after_epoch_one(line):  # a Ctrl-C right after epoch 1 is saved
        if line.startswith("epoch"):
            raise KeyboardInterrupt

    first = fit(build_model("mlp", seed=0), config, device="cpu", checkpoint=tmp_path / "m.pt", progress=False,
                log=stop_after_epoch_one)  # fmt: skip
    assert first.stopped == "interrupted" and len(first.val_acc) == 1
    resumed = fit(build_model("mlp", seed=0), config, device="cpu", checkpoint=tmp_path / "m.pt", resume=True,
                  progress=False, log=None)  # fmt: skip
    whole = fit(build_model("mlp", seed=0), config, device="cpu", progress=False, log=None)
    assert resumed.val_acc == whole.val_acc and resumed.val_loss == pytest.approx(whole.val_loss)
    assert History.from_dict(resumed.to_dict()).val_acc == resumed.val_acc


@pytest.mark.parametrize("bad", [-1, 1.5, "5000", True])
def test_impossible_validation_sizes_are_refused(bad):
    with pytest.raises(InvalidParameterError, match="validation"):
        TrainConfig(validation=bad)


def test_holding_out_everything_is_refused(indexed_mnist):
    with pytest.raises(InvalidParameterError, match="holds out every one"):
        mnist_loader("train", TrainConfig(validation=N_TRAIN))
