"""Training fast: the device settings that pay, and the `fast` recipe (99 % in seconds).

Two things live here.

`speed_settings(model, device)` says which of `fit`'s speed switches to turn on for a
model on a device. Each one is on only where a measurement showed that it pays:

- CPU (measured with ``mnist-lab bench`` on a 2-core AMD EPYC, torch 2.14):
  ``channels_last`` for CNNs, about 20 % faster per epoch (PyTorch's NCHW max-pool
  is several times slower than its channels-last one). ``torch.compile``, fused
  and foreach optimisers gave nothing there, and bfloat16 has no hardware support
  on that CPU, so they stay off.
- CUDA (measured with ``mnist-lab bench`` on one H100, torch 2.11): the whole
  training step recorded as one CUDA graph (``cuda_graph``, `mnist_lab.graphs`)
  for every recipe whose optimiser has fused kernels (SGD, Adam). With
  ``compile="reduce-overhead"`` instead, which records only the model's forward and
  backward, the fast recipe took 1.16 s and an MLP epoch 1.5 s: the optimiser,
  the batch gather and the bookkeeping were still launched from Python one kernel at
  a time. bfloat16 autocast and ``channels_last`` for CNNs (tensor cores want both).
  Adadelta (no fused kernel) keeps ``compile="reduce-overhead"`` for small models and
  plain ``compile=True`` for large ones. `fit` adds fused optimisers and cuDNN
  autotuning on CUDA by itself.
- Anything else (Apple MPS): nothing measured, so nothing on.

`FastCNN` with `FAST_RECIPE` is the fast recipe: three [conv 3×3, BatchNorm, ReLU,
max-pool] blocks and one linear layer, trained with a large batch, a one-cycle
learning rate, Nesterov momentum and label smoothing. `train_fast` trains it on
device-resident data and times it (see its docstring for exactly what is counted).
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .config import TrainConfig
from .data import IMAGE_SHAPE, NUM_CLASSES, DeviceLoader
from .graphs import GraphedEpochs
from .models import MnistModel, flat_features
from .train import (
    _compile_mode,
    _compiled,
    _train_epoch,
    evaluate,
    get_device,
    loss_function,
    lr_schedule,
    make_optimizer,
    make_scheduler,
    mnist_loaders,
    set_seed,
)
from .validate import check_bool, check_int

GRAPH_OPTIMIZER_NAMES = ("sgd", "adam")  # the optimisers `GraphedEpochs` can record (fused kernels)

SMALL_MODEL = 5_000_000  # parameters; below this a CUDA step is dominated by kernel launches
WARMUP_STEPS = 5  # untimed training steps before the clock starts (compilation, CUDA graphs, caches)


def is_convolutional(model: nn.Module) -> bool:
    """Whether `model` has a 2-d convolution (the layers that channels-last and bf16 speed up)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def speed_settings(model: nn.Module, device: torch.device | str) -> dict[str, Any]:
    """`fit`'s speed switches that pay for `model` on `device`: ``amp``, ``channels_last``, ``compile``, ``cuda_graph``.

    See the module docstring for what was measured where.
    """
    kind = torch.device(device).type
    conv = is_convolutional(model)
    settings = {"amp": False, "channels_last": False, "compile": False, "cuda_graph": False}
    if kind == "cpu":
        settings["channels_last"] = conv
    elif kind == "cuda":
        settings.update(amp=conv, channels_last=conv)
        recipe = getattr(model, "RECIPE", None)
        if recipe is None or recipe.optimizer in GRAPH_OPTIMIZER_NAMES:
            settings["cuda_graph"] = True
        else:  # Adadelta has no fused kernel to record: let torch.compile cut the launches instead
            small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL
            settings["compile"] = "reduce-overhead" if small else True
    return settings


# Batch 256 and 2 epochs = 468 optimiser steps (the last partial batch of each epoch
# is dropped, so every step has the same shape: one compiled graph, one CUDA graph).
# Tried on the CPU, seeds 0-3: batch 512 for 3 epochs (351 steps, lr 0.4) averaged
# 99.14 %; this recipe does better with fewer images seen (see the README).
FAST_RECIPE = TrainConfig(
    epochs=2,
    lr=0.3,
    optimizer="sgd",
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    batch_size=256,
    test_batch_size=1000,
    normalize="standard",
    label_smoothing=0.1,
    schedule="onecycle",
)


class FastCNN(MnistModel):
    """The fast recipe's model: three [conv 3×3, BatchNorm, ReLU, max-pool 2] blocks, then linear.

    Not from a tutorial. Widths 16, 32, 64; 28×28 → 14×14 → 7×7 → 3×3, so the
    classifier sees 64·3·3 = 576 features. 29,178 parameters. BatchNorm is what lets
    it take a large learning rate and learn in a few hundred steps.
    """

    NAME = "fast_cnn"
    SOURCE = "mnist_lab fast recipe (notebook 08)"
    PARAMETERS = 29_178
    EXPECTED_ACCURACY = 0.99
    RECIPE = FAST_RECIPE

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = (IMAGE_SHAPE[0], *widths)
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),  # BatchNorm brings the bias
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),  # halves H and W (28 → 14 → 7 → 3)
            ]
        self.features = nn.Sequential(*layers, nn.Flatten())  # (B, 576)
        self.classifier = nn.Linear(flat_features(self.features), NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))  # (B, 10) logits


