"""MNIST: finding it, verifying it, and serving it fast.

Where the files come from, in order: the folder passed as ``data_dir`` (if any), else
the folder named by the environment variable ``MNIST_LAB_DATA`` (if set), then
``data/`` at the repository root (git-ignored), where downloads land.

Each folder may hold the four IDX files raw or gzip'd, directly or under
``MNIST/raw/`` (torchvision's layout). Every file is verified by the SHA-256 of its
raw (decompressed) bytes before use. With internet and no local copy, torchvision
downloads MNIST into ``data/``; nothing reaches the final name until it verifies.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import stat
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from .config import MNIST_MEAN, MNIST_STD, NORMALIZATIONS, TrainConfig  # noqa: F401 (re-exported)
from .errors import ChecksumError, DataError, DataNotFoundError, InvalidParameterError, check_choice, check_positive_int
from .files import atomic_write

if TYPE_CHECKING:
    from torchvision.datasets import MNIST

IMAGE_SHAPE = (1, 28, 28)  # (C, H, W) of one digit
NUM_CLASSES = 10

# SHA-256 of the raw IDX bytes, as published with ../shared/mnist/SHA256SUMS.raw.
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Sizes in bytes (header + pixels or labels): reading stops one byte past these, so a
# crafted .gz that inflates to gigabytes is refused after reading only this much.
SIZES: dict[str, int] = {
    "train-images-idx3-ubyte": 16 + 60_000 * 28 * 28,
    "train-labels-idx1-ubyte": 8 + 60_000,
    "t10k-images-idx3-ubyte": 16 + 10_000 * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + 10_000,
}
SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ENV_DATA = "MNIST_LAB_DATA"
ENV_OFFLINE = "MNIST_LAB_OFFLINE"
REFETCH = "it was left as it is. Delete it and copy or download MNIST again (`mnist-lab data --download`)."


def default_data_root() -> Path:
    """The writable home of MNIST: ``data/`` at the repository root (outside a checkout ``~/.cache/mnist_lab``)."""
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").exists():
        return repo / "data"
    return Path.home() / ".cache" / "mnist_lab"


def search_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for the MNIST files, in order.

    A folder you name (`data_dir` or ``MNIST_LAB_DATA``) that is a file, a link loop or cannot be
    entered raises `DataError`, as does a missing ``MNIST_LAB_DATA`` (no silent fall-back to ``data/``).
    """
    if data_dir is not None:
        roots = [_check_root(Path(data_dir).expanduser(), "The data folder", must_exist=False)]
    else:
        env = os.environ.get(ENV_DATA)
        roots = [_check_root(Path(env).expanduser(), f"{ENV_DATA}={env}", must_exist=True)] if env else []
        roots.append(default_data_root())
    return [folder for root in roots for folder in (root, root / "MNIST" / "raw")]


def _check_root(root: Path, named: str, must_exist: bool) -> Path:
    """`root` if it is a folder that can be searched (or may be created later); else a `DataError`."""
    fix = f"Point it at the folder that holds the four MNIST files (e.g. ../shared/mnist), or unset {ENV_DATA}."
    try:
        info = root.stat()
    except FileNotFoundError:
        if must_exist:
            raise DataError(f"{named}: that folder does not exist. {fix}") from None
        return root
    except OSError as exc:  # ELOOP (a symbolic link loop), EACCES on the way, ENOTDIR
        raise DataError(f"{named}: {root} cannot be used ({exc.strerror or exc}). {fix}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise DataError(f"{named}: {root} is a file, not a folder. {fix}")
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"{named}: you may not open the folder {root} (permission denied). {fix}")
    return root


@dataclass(frozen=True)
class FileStatus:
    """Where one MNIST file was found and whether it verified."""

    name: str
    path: Path | None
    ok: bool
    problem: str = ""


def _find(name: str, dirs: list[Path]) -> Path | None:
    for folder in dirs:
        for candidate in (folder / name, folder / f"{name}.gz"):
            try:
                info = candidate.stat()
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:  # a folder that cannot be entered, a link loop, an I/O error
                raise DataError(
                    f"Could not look at {candidate}: {exc.strerror or exc}. Check the permissions of that "
                    "folder, or point MNIST_LAB_DATA / --data-dir at a copy you can read."
                ) from exc
            if stat.S_ISREG(info.st_mode):
                return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    """The raw IDX bytes of `path`, decompressing ``.gz``; at most one byte more than MNIST's size."""
    limit = SIZES.get(_base(path), -2) + 1  # one byte more than expected shows the file is too long
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            return handle.read(limit)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(
            f"{path} is truncated or is not a gzip file ({exc}). Delete it and copy or "
            "download MNIST again (see `mnist-lab data --help`)."
        ) from exc
    except OSError as exc:  # permission denied, an I/O error of a failing disk, a folder
        raise DataError(
            f"Could not read {path}: {exc.strerror or exc}. Check the file's permissions and the disk, or "
            "point MNIST_LAB_DATA / --data-dir at another copy of MNIST."
        ) from exc


