"""``mnist-lab bench``: the tutorials' training loop against mnist_lab's, timed in one run.

For each model, on one device:

(a) the model's own tutorial loop, written as that tutorial writes it
    (`mnist_lab.speed.reference`: its per-sample transform, its ``DataLoader``, its
    ``.item()`` calls), with the recipe's batch size;
(b) `mnist_lab.train.fit` with the same model, batch size, optimiser, learning
    rate and seed, plus the speed switches measured to pay on this machine
    (`mnist_lab.speed.Speed.auto`; the decision table is part of the report).

Both train from the same initial weights for ``max(1 + repeats, accuracy_epochs)``
epochs, in turn: (b)'s epoch 1, (a)'s epoch 1, (b)'s epoch 2, ..., so a slow spell
of the machine costs both alike. (a) runs in a fresh process of its own, as the
tutorial's script would: its own random numbers, and the C library's default handling
of freed memory, which `fit` changes on the CPU (`mnist_lab.devices.keep_freed_memory`). Epoch 1 is
the warm-up and is not timed; the next `repeats` epochs are timed and their MEDIAN
is reported; test accuracy is read after epoch `accuracy_epochs`. So a speed-up that
cost accuracy would show in the same table.

The steps between (a) and (b), one change at a time, are `LADDER`; notebook 08 times
each of them with `make_trainer` and `time_epochs`, the same code this module runs.
``--fast`` runs the fast recipe (`mnist_lab.speed.fast_recipe.train_fast`) over several seeds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import multiprocessing
import os
import platform
import resource
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..config import TrainConfig
from ..data import mnist_loader, tensor_loader
from ..devices import bf16_supported, get_device, set_seed, synchronize
from ..errors import (
    InvalidParameterError,
    MnistLabError,
    check_choice,
    check_int,
    check_optional_limit,
    check_positive_int,
)
from ..files import atomic_write, write_json
from ..models import FastCNN, build_model, model_class
from ..train import EpochRunner, evaluate, fit, loss_function, make_optimizer, schedule
from . import GRAPH_OPTIMIZERS, Speed, is_convolutional
from .decide import Decision, decide, device_name
from .fast_recipe import FastRun, summarize_fast, train_fast
from .reference import reference_for, reference_loader, tutorial_epoch

DEFAULT_MODELS = ("deep_mlp", "mlp", "bp_network", "convnet", "keras_cnn")
GPU_MODELS = ("alexnet",)  # added to the default list on a GPU: too slow for a CPU
REPORT_NAME = "bench"  # bench.json and bench.md (fast.json and fast.md with --fast)


# --- the ladder: from the tutorials' loop to mnist_lab's, one change at a time ------


@dataclass(frozen=True)
class Step:
    """One rung of the ladder: where batches come from and what the loop does.

    ``loader``: ``"tutorial"`` (the model's own tutorial loop, `mnist_lab.speed.reference`),
    ``"tensors"`` (normalised once, DataLoader over a TensorDataset) or ``"device"``
    (`DeviceLoader`: uint8 on the device, shuffled and normalised there).
    ``sync_every_step``: the tutorials' ``.item()`` per step, else mnist_lab's
    epoch (sums kept on the device, read once). The rest are `fit`'s speed switches;
    ``fused`` asks for the optimiser's fused kernels (``foreach`` on MPS, which has none).
    """

    name: str
    title: str
    loader: str = "tutorial"
    sync_every_step: bool = False
    fused: bool = False
    channels_last: bool = False
    amp: bool = False
    compile: bool | str = False
    cuda_graph: bool = False
    pool_first: bool = False  # only the tuned rung: where Speed.auto measured it to pay
    threads: int | None = None  # likewise

    @property
    def speed(self) -> Speed:
        """This rung's speed switches, as `fit` takes them."""
        return Speed(
            amp=self.amp, channels_last=self.channels_last, compile=self.compile, cuda_graph=self.cuda_graph,
            pool_first=self.pool_first, threads=self.threads,
        )  # fmt: skip


# (name, title, change): each rung is the one before it plus one change.
CHANGES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "tutorial",
        "its tutorial's own loop: per-sample transform, DataLoader, .item() as the tutorial calls it",
        {"loader": "tutorial", "sync_every_step": True},
    ),
    ("tensors", "normalise once: DataLoader over a TensorDataset", {"loader": "tensors"}),
    ("device", "whole split on the device: DeviceLoader batches", {"loader": "device"}),
    ("no_sync", "no .item() per step: sums stay on the device (mnist_lab's epoch)", {"sync_every_step": False}),
    ("fused", "fused optimiser: one kernel updates every parameter", {"fused": True}),
    ("channels_last", "channels-last feature maps", {"channels_last": True}),
    ("bf16", "bfloat16 autocast", {"amp": True}),
    ("compile", "torch.compile", {"compile": True}),
    (
        "cuda_graph",
        "the whole step recorded as one CUDA graph (instead of compile)",
        {"compile": False, "cuda_graph": True},
    ),
)


