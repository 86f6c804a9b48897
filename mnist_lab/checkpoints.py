"""Checkpoints: save a model (and its optimiser, history and random state) atomically; load it back.

Every load uses ``weights_only=True`` (a checkpoint cannot run code), and every problem
is said in words: a missing, unreadable or truncated file, not a PyTorch file, a whole
pickled model, a file of another program, version or model. Before training,
`check_checkpoint_target` guards the path and `resume_from` refuses a checkpoint it
cannot continue exactly.
"""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import TrainConfig
from .errors import CheckpointError, InvalidParameterError
from .files import atomic_write, check_target
from .history import History, model_name

CHECKPOINT_FORMAT = "mnist_lab.checkpoint"
CHECKPOINT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (since torch 1.6)
PICKLE_PROTOCOL_2 = b"\x80\x02"  # the start of the older, pre-zip torch.save format

# Settings that must be the same to continue a run exactly: they decide which
# samples each step sees, what the pixels are, and what the optimiser keeps.
SAME_TO_RESUME = ("optimizer", "batch_size", "normalize", "shuffle", "seed", "limit", "drop_last", "schedule")
START_OVER = "start over: --overwrite instead of --resume (overwrite=True, resume=False)"
NO_PATH = "resume=True (--resume) needs the checkpoint to resume from: checkpoint=PATH (--checkpoint PATH)."
OPTIMIZER_KEYS = ("momentum", "betas", "rho")  # a setting only SGD, Adam or Adadelta has


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    history: History | None = None,
    extra: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Save weights (and optimiser, history, RNG states) atomically: temp file, then rename.

    `overwrite` as in `mnist_lab.files.check_target` (a link or a write-protected file).
    """
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
    with atomic_write(path, "wb", overwrite=overwrite) as handle:
        _torch_save(state, handle)
    return Path(path)


def _torch_save(state: dict[str, Any], handle) -> None:
    """`torch.save`, re-raising what stopped it (Ctrl-C, SIGTERM, a full disk) instead of its RuntimeError.

    torch.save writes through C++, which turns any exception of the Python file object
    into ``RuntimeError: unexpected pos``; the original one is its ``__context__``.
    """
    try:
        torch.save(state, handle)
    except RuntimeError as exc:
        if isinstance(exc.__context__, (KeyboardInterrupt, OSError)):
            raise exc.__context__ from None
        raise


def read_checkpoint(path: str | os.PathLike[str], mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, every failure said in words (`CheckpointError`).

    `mmap` maps the tensors instead of reading them (cheap for a look at the metadata).
    """
    path = Path(path)
    head = _head(path)
    if not head.startswith((ZIP_MAGIC, PICKLE_PROTOCOL_2)):
        kind = "an empty file" if not head else f"a file that starts with {head[:8]!r}"
        raise CheckpointError(
            f"{path} could not be read as a checkpoint: it is not a PyTorch file ({kind}); "
            "a checkpoint is written by save_checkpoint or "
            "`mnist-lab train --checkpoint`. Check the path."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and head.startswith(ZIP_MAGIC))
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} could not be read as a checkpoint: it holds pickled Python objects, "
            "such as a whole model saved with torch.save(model) as "
            "some tutorials do. mnist_lab loads only weights, because unpickling objects can run any code. "
            "If you trust the file, load it with torch.load(path, weights_only=False) and save its "
            "model.state_dict() with save_checkpoint(path, model)."
        ) from exc
    except Exception as exc:  # torch reports damaged archives as RuntimeError, with many messages
        damage = "truncated (cut off while it was copied or written)" if head.startswith(ZIP_MAGIC) else "damaged"
        raise CheckpointError(
            f"{path} could not be read as a checkpoint: it looks {damage} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}). Delete it and train again."
        ) from exc


