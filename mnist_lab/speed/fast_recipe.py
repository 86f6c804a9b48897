"""The fast recipe: `FastCNN` with its recipe (``FastCNN.RECIPE``), trained by `fit` and timed.

`FastCNN` and its recipe live in `mnist_lab.models` like every other model: three
[conv 3×3, BatchNorm, ReLU, max-pool] blocks and one linear layer, trained with a
large batch, a one-cycle learning rate, Nesterov momentum and label smoothing.
`train_fast` is a warm-up, then `fit` with the speed switches that pay on the
device, then the training time `fit` recorded.
"""

from __future__ import annotations

import copy
import itertools
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..config import TrainConfig
from ..data import mnist_loaders
from ..devices import get_device, set_seed
from ..errors import check_int
from ..models import FastCNN
from ..train import evaluate, fit, loss_function, make_optimizer
from . import Speed

WARMUP_STEPS = 5  # untimed training steps before the timed run (compilation, caches, first allocations)


@dataclass
class FastRun:
    """One timed run of the fast recipe.

    ``train_seconds`` is the sum of `fit`'s per-epoch training times (see
    `train_fast`); ``eval_seconds`` is one evaluation of the test set, timed on its own.
    """

    seed: int
    test_acc: float
    test_loss: float
    train_seconds: float
    eval_seconds: float
    epochs: int
    steps: int
    samples: int
    device: str
    settings: dict[str, Any] = field(default_factory=dict)
    diverged: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


def train_fast(
    seed: int = 0,
    *,
    device: str | torch.device = "auto",
    config: TrainConfig | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    speed: Speed | None = None,
    warmup_steps: int = WARMUP_STEPS,
) -> FastRun:
    """Train `FastCNN` with its recipe (or `config`) from `seed` through `fit`; time it; evaluate it.

    The training time is what `fit` records for each epoch: every optimiser step
    (forward, backward, update, the learning rate of the step, drawing and
    normalising each batch from the uint8 images already on the device, the
    per-epoch permutation) up to the epoch's one read of its loss, which waits for
    the device. Not counted: loading MNIST and copying it to the device, building the
    model, the per-epoch evaluation, and the warm-up (`warmup_steps` untimed steps and
    one evaluation, after which the initial weights, BatchNorm statistics and
    shuffling state are restored, so the timed run starts where an untimed one would).
    On CUDA the CUDA graph is recorded before the first epoch's clock starts.
    `speed` defaults to `Speed.auto` for the device.
    """
    check_int("warmup_steps", warmup_steps, minimum=0)
    config = (config or FastCNN.RECIPE).replace(seed=seed)
    device = get_device(device)
    set_seed(seed)
    model = FastCNN().to(device)  # weights drawn from `seed`
    speed = speed or Speed.auto(model, device)
    train, test = mnist_loaders(config, device, data_dir)
    if warmup_steps:
        warm_up(model, speed, train, test, config, warmup_steps)
    history = fit(
        model, config, train_loader=train, test_loader=test, device=device, speed=speed, log=None, progress=False
    )
    start = time.perf_counter()
    test_loss, test_acc = evaluate(model, test)  # its .item() waits for the device
    eval_seconds = time.perf_counter() - start
    diverged = history.stopped == "diverged"
    return FastRun(
        seed=seed,
        test_acc=float("nan") if diverged else test_acc,
        test_loss=float("nan") if diverged else test_loss,
        train_seconds=sum(history.seconds),
        eval_seconds=eval_seconds,
        epochs=config.epochs,
        steps=config.epochs * len(train),
        samples=config.epochs * train.num_samples,
        device=str(device),
        settings=asdict(speed),
        diverged=diverged,
    )


def warm_up(model, speed: Speed, train, test, config: TrainConfig, steps: int) -> None:
    """A few untimed steps with a throwaway optimiser, then put weights and shuffling back as they were."""
    weights = copy.deepcopy(model.state_dict())  # parameters and BatchNorm statistics
    shuffling = train.state_dict()
    optimizer = make_optimizer(model, config)
    run_epoch = Speed(amp=speed.amp, channels_last=speed.channels_last, compile=speed.compile).prepare(
        model, optimizer, loss_function(model, config.label_smoothing), train
    )
    run_epoch(lambda batches: itertools.islice(iter(batches), steps))
    evaluate(model, test)
    model.load_state_dict(weights)  # copies in place: compiled graphs keep their buffers
    train.load_state_dict(shuffling)


def summarize_fast(runs: list[FastRun]) -> dict[str, Any]:
    """Mean and spread of accuracy and time over seeds, as plain data."""
    if not runs:
        return {"seeds": 0}
    accs = [r.test_acc for r in runs]
    secs = [r.train_seconds for r in runs]
    return {
        "seeds": len(runs),
        "mean_test_acc": statistics.fmean(accs),
        "min_test_acc": min(accs),
        "max_test_acc": max(accs),
        "std_test_acc": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "mean_train_seconds": statistics.fmean(secs),
        "median_train_seconds": statistics.median(secs),
        "max_train_seconds": max(secs),
        "mean_eval_seconds": statistics.fmean(r.eval_seconds for r in runs),
    }