def _cumulative(changes: Iterable[tuple[str, str, dict[str, Any]]]) -> tuple[Step, ...]:
    steps, fields = [], {}
    for name, title, change in changes:
        fields.update(change)
        steps.append(Step(name, title, **fields))
    return tuple(steps)


LADDER: tuple[Step, ...] = _cumulative(CHANGES)
LADDER_NAMES = tuple(step.name for step in LADDER) + ("tuned",)


def ladder_for(model: nn.Module, device: torch.device | str) -> tuple[tuple[Step, ...], dict[str, str]]:
    """The rungs of `LADDER` that apply to `model` on `device`, and why the others do not.

    Channels-last needs feature maps (a CNN); bfloat16 needs hardware that computes
    in it; compilation is tried on CPUs and CUDA GPUs (on CUDA in the mode
    `Speed.auto` picks). Each rung is the previous applicable one plus its change.
    """
    device = torch.device(device)
    reasons = {}
    if not is_convolutional(model):
        reasons["channels_last"] = "no feature maps in this model: nothing to reorder"
    if not bf16_supported(device):
        reasons["bf16"] = f"this {device.type} has no native bfloat16: autocast would emulate it, slower"
    if device.type not in ("cpu", "cuda"):
        reasons["compile"] = f"torch.compile is not tried on {device.type} here"
    if device.type != "cuda":
        reasons["cuda_graph"] = "CUDA graphs need a CUDA GPU"
    elif getattr(model, "RECIPE", TrainConfig()).optimizer not in GRAPH_OPTIMIZERS:
        reasons["cuda_graph"] = "this recipe's optimiser has no fused kernel to record"
    mode = "reduce-overhead" if device.type == "cuda" else True  # CUDA: compile records CUDA graphs too
    changes = [
        (name, title, {"compile": mode} if name == "compile" else change)
        for name, title, change in CHANGES
        if name not in reasons
    ]
    return _cumulative(changes), reasons


def tuned_step(model: nn.Module, device: torch.device | str, config: TrainConfig | None = None) -> Step:
    """The step `fit` takes when given `Speed.auto`: only the switches measured to pay on `device`."""
    speed = Speed.auto(model, device, config)
    switches = {k: v for k, v in asdict(speed).items() if k != "fused"}  # the optimiser is make_step_optimizer's
    return Step(
        "tuned",
        "only what was measured to pay here: " + speed.describe(),
        loader="device",
        fused=speed.fused or torch.device(device).type == "cuda",  # CUDA: what make_optimizer does by itself
        **switches,
    )


@dataclass
class Trainer:
    """A model, its optimiser and its batches, trained one epoch at a time by one `Step`."""

    step: Step
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: Any
    loss_fn: Callable[..., Tensor]
    device: torch.device
    samples: int
    run_epoch: EpochRunner

    def epoch(self) -> tuple[float, float, bool]:
        """Train one epoch; returns mean loss, accuracy, diverged (the device has finished)."""
        result = self.run_epoch(lambda batches: batches)
        synchronize(self.device)
        return result

    def timed_epoch(self) -> float:
        """Seconds for one epoch, from a quiet device to a quiet device."""
        synchronize(self.device)
        start = time.perf_counter()
        self.epoch()
        return time.perf_counter() - start


