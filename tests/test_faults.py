"""Faults a learner or instructor can cause: each gives a clear message and loses nothing.

The numbers in the test names refer to the cases of the README's "When something goes
wrong" section.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from mnist_lab import data as data_module
from mnist_lab.checkpoints import load_checkpoint, save_checkpoint
from mnist_lab.cli import main
from mnist_lab.config import TrainConfig
from mnist_lab.errors import ChecksumError, DataNotFoundError, InvalidParameterError, OutputError
from mnist_lab.files import atomic_write, write_json
from mnist_lab.models import build_model


def test_1_missing_data_offline_cli_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["train", "--model", "mlp", "--data-dir", str(tmp_path / "empty"), "--json", str(out / "h.json")])
    assert code == 2
    err = capsys.readouterr().err
    for name in data_module.FILES:
        assert name in err
    assert "MNIST_LAB_DATA" in err and str(tmp_path / "empty") in err
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").rglob("*ubyte*"))
    assert not (out / "h.json").exists()


class _FakeMNIST:
    """Stands in for torchvision's MNIST download: writes given bytes, then maybe fails."""

    payload: dict = {}
    fail: Exception | None = None

    def __init__(self, root, train=True, download=False):
        raw = os.path.join(root, "MNIST", "raw")
        os.makedirs(raw, exist_ok=True)
        for name, blob in self.payload.items():
            with open(os.path.join(raw, name), "wb") as handle:
                handle.write(blob)
        if self.fail is not None:
            raise self.fail


@pytest.fixture()
def fake_download(monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", _FakeMNIST)
    _FakeMNIST.payload, _FakeMNIST.fail = {}, None
    return _FakeMNIST


def test_2_download_is_verified_before_it_reaches_its_final_name(tmp_path, fake_download, raw_mnist_dir):
    good = {name: (raw_mnist_dir / name).read_bytes() for name in data_module.FILES}
    fake_download.payload = {**good, "t10k-labels-idx1-ubyte": b"\x00" * 100}
    target = tmp_path / "dl"
    with pytest.raises(ChecksumError):
        data_module.locate(target, download=True)
    leftovers = [p for p in target.rglob("*") if p.is_file()]
    assert leftovers == [], f"files left behind: {leftovers}"
    fake_download.payload = good
    paths = data_module.locate(target, download=True)
    assert all(path.parent == target / "MNIST" / "raw" for path in paths.values())
    images, labels = data_module.load_mnist("test", data_dir=target)
    assert images.shape == (10_000, 28, 28)


def test_1_a_failed_download_says_what_to_do(tmp_path, fake_download):
    fake_download.fail = OSError("Temporary failure in name resolution")
    with pytest.raises(DataNotFoundError) as info:
        data_module.locate(tmp_path, download=True)
    message = str(info.value)
    assert "name resolution" in message and "MNIST_LAB_DATA" in message
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    ("call", "suggestion"),
    [
        (lambda: build_model("convnett"), "convnet"),
        (lambda: TrainConfig(optimizer="adamm"), "adam"),
        (lambda: TrainConfig(normalize="halves"), "half"),
        (lambda: TrainConfig(optimizer="SGD"), "sgd"),
    ],
)
def test_3_unknown_names_list_choices_and_suggest(call, suggestion):
    with pytest.raises(InvalidParameterError) as info:
        call()
    assert f"Did you mean '{suggestion}'" in str(info.value) and "Valid choices" in str(info.value)


def test_3_unknown_device_in_the_cli(capsys):
    assert main(["train", "--model", "mlp", "--device", "gpu", "--limit", "100"]) == 2
    assert "Unknown device 'gpu'" in capsys.readouterr().err


def test_7_a_write_that_fails_midway_keeps_the_previous_file(tmp_path):
    path = write_json(tmp_path / "report.json", {"version": 1})
    with pytest.raises(RuntimeError), atomic_write(path, "w") as handle:
        handle.write('{"version": 2, "half')
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_7_an_atomic_write_has_the_permissions_of_a_plain_write(tmp_path):
    plain, atomic = tmp_path / "plain.json", tmp_path / "atomic.json"
    plain.write_text("{}")
    write_json(atomic, {})  # the temporary file behind it starts private (0o600)
    assert atomic.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    atomic.chmod(0o640)
    write_json(atomic, {"again": True})  # replacing a file keeps its permissions
    assert atomic.stat().st_mode & 0o777 == 0o640


def test_7_a_process_killed_while_saving_a_checkpoint_leaves_the_old_one(tmp_path):
    path = tmp_path / "mlp.pt"
    save_checkpoint(path, build_model("mlp", seed=0))
    before = load_checkpoint(path)["model_state"]
    script = textwrap.dedent(
        f"""
        import sys, time, torch
        from mnist_lab.models import build_model
        from mnist_lab.checkpoints import save_checkpoint
        real_save = torch.save
        def slow_save(obj, handle):
            handle.write(b"PK" + b"\\0" * 4096)  # the first bytes of a new checkpoint...
            handle.flush()
            print("writing", flush=True)
            time.sleep(60)  # ...and then the process is killed
        torch.save = slow_save
        save_checkpoint({str(path)!r}, build_model("mlp", seed=1))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    after = load_checkpoint(path, build_model("mlp"))["model_state"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_12_disk_full_is_reported_and_leaves_nothing(tmp_path, monkeypatch):
    path = write_json(tmp_path / "h.json", {"ok": True})

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OutputError) as info:
        write_json(path, {"ok": False})
    assert "disk is full" in str(info.value) and str(path) in str(info.value)
    assert json.loads(path.read_text()) == {"ok": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.json"]


def test_12_unwritable_output_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = main(["train", "--model", "mlp", "--json", str(blocker / "out" / "h.json")])
    assert code == 2
    captured = capsys.readouterr()
    assert "Could not write" in captured.err and "Training" not in captured.out  # refused before training began
