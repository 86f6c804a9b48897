"""Checkpoints: save a model (and its optimiser, history and random state) atomically; load it back.

Every load uses ``weights_only=True`` (a checkpoint cannot run code), and every
problem is said in words: a missing or unreadable file, a file from another
program or version, a checkpoint of another model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import TrainConfig
from .errors import CheckpointError, InvalidParameterError
from .files import atomic_write
from .history import History, model_name

CHECKPOINT_FORMAT = "mnist_lab.checkpoint"
CHECKPOINT_VERSION = 1


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
    """Read a checkpoint; if `model` (and `optimizer`) are given, load their states."""
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


def save_progress(path: str | os.PathLike[str] | None, model, optimizer, history: History, loader) -> None:
    """Save everything `resume_from` needs after an epoch, with the loader's shuffling state (None: no-op)."""
    if path is None:
        return
    extra = {"loader_state": loader.state_dict()} if hasattr(loader, "state_dict") else {}
    save_checkpoint(path, model, optimizer, history, extra)


def resume_from(path, model, optimizer, loader, config: TrainConfig, log=print) -> History | None:
    """Continue from a checkpoint written by `save_progress`: its history, ready to go on (None: no file yet).

    The optimiser's state (momentum, Adam's moments) comes from the file, its settings
    (learning rate, momentum, weight decay) from today's `config`.
    """
    if path is None:
        raise InvalidParameterError("resume=True needs a checkpoint path to resume from (checkpoint=...).")
    if not Path(path).is_file():
        return None  # the first run of a resumable job
    state = load_checkpoint(path, model, optimizer)
    settings = config.to_dict()
    for group in optimizer.param_groups:
        group.update({k: v for k, v in settings.items() if k in group})
    history = History.from_dict(state["history"])
    history.config = settings
    history.stopped = None
    torch.set_rng_state(state["torch_rng"])
    if "loader_state" in state and hasattr(loader, "load_state_dict"):
        loader.load_state_dict(state["loader_state"])
    if log is not None:
        log(f"Resuming from {path} after epoch {history.epochs} of {config.epochs}.")
    return history