def make_step_optimizer(model: nn.Module, config: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    """The recipe's optimiser, either as PyTorch builds it by default or with its fused kernels.

    PyTorch's default is a loop over the parameter tensors on a CPU and the
    ``foreach`` kernels on a GPU. ``fused`` asks for one kernel over all of them
    (SGD and Adam on CPU and CUDA); where there is none (MPS), ``foreach`` is the next best.
    """
    device = next(model.parameters()).device
    if not fused or (config.optimizer in GRAPH_OPTIMIZERS and device.type in ("cpu", "cuda")):
        return make_optimizer(model, config, fused=fused)
    optimizer = make_optimizer(model, config, fused=False)
    for group in optimizer.param_groups:
        group["foreach"] = True
    return optimizer


def make_trainer(
    step: Step | str,
    model_name: str,
    device: torch.device | str = "cpu",
    config: TrainConfig | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
) -> Trainer:
    """A `Trainer` for `model_name` that trains the way `step` (a `LADDER` name or ``"tuned"``) says.

    The model starts from ``config.seed`` (default: the model's recipe, seed 0), so
    every step trains the same network from the same weights; `batch_size` and
    `limit` override the recipe's.
    """
    device = get_device(device)
    config = config or model_class(model_name).RECIPE
    if batch_size is not None:
        config = config.replace(batch_size=batch_size)
    if limit is not None:
        config = config.replace(limit=limit)
    set_seed(config.seed)
    model = build_model(model_name, seed=config.seed).to(device)
    if isinstance(step, str):
        check_choice("step", step, LADDER_NAMES)
        step = tuned_step(model, device, config) if step == "tuned" else next(s for s in LADDER if s.name == step)
    if step.loader == "tutorial":
        loader = reference_loader(model_name, config, "train", data_dir, limit)
    elif step.loader == "tensors":
        loader = tensor_loader(config, data_dir, limit)
    else:
        loader = mnist_loader("train", config, device, data_dir)
    samples = len(loader.dataset) if isinstance(loader, DataLoader) else loader.num_samples
    loss_fn = loss_function(model)
    optimizer = make_step_optimizer(model, config, fused=step.fused)
    if step.sync_every_step:  # the tutorials' epoch; the speed switches come after these rungs
        sync_every = reference_for(model_name).sync_every if step.loader == "tutorial" else 1

        def run_epoch(wrap):
            return tutorial_epoch(model, wrap(loader), optimizer, loss_fn, device, sync_every)

    else:
        run_epoch = step.speed.prepare(model, optimizer, loss_fn, loader)
    return Trainer(step, model, optimizer, loader, loss_fn, device, samples, run_epoch)


@dataclass
class Timing:
    """Seconds per epoch of one way of training: every timed epoch, and their median."""

    step: str
    title: str
    seconds: list[float]
    samples: int
    warmup_seconds: float

    @property
    def median(self) -> float:
        """Median seconds per timed epoch."""
        return statistics.median(self.seconds)

    @property
    def per_epoch(self) -> float:
        """Median seconds scaled to a full 60,000-image epoch (equal to `median` without a limit)."""
        return self.median * 60_000 / self.samples

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "step": self.step,
            "title": self.title,
            "seconds": self.seconds,
            "median": self.median,
            "samples": self.samples,
            "seconds_per_60k": self.per_epoch,
            "warmup_seconds": self.warmup_seconds,
        }


def time_epochs(trainer: Trainer, repeats: int = 3, warmup: int = 1) -> Timing:
    """Train `warmup` untimed epochs, then `repeats` timed ones; the `Timing` holds them all."""
    check_positive_int("repeats", repeats)
    check_int("warmup", warmup, minimum=0)
    start = time.perf_counter()
    for _ in range(warmup):
        trainer.epoch()
    warm = time.perf_counter() - start
    seconds = [trainer.timed_epoch() for _ in range(repeats)]
    return Timing(trainer.step.name, trainer.step.title, seconds, trainer.samples, warm)


# --- the benchmark: (a) against (b) for each model ----------------------------------


@dataclass
class BenchSettings:
    """What `run_bench` measures; validated on creation (bad input fails before any training)."""

    models: tuple[str, ...]
    device: str = "auto"
    repeats: int = 3
    batch_size: int | None = None  # None: each model's recipe (its tutorial's batch size)
    limit: int | None = None
    test_limit: int | None = None
    accuracy_epochs: int = 4
    seed: int = 0
    data_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise InvalidParameterError("No model to benchmark: name at least one with --models.")
        for name in self.models:
            model_class(name)
        check_positive_int("repeats", self.repeats)
        if self.batch_size is not None:
            check_positive_int("batch_size", self.batch_size)
        check_optional_limit("limit", self.limit)
        check_optional_limit("test_limit", self.test_limit)
        check_positive_int("accuracy_epochs", self.accuracy_epochs)
        check_int("seed", self.seed, minimum=0)
        biggest = self.batch_size or max(model_class(name).RECIPE.batch_size for name in self.models)
        if self.limit is not None and self.limit < biggest:
            raise InvalidParameterError(
                f"limit={self.limit} is smaller than one batch ({biggest}): an epoch would have "
                "one partial batch only. Use a limit of at least the batch size."
            )

    @property
    def epochs(self) -> int:
        """Epochs each side trains: one warm-up, `repeats` timed, and enough for the accuracy."""
        return max(1 + self.repeats, self.accuracy_epochs)


