"""Shared test set-up: MNIST from a local folder only, never the network."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["MNIST_LAB_OFFLINE"] = "1"  # a test that would download fails instead
# Speed.auto's decisions are cached per session in a folder of their own, never in ~/.cache
os.environ["MNIST_LAB_CACHE"] = tempfile.mkdtemp(prefix="mnist-lab-cache-")
_shared = Path(__file__).resolve().parents[2] / "shared" / "mnist"
if "MNIST_LAB_DATA" not in os.environ and _shared.is_dir():
    os.environ["MNIST_LAB_DATA"] = str(_shared)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def train_set():
    from mnist_lab.data import load_mnist

    return load_mnist("train")


@pytest.fixture(scope="session")
def test_set():
    from mnist_lab.data import load_mnist

    return load_mnist("test")


@pytest.fixture()
def raw_mnist_dir(tmp_path, train_set):
    """A private folder with the four MNIST files decompressed (safe to damage)."""
    from mnist_lab.data import FILES, _read_bytes, locate

    for name, path in locate(download=False).items():
        (tmp_path / name).write_bytes(_read_bytes(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    return tmp_path


@pytest.fixture(scope="session")
def trained_mlp():
    """T3's MLP after one epoch on 3,000 training images (about 88 % test accuracy), shared by tests."""
    from mnist_lab import build_model, fit

    net = build_model("mlp", seed=0)
    fit(net, epochs=1, limit=3000, test_limit=1000, progress=False, log=None)
    return net
