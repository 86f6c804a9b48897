"""Training and evaluation: `fit`, `evaluate`, `predict`, checkpoints, devices, seeds.

The training loop fits on one screen (`_train_epoch`). It keeps everything on the
device: batches come from a `DeviceLoader` (or any iterable of ``(X, y)``, moved in
one place, `_to_device`), and the summed loss and correct count stay device tensors
that are read once per epoch. The only other host-device synchronisation is a
divergence check every `CHECK_EVERY` steps.

Speed switches of `fit`, each off by default because each pays only on some devices
(``mnist-lab bench`` and notebook 08 measure them): ``channels_last`` (CNNs: about
20 % faster on a 2-core CPU), ``amp`` (bfloat16 autocast, for GPUs with bf16 units)
and ``compile`` (``True`` or a torch.compile mode such as ``"reduce-overhead"``,
which replays CUDA graphs). On CUDA, `fit` always uses the fused optimiser kernels
and lets cuDNN pick its fastest convolution algorithms.
"""

from __future__ import annotations

import functools
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ONECYCLE_WARMUP, TrainConfig
from .data import NUM_CLASSES, DeviceLoader, normalize
from .errors import CheckpointError, DeviceUnavailableError, InvalidParameterError, unknown_choice
from .graphs import GraphedEpochs
from .io import atomic_write, write_json
from .validate import check_bool, check_choice, check_int

CHECK_EVERY = 100  # steps between divergence checks (each one waits for the device)
CHECKPOINT_FORMAT = "mnist_lab.checkpoint"
CHECKPOINT_VERSION = 1
DEVICES = ("auto", "cpu", "cuda", "mps")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

Batches = Iterable[tuple[Tensor, Tensor]]


class DivergenceWarning(UserWarning):
    """Training stopped because the loss became NaN or infinite."""


# --- devices and seeds -------------------------------------------------------------


