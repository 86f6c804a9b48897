"""mnist_lab: handwritten-digit recognition on MNIST with PyTorch, for the notebook series.

Modules a newcomer can guess: `data` (MNIST, normalisations, device-resident
batches), `models` (every tutorial model), `train` (fit, evaluate, predict,
checkpoints), `plots` (figures), `cli` (the ``mnist-lab`` command).
"""

__version__ = "0.1.0"

from .config import TrainConfig  # noqa: E402
from .data import DeviceLoader, load_mnist, mnist_dataset, normalize  # noqa: E402
from .errors import MnistLabError  # noqa: E402
from .models import MODELS, build_model, count_parameters  # noqa: E402
from .train import History, evaluate, fit, get_device, load_checkpoint, predict, save_checkpoint, set_seed  # noqa: E402

__all__ = [
    "MODELS",
    "DeviceLoader",
    "History",
    "MnistLabError",
    "TrainConfig",
    "__version__",
    "build_model",
    "count_parameters",
    "evaluate",
    "fit",
    "get_device",
    "load_checkpoint",
    "load_mnist",
    "mnist_dataset",
    "normalize",
    "predict",
    "save_checkpoint",
    "set_seed",
]
