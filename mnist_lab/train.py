"""Training and evaluation: `fit`, `train_epoch`, `evaluate`, `predict`.

The loop keeps everything on the device: the summed loss and correct count are device tensors read
once per epoch, plus a divergence check every `CHECK_EVERY` steps.

`fit` trains on device-resident MNIST loaders built from the config unless given loaders.
``config.validation = N`` holds out the last N training images (never trained on), evaluated after
every epoch (``history.val_loss``, ``history.val_acc``): choose the number of epochs on them and keep
the test set for the one number reported at the end. ``checkpoint`` saves the weights, optimiser,
history and shuffling state after every epoch (atomically); ``resume=True`` continues from that file up
to ``config.epochs``, refusing one it cannot continue exactly. Before any data loads, a checkpoint path
that holds anything but an earlier run of the same model is refused unless ``overwrite=True``. A loss
that turns NaN or infinite (a `DivergenceWarning`) or Ctrl-C (a kernel interrupt, SIGTERM in the CLI)
stops training: the finished epochs' history comes back (``history.stopped`` says why) and the
checkpoint holds the last good epoch. The test loss is never label-smoothed.

`fit` runs the plain loop unless given a ``speed`` object (`mnist_lab.speed.Speed`) whose ``prepare``
returns a faster epoch runner; this module imports no speed code.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoints import check_checkpoint_target, resume_from, save_progress, saved_epochs
from .config import ONECYCLE_WARMUP, TrainConfig
from .data import IMAGE_SHAPE, NUM_CLASSES, mnist_loader
from .data import normalize as normalize_images
from .devices import get_device, keep_freed_memory
from .errors import DivergenceWarning, InvalidParameterError, check_int
from .history import History

CHECK_EVERY = 100  # steps between divergence checks (each one waits for the device)

Batches = Iterable[tuple[Tensor, Tensor]]
EpochResult = tuple[float, float, bool]  # mean loss, accuracy, diverged
# Trains one epoch: called with `wrap`, which may put a progress bar around the batches (or a range of steps).
EpochRunner = Callable[[Callable[[Iterable], Iterable]], EpochResult]


# --- losses, optimisers, the learning-rate schedule ----------------------------------


def loss_function(model: nn.Module, label_smoothing: float = 0.0) -> Callable[..., Tensor]:
    """NLL for models that output log-probabilities (``LOG_PROBS``), else cross-entropy on logits.

    With `label_smoothing` ``s > 0`` the target puts ``1 - s + s/10`` on the true class
    and ``s/10`` on each other class. That is cross-entropy with smoothing for both
    kinds of model, because log-softmax leaves log-probabilities unchanged.
    """
    if label_smoothing > 0:
        return functools.partial(F.cross_entropy, label_smoothing=label_smoothing)
    return F.nll_loss if getattr(model, "LOG_PROBS", False) else F.cross_entropy


OPTIMIZER_CLASSES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adadelta": torch.optim.Adadelta}


def make_optimizer(model: nn.Module, config: TrainConfig, fused: bool | None = None) -> torch.optim.Optimizer:
    """The optimiser named by ``config.optimizer`` with its learning rate, momentum and decay.

    `fused` asks for one kernel that updates every parameter (SGD and Adam); ``None``
    uses it on CUDA, where it is faster, and PyTorch's default elsewhere (on a 2-core
    CPU neither the fused nor the foreach version was faster). The arithmetic is the same.
    """
    settings: dict[str, Any] = {"lr": config.lr, "weight_decay": config.weight_decay}
    if config.optimizer == "sgd":
        settings.update(momentum=config.momentum, nesterov=config.nesterov)
    params = list(model.parameters())
    if fused is None:
        fused = config.optimizer in ("sgd", "adam") and bool(params) and all(p.is_cuda for p in params)
    if fused:
        settings["fused"] = True
    return OPTIMIZER_CLASSES[config.optimizer](params, **settings)


def lr_at(step: int, config: TrainConfig, steps_per_epoch: int) -> float:
    """The learning rate of optimiser step `step` (0-based, counted over the whole run).

    ``"constant"``: ``config.lr`` always. ``"onecycle"``: a linear triangle over all
    ``epochs * steps_per_epoch`` steps, up from ``lr / warm-up`` to ``lr`` over the first
    `ONECYCLE_WARMUP` of them, then down to 0 at the last step.
    """
    if config.schedule == "constant":
        return config.lr
    total = config.epochs * steps_per_epoch
    warmup = max(1, round(ONECYCLE_WARMUP * total))
    if step < warmup:
        return config.lr * ((step + 1) / warmup)
    return config.lr * max(0.0, (total - step) / max(1, total - warmup))


def steps_per_epoch(loader: Batches) -> int:
    """How many batches one epoch of `loader` has (a schedule needs it)."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidParameterError(
            "A learning-rate schedule needs to know how many batches an epoch has, but this "
            "train_loader has no len(). Pass a DeviceLoader or a DataLoader, or use schedule='constant'."
        ) from None


