"""The fast recipe: `FastCNN` with its recipe (``FastCNN.RECIPE``), trained by `fit` and timed.

`FastCNN` and its recipe live in `mnist_lab.models` like every other model: three
[conv 3×3, max-pool, BatchNorm, ReLU] blocks and one linear layer, trained with a
large batch, a one-cycle learning rate, Nesterov momentum and label smoothing.
`train_fast` is a warm-up, then `fit` with the speed switches that pay on the
device, then the training time `fit` recorded. `run_ablation` trains the recipe with
one ingredient removed at a time (`ABLATIONS`), over several seeds (notebook 08).
"""

from __future__ import annotations

import copy
import itertools
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..data import mnist_loaders
from ..devices import get_device, set_seed
from ..errors import DivergenceWarning, check_int, unknown_choice
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
    make_model: Callable[[], nn.Module] = FastCNN,
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
    `speed` defaults to `Speed.auto` for the device; `make_model` builds the network
    (`FastCNN`; an ablation passes a variant).
    """
    check_int("warmup_steps", warmup_steps, minimum=0)
    config = (config or FastCNN.RECIPE).replace(seed=seed)
    device = get_device(device)
    set_seed(seed)
    model = make_model().to(device)  # weights drawn from `seed`
    speed = speed or Speed.auto(model, device, config, data_dir)
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
    warm = Speed(amp=speed.amp, channels_last=speed.channels_last, compile=speed.compile, threads=speed.threads)
    run_epoch = warm.prepare(model, optimizer, loss_function(model, config.label_smoothing), train)
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


# --- the ablation: the recipe with one ingredient removed at a time ---------------------


def fast_cnn_without_batchnorm() -> nn.Module:
    """`FastCNN` with every BatchNorm replaced by nothing, and the convolutions given back their biases.

    The convolutions have no bias in `FastCNN` because BatchNorm's shift replaces it;
    without BatchNorm each gets a bias, initialised to 0. Everything else is unchanged.
    """
    model = FastCNN()
    for conv in (m for m in model.features if isinstance(m, nn.Conv2d)):
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
    model.features = nn.Sequential(*(nn.Identity() if isinstance(m, nn.BatchNorm2d) else m for m in model.features))
    return model


def fast_cnn_pool_last() -> nn.Module:
    """`FastCNN` with its blocks in the usual order: conv → BatchNorm → ReLU → max-pool."""
    return FastCNN(pool_first=False)


@dataclass(frozen=True)
class Ablation:
    """One ingredient of the fast recipe removed: a description, the recipe changes, the model."""

    name: str
    description: str
    changes: dict[str, Any] = field(default_factory=dict)
    make_model: Callable[[], nn.Module] = FastCNN


ABLATIONS: dict[str, Ablation] = {
    a.name: a
    for a in (
        Ablation("batchnorm", "no BatchNorm (convolutions with biases)", make_model=fast_cnn_without_batchnorm),
        Ablation("pool_first", "pool after BatchNorm and ReLU (the usual order)", make_model=fast_cnn_pool_last),
        Ablation("one_cycle", "constant learning rate 0.3 instead of one-cycle", {"schedule": "constant"}),
        Ablation("label_smoothing", "no label smoothing", {"label_smoothing": 0.0}),
        Ablation("large_batch", "batch 64 instead of 256 (4× the steps, same 2 epochs)", {"batch_size": 64}),
        Ablation("nesterov", "plain momentum instead of Nesterov", {"nesterov": False}),
        Ablation("weight_decay", "no weight decay", {"weight_decay": 0.0}),
    )
}


@dataclass
class AblationResult:
    """The runs of one variant: ``"full recipe"`` or an ablation's name, with its description."""

    name: str
    description: str
    runs: list[FastRun]

    def summary(self) -> dict[str, Any]:
        """`summarize_fast` of the runs that did not diverge, plus how many diverged."""
        finished = [r for r in self.runs if not r.diverged]
        return {**summarize_fast(finished), "diverged": len(self.runs) - len(finished)}


def run_ablation(
    names: Sequence[str],
    seeds: Sequence[int],
    *,
    config: TrainConfig | None = None,
    device: str | torch.device = "auto",
    data_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = print,
) -> list[AblationResult]:
    """Train the recipe (`config`, default ``FastCNN.RECIPE``) with each ablation in `names` removed, per seed.

    Each run is `train_fast` with the ablation's recipe changes and model; the speed
    switches are `Speed.auto`'s for that model. The full recipe is not rerun here: pass
    its runs to `ablation_table` as the baseline.
    """
    for name in names:
        if name not in ABLATIONS:
            raise unknown_choice("ablation", name, ABLATIONS)
    base = config or FastCNN.RECIPE
    results = []
    for name in names:
        ablation = ABLATIONS[name]
        variant = base.replace(**ablation.changes)
        runs = []
        for seed in seeds:
            with warnings.catch_warnings():  # a diverged run is a result here, reported in the log line
                warnings.simplefilter("ignore", DivergenceWarning)
                run = train_fast(seed, device=device, config=variant, data_dir=data_dir, make_model=ablation.make_model)
            runs.append(run)
            if log is not None:
                outcome = "diverged" if run.diverged else f"{run.test_acc:.2%}"
                log(f"without {name:<16} seed {seed}: {outcome}  {run.train_seconds:.1f} s ({run.steps} steps)")
        results.append(AblationResult(name, ablation.description, runs))
    return results


def ablation_table(full: list[FastRun], results: list[AblationResult]) -> str:
    """A markdown table: mean test accuracy, min-max, change against the full recipe, training time."""
    rows = [AblationResult("full recipe", "nothing removed", full), *results]
    base = summarize_fast(full)["mean_test_acc"]
    lines = [
        "| removed | what changes | seeds | mean test accuracy | min–max | vs full recipe | training s (mean) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        s = row.summary()
        seeds = f"{s['seeds']}" + (f" (+{s['diverged']} diverged)" if s["diverged"] else "")
        if not s["seeds"]:
            lines.append(f"| {row.name} | {row.description} | {seeds} | diverged | — | — | — |")
            continue
        delta = "—" if row.name == "full recipe" else f"{100 * (s['mean_test_acc'] - base):+.2f} pts"
        lines.append(
            f"| {row.name} | {row.description} | {seeds} | {s['mean_test_acc']:.2%} | "
            f"{s['min_test_acc']:.2%}–{s['max_test_acc']:.2%} | {delta} | {s['mean_train_seconds']:.1f} |"
        )
    return "\n".join(lines)