@dataclass
class FastRun:
    """One timed run of the fast recipe.

    ``train_seconds`` counts the optimiser steps only (see `train_fast`);
    ``eval_seconds`` is the evaluation of the test set, timed on its own.
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
    timer: str
    settings: dict[str, Any] = field(default_factory=dict)
    diverged: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


class _Clock:
    """Wall-clock seconds of device work: CUDA events on CUDA, perf_counter after a sync elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.name = "CUDA events" if device.type == "cuda" else "time.perf_counter"

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def start(self) -> None:
        self._sync()  # nothing queued before the start is counted
        if self.device.type == "cuda":
            self._begin = torch.cuda.Event(enable_timing=True)
            self._begin.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self.device.type == "cuda":
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            return self._begin.elapsed_time(end) / 1000.0
        self._sync()
        return time.perf_counter() - self._t0


def fast_loaders(
    config: TrainConfig, device: torch.device, data_dir: str | os.PathLike[str] | None = None
) -> tuple[DeviceLoader, DeviceLoader]:
    """Device-resident loaders for the fast recipe: equal-sized training batches, one test pass."""
    return mnist_loaders(config, device, data_dir, drop_last=True)


def train_fast(
    seed: int = 0,
    *,
    device: str | torch.device = "auto",
    config: TrainConfig | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
    compile: bool | str | None = None,
    cuda_graph: bool | None = None,
    warmup_steps: int = WARMUP_STEPS,
) -> FastRun:
    """Train `FastCNN` with `FAST_RECIPE` (or `config`) from `seed`; time it; evaluate it.

    What the training time counts: every optimiser step of every epoch (forward,
    backward, update, the learning-rate schedule, drawing and normalising each batch
    from the uint8 images already on the device, the per-epoch permutation, and the
    two syncs per epoch `fit`'s loop makes). What it does not count: loading MNIST
    and copying it to the device, building the model and optimiser, and the
    warm-up: `warmup_steps` untimed steps plus one untimed evaluation, which trigger
    torch.compile and CUDA-graph recording, after which the initial weights, the
    BatchNorm statistics and the shuffling state are restored, so the timed run
    starts from exactly the state an untimed one would. Evaluation of the test set
    is timed separately. On CUDA the clock is a pair of CUDA events; elsewhere
    ``time.perf_counter`` after a device sync. Unset switches come from
    `speed_settings` for the device.
    """
    check_int("seed", seed, minimum=0)
    check_int("warmup_steps", warmup_steps, minimum=0)
    config = (config or FAST_RECIPE).replace(seed=seed)
    device = get_device(device)
    set_seed(seed)
    model = FastCNN()  # weights drawn from `seed`
    settings = speed_settings(model, device)
    for key, value in (
        ("amp", amp),
        ("channels_last", channels_last),
        ("compile", compile),
        ("cuda_graph", cuda_graph),
    ):
        if value is not None:
            settings[key] = value
    if compile not in (None, False) and cuda_graph is None:
        settings["cuda_graph"] = False  # an explicit compile mode replaces the recorded step
    check_bool("amp", settings["amp"])
    check_bool("channels_last", settings["channels_last"])
    check_bool("cuda_graph", settings["cuda_graph"])
    mode = _compile_mode(settings["compile"])
    model.to(device)
    if settings["channels_last"]:
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train, test = fast_loaders(config, device, data_dir)
    runner = _compiled(model, mode) if mode else model
    loss_fn = loss_function(model, config.label_smoothing)
    if warmup_steps:
        _warm_up(model, runner, train, test, config, loss_fn, device, settings["amp"], warmup_steps)
    optimizer = make_optimizer(model, config)
    scheduler = graphed = None
    if settings["cuda_graph"]:  # recording is its own warm-up, before the clock starts
        lrs = lr_schedule(config, len(train))
        graphed = GraphedEpochs(model, train, optimizer, loss_fn, settings["amp"], lrs)
    else:
        scheduler = make_scheduler(optimizer, config, len(train))
    clock = _Clock(device)
    clock.start()
    diverged = False
    for _ in range(config.epochs):
        if graphed is not None:
            _, _, diverged = graphed.epoch()
        else:
            _, _, diverged = _train_epoch(runner, train, optimizer, loss_fn, device, settings["amp"], scheduler)
        if diverged:
            break
    train_seconds = clock.stop()
    clock.start()
    test_loss, test_acc = evaluate(runner, test, device)
    eval_seconds = clock.stop()
    return FastRun(
        seed=seed,
        test_acc=math.nan if diverged else test_acc,
        test_loss=math.nan if diverged else test_loss,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        epochs=config.epochs,
        steps=config.epochs * len(train),
        samples=config.epochs * train.num_samples,
        device=str(device),
        timer=clock.name,
        settings={**settings, "compile": mode or False},
        diverged=diverged,
    )


def _warm_up(model, runner, train, test, config, loss_fn, device, amp: bool, steps: int) -> None:
    weights = copy.deepcopy(model.state_dict())  # parameters and BatchNorm statistics
    shuffling = train.state_dict()
    optimizer = make_optimizer(model, config)
    batches = itertools.islice(iter(train), steps)
    _train_epoch(runner, batches, optimizer, loss_fn, device, amp)
    evaluate(runner, test, device)
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