# --- one epoch -----------------------------------------------------------------------


def train_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., Tensor],
    lr: Callable[[int], float] | None = None,
    first_step: int = 0,
    amp: bool = False,
) -> EpochResult:
    """One pass over `batches`. Returns mean loss, accuracy, and whether the loss diverged.

    `lr(step)` sets the learning rate of each step (None: leave it as it is);
    `first_step` is the run's step count when this epoch starts; `amp` computes in
    bfloat16 autocast.
    """
    model.train()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    count = 0
    for step, (X, y) in enumerate(batches, start=first_step):
        X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)  # (B, 1, 28, 28), (B,)
        if lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr(step)  # a Python float: no device sync
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(X)  # (B, 10)
            loss = loss_fn(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)  # stays on the device: no sync here
        correct += (out.argmax(dim=1) == y).sum()
        count += len(y)
        if (step + 1 - first_step) % CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
            return math.nan, math.nan, True
    if count == 0:
        raise InvalidParameterError("The training batches were empty: the train_loader yielded no samples.")
    mean_loss = loss_sum.item() / count  # the one read of the epoch
    return mean_loss, correct.item() / count, not math.isfinite(mean_loss)


def schedule(config: TrainConfig, loader: Batches) -> Callable[[int], float] | None:
    """``step -> learning rate`` for the recipe's schedule (None when it is constant)."""
    if config.schedule == "constant":
        return None
    return functools.partial(lr_at, config=config, steps_per_epoch=steps_per_epoch(loader))


def plain_epochs(model, optimizer, loss_fn, loader, lr=None, start_epoch: int = 0, amp: bool = False) -> EpochRunner:
    """The epoch runner `fit` uses without a speed object: `train_epoch`, counting steps across epochs."""
    steps = steps_per_epoch(loader) if lr is not None else 0  # a constant rate needs no step count
    epochs = itertools.count(start_epoch)

    def run(wrap: Callable[[Iterable], Iterable]) -> EpochResult:
        return train_epoch(model, wrap(loader), optimizer, loss_fn, lr, next(epochs) * steps, amp)

    return run


# --- fit -----------------------------------------------------------------------------


class Plain:
    """How `fit` runs an epoch without speed switches: `plain_epochs` (see `mnist_lab.speed.Speed` for the others)."""

    prepare = staticmethod(plain_epochs)


def fit(
    model: nn.Module,
    config: TrainConfig | None = None,
    *,
    train_loader: Batches | None = None,
    test_loader: Batches | None = None,
    val_loader: Batches | None = None,
    device: str | torch.device = "auto",
    data_dir: str | os.PathLike[str] | None = None,
    speed: Any = Plain,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    **overrides: Any,
) -> History:
    """Train `model` with `config` (default ``model.RECIPE``) changed by `overrides`; see the module docstring."""
    config = (config or getattr(model, "RECIPE", TrainConfig())).replace(**overrides)
    device = _prepare(model, config, device, checkpoint, resume, overwrite, log)
    train_loader, test_loader, val_loader = _loaders(config, device, data_dir, train_loader, test_loader, val_loader)
    optimizer, loss_fn = make_optimizer(model.to(device), config), loss_function(model, config.label_smoothing)
    history = _history(model, optimizer, train_loader, config, device, checkpoint if resume else None, log)
    run_epoch = speed.prepare(model, optimizer, loss_fn, train_loader, schedule(config, train_loader), history.epochs)
    try:
        for epoch in range(history.epochs + 1, config.epochs + 1):
            start = time.perf_counter()
            train_loss, train_acc, diverged = run_epoch(_progress_bar(progress, epoch, config.epochs))
            seconds = time.perf_counter() - start  # the epoch's one .item() has waited for the device
            if diverged:
                _warn_diverged(history, config, epoch, checkpoint)
                break
            _record(history, model, (epoch, train_loss, train_acc), seconds, test_loader, val_loader)
            save_progress(checkpoint, model, optimizer, history, train_loader, overwrite)  # (no-op without a path)
            if log is not None:
                log(history.line())
    except KeyboardInterrupt:  # Ctrl-C, a kernel interrupt, or SIGTERM in the CLI (errors.Terminated)
        _stop_interrupted(history, checkpoint, log)
    return history