@dataclass
class Side:
    """One side of the comparison for one model: timings, accuracy, peak memory."""

    seconds: list[float]
    test_acc: float
    peak_memory_mb: float
    memory_kind: str
    diverged: bool = False

    @property
    def median(self) -> float:
        """Median seconds of the timed epochs (NaN if training diverged before any was timed)."""
        return statistics.median(self.seconds) if self.seconds else math.nan


@dataclass
class ModelResult:
    """(a) and (b) for one model, and the ratio of their median epoch times."""

    model: str
    config: dict[str, Any]
    speed: dict[str, Any]
    tutorial: Side
    mnist_lab: Side
    samples: int
    reference: str = ""  # the tutorial loop of side (a), in words
    decision: dict[str, Any] = field(default_factory=dict)  # Speed.auto's measurements (decide's Decision)

    @property
    def ratio(self) -> float:
        """How many times faster mnist_lab's epoch is: tutorial median / mnist_lab median."""
        return self.tutorial.median / self.mnist_lab.median

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        side = lambda s: {  # noqa: E731
            "seconds": s.seconds,
            "median_seconds": s.median,
            "test_acc": s.test_acc,
            "peak_memory_mb": s.peak_memory_mb,
            "memory": s.memory_kind,
            "diverged": s.diverged,
        }
        return {
            "model": self.model,
            "config": self.config,
            "reference": self.reference,
            "speed": self.speed,
            "decision": self.decision,
            "samples_per_epoch": self.samples,
            "tutorial": side(self.tutorial),
            "mnist_lab": side(self.mnist_lab),
            "ratio": self.ratio,
        }


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[float, str]:
    """Peak memory in MiB and what it measures: CUDA memory since the last reset, else the process's max RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "GPU memory allocated (peak)"
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    mib = kib / 2**20 if sys.platform == "darwin" else kib / 1024
    return mib, "process max RSS so far"


class _TutorialSide:
    """Side (a), trained one epoch at a time between `fit`'s epochs (see `_both_sides`)."""

    def __init__(self, name: str, config: TrainConfig, settings: BenchSettings, device, test) -> None:
        self.trainer = make_trainer("tutorial", name, device, config, data_dir=settings.data_dir, limit=settings.limit)
        self.settings, self.test = settings, test
        self.epochs, self.seconds, self.acc, self.diverged, self.peak = 0, [], float("nan"), False, 0.0

    def epoch(self) -> None:
        """Train its next epoch (nothing once it has diverged or trained them all); time it if it is a timed one."""
        if self.diverged or self.epochs == self.settings.epochs:
            return
        self.epochs += 1
        _reset_peak(self.trainer.device)
        synchronize(self.trainer.device)
        start = time.perf_counter()
        *_, self.diverged = self.trainer.epoch()  # ends with the device quiet
        seconds = time.perf_counter() - start
        self.peak = max(self.peak, peak_memory(self.trainer.device)[0])
        if 1 < self.epochs <= 1 + self.settings.repeats:
            self.seconds.append(seconds)
        if self.epochs == self.settings.accuracy_epochs and not self.diverged:
            self.acc = evaluate(self.trainer.model, self.test)[1]

    def side(self) -> Side:
        return Side(self.seconds, self.acc, self.peak, _memory_kind(self.trainer.device), self.diverged)


