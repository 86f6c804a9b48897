import gzip
import hashlib
import os
from pathlib import Path

import pytest
import torch

from mnist_lab.data import (
    FILES,
    MNIST_MEAN,
    MNIST_STD,
    DeviceLoader,
    load_mnist,
    mean_std,
    mnist_dataset,
    normalize,
    torchvision_root,
    tutorial_transform,
)
from mnist_lab.errors import ChecksumError, DataError, DataNotFoundError, InvalidParameterError

# Class counts of the MNIST training set (LeCun et al.): a fact of the data.
TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_pinned_checksums_are_the_shared_ones():
    sums = Path(os.environ["MNIST_LAB_DATA"]) / "SHA256SUMS.raw"
    if not sums.exists():
        pytest.skip("no SHA256SUMS.raw beside the data")
    published = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line.strip())
    assert published == FILES


def test_shapes_types_and_classes(train_set, test_set):
    (x, y), (xt, yt) = train_set, test_set
    assert x.shape == (60_000, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (60_000,) and y.dtype == torch.int64
    assert xt.shape == (10_000, 28, 28) and yt.shape == (10_000,)
    assert torch.bincount(y).tolist() == TRAIN_CLASS_COUNTS
    assert int(x.max()) == 255 and int(x.min()) == 0


def test_mean_and_std_match_the_pinned_constants(train_set):
    mean, std = mean_std(train_set[0])
    assert round(mean, 4) == MNIST_MEAN == 0.1307
    assert round(std, 4) == MNIST_STD == 0.3081


def test_the_three_normalisations(train_set):
    x = train_set[0][:2000]
    unit, half, standard = (normalize(x, k) for k in ("unit", "half", "standard"))
    assert unit.shape == (2000, 1, 28, 28) and unit.dtype == torch.float32
    assert unit.min() == 0 and unit.max() == 1
    assert half.min() == -1 and half.max() == 1
    torch.testing.assert_close(standard, (unit - MNIST_MEAN) / MNIST_STD)
    full = normalize(train_set[0], "standard")
    assert abs(full.mean().item()) < 1e-3 and abs(full.std().item() - 1) < 1e-3


def test_unknown_normalisation_suggests_the_closest():
    with pytest.raises(InvalidParameterError, match="Did you mean 'standard'"):
        normalize(torch.zeros(1, 28, 28, dtype=torch.uint8), "standart")


def test_raw_and_gzip_files_give_the_same_tensors(raw_mnist_dir, test_set):
    images, labels = load_mnist("test", data_dir=raw_mnist_dir)
    assert torch.equal(images, test_set[0]) and torch.equal(labels, test_set[1])


def test_missing_data_offline_names_files_folders_and_the_fix(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_mnist("train", data_dir=tmp_path, download=False)
    message = str(info.value)
    for name in FILES:
        assert name in message
    assert str(tmp_path) in message and str(tmp_path / "MNIST" / "raw") in message
    assert "MNIST_LAB_DATA" in message
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_corrupt_file_is_reported_and_left_alone(raw_mnist_dir):
    path = raw_mnist_dir / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as info:
        load_mnist("test", data_dir=raw_mnist_dir)
    message = str(info.value)
    assert FILES[path.name] in message
    assert hashlib.sha256(bytes(data)).hexdigest() in message
    assert path.read_bytes() == bytes(data)


def test_truncated_gzip_is_a_clear_error(raw_mnist_dir):
    raw = raw_mnist_dir / "t10k-labels-idx1-ubyte"
    packed = gzip.compress(raw.read_bytes())
    raw.unlink()
    (raw_mnist_dir / "t10k-labels-idx1-ubyte.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="truncated"):
        load_mnist("test", data_dir=raw_mnist_dir)


def test_torchvision_dataset_matches_the_tensors(test_set):
    dataset = mnist_dataset("test", transform=tutorial_transform("half", flatten=True))
    x, y = dataset[0]
    assert x.shape == (784,) and y == int(test_set[1][0])
    torch.testing.assert_close(x, normalize(test_set[0][:1], "half").reshape(784))
    assert len(dataset) == 10_000


def test_torchvision_root_reuses_a_raw_layout(raw_mnist_dir):
    layout = raw_mnist_dir / "MNIST" / "raw"
    layout.mkdir(parents=True)
    for name in FILES:
        (raw_mnist_dir / name).rename(layout / name)
    assert torchvision_root(raw_mnist_dir) == raw_mnist_dir


def _loader(n=50, **kwargs):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 28, 28)
    return DeviceLoader(images, torch.arange(n), normalize="unit", **kwargs)


def test_device_loader_visits_every_sample_once_per_epoch():
    loader = _loader(batch_size=7, seed=3)
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert [len(y) for _, y in batches] == [7] * 7 + [1]
        ys = torch.cat([y for _, y in batches])
        assert sorted(ys.tolist()) == list(range(50))
        xs = torch.cat([x for x, _ in batches])
        torch.testing.assert_close(xs[:, 0, 0, 0] * 255, ys.float())  # images travel with labels
        epochs.append(ys)
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled each epoch
    again = torch.cat([y for _, y in _loader(batch_size=7, seed=3)])
    assert torch.equal(again, epochs[0])  # same seed, same order


def test_device_loader_without_shuffle_keeps_order_and_limit():
    loader = _loader(batch_size=8, shuffle=False, limit=20)
    assert len(loader) == 3 and loader.num_samples == 20
    assert torch.cat([y for _, y in loader]).tolist() == list(range(20))


def test_device_loader_refuses_impossible_sizes():
    with pytest.raises(InvalidParameterError, match="larger than"):
        _loader(batch_size=51)
    with pytest.raises(InvalidParameterError, match="limit"):
        _loader(limit=0)