def _head(path: Path) -> bytes:
    """The first bytes of `path`, or a `CheckpointError` saying why there are none to read."""
    try:
        with open(path, "rb") as handle:
            return handle.read(8)
    except FileNotFoundError:
        raise CheckpointError(
            f"No checkpoint at {path}. Train with a checkpoint path first, or check the path."
        ) from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a folder, not a checkpoint file. Name the .pt file inside it.") from None
    except OSError as exc:
        hint = "You may not read it: check its permissions." if exc.errno in (errno.EACCES, errno.EPERM) else ""
        raise CheckpointError(f"Could not read the checkpoint {path}: {exc.strerror or exc}. {hint}".strip()) from exc


def load_checkpoint(
    path: str | os.PathLike[str], model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Read a checkpoint; if `model` (and `optimizer`) are given, load their states."""
    path = Path(path)
    state = read_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is a PyTorch file but not an mnist_lab checkpoint (no {CHECKPOINT_FORMAT!r} marker): "
            "perhaps a bare state_dict. Load that with model.load_state_dict(torch.load(path)) instead."
        )
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is a version {state.get('version')} checkpoint; this mnist_lab reads version "
            f"{CHECKPOINT_VERSION}. Train again with this version, or use the version that wrote it."
        )
    if model is not None:
        _load_model_state(path, state, model)
        if optimizer is not None and state.get("optimizer_state") is not None:
            _load_optimizer_state(path, state, optimizer)
    return state


def _check_model_name(path: Path, state: dict[str, Any], model: nn.Module) -> None:
    saved, wanted = state.get("model"), model_name(model)
    if saved != wanted:
        raise CheckpointError(
            f"{path} holds a {saved!r} model, but you are loading it into a {wanted!r} model. "
            f"Build the model with build_model({saved!r}), or pick the checkpoint of {wanted!r}."
        )


def _load_model_state(path: Path, state: dict[str, Any], model: nn.Module) -> None:
    _check_model_name(path, state, model)
    saved, wanted = state["model"], model_name(model)
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path} holds a {saved!r} model whose layers do not match this {wanted!r} "
            "(its code changed since the checkpoint was saved). Train it again."
        ) from exc


def _load_optimizer_state(path: Path, state: dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """Load the optimiser's state, refusing one written by another kind of optimiser."""
    saved = state["optimizer_state"]
    key = next((key for key in OPTIMIZER_KEYS if key in optimizer.param_groups[0]), None)
    groups = saved.get("param_groups") or [{}]
    if key is not None and key not in groups[0]:
        raise CheckpointError(
            f"{path} holds the state of another optimiser than {type(optimizer).__name__} "
            f"(its settings: {', '.join(sorted(k for k in groups[0] if k != 'params'))}). Resume with the "
            f"optimiser it was trained with, or {START_OVER}."
        )
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{path} holds an optimiser state that does not fit this model's parameters ({exc}); {START_OVER}."
        ) from exc


def check_checkpoint_target(
    path: str | os.PathLike[str] | None, model: nn.Module, resume: bool, overwrite: bool, log=print
) -> None:
    """Before any training: may a run of `model` write its checkpoints to `path`?

    Unless `overwrite`, anything there but a checkpoint of the same model is refused (another model's, a
    data file, a link); a folder or a device is never replaced. `resume` needs a `path` (`resume_from`
    decides whether its checkpoint can be continued).
    """
    if path is None:
        if resume:
            raise InvalidParameterError(NO_PATH)
        return
    path = check_target(path, overwrite=overwrite)
    if overwrite or resume or not path.exists():
        return
    try:
        state = read_checkpoint(path, mmap=True)
        held = state.get("model") if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT else None
    except CheckpointError as exc:
        held, why = None, str(exc)
    else:
        why = f"{path} holds a checkpoint of {held!r}." if held else f"{path} is not an mnist_lab checkpoint."
    if held != model_name(model):
        raise CheckpointError(
            f"{why} Training {model_name(model)!r} would replace it, so nothing was started. Choose another "
            "checkpoint path, or ask to replace it: --overwrite (overwrite=True)."
        )
    if log is not None:
        log(f"{path} holds an earlier run of {held!r}; this run starts over and replaces it (--resume continues it).")