def _tutorial_process(conn, name: str, config: TrainConfig, settings: BenchSettings, device: str, threads: int) -> None:
    """Side (a) in a process of its own: answers "ready", then each "epoch", then "finish" with its `Side`.

    Anything it raises comes back to the bench as ``("error", exception)``. Ctrl-C is the
    bench's to handle: it ends this process.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        torch.set_num_threads(threads)
        device = torch.device(device)
        test = mnist_loader("test", config.replace(test_limit=settings.test_limit), device, settings.data_dir)
        side = _TutorialSide(name, config, settings, device, test)
        conn.send(("ready", None))
        while conn.recv() == "epoch":
            side.epoch()
            conn.send(("ok", None))
        while side.epochs < settings.epochs and not side.diverged:  # "finish": fit stopped early (diverged)
            side.epoch()
        conn.send(("ok", side.side()))
    except (EOFError, BrokenPipeError):  # the bench has gone (closed its end): nothing left to answer
        return
    except Exception as exc:  # noqa: BLE001 -- every failure goes back to the bench, which raises it
        with contextlib.suppress(BrokenPipeError):
            conn.send(("error", exc))


class _TutorialProcess:
    """The parent's end of `_tutorial_process`: started and ready on creation, ended by `finish` or `close`."""

    def __init__(self, name: str, config: TrainConfig, settings: BenchSettings, device: torch.device) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: the C library's defaults
        self.conn, child = context.Pipe()
        args = (child, name, config, settings, str(device), torch.get_num_threads())
        self.process = context.Process(target=_tutorial_process, args=args)  # not a daemon: T3's loop has workers
        self.process.start()
        child.close()
        self._receive()

    def _receive(self) -> Any:
        try:
            status, value = self.conn.recv()
        except EOFError:
            self.process.join()
            raise MnistLabError(
                f"The tutorial's loop stopped without a word (its process ended with status {self.process.exitcode}; "
                "its own message, if any, is above). A script that runs the bench must start it under "
                '`if __name__ == "__main__":`, since that process imports the script again; where memory is '
                "short, bench fewer --models at a time."
            ) from None
        if status == "error":
            raise value
        return value

    def epoch(self) -> None:
        self.conn.send("epoch")
        self._receive()

    def finish(self) -> Side:
        """Its remaining epochs (where `fit` stopped early), then its `Side`."""
        self.conn.send("finish")
        return self._receive()

    def close(self) -> None:
        """End the process: it has returned after `finish`; else (Ctrl-C, an error) it is stopped."""
        self.conn.close()
        self.process.join(timeout=1)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


def _memory_kind(device: torch.device) -> str:
    where = "(a) in a process of its own, (b) in the bench's"
    if device.type == "cuda":
        return f"GPU memory allocated, peak during each side's epochs, {where}"
    return f"max RSS of each side's process so far, read after each of its epochs, {where}"


def _both_sides(name: str, config: TrainConfig, settings: BenchSettings, device, test, speed) -> tuple[Side, Side]:
    """(a) the tutorial's loop and (b) `fit`, interleaved epoch by epoch: (b) epoch 1, (a) epoch 1, (b) epoch 2, ...

    A slow spell of the machine (this project's 2-core CPU drifts by up to a third
    within an hour) then costs both sides alike. (a) runs in a fresh process of its
    own, started before (b) begins and idle while (b) trains, so each side trains as it
    would alone: with its own random numbers, and (a) with the C library's default
    memory handling, as in the tutorial's own script (`fit` changes it on the CPU:
    `mnist_lab.devices.keep_freed_memory`). `fit`'s per-epoch log hook runs (a)'s epoch,
    outside `fit`'s clock.
    """
    tutorial = _TutorialProcess(name, config, settings, device)
    try:
        set_seed(config.seed)
        model = build_model(name, seed=config.seed)
        peak = [0.0]

        def after_fit_epoch(_line: str) -> None:
            peak[0] = max(peak[0], peak_memory(device)[0])
            tutorial.epoch()
            _reset_peak(device)

        _reset_peak(device)
        history = fit(
            model, config, test_loader=test, device=device, data_dir=settings.data_dir, progress=False,
            log=after_fit_epoch, speed=speed,
        )  # fmt: skip
        if history.stopped == "interrupted":
            raise KeyboardInterrupt
        peak[0] = max(peak[0], peak_memory(device)[0])
        tutorial_side = tutorial.finish()
    finally:
        tutorial.close()
    k = settings.accuracy_epochs
    acc = history.test_acc[k - 1] if history.epochs >= k else float("nan")
    seconds = history.seconds[1 : 1 + settings.repeats]
    lab = Side(seconds, acc, peak[0], _memory_kind(device), history.stopped == "diverged")
    return tutorial_side, lab


