"""mnist_lab: handwritten-digit recognition on MNIST with PyTorch, for the notebook series.

The path a learner follows, in three files: `data` (MNIST, normalisations,
device-resident batches), `models` (every tutorial model), `train` (`fit`,
`train_epoch`, `evaluate`, `predict`). Around them: `config` (`TrainConfig`),
`checkpoints`, `devices`, `plots`, `errors`, `files`, `cli`. The from-scratch lessons
are in `mnist_lab.scratch`, everything for speed in `mnist_lab.speed`, your own
handwriting in `handwriting`, the instructors' batch runner in `batch`.
"""

__version__ = "0.1.0"

from .checkpoints import load_checkpoint, save_checkpoint  # noqa: E402
from .config import TrainConfig  # noqa: E402
from .data import DeviceLoader, load_mnist, mnist_dataset, mnist_loaders, normalize  # noqa: E402
from .devices import get_device, set_seed  # noqa: E402
from .errors import MnistLabError  # noqa: E402
from .history import History  # noqa: E402
from .models import MODELS, build_model, count_parameters  # noqa: E402
from .train import evaluate, fit, predict, train_epoch  # noqa: E402

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
    "mnist_loaders",
    "normalize",
    "predict",
    "save_checkpoint",
    "set_seed",
    "train_epoch",
]
