"""Training settings: one small frozen dataclass, validated when it is made."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from .errors import (
    InvalidParameterError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_optional_limit,
    check_positive_int,
    check_seed,
    unknown_choice,
)

# Mean and standard deviation of the 60,000 training images scaled to [0, 1]
# (pinned by tests/test_data.py against `data.mean_std` of the real data).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
# name -> (shift, scale): x_normalised = (x / 255 - shift) / scale
NORMALIZATIONS: dict[str, tuple[float, float]] = {
    "unit": (0.0, 1.0),  # x / 255, "ToTensor only" (T1, T3, T4, T0's 5x5 CNN)
    "half": (0.5, 0.5),  # (x / 255 - 0.5) / 0.5, into [-1, 1] (T0's MLP, T2)
    "standard": (MNIST_MEAN, MNIST_STD),  # zero mean, unit variance (T0's examples CNN)
}

OPTIMIZERS = ("sgd", "adam", "adadelta")
# "constant": every tutorial's; "onecycle": the fast recipe's, per batch (`mnist_lab.train.lr_at`).
SCHEDULES = ("constant", "onecycle")
ONECYCLE_WARMUP = 0.2  # the share of all steps over which "onecycle" warms up to `lr`


@dataclass(frozen=True)
class TrainConfig:
    """How to train: the recipe of a tutorial, or your own.

    Every model in `mnist_lab.models.MODELS` carries its tutorial's recipe as
    ``RECIPE``; ``recipe.replace(epochs=2)`` changes one field and validates again.
    """

    epochs: int = 10  # passes over the training set
    lr: float = 0.01  # learning rate (step size of the optimiser)
    optimizer: str = "sgd"  # "sgd", "adam" or "adadelta"
    momentum: float = 0.0  # SGD momentum; 0 is plain SGD (ignored by adam and adadelta)
    weight_decay: float = 0.0  # L2 penalty added by the optimiser
    batch_size: int = 64  # training batch size
    test_batch_size: int = 1000  # evaluation batch size: speed only, never the result
    normalize: str = "standard"  # "unit", "half" or "standard" (see NORMALIZATIONS)
    shuffle: bool = True  # reshuffle the training set every epoch (T3 did not)
    seed: int = 0  # seeds the weights, dropout and the shuffling
    limit: int | None = None  # train on the first `limit` training samples only
    test_limit: int | None = None  # evaluate on the first `test_limit` test samples only
    label_smoothing: float = 0.0  # training targets: 1 - s on the true class, s spread over all 10
    schedule: str = "constant"  # learning-rate schedule: "constant" or "onecycle" (see SCHEDULES)
    nesterov: bool = False  # SGD with Nesterov momentum (needs momentum > 0)
    drop_last: bool = False  # drop the last, smaller training batch of each epoch
    # Hold out the LAST `validation` training images: never trained on, evaluated after every
    # epoch, so that choosing the number of epochs never looks at the test set (0: no split).
    validation: int = 0

    def __post_init__(self) -> None:
        check_positive_int("epochs", self.epochs)
        check_float("lr", self.lr, positive=True)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_float("momentum", self.momentum, minimum=0.0)
        if self.momentum >= 1:
            raise InvalidParameterError(f"momentum must be below 1, got {self.momentum}.")
        check_bool("nesterov", self.nesterov)
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise InvalidParameterError(
                f"nesterov=True needs optimizer='sgd' and momentum > 0 (got optimizer={self.optimizer!r}, "
                f"momentum={self.momentum}). Set a momentum such as 0.9, or nesterov=False."
            )
        check_float("weight_decay", self.weight_decay, minimum=0.0)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("test_batch_size", self.test_batch_size)
        check_choice("normalize", self.normalize, NORMALIZATIONS)
        check_bool("shuffle", self.shuffle)
        check_seed("seed", self.seed)
        check_optional_limit("limit", self.limit)
        check_optional_limit("test_limit", self.test_limit)
        check_float("label_smoothing", self.label_smoothing, minimum=0.0)
        if self.label_smoothing >= 1:
            raise InvalidParameterError(
                f"label_smoothing must be below 1 (0.1 is typical), got {self.label_smoothing}."
            )
        check_choice("schedule", self.schedule, SCHEDULES)
        check_bool("drop_last", self.drop_last)
        check_int("validation", self.validation, minimum=0)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed, validated again."""
        names = {f.name for f in fields(self)}
        for key in changes:
            if key not in names:
                raise unknown_choice("training setting", key, names)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (for JSON and checkpoints)."""
        return dataclasses.asdict(self)
