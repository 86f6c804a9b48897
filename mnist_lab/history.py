"""`History`: what a training run measured, one entry per finished epoch.

On its own so that `train` (which fills it) and `checkpoints` (which saves it) need not import each other.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidParameterError
from .files import write_json

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .config import TrainConfig


def model_name(model: nn.Module) -> str:
    """The registry name of a model (its class name for models outside `MODELS`)."""
    return getattr(model, "NAME", "") or type(model).__name__


@dataclass
class History:
    """What `fit` measured, one entry per finished epoch.

    Losses are means over samples, accuracies fractions in [0, 1], ``seconds`` each epoch's training time
    (evaluation excluded). ``val_loss`` and ``val_acc``, on the held-out ``config.validation`` images, stay
    empty without them. ``stopped``: None for a run that finished, else ``"diverged"`` or ``"interrupted"``.
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
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    stopped: str | None = None

    @classmethod
    def start(cls, model: nn.Module, device: torch.device, config: TrainConfig) -> History:
        """An empty history for training `model` on `device` with `config`."""
        parameters = sum(p.numel() for p in model.parameters())
        return cls(model_name(model), str(device), config.to_dict(), parameters)

    def append(
        self,
        epoch: int,
        train_loss: float,
        train_acc: float,
        test_loss: float,
        test_acc: float,
        seconds: float,
        val: tuple[float, float] | None = None,
    ) -> None:
        """Record one finished epoch; `val` is its validation ``(loss, accuracy)`` when there is a split."""
        if val is not None:
            self.val_loss.append(val[0])
            self.val_acc.append(val[1])
        self.epoch.append(epoch)
        self.train_loss.append(train_loss)
        self.train_acc.append(train_acc)
        self.test_loss.append(test_loss)
        self.test_acc.append(test_acc)
        self.seconds.append(seconds)

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
        val = f"val loss {self.val_loss[i]:.4f} acc {self.val_acc[i]:.2%}  " if self.val_acc else ""
        return (
            f"epoch {self.epoch[i]:3d}/{self.config['epochs']}  "
            f"train loss {self.train_loss[i]:.4f} acc {self.train_acc[i]:.2%}  {val}"
            f"test loss {self.test_loss[i]:.4f} acc {self.test_acc[i]:.2%}  "
            f"{self.seconds[i]:.1f}s"
        )

    def best_val_epoch(self) -> int:
        """The epoch with the lowest validation loss: how many epochs to train, chosen without the test set."""
        if not self.val_loss:
            raise InvalidParameterError("This history has no validation split: train with validation=N (e.g. 5000).")
        return self.epoch[self.val_loss.index(min(self.val_loss))]