def _prepare(model: nn.Module, config: TrainConfig, device, checkpoint, resume: bool, overwrite: bool, log):
    """What `fit` checks before loading any data (the checkpoint path), the device, and the seed of dropout.

    On the CPU, the C library is asked to keep freed memory (`keep_freed_memory`): each
    step's tensors then reuse the last step's pages instead of faulting in fresh ones.
    """
    check_checkpoint_target(checkpoint, model, resume, overwrite, log)
    torch.manual_seed(config.seed)  # dropout draws (nothing before training draws from this generator)
    device = get_device(device)
    if device.type == "cpu":
        keep_freed_memory()
    return device


def _history(model, optimizer, train_loader, config: TrainConfig, device, resume_path, log) -> History:
    """The history of a resumed run (from the checkpoint at `resume_path`), else an empty one."""
    resumed = resume_from(resume_path, model, optimizer, train_loader, config, log) if resume_path else None
    return resumed or History.start(model, device, config)


def _loaders(config: TrainConfig, device: torch.device, data_dir, train, test, val) -> tuple:
    """The loaders given, else MNIST ones from `config` (no validation loader without a split); empty ones refused."""
    for name, loader in (("train_loader", train), ("test_loader", test), ("val_loader", val)):
        if loader is not None and hasattr(loader, "__len__") and len(loader) == 0:
            raise InvalidParameterError(f"{name} is empty (no batches): give it some samples, or leave it out.")
    train = train if train is not None else mnist_loader("train", config, device, data_dir)
    test = test if test is not None else mnist_loader("test", config, device, data_dir)
    if val is None and config.validation:
        val = mnist_loader("validation", config, device, data_dir)
    return train, test, val


def _record(history: History, model: nn.Module, train: tuple, seconds: float, test: Batches, val) -> None:
    """Evaluate after an epoch (validation first, when there is a split) and append it to `history`."""
    measured_val = evaluate(model, val) if val is not None else None
    history.append(*train, *evaluate(model, test), seconds, val=measured_val)


def _progress_bar(enabled: bool, epoch: int, epochs: int) -> Callable[[Iterable], Iterable]:
    if not enabled:
        return lambda batches: batches
    from tqdm.auto import tqdm

    return functools.partial(tqdm, desc=f"epoch {epoch}/{epochs}", leave=False, unit="batch", mininterval=0.5)


def _warn_diverged(history: History, config: TrainConfig, epoch: int, checkpoint) -> None:
    history.stopped = "diverged"
    kept = f" The checkpoint {checkpoint} still holds epoch {history.epochs}." if checkpoint and history.epochs else ""
    message = (
        f"Training diverged in epoch {epoch}: the loss became NaN or infinite, so training stopped. The learning "
        f"rate {config.lr:g} is probably too large for this model: try {config.lr / 10:g}.{kept}"
    )
    warnings.warn(message, DivergenceWarning, stacklevel=3)


def _stop_interrupted(history: History, checkpoint, log) -> None:
    history.stopped = "interrupted"
    if log is None:
        return
    saved = saved_epochs(checkpoint)  # read back: the interrupt may have stopped the last save
    kept = f"; {checkpoint} holds epoch {saved}" if saved else ""
    log(f"Interrupted after {history.epochs} finished epoch(s){kept}. Run again with resume=True to continue.")


# --- evaluation and prediction -------------------------------------------------------


@torch.no_grad()
def evaluate(model: nn.Module, loader: Batches, loss_fn: Callable[..., Tensor] | None = None) -> tuple[float, float]:
    """Mean loss and accuracy of `model` over every sample of `loader`, in eval mode.

    Both are summed over samples and divided by the sample count, so a smaller last
    batch weighs what its samples weigh. `loss_fn` defaults to the model's
    (`loss_function`, never label-smoothed).
    """
    loss_fn = loss_fn or loss_function(model)
    device = _model_device(model)
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    count = 0
    for X, y in loader:
        X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = model(X).float()
        loss_sum += loss_fn(out, y, reduction="sum")
        correct += (out.argmax(dim=1) == y).sum()
        count += len(y)
    if count == 0:
        raise InvalidParameterError("Nothing to evaluate: the loader yielded no samples. Give it some test digits.")
    return loss_sum.item() / count, correct.item() / count


