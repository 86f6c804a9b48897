"""mnist_lab: handwritten-digit recognition on MNIST with PyTorch, for the notebook series.

The path a learner follows, in three files: `data` (MNIST, normalisations,
device-resident batches), `models` (every tutorial model), `train` (`fit`,
`train_epoch`, `evaluate`, `predict`). Around them: `config` (`TrainConfig`),
`checkpoints`, `devices`, `plots`, `errors`, `files`, `cli`. The from-scratch lessons
are in `mnist_lab.scratch`, everything for speed in `mnist_lab.speed`, your own
handwriting in `handwriting`, the instructors' batch runner in `batch`.

``from mnist_lab import fit, build_model, ...`` works as usual, but the names below are
imported on first use (PEP 562), not by ``import mnist_lab``: importing torch takes
seconds, and the ``mnist-lab`` command (`mnist_lab.__main__`) must already be able to
catch Ctrl-C and SIGTERM while it does.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Each public name and the module it comes from.
_HOMES = {
    name: module
    for module, names in {
        "checkpoints": ("load_checkpoint", "save_checkpoint"),
        "config": ("TrainConfig",),
        "data": ("DeviceLoader", "load_mnist", "mnist_dataset", "mnist_loaders", "normalize"),
        "devices": ("get_device", "set_seed"),
        "errors": ("MnistLabError",),
        "history": ("History",),
        "models": ("MODELS", "build_model", "count_parameters"),
        "train": ("evaluate", "fit", "predict", "train_epoch"),
    }.items()
    for name in names
}

__all__ = sorted(["__version__", *_HOMES])


def __getattr__(name: str) -> Any:
    """The public names and the modules (``mnist_lab.data``...), imported on first use."""
    if name in _HOMES:
        value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
        globals()[name] = value  # the next lookup finds it without calling __getattr__
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # the module exists but something it imports is missing: say that
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