def _verified_bytes(name: str, path: Path) -> bytes:
    data = _read_bytes(path)
    if len(data) > SIZES[name]:
        raise ChecksumError(
            f"{path} is longer than the MNIST file {name} ({SIZES[name]:,} bytes, decompressed); reading stopped. "
            f"The file is not MNIST; {REFETCH}"
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != FILES[name]:
        raise ChecksumError(
            f"{path} is not the MNIST file {name}: its SHA-256 is {actual}, expected "
            f"{FILES[name]} (of the decompressed bytes). The file is corrupt or truncated; {REFETCH}"
        )
    return data


def find_files(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """The MNIST files present in the searched folders, ``{name: path}``, without downloading or verifying."""
    dirs = search_dirs(data_dir)
    return {name: path for name in FILES if (path := _find(name, dirs)) is not None}


def _missing_message(names: list[str], dirs: list[Path], why: str = "") -> str:
    looked = "\n".join(f"  - {d}" for d in dirs)
    files = ", ".join(names)
    return (
        f"MNIST file(s) not found: {files} (raw or .gz).{why}\nSearched:\n{looked}\n"
        f"To fix: with internet, run `mnist-lab data --download` (or just train; it downloads "
        f"into {default_data_root()}). Offline, copy the four files (e.g. from ../shared/mnist) "
        f"into one folder and point the environment variable {ENV_DATA} at it, or pass "
        "data_dir=... / --data-dir."
    )


def locate(data_dir: str | os.PathLike[str] | None = None, download: bool | None = None) -> dict[str, Path]:
    """All four MNIST files, ``{name: path}``, downloaded if missing and allowed; not verified (`load_mnist` does).

    Raises `DataNotFoundError` naming the missing files and every folder searched.
    """
    found = find_files(data_dir)
    missing = [name for name in FILES if name not in found]
    if not missing:
        return found
    dirs = search_dirs(data_dir)
    if download is None:
        download = os.environ.get(ENV_OFFLINE, "").lower() not in {"1", "true", "yes"}
    if not download:
        raise DataNotFoundError(_missing_message(missing, dirs, " Downloads are off."))
    target = (Path(data_dir) if data_dir is not None else default_data_root()) / "MNIST" / "raw"
    download_mnist(target, missing, dirs)
    return locate(data_dir, download=False)


def download_mnist(target: Path, names: list[str], searched: list[Path]) -> None:
    """Download MNIST with torchvision into a temporary folder, verify, then move just `names` into `target`."""
    from torchvision.datasets import MNIST

    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = f" Could not create {target} for the download: {exc.strerror or exc}."
        raise DataNotFoundError(_missing_message(names, searched, why)) from exc
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target) as tmp:
        try:
            MNIST(tmp, train=True, download=True)
            MNIST(tmp, train=False, download=True)
        except Exception as exc:  # network errors come in many types
            why = f" The download failed: {type(exc).__name__}: {exc}."
            raise DataNotFoundError(_missing_message(names, searched, why)) from exc
        raw = Path(tmp) / "MNIST" / "raw"
        for name in names:  # all verified before any is moved: all or nothing
            _verified_bytes(name, raw / name)
        for name in names:
            os.replace(raw / name, target / name)


@functools.lru_cache(maxsize=4)
def _load_cached(images: Path, labels: Path, stamp: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    del stamp  # part of the cache key only: a replaced file is read again
    image_bytes = _verified_bytes(_base(images), images)
    label_bytes = _verified_bytes(_base(labels), labels)
    # IDX: a 16-byte header (magic, count, rows, cols) then uint8 pixels; labels: 8 bytes.
    x = np.frombuffer(image_bytes, dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(label_bytes, dtype=np.uint8, offset=8).astype(np.int64)
    return torch.from_numpy(x.copy()), torch.from_numpy(y)


def _base(path: Path) -> str:
    return path.name.removesuffix(".gz")


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)


def load_mnist(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None, download: bool | None = None
) -> tuple[Tensor, Tensor]:
    """The raw MNIST tensors of one split, verified by SHA-256.

    Returns ``(images, labels)``: uint8 ``(N, 28, 28)`` with values 0-255 and int64
    ``(N,)`` with values 0-9; N is 60,000 for ``"train"``, 10,000 for ``"test"``.
    The tensors are shared between calls: clone before changing them in place.
    """
    check_choice("split", split, SPLITS)
    paths = locate(data_dir, download)
    images, labels = (paths[name] for name in SPLITS[split])
    return _load_cached(images, labels, _stamp(images) + _stamp(labels))


def check_files(data_dir: str | os.PathLike[str] | None = None) -> list[FileStatus]:
    """Verify every MNIST file without downloading; one `FileStatus` per file."""
    dirs = search_dirs(data_dir)
    return [_check_file(name, _find(name, dirs)) for name in FILES]


def _check_file(name: str, path: Path | None) -> FileStatus:
    if path is None:
        return FileStatus(name, None, False, "missing")
    try:
        _verified_bytes(name, path)
    except DataError as exc:
        return FileStatus(name, path, False, str(exc))
    return FileStatus(name, path, True)


def torchvision_root(data_dir: str | os.PathLike[str] | None = None, download: bool | None = None) -> Path:
    """A folder ``root`` such that ``torchvision.datasets.MNIST(root)`` reads verified files.

    MNIST's own root where its raw files already lie in torchvision's ``root/MNIST/raw/``; otherwise
    verified raw copies are written (atomically) under `default_data_root`.
    """
    paths = locate(data_dir, download)
    raw_dir = next(iter(paths.values())).parent
    if any(path != raw_dir / name for name, path in paths.items()) or raw_dir.parts[-2:] != ("MNIST", "raw"):
        raw_dir = default_data_root() / "MNIST" / "raw"
    for name, path in paths.items():
        data = _verified_bytes(name, path)
        if path != raw_dir / name:
            with atomic_write(raw_dir / name, "wb") as handle:
                handle.write(data)
    return raw_dir.parent.parent


def mnist_dataset(
    split: str = "train",
    transform: Callable | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool | None = None,
) -> MNIST:
    """The tutorials' ``torchvision.datasets.MNIST`` from verified files; `transform` runs per sample."""
    from torchvision.datasets import MNIST

    check_choice("split", split, SPLITS)
    root = torchvision_root(data_dir, download)
    return MNIST(str(root), train=split == "train", transform=transform, download=False)


def tutorial_transform(normalize: str = "unit", flatten: bool = False) -> Callable:
    """The tutorials' per-sample ToTensor and Normalize: a PIL image -> ``(1, 28, 28)`` (`flatten`: ``(784,)``)."""
    from torchvision import transforms

    check_choice("normalize", normalize, NORMALIZATIONS)
    shift, scale = NORMALIZATIONS[normalize]
    steps = [transforms.ToTensor(), transforms.Normalize((shift,), (scale,))]
    if flatten:
        steps.append(transforms.Lambda(lambda x: x.view(-1)))
    return transforms.Compose(steps)


def normalize(images: Tensor, kind: str = "standard") -> Tensor:
    """uint8 ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` -> float32 ``(N, 1, 28, 28)``, as `NORMALIZATIONS[kind]` says."""
    check_choice("normalize", kind, NORMALIZATIONS)
    return _scaled(images.reshape(-1, *IMAGE_SHAPE), kind)


def _scaled(images: Tensor, kind: str) -> Tensor:
    """uint8 -> float32 (x/255 - shift)/scale, as one multiply and one subtract; `kind` already checked."""
    shift, scale = NORMALIZATIONS[kind]
    return images.float().mul_(1.0 / (255.0 * scale)).sub_(shift / scale)


def mean_std(images: Tensor) -> tuple[float, float]:
    """Mean and standard deviation of uint8 images scaled to [0, 1], over all pixels."""
    x = images.double().div(255.0)
    return x.mean().item(), x.std().item()


class DeviceLoader:
    """Batches of one MNIST split that live on the device, shuffled there.

    The split moves to `device` once, as uint8 ``(N, 1, 28, 28)`` (47 MB for the training set); each
    epoch draws one permutation from a seeded generator, and every batch is a gather plus a
    normalisation: no per-sample Python work, no host-device copy. Yields ``(X, y)``: float32
    ``(B, 1, 28, 28)`` and int64 ``(B,)``; the last batch may be smaller unless ``drop_last``.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        batch_size: int = 64,
        shuffle: bool = True,
        normalize: str = "standard",
        device: torch.device | str = "cpu",
        seed: int = 0,
        limit: int | None = None,
        drop_last: bool = False,
    ) -> None:
        check_choice("normalize", normalize, NORMALIZATIONS)
        if limit is not None:
            check_positive_int("limit", limit)
            images, labels = images[:limit], labels[:limit]
        check_positive_int("batch_size", batch_size)
        if batch_size > len(labels):
            raise InvalidParameterError(
                f"batch_size={batch_size} is larger than the {len(labels)} samples available; "
                "choose a smaller batch size or a larger limit."
            )
        self.device = torch.device(device)
        self.images = images.reshape(-1, *IMAGE_SHAPE).to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.normalize = normalize
        self.drop_last = drop_last
        # MPS has no generator of its own in every torch version: draw on the CPU there.
        gen_device = self.device if self.device.type in ("cpu", "cuda") else torch.device("cpu")
        self.generator = torch.Generator(device=gen_device).manual_seed(seed)

    @classmethod
    def from_mnist(cls, split: str = "train", data_dir: str | os.PathLike[str] | None = None, **kwargs) -> DeviceLoader:
        """A loader over one MNIST split; `kwargs` as for the constructor."""
        return cls(*load_mnist(split, data_dir), **kwargs)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """How many samples one epoch visits."""
        return len(self) * self.batch_size if self.drop_last else len(self.labels)

    def __iter__(self):
        order = None
        if self.shuffle:
            order = torch.randperm(len(self.labels), generator=self.generator, device=self.generator.device)
            order = order.to(self.device)
        for lo in range(0, len(self) * self.batch_size, self.batch_size):
            batch = slice(lo, lo + self.batch_size)  # the last one stops at the end
            if order is None:  # in order: a view of the split, no gather
                yield _scaled(self.images[batch], self.normalize), self.labels[batch]
            else:
                yield self.batch(order[batch])

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """The samples `idx` (B,) as a normalised batch: float32 ``(B, 1, 28, 28)`` and labels ``(B,)``."""
        # `normalize` was checked once, in __init__: nothing but the arithmetic in the training step
        return _scaled(self.images.index_select(0, idx), self.normalize), self.labels.index_select(0, idx)

    def state_dict(self) -> dict:
        """The shuffling state, so a resumed run draws the same permutations."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the state saved by `state_dict`."""
        self.generator.set_state(state["generator"])


LOADER_SPLITS = ("train", "validation", "test")  # what `mnist_loader` serves


def validation_split(images: Tensor, labels: Tensor, validation: int) -> tuple[tuple[Tensor, Tensor], ...]:
    """Split the training set: ``(train_images, train_labels), (val_images, val_labels)``.

    The last `validation` samples are held out (0: none): a fixed cut, the same for every seed and run.
    """
    n_train = len(labels) - validation
    if validation and n_train < 1:
        raise InvalidParameterError(
            f"validation={validation} holds out every one of the {len(labels):,} training images; "
            "choose fewer (5,000 is typical for MNIST)."
        )
    return (images[:n_train], labels[:n_train]), (images[n_train:], labels[n_train:])


def mnist_loader(
    split: str,
    config: TrainConfig,
    device: torch.device | str = "cpu",
    data_dir: str | os.PathLike[str] | None = None,
) -> DeviceLoader:
    """A device-resident loader of one split for a recipe: ``"train"``, ``"validation"`` or ``"test"``.

    Train: the first ``60,000 - config.validation`` training images (then the first ``config.limit``),
    with the recipe's batch size, shuffling, seed and drop_last. Validation: the last
    ``config.validation`` training images. Test: every test digit (or the first ``config.test_limit``).
    These two come in order, in large batches.
    """
    check_choice("split", split, LOADER_SPLITS)
    common = {"normalize": config.normalize, "device": device}
    if split == "test":
        batch_size = min(config.test_batch_size, config.test_limit or 10_000)
        return DeviceLoader.from_mnist(
            "test", data_dir, batch_size=batch_size, shuffle=False, limit=config.test_limit, **common
        )
    train, held_out = validation_split(*load_mnist("train", data_dir), config.validation)
    if split == "validation":
        if not config.validation:
            raise InvalidParameterError(
                "There is no validation split: config.validation is 0. Set validation=5000 (say) to hold out "
                "the last 5,000 training images."
            )
        return DeviceLoader(
            *held_out, batch_size=min(config.test_batch_size, config.validation), shuffle=False, **common
        )
    return DeviceLoader(
        *train,
        batch_size=config.batch_size,
        shuffle=config.shuffle,
        seed=config.seed,
        limit=config.limit,
        drop_last=config.drop_last,
        **common,
    )


def mnist_loaders(
    config: TrainConfig, device: torch.device | str = "cpu", data_dir: str | os.PathLike[str] | None = None
) -> tuple[DeviceLoader, DeviceLoader]:
    """Device-resident train and test loaders for a recipe (see `mnist_loader`)."""
    return mnist_loader("train", config, device, data_dir), mnist_loader("test", config, device, data_dir)


# --- the tutorials' way, for comparison (notebook 08, `mnist-lab bench`) ---------------


def tensor_loader(
    config: TrainConfig, data_dir: str | os.PathLike[str] | None = None, limit: int | None = None
) -> DataLoader:
    """The first fix: normalise the whole training set once, then a DataLoader over the tensors.

    No PIL, no per-sample transform; the DataLoader still stacks samples one by one on the CPU.
    """
    images, labels = load_mnist("train", data_dir)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    dataset = TensorDataset(normalize(images, config.normalize), labels)  # (N, 1, 28, 28) float32, (N,)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=config.shuffle)