@torch.no_grad()
def collect_predictions(model: nn.Module, loader: Batches) -> tuple[Tensor, Tensor]:
    """Class probabilities ``(N, 10)`` and true labels ``(N,)`` for every sample, on the CPU."""
    device = _model_device(model)
    model.eval()
    probs, labels = [], []
    for X, y in loader:
        # softmax of logits gives probabilities; so does softmax of log-probabilities,
        # because softmax(log p) = p / sum(p) = p.
        probs.append(F.softmax(model(X.to(device)).float(), dim=1))
        labels.append(y)
    return torch.cat(probs).cpu(), torch.cat(labels).cpu()


@torch.no_grad()
def predict(model: nn.Module, images: Any, k: int = 3, normalize: str | None = None) -> tuple[Tensor, Tensor]:
    """Top-`k` probabilities and classes for one image or a batch.

    `images` (a tensor or a NumPy array) may be ``(28, 28)``, ``(1, 28, 28)``,
    ``(N, 28, 28)`` or ``(N, 1, 28, 28)``. Integer images (0-255) are normalised as the
    model was trained (`normalize`, default the model's recipe); float images are
    taken as already normalised. Returns ``(probs, classes)``, each ``(N, k)``, on the CPU.
    """
    k = min(check_int("k", k, minimum=1), NUM_CLASSES)
    x = _image_batch(images)  # (N, 1, 28, 28)
    if x.dtype == torch.uint8:
        x = normalize_images(x, normalize or getattr(model, "RECIPE", TrainConfig()).normalize)
    model.eval()
    probs = F.softmax(model(x.to(_model_device(model))).float(), dim=1)
    top = probs.topk(k, dim=1)
    return top.values.cpu(), top.indices.cpu()


def _image_batch(images: Any) -> Tensor:
    """`images` as a batch ``(N, 1, 28, 28)``: uint8 0-255, or float already normalised; else a clear error."""
    try:
        images = torch.as_tensor(images)  # a tensor stays as it is
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidParameterError(
            f"predict needs images as a tensor or NumPy array, got {type(images).__name__}."
        ) from exc
    shape = tuple(images.shape)
    if shape[-2:] != (28, 28) or images.ndim > 4 or (images.ndim == 4 and shape[1] != 1):
        raise InvalidParameterError(
            f"predict takes 28x28 images shaped (28, 28), (N, 28, 28) or (N, 1, 28, 28); got {shape}. "
            "Resize your own digits with mnist_lab.handwriting.preprocess first."
        )
    if images.numel() == 0:
        raise InvalidParameterError(f"predict got no images (shape {shape}).")
    if images.dtype == torch.bool or images.is_complex():
        raise InvalidParameterError(f"predict takes pixel values, not {images.dtype} images.")
    if images.is_floating_point():
        if not torch.isfinite(images).all():
            raise InvalidParameterError("Some pixels are NaN or infinite: predict needs finite pixel values.")
        if images.abs().max() > 10:  # every normalisation maps 0-255 into [-1, 2.9]
            raise InvalidParameterError(
                f"These float pixels reach {images.abs().max().item():g}: they look like raw 0-255 values, not "
                "normalised ones. Pass them as uint8 (images.to(torch.uint8)) and predict normalises them."
            )
    elif images.dtype != torch.uint8:
        wide = images.to(torch.int64)  # not every integer type has min() (uint16 has not)
        if wide.min() < 0 or wide.max() > 255:
            raise InvalidParameterError(
                f"Integer pixels must lie in 0-255 (got {wide.min().item()} to {wide.max().item()}); "
                "scale 16-bit images down to 8 bits first."
            )
        images = wide.to(torch.uint8)
    return images.reshape(-1, *IMAGE_SHAPE)  # a lone image gets its batch dimension


def confusion_matrix(labels: Tensor, predicted: Tensor, num_classes: int = NUM_CLASSES) -> Tensor:
    """Counts ``(num_classes, num_classes)``: row = true class, column = predicted class."""
    index = labels.long() * num_classes + predicted.long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