def available_devices() -> list[str]:
    """The devices this machine offers, best first (always ends with ``cpu``)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if torch.backends.mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def get_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"`` (CUDA, then Apple MPS, then CPU) or check a named device.

    Asking for ``cuda`` or ``mps`` where there is none raises `DeviceUnavailableError`:
    no silent fallback, so a timing or a result never comes from another device than
    the one named.
    """
    name = str(device)
    kind = name.split(":")[0]
    check_choice("device", kind, DEVICES)
    have = available_devices()
    if kind == "auto":
        return torch.device(have[0])
    if kind not in have:
        raise DeviceUnavailableError(
            f"Device {name!r} is not available on this machine (available: {', '.join(have)}). "
            "Use device='auto' to take the best one there is, or 'cpu'."
        )
    resolved = torch.device(name)
    if kind == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"Device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA "
            "device(s), numbered from 0."
        )
    return resolved


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's random generators (all devices)."""
    check_int("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- history ----------------------------------------------------------------------


@dataclass
class History:
    """What `fit` measured, one entry per finished epoch.

    Losses are means over samples; accuracies are fractions in [0, 1]; ``seconds``
    is the training time of each epoch (evaluation excluded). ``stopped`` is None
    for a run that finished, else ``"diverged"`` or ``"interrupted"``.
    """

    model: str
    device: str
    config: dict[str, Any]
    parameters: int = 0
    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    stopped: str | None = None

    @property
    def epochs(self) -> int:
        """How many epochs finished."""
        return len(self.epoch)

    @property
    def final_test_acc(self) -> float:
        """Test accuracy after the last finished epoch (NaN if none finished)."""
        return self.test_acc[-1] if self.test_acc else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: the fields plus ``epochs``."""
        return {**asdict(self), "epochs": self.epochs}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Inverse of `to_dict`."""
        return cls(**{k: v for k, v in data.items() if k != "epochs"})

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the history as JSON, atomically."""
        return write_json(path, self.to_dict())

    def line(self, i: int = -1) -> str:
        """One epoch as a printable line."""
        return (
            f"epoch {self.epoch[i]:3d}/{self.config['epochs']}  "
            f"train loss {self.train_loss[i]:.4f} acc {self.train_acc[i]:.2%}  "
            f"test loss {self.test_loss[i]:.4f} acc {self.test_acc[i]:.2%}  "
            f"{self.seconds[i]:.1f}s"
        )


# --- losses, optimisers, batches --------------------------------------------------


def loss_function(model: nn.Module, label_smoothing: float = 0.0) -> Callable[..., Tensor]:
    """NLL for models that output log-probabilities (``LOG_PROBS``), else cross-entropy on logits.

    With `label_smoothing` ``s > 0`` the target puts ``1 - s`` on the true class and
    spreads ``s`` evenly over all classes. That is cross-entropy with smoothing for
    both kinds of model, because log-softmax leaves log-probabilities unchanged.
    """
    if label_smoothing > 0:
        return functools.partial(F.cross_entropy, label_smoothing=label_smoothing)
    return F.nll_loss if getattr(model, "LOG_PROBS", False) else F.cross_entropy


OPTIMIZER_CLASSES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adadelta": torch.optim.Adadelta}


def _optimizer_settings(config: TrainConfig) -> dict[str, Any]:
    settings: dict[str, Any] = {"lr": config.lr, "weight_decay": config.weight_decay}
    if config.optimizer == "sgd":
        settings["momentum"] = config.momentum
        settings["nesterov"] = config.nesterov
    return settings


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``config.optimizer`` with its learning rate, momentum and decay.

    On CUDA, SGD and Adam use their fused kernels (one launch updates every parameter
    instead of several per tensor); the arithmetic is the same. Elsewhere PyTorch
    picks its default implementation: on a 2-core CPU neither the fused nor the
    foreach version was faster (``mnist-lab bench``, notebook 08).
    """
    if config.optimizer not in OPTIMIZER_CLASSES:
        raise unknown_choice("optimizer", config.optimizer, OPTIMIZER_CLASSES)
    settings = _optimizer_settings(config)
    params = list(model.parameters())
    if config.optimizer in ("sgd", "adam") and params and all(p.is_cuda for p in params):
        settings["fused"] = True
    return OPTIMIZER_CLASSES[config.optimizer](params, **settings)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int, start_step: int = 0
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """The per-batch learning-rate schedule of ``config.schedule`` (None for ``"constant"``).

    ``"onecycle"`` multiplies ``lr`` by a triangle over all ``epochs * steps_per_epoch``
    steps: up from ``1/warm-up`` to 1 over the first `ONECYCLE_WARMUP` of them, then
    down to 0 at the last step. `start_step` continues a resumed run where it stopped.
    """
    if config.schedule == "constant":
        return None
    check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    for group in optimizer.param_groups:
        group.pop("initial_lr", None)  # a resumed optimiser's old peak: the current lr is the peak
    total = config.epochs * steps_per_epoch
    # LambdaLR counts from 0 at creation; a resumed run starts at `start_step`.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _onecycle(step + start_step, total))


def lr_schedule(config: TrainConfig, steps_per_epoch: int) -> list[float] | None:
    """The learning rate of every step of the run, as `make_scheduler` sets it (None: constant)."""
    if config.schedule == "constant":
        return None
    check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    total = config.epochs * steps_per_epoch
    return [config.lr * _onecycle(step, total) for step in range(total)]


def _onecycle(step: int, total: int) -> float:
    """The one-cycle factor of `step` (0-based) of `total`: linear warm-up, then linear decay to 0."""
    warmup = max(1, round(ONECYCLE_WARMUP * total))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _to_device(X: Tensor, y: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    # The one place where batches move; a no-op for DeviceLoader batches.
    return X.to(device, non_blocking=True), y.to(device, non_blocking=True)


def mnist_loaders(
    config: TrainConfig, device: torch.device | str = "cpu", data_dir=None, drop_last: bool = False
) -> tuple[DeviceLoader, DeviceLoader]:
    """Device-resident train and test loaders for a recipe (batch, normalisation, limits, seed).

    `drop_last` drops the last, smaller training batch of each epoch.
    """
    common = {"normalize": config.normalize, "device": device}
    train = DeviceLoader.from_mnist(
        "train",
        data_dir,
        batch_size=config.batch_size,
        shuffle=config.shuffle,
        seed=config.seed,
        limit=config.limit,
        drop_last=drop_last,
        **common,
    )
    test = DeviceLoader.from_mnist(
        "test",
        data_dir,
        batch_size=min(config.test_batch_size, config.test_limit or 10_000),
        shuffle=False,
        limit=config.test_limit,
        **common,
    )
    return train, test


# --- evaluation and prediction ----------------------------------------------------


@torch.no_grad()
def evaluate(model: nn.Module, loader: Batches, device: torch.device | str | None = None) -> tuple[float, float]:
    """Mean loss and accuracy of `model` over every sample of `loader`, in eval mode.

    Both are summed over samples and divided by the sample count, so a smaller last
    batch weighs what its samples weigh.
    """
    device = _model_device(model) if device is None else torch.device(device)
    model.eval()
    loss_fn = loss_function(model)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    count = 0
    for X, y in loader:
        X, y = _to_device(X, y, device)
        out = model(X).float()
        loss_sum += loss_fn(out, y, reduction="sum")
        correct += (out.argmax(dim=1) == y).sum()
        count += len(y)
    return loss_sum.item() / count, correct.item() / count


@torch.no_grad()
def collect_predictions(
    model: nn.Module, loader: Batches, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Class probabilities ``(N, 10)`` and true labels ``(N,)`` for every sample, on the CPU."""
    device = _model_device(model) if device is None else torch.device(device)
    model.eval()
    probs, labels = [], []
    for X, y in loader:
        X, y = _to_device(X, y, device)
        # softmax of logits gives probabilities; so does softmax of log-probabilities,
        # because softmax(log p) = p / sum(p) = p.
        probs.append(F.softmax(model(X).float(), dim=1))
        labels.append(y)
    return torch.cat(probs).cpu(), torch.cat(labels).cpu()


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, k: int = 3, normalization: str | None = None) -> tuple[Tensor, Tensor]:
    """Top-`k` probabilities and classes for one image or a batch.

    `images` may be ``(28, 28)``, ``(1, 28, 28)``, ``(N, 28, 28)`` or ``(N, 1, 28, 28)``.
    uint8 images (0-255) are normalised as the model was trained (`normalization`,
    default the model's recipe); float images are taken as already normalised.
    Returns ``(probs, classes)``, each ``(N, k)``, on the CPU.
    """
    check_int("k", k, minimum=1)
    if k > NUM_CLASSES:
        k = NUM_CLASSES
    device = _model_device(model)
    x = images.reshape(-1, 1, 28, 28)  # a lone image gets its batch dimension
    if x.dtype == torch.uint8:
        recipe = getattr(model, "RECIPE", TrainConfig())
        x = normalize(x, normalization or recipe.normalize)
    model.eval()
    probs = F.softmax(model(x.to(device)).float(), dim=1)
    top = probs.topk(k, dim=1)
    return top.values.cpu(), top.indices.cpu()


def confusion_matrix(labels: Tensor, predicted: Tensor, num_classes: int = NUM_CLASSES) -> Tensor:
    """Counts ``(num_classes, num_classes)``: row = true class, column = predicted class."""
    index = labels.long() * num_classes + predicted.long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# --- checkpoints ------------------------------------------------------------------


def model_name(model: nn.Module) -> str:
    """The registry name of a model (its class name for models outside `MODELS`)."""
    return getattr(model, "NAME", "") or type(model).__name__


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    history: History | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save weights (and optimiser, history, RNG states) atomically: temp file, then rename."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": model_name(model),
        "model_state": model.state_dict(),
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "history": history.to_dict() if history is not None else None,
        "torch_rng": torch.get_rng_state(),
        **(extra or {}),
    }
    with atomic_write(path, "wb") as handle:
        torch.save(state, handle)
    return Path(path)


def load_checkpoint(
    path: str | os.PathLike[str], model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Read a checkpoint; if `model` (and `optimizer`) are given, load their states.

    Errors say what is wrong in words: a missing or unreadable file, a file from
    another program or a newer version, or a checkpoint of a different model.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Train with a checkpoint path first, or check the path.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} could not be read as a checkpoint ({type(exc).__name__}); it may be "
            "truncated or not a PyTorch file. Delete it and train again."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an mnist_lab checkpoint (no {CHECKPOINT_FORMAT!r} marker).")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is a version {state.get('version')} checkpoint; this mnist_lab reads version "
            f"{CHECKPOINT_VERSION}. Train again with this version, or use the version that wrote it."
        )
    if model is not None:
        _load_model_state(path, state, model)
        if optimizer is not None and state.get("optimizer_state") is not None:
            optimizer.load_state_dict(state["optimizer_state"])
    return state


def _load_model_state(path: Path, state: dict[str, Any], model: nn.Module) -> None:
    saved, wanted = state["model"], model_name(model)
    if saved != wanted:
        raise CheckpointError(
            f"{path} holds a {saved!r} model, but you are loading it into a {wanted!r} model. "
            f"Build the model with build_model({saved!r}), or pick the checkpoint of {wanted!r}."
        )
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path} holds a {saved!r} model whose layers do not match this {wanted!r} "
            "(its code changed since the checkpoint was saved). Train it again."
        ) from exc


# --- training ---------------------------------------------------------------------


def _progress(batches: DeviceLoader | Batches, enabled: bool, desc: str):
    if not enabled:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc=desc, leave=False, unit="batch", mininterval=0.5)


def _train_epoch(model, batches, optimizer, loss_fn, device, amp: bool, scheduler=None) -> tuple[float, float, bool]:
    """One pass over `batches`. Returns mean loss, accuracy, and whether it diverged."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    count = 0
    for step, (X, y) in enumerate(batches, start=1):
        X, y = _to_device(X, y, device)  # (B, 1, 28, 28), (B,)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(X)  # (B, 10)
            loss = loss_fn(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()  # per batch; a Python float update, no device sync
        loss_sum += loss.detach() * len(y)  # stays on the device: no sync here
        correct += (out.argmax(dim=1) == y).sum()
        count += len(y)
        if step % CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
            return math.nan, math.nan, True
    mean_loss = loss_sum.item() / count  # the one read of the epoch
    return mean_loss, correct.item() / count, not math.isfinite(mean_loss)


def fit(
    model: nn.Module,
    config: TrainConfig | None = None,
    *,
    train_loader: Batches | None = None,
    test_loader: Batches | None = None,
    device: str | torch.device = "auto",
    data_dir: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    amp: bool = False,
    compile: bool | str = False,
    channels_last: bool = False,
    cuda_graph: bool = False,
    log: Callable[[str], None] | None = print,
    **overrides: Any,
) -> History:
    """Train `model` and evaluate it after every epoch; returns the `History`.

    `config` defaults to the model's tutorial recipe (``model.RECIPE``); keyword
    `overrides` change single fields (``fit(net, epochs=2, lr=0.05)``). Loaders default
    to device-resident MNIST loaders built from the config. With `checkpoint`, the
    weights, optimiser and history are saved (atomically) after every epoch, and
    ``resume=True`` continues from that file up to ``config.epochs``.

    A loss that turns NaN or infinite stops training with a `DivergenceWarning`;
    Ctrl-C (or a kernel interrupt) stops it too. Either way the finished epochs'
    history is returned (``history.stopped`` says why) and the checkpoint holds the
    last good epoch. `amp` trains in bfloat16 autocast; `compile` uses torch.compile
    (``True``, or a mode from `COMPILE_MODES`); `channels_last` stores the model's
    4-d weights, and so its feature maps, as (N, H, W, C); `cuda_graph` records one
    whole training step as a CUDA graph and replays it (`mnist_lab.graphs`; CUDA,
    device-resident data, SGD or Adam, not together with `compile`).
    ``config.schedule`` and ``config.label_smoothing`` shape the training (the test
    loss is never smoothed).
    """
    config = (config or getattr(model, "RECIPE", TrainConfig())).replace(**overrides)
    device = get_device(device)
    mode = _compile_mode(compile)
    check_bool("amp", amp)
    check_bool("channels_last", channels_last)
    check_bool("cuda_graph", cuda_graph)
    if cuda_graph and mode:
        raise InvalidParameterError(
            "cuda_graph=True and compile both replace the training step: choose one "
            "(compile=False, or cuda_graph=False)."
        )
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # time the algorithms once per shape, keep the fastest
    if train_loader is None or test_loader is None:
        default_train, default_test = mnist_loaders(config, device, data_dir)
        train_loader = train_loader or default_train
        test_loader = test_loader or default_test
    optimizer = make_optimizer(model, config)
    history = History(model_name(model), str(device), config.to_dict(), sum(p.numel() for p in model.parameters()))
    torch.manual_seed(config.seed)  # dropout draws
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        history = _resume(checkpoint, model, optimizer, train_loader, config, log)
    runner = _compiled(model, mode) if mode else model
    loss_fn = loss_function(model, config.label_smoothing)
    scheduler = graphed = None
    if cuda_graph and history.epochs < config.epochs:  # recording costs a few steps: only if there is work
        steps = _steps_per_epoch(train_loader)
        lrs = lr_schedule(config, steps)
        graphed = GraphedEpochs(model, train_loader, optimizer, loss_fn, amp, lrs, start_step=history.epochs * steps)
    elif config.schedule != "constant":
        steps = _steps_per_epoch(train_loader)
        scheduler = make_scheduler(optimizer, config, steps, start_step=history.epochs * steps)
    checkpoint_path = Path(checkpoint) if checkpoint is not None else None
    try:
        for epoch in range(history.epochs + 1, config.epochs + 1):
            start = time.perf_counter()
            wrap = functools.partial(_progress, enabled=progress, desc=f"epoch {epoch}/{config.epochs}")
            if graphed is not None:
                train_loss, train_acc, diverged = graphed.epoch(wrap)
            else:
                batches = wrap(train_loader)
                train_loss, train_acc, diverged = _train_epoch(
                    runner, batches, optimizer, loss_fn, device, amp, scheduler
                )
            seconds = time.perf_counter() - start  # .item() above has waited for the device
            if diverged:
                _warn_diverged(history, config, epoch, checkpoint_path, log)
                break
            test_loss, test_acc = evaluate(runner, test_loader, device)
            for key, value in zip(
                ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"),
                (epoch, train_loss, train_acc, test_loss, test_acc, seconds),
            ):
                getattr(history, key).append(value)
            if checkpoint_path is not None:
                _save_progress(checkpoint_path, model, optimizer, history, train_loader)
            if log is not None:
                log(history.line())
    except KeyboardInterrupt:
        history.stopped = "interrupted"
        if log is not None:
            saved = (
                f"; the last finished epoch is saved in {checkpoint_path}" if checkpoint_path and history.epochs else ""
            )
            log(f"Interrupted after {history.epochs} finished epoch(s){saved}. Run again with resume=True to continue.")
    return history


def _compile_mode(compile: bool | str) -> str | None:
    if isinstance(compile, bool):
        return "default" if compile else None
    return check_choice("compile mode", compile, COMPILE_MODES)


class _CompiledStep(nn.Module):
    """A compiled model that tells CUDA-graph replay where each step begins.

    With ``mode="reduce-overhead"`` torch.compile records CUDA graphs and reuses their
    output memory; marking every call as a new step keeps an output alive until the
    loop is done with it. Elsewhere the mark is a no-op.
    """

    def __init__(self, model: nn.Module, mode: str) -> None:
        super().__init__()
        self.compiled = torch.compile(model, mode=mode)
        self.mark = mode in ("reduce-overhead", "max-autotune")
        self.LOG_PROBS = getattr(model, "LOG_PROBS", False)  # read by `evaluate` to pick its loss

    def forward(self, x: Tensor) -> Tensor:
        if self.mark:
            torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(x)


def _compiled(model: nn.Module, mode: str) -> nn.Module:
    return _CompiledStep(model, mode)


def _steps_per_epoch(loader) -> int:
    try:
        return len(loader)
    except TypeError:
        raise InvalidParameterError(
            "A learning-rate schedule needs to know how many batches an epoch has, but this "
            "train_loader has no len(). Pass a DeviceLoader or a DataLoader, or use schedule='constant'."
        ) from None


def _save_progress(path: Path, model, optimizer, history: History, loader) -> None:
    extra = {"loader_state": loader.state_dict()} if hasattr(loader, "state_dict") else {}
    save_checkpoint(path, model, optimizer, history, extra)


def _resume(path, model, optimizer, loader, config: TrainConfig, log) -> History:
    state = load_checkpoint(path, model, optimizer)
    for group in optimizer.param_groups:  # the saved state carries the old settings: use today's
        group.update({k: v for k, v in _optimizer_settings(config).items() if k in group})
    history = History.from_dict(state["history"])
    history.config = config.to_dict()
    history.stopped = None
    torch.set_rng_state(state["torch_rng"])
    if "loader_state" in state and hasattr(loader, "load_state_dict"):
        loader.load_state_dict(state["loader_state"])
    if log is not None:
        log(f"Resuming from {path} after epoch {history.epochs} of {config.epochs}.")
    return history


def _warn_diverged(history: History, config: TrainConfig, epoch: int, checkpoint: Path | None, log) -> None:
    history.stopped = "diverged"
    kept = f" The checkpoint {checkpoint} still holds epoch {history.epochs}." if checkpoint and history.epochs else ""
    message = (
        f"Training diverged in epoch {epoch}: the loss became NaN or infinite, so training "
        f"stopped. The learning rate {config.lr:g} is probably too large for this model: try "
        f"{config.lr / 10:g}.{kept}"
    )
    warnings.warn(message, DivergenceWarning, stacklevel=3)
    if log is not None and log is not print:
        log(message)