def bench_model(name: str, settings: BenchSettings, log: Callable[[str], None] | None = print) -> ModelResult:
    """Time (a) the model's tutorial loop and (b) `fit` for one model; see the module docstring."""
    device = get_device(settings.device)
    cls = model_class(name)
    config = cls.RECIPE.replace(
        epochs=settings.epochs,
        batch_size=settings.batch_size or cls.RECIPE.batch_size,
        seed=settings.seed,
        limit=settings.limit,
    )
    test = mnist_loader("test", config.replace(test_limit=settings.test_limit), device, settings.data_dir)
    decision = decide(build_model(name, seed=config.seed), device, config, settings.data_dir)
    speed = Speed(**decision.chosen)
    reference = reference_for(name)
    if log:
        log(f"{name}: speed switches {decision.describe()}\n{decision.table()}")
        log(f"{name}: {reference.tutorial}'s loop ({reference.loop}), batch {config.batch_size}, {settings.epochs} ep.")
        log(f"{name}: mnist_lab fit ({speed.describe()}), {settings.epochs} epochs, interleaved with it ...")
    tutorial, lab = _both_sides(name, config, settings, device, test, speed)
    samples = min(settings.limit or 60_000, 60_000)
    result = ModelResult(
        name, config.to_dict(), asdict(speed), tutorial, lab, samples,
        f"{reference.tutorial}: {reference.loop}", {**decision.to_dict(), "cached": decision.cached},
    )  # fmt: skip
    if log:
        log(_result_line(result))
    return result


def _result_line(r: ModelResult) -> str:
    return (
        f"{r.model:<11} tutorial {r.tutorial.median:7.2f} s/epoch  mnist_lab {r.mnist_lab.median:7.2f} s/epoch  "
        f"x{r.ratio:5.1f}  test acc {r.tutorial.test_acc:.2%} vs {r.mnist_lab.test_acc:.2%}"
    )