def save_progress(
    path: str | os.PathLike[str] | None, model, optimizer, history: History, loader, overwrite: bool = False
) -> None:
    """Save everything `resume_from` needs after an epoch, with the loader's shuffling state (None: no-op)."""
    if path is None:
        return
    extra = {"loader_state": loader.state_dict()} if hasattr(loader, "state_dict") else {}
    save_checkpoint(path, model, optimizer, history, extra, overwrite=overwrite)


def saved_epochs(path: str | os.PathLike[str] | None) -> int:
    """How many finished epochs the checkpoint at `path` holds (0: none, no file, or not readable)."""
    if path is None or not Path(path).is_file():
        return 0
    try:
        state = read_checkpoint(path, mmap=True)
        return len(state["history"]["epoch"])
    except (CheckpointError, KeyError, TypeError):
        return 0


def resume_from(path, model, optimizer, loader, config: TrainConfig, log=print) -> History | None:
    """Continue from a checkpoint written by `save_progress`: its history, ready to go on (None: no file yet).

    The optimiser's state (momentum, Adam's moments) comes from the file, its settings (learning rate,
    momentum, weight decay) from today's `config`, a change logged. Refused: a change to what decides the
    batches, the pixels or the optimiser (`SAME_TO_RESUME`), a file without history, more finished epochs
    than `config.epochs`.
    """
    if path is None:
        raise InvalidParameterError(NO_PATH)
    if not Path(path).is_file():
        if log is not None:
            log(f"No checkpoint at {path} yet: starting from epoch 1.")
        return None  # the first run of a resumable job
    state = load_checkpoint(path)
    _check_model_name(Path(path), state, model)  # before anything else: the clearest message
    history = _saved_history(path, state)
    _check_same_recipe(path, history, config, log)
    _load_model_state(Path(path), state, model)
    _load_optimizer_state(Path(path), state, optimizer)
    settings = config.to_dict()
    for group in optimizer.param_groups:
        group.update({k: v for k, v in settings.items() if k in group})
    history.config = settings
    history.stopped = None
    torch.set_rng_state(state["torch_rng"])
    if "loader_state" in state and hasattr(loader, "load_state_dict"):
        loader.load_state_dict(state["loader_state"])
    if log is not None:
        done = " All of them are done: nothing left to train." if history.epochs == config.epochs else ""
        log(f"Resuming from {path} after epoch {history.epochs} of {config.epochs}.{done}")
    return history


def _saved_history(path, state: dict[str, Any]) -> History:
    if state.get("history") is None or state.get("optimizer_state") is None:
        raise CheckpointError(
            f"{path} holds weights only (saved without optimiser and history, e.g. by save_checkpoint(path, "
            "model)), so training cannot resume from it. Use the weights with load_checkpoint(path, model), "
            f"or {START_OVER}."
        )
    try:
        return History.from_dict(state["history"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} holds a history this mnist_lab cannot read ({exc}). Start over.") from exc


def _check_same_recipe(path, history: History, config: TrainConfig, log) -> None:
    """Refuse to continue with other batches, pixels or optimiser; log other changed settings."""
    saved, today = history.config, config.to_dict()
    changed = {k: (saved[k], today[k]) for k in today if k in saved and saved[k] != today[k] and k != "epochs"}
    if config.schedule == "onecycle" and saved.get("epochs", config.epochs) != config.epochs:
        changed["epochs"] = (saved["epochs"], config.epochs)  # the one-cycle schedule spans all epochs
    fatal = {k: v for k, v in changed.items() if k in (*SAME_TO_RESUME, "epochs")}
    if fatal:
        listed = ", ".join(f"{k} {old!r} then, {new!r} now" for k, (old, new) in fatal.items())
        raise CheckpointError(
            f"{path} was trained with other settings ({listed}), so resuming would not continue the same run. "
            f"Resume with the settings it was trained with, or {START_OVER}."
        )
    if history.epochs > config.epochs:
        raise CheckpointError(
            f"{path} already holds {history.epochs} finished epochs, more than the {config.epochs} asked for. "
            f"Ask for more epochs (e.g. --epochs {history.epochs + 1}) to continue it, or {START_OVER}."
        )
    if changed and log is not None:
        listed = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        log(f"Resuming with changed settings: {listed} (the optimiser's settings come from today's recipe).")
