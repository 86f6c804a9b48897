"""Each tutorial's own training loop, written as that tutorial writes it: the bench's reference.

A speed-up is only honest against the loop its tutorial really runs. The tutorials
differ in three ways that cost time, and `REFERENCES` records each one's choice:

- **the per-sample transform**: T0's MLP turns every PIL image into a NumPy array,
  scales and flattens it; the others use torchvision's ``ToTensor`` (T3 after a
  ``Resize(28)``), some followed by ``Normalize``; T4 (Keras) keeps the whole set in
  memory as one array and slices batches from it, with no per-sample work;
- **how often the loop waits for the result** (``.item()``): every step for the
  loss and accuracy (T0, T3, Keras' progress bar), every step for the loss (T2), every
  100 steps to print it (T0's examples CNN, from pytorch/examples), or never during
  the epoch (T1 adds up ``loss.data`` tensors);
- **loader workers**: T3 asks for 4.

Models no tutorial trains (`softmax`, `fast_cnn`) get `TYPICAL`: ToTensor and the
recipe's Normalize per sample, ``.item()`` every step.

Where a page leaves a detail open, the choice is stated in its `Reference.loop`.
Dead API (``Variable``, ``loss.data[0]``) is written the way it runs today.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from ..config import NORMALIZATIONS, TrainConfig
from ..data import load_mnist, mnist_dataset


@dataclass(frozen=True)
class Reference:
    """How one tutorial feeds and trains its model (see the module docstring)."""

    tutorial: str
    transform: str  # a key of TRANSFORMS, or "arrays" (Keras: the whole set in memory)
    sync_every: int | None  # .item() every this many steps; None: only at the end of the epoch
    loop: str  # the loop in words, for the bench report
    workers: int = 0


TYPICAL = Reference(
    "a typical tutorial", "to_tensor_normalize", 1, "ToTensor + Normalize per sample; .item() for loss and accuracy"
)
REFERENCES: dict[str, Reference] = {
    "deep_mlp": Reference(
        "T0", "numpy_half_flat", 1, "NumPy per sample (x/255, (x-0.5)/0.5, flatten); .item() for loss and accuracy"
    ),
    "examples_cnn": Reference(
        "T0 (pytorch/examples)", "to_tensor_normalize", 100, "ToTensor + Normalize per sample; .item() every 100 steps"
    ),
    "cnn5x5": Reference("T0", "to_tensor", 1, "ToTensor per sample; .item() for loss and accuracy (T0's loop)"),
    "convnet": Reference("T1", "to_tensor", None, "ToTensor per sample; loss.data summed as tensors, no wait"),
    "alexnet": Reference("T1", "to_tensor", None, "ToTensor per sample; loss.data summed as tensors, no wait"),
    "bp_network": Reference("T2", "to_tensor_normalize", 1, "ToTensor + Normalize per sample; .item() for the loss"),
    "mlp": Reference(
        "T3", "resize_to_tensor", 1, "Resize(28) + ToTensor per sample, 4 workers; .item() for loss and accuracy", 4
    ),
    "keras_cnn": Reference(
        "T4 (Keras defaults, in PyTorch)",
        "arrays",
        1,
        "whole set in memory as x/255, batches sliced from a shuffled index; loss and accuracy read every step",
    ),
}


def reference_for(model_name: str) -> Reference:
    """The tutorial loop of `model_name` (`TYPICAL` for models no tutorial trains)."""
    return REFERENCES.get(model_name, TYPICAL)


# --- the data side -------------------------------------------------------------------


def numpy_half_flat(image) -> Tensor:
    """T0's transform: PIL image -> float32 in [-1, 1], flattened to (784,)."""
    x = np.array(image, dtype="float32") / 255
    x = (x - 0.5) / 0.5
    return torch.from_numpy(x.reshape((-1,)))


def _transform(kind: str, normalize: str):
    from torchvision import transforms

    shift, scale = NORMALIZATIONS[normalize]
    return {
        "numpy_half_flat": lambda: numpy_half_flat,
        "to_tensor": transforms.ToTensor,
        "resize_to_tensor": lambda: transforms.Compose([transforms.Resize(28), transforms.ToTensor()]),
        "to_tensor_normalize": lambda: transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((shift,), (scale,))]
        ),
    }[kind]()


class ArrayBatches:
    """Keras' ``fit`` on in-memory arrays: shuffle the index each epoch, slice batches from it.

    Yields float32 ``(B, 1, 28, 28)`` in [0, 1] and int64 ``(B,)``.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, shuffle: bool = True) -> None:
        self.images = images.reshape(-1, 1, 28, 28).float() / 255
        self.labels = labels
        self.batch_size, self.shuffle = batch_size, shuffle
        self.num_samples = len(labels)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(self.num_samples) if self.shuffle else torch.arange(self.num_samples)
        for start in range(0, self.num_samples, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index], self.labels[index]


class TutorialLoader(DataLoader):
    """A `DataLoader` that keeps the tutorial's worker count without warning about it every epoch.

    T3 asks for 4 workers; on a machine with fewer cores PyTorch warns at every epoch
    that this may be slow. That is the point of the reference, so the warning is left out.
    """

    def check_worker_number_rationality(self) -> None:
        pass


def reference_loader(
    model_name: str,
    config: TrainConfig,
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
) -> DataLoader | ArrayBatches:
    """The batches `model_name`'s tutorial trains on, with the recipe's batch size and shuffling."""
    ref = reference_for(model_name)
    shuffle = config.shuffle and split == "train"
    if ref.transform == "arrays":
        images, labels = load_mnist(split, data_dir)
        return ArrayBatches(images[:limit], labels[:limit], config.batch_size, shuffle)
    dataset = mnist_dataset(split, transform=_transform(ref.transform, config.normalize), data_dir=data_dir)
    if limit is not None:
        dataset = Subset(dataset, range(min(limit, len(dataset))))
    return TutorialLoader(dataset, batch_size=config.batch_size, shuffle=shuffle, num_workers=ref.workers)


# --- the loop ------------------------------------------------------------------------


def tutorial_epoch(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn,
    device: torch.device,
    sync_every: int | None = 1,
) -> tuple[float, float, bool]:
    """One epoch the way the tutorials write it: ``.to(device)`` per batch, ``.item()`` every `sync_every` steps.

    Each ``.item()`` makes the CPU wait until the device has finished the step, so the
    CPU cannot queue the next step while the device works. ``sync_every=None``: T1's
    sum of ``loss.data`` tensors, read once at the end. Returns mean loss, accuracy and
    whether the loss became NaN (like `mnist_lab.train`'s epoch).
    """
    model.train()
    loss_sum, correct, count = torch.zeros((), device=device), torch.zeros((), device=device), 0
    for step, (X, y) in enumerate(loader):
        X, y = X.to(device), y.to(device)
        out = model(X)
        loss = loss_fn(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (out.argmax(dim=1) == y).sum()
        count += len(y)
        if sync_every and step % sync_every == 0:
            loss.item(), correct.item()  # what printing or summing Python floats does: wait for the device
    mean = loss_sum.item() / count
    return mean, correct.item() / count, not np.isfinite(mean)