def environment(device: torch.device) -> dict[str, Any]:
    """Where a benchmark ran: device name, torch version, threads, CPU, load."""
    return {
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_average": _load_average(),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not on every platform
        return None


def run_bench(settings: BenchSettings, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Benchmark every model of `settings`; returns the report (plain data, see `write_report`)."""
    device = get_device(settings.device)
    env = environment(device)
    if log:
        log(f"torch {env['torch']} on {env['device']}; load average {env['load_average']}")
    results = [bench_model(name, settings, log) for name in settings.models]
    return {
        "kind": "bench",
        **env,
        "load_average_end": _load_average(),
        "settings": {
            "models": list(settings.models),
            "batch_size": settings.batch_size,  # None: each recipe's own
            "repeats": settings.repeats,
            "warmup_epochs": 1,
            "interleaved": True,  # the two sides' epochs take turns
            "accuracy_epochs": settings.accuracy_epochs,
            "epochs_trained": settings.epochs,
            "limit": settings.limit,
            "test_limit": settings.test_limit,
            "seed": settings.seed,
        },
        "results": [r.to_dict() for r in results],
    }


def bench_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table with its command, device and date, then each model's decision table."""
    s = report["settings"]
    batch = f"batch {s['batch_size']}" if s["batch_size"] else "each recipe's batch size"
    lines = [
        f"Command: `{report.get('command', 'mnist-lab bench')}`  ",
        f"Device: {report['device']}; torch {report['torch']}, {report['threads']} threads; "
        f"{report['date']}; load average at start {report['load_average']}.  ",
        f"{batch.capitalize()}, seed {s['seed']}, {s['epochs_trained']} epochs per side, the two sides' epochs "
        "taking turns, the tutorial's loop in a process of its own: epoch 1 warm-up, "
        f"median of the next {s['repeats']} timed; test accuracy after epoch {s['accuracy_epochs']}"
        + (f"; first {s['limit']:,} training images only" if s["limit"] else "")
        + (f"; first {s['test_limit']:,} test images" if s["test_limit"] else "")
        + ".",
        "",
        "| model | batch | its tutorial's loop (s/epoch) | mnist_lab `fit` (s/epoch) | speed-up | switches on | "
        "test acc, tutorial's loop | test acc, mnist_lab | peak memory MiB (a / b) |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in report["results"]:
        a, b = r["tutorial"], r["mnist_lab"]
        lines.append(
            f"| `{r['model']}` | {r['config']['batch_size']} | {a['median_seconds']:.2f} | {b['median_seconds']:.2f} | "
            f"**{r['ratio']:.1f}×** | {Speed(**r['speed']).describe()} | {a['test_acc']:.2%} | {b['test_acc']:.2%} | "
            f"{a['peak_memory_mb']:.0f} / {b['peak_memory_mb']:.0f} |"
        )
    if report["results"]:
        lines += ["", f"Memory: {report['results'][0]['tutorial']['memory']}.", "", "Reference loops (side a):", ""]
        lines += [f"- `{r['model']}`: {r['reference']}" for r in report["results"]]
        lines += ["", "Speed switches chosen by `Speed.auto` (`mnist_lab.speed.decide`), per model:", "", "```"]
        for r in report["results"]:
            decision = Decision.from_dict(r["decision"])
            lines += [f"{r['model']}: {decision.describe()}", decision.table(), ""]
        lines[-1] = "```"
    return "\n".join(lines) + "\n"


# --- the fast recipe over seeds -----------------------------------------------------


def run_fast(
    seeds: Sequence[int],
    device: str | torch.device = "auto",
    config: TrainConfig | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    speed: Speed | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train the fast recipe once per seed (`speed`: default `Speed.auto`); returns the runs and their summary."""
    device = get_device(device)
    config = config or FastCNN.RECIPE
    env = environment(device)
    if log:
        log(f"torch {env['torch']} on {env['device']}; fast recipe: {_recipe_line(config)}")
    runs: list[FastRun] = []
    for seed in seeds:
        run = train_fast(seed, device=device, config=config, data_dir=data_dir, speed=speed)
        runs.append(run)
        if log:
            log(
                f"seed {seed:2d}: test acc {run.test_acc:.2%}  training {run.train_seconds:.3f} s "
                f"({run.steps} steps, {run.samples:,} images)  evaluation {run.eval_seconds:.3f} s"
            )
    summary = summarize_fast(runs)
    if log and runs:
        log(
            f"mean test acc {summary['mean_test_acc']:.2%} over {len(runs)} seed(s) "
            f"(min {summary['min_test_acc']:.2%}); mean training time {summary['mean_train_seconds']:.3f} s"
        )
    return {
        "kind": "fast",
        **env,
        "recipe": config.to_dict(),
        "timer": "time.perf_counter after the epoch's read of its loss (fit's history.seconds)",
        "settings": runs[0].settings if runs else {},
        "runs": [r.to_dict() for r in runs],
        "summary": summary,
    }


def _recipe_line(config: TrainConfig) -> str:
    return (
        "FastCNN (conv, max-pool, BatchNorm, ReLU blocks), "
        f"SGD lr {config.lr:g} Nesterov momentum {config.momentum:g}, weight decay {config.weight_decay:g}, "
        f"batch {config.batch_size}, {config.epochs} epochs, {config.schedule} schedule, "
        f"label smoothing {config.label_smoothing:g}"
    )


def fast_markdown(report: dict[str, Any]) -> str:
    """The fast-recipe report as Markdown: per-seed accuracies and times, then the summary."""
    s = report["summary"]
    recipe = TrainConfig(**report["recipe"])
    lines = [
        f"Command: `{report.get('command', 'mnist-lab bench --fast')}`  ",
        f"Device: {report['device']}; torch {report['torch']}; {report['date']}; timer: {report['timer']}; "
        f"switches: {Speed(**report['settings']).describe()}.  ",
        f"Recipe: {_recipe_line(recipe)}.",
        "",
        "| seed | test accuracy | training s | evaluation s | steps |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['seed']} | {r['test_acc']:.2%} | {r['train_seconds']:.3f} | {r['eval_seconds']:.3f} | {r['steps']} |"
        )
    if s.get("seeds"):
        lines.append(
            f"| **mean** | **{s['mean_test_acc']:.2%}** | **{s['mean_train_seconds']:.3f}** | "
            f"{s['mean_eval_seconds']:.3f} | |"
        )
    return "\n".join(lines) + "\n"


# --- writing, and the command line -------------------------------------------------


def write_report(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``<kind>.json`` and ``<kind>.md`` into `out_dir`, atomically; returns both paths."""
    out = Path(out_dir)
    stem = "fast" if report["kind"] == "fast" else REPORT_NAME
    json_path = write_json(out / f"{stem}.json", report)
    md_path = out / f"{stem}.md"
    text = fast_markdown(report) if report["kind"] == "fast" else bench_markdown(report)
    with atomic_write(md_path, "w") as handle:
        handle.write(text)
    return json_path, md_path


def model_list(values: list[str] | None) -> tuple[str, ...] | None:
    """Model names from ``--models`` (space- or comma-separated), in order, without repeats."""
    if not values:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return tuple(dict.fromkeys(names))


def default_models(device: torch.device) -> tuple[str, ...]:
    """The models benchmarked when none are named: the five tutorial rows, plus AlexNet on a GPU."""
    return DEFAULT_MODELS + (GPU_MODELS if device.type == "cuda" else ())


# --- notebook 08: time to a target accuracy, and where a tutorial epoch goes -------------


@dataclass
class Race:
    """One recipe trained epoch by epoch until its test accuracy reaches `target` (or `max_epochs`).

    Per finished epoch: ``steps`` and ``seconds`` (training only, cumulative) and
    ``test_acc``. ``reached_epoch`` is the first epoch at or above the target (None if none).
    """

    label: str
    target: float
    device: str
    settings: dict[str, Any]
    steps: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)

    @property
    def reached_epoch(self) -> int | None:
        """The first epoch (1-based) whose test accuracy is at least the target, or None."""
        return next((i + 1 for i, acc in enumerate(self.test_acc) if acc >= self.target), None)

    def reached(self) -> tuple[int, float] | None:
        """``(steps, training seconds)`` up to the end of `reached_epoch`, or None."""
        epoch = self.reached_epoch
        return None if epoch is None else (self.steps[epoch - 1], self.seconds[epoch - 1])

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {**asdict(self), "reached_epoch": self.reached_epoch}


def time_to_accuracy(
    label: str,
    model: nn.Module,
    config: TrainConfig,
    *,
    target: float = 0.99,
    max_epochs: int | None = None,
    device: torch.device | str = "auto",
    data_dir: str | os.PathLike[str] | None = None,
) -> Race:
    """Train `model` with `config` and the speed switches that pay on `device`; stop once a test reaches `target`.

    This is `fit`'s loop (same loaders, optimiser, schedule, `Speed.auto`) with an
    evaluation after every epoch and a stop at the target; the clock counts only the
    training epochs (from a quiet device to a quiet device), as `fit` does. At most
    `max_epochs` (default ``config.epochs``; a scheduled recipe's schedule always spans
    ``config.epochs``, so stopping early changes nothing before the stop).
    """
    device = get_device(device)
    set_seed(config.seed)
    model = model.to(device)
    speed = Speed.auto(model, device, config, data_dir)
    train, test = mnist_loader("train", config, device, data_dir), mnist_loader("test", config, device, data_dir)
    optimizer, loss_fn = make_optimizer(model, config), loss_function(model, config.label_smoothing)
    run_epoch = speed.prepare(model, optimizer, loss_fn, train, schedule(config, train))
    race = Race(label, target, str(device), asdict(speed))
    for epoch in range(1, (max_epochs or config.epochs) + 1):
        synchronize(device)
        start = time.perf_counter()
        _, _, diverged = run_epoch(lambda batches: batches)  # ends with the epoch's one read of the loss
        synchronize(device)
        elapsed = time.perf_counter() - start
        if diverged:
            break
        race.steps.append(epoch * len(train))
        race.seconds.append((race.seconds[-1] if race.seconds else 0.0) + elapsed)
        race.test_acc.append(evaluate(model, test)[1])
        if race.test_acc[-1] >= target:
            break
    return race


def time_breakdown(tutorial_epoch: float, data_only: float, fastest_epoch: float) -> dict[str, float]:
    """Split one epoch of the tutorials' loop into three measured parts, in seconds.

    ``data pipeline``: a pass of the tutorials' DataLoader with no model at all.
    ``training step``: an epoch of the fastest loop measured for the model (the
    arithmetic, plus what overhead that loop still has). ``the rest``: what is left of
    the tutorials' epoch — per-batch copies, a ``.item()`` wait every step, Python
    between the two. The parts add up to `tutorial_epoch`; the rest can come out
    slightly negative when the machine's noise is larger than it.
    """
    return {
        "data pipeline (PIL + DataLoader, no model)": data_only,
        "training step (fastest loop measured)": fastest_epoch,
        "the rest (per-step copies, syncs, Python)": tutorial_epoch - data_only - fastest_epoch,
    }


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what C++ libraries write to file descriptor 2 to /dev/null, for the duration.

    On a machine without CUDA, torch.profiler's tracing library (Kineto) prints
    start/stop lines and a "gpuGetDeviceCount failed" error straight to the process's
    stderr; they say nothing about the profile. Python's own ``sys.stderr`` is flushed
    first, so nothing written before is lost.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
