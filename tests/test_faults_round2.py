"""Fault injection, round two (issue 15): bad paths, signals, full disks, hostile files, bad arrays.

Each case asserts the exit status (or the exception), a message that names the problem
and the fix, no traceback, and that nothing but the files named was created, changed
or removed: `snapshot` records every entry under a folder (name, type, size, mtime,
mode) before and after. The classes follow the issue: 1 writes that replace what they
should not, 2 paths checked too late, 3 faults during a checkpoint write, 4 resume,
5 text and numbers, 6 data, 7 arrays (the parts in `train`), 9 signals and notebooks,
and concurrent use. The batch's own cases (class 8) and the image cases of class 7
live in the batch and handwriting suites.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_lab import data as data_module
from mnist_lab.checkpoints import check_checkpoint_target, load_checkpoint, read_checkpoint, save_checkpoint
from mnist_lab.cli import main
from mnist_lab.config import TrainConfig
from mnist_lab.devices import get_device, set_seed
from mnist_lab.errors import CheckpointError, DataError, InvalidParameterError, OutputError
from mnist_lab.files import atomic_write, check_writable, write_json
from mnist_lab.models import build_model
from mnist_lab.notebook import brief_message, show_errors_briefly
from mnist_lab.train import evaluate, fit, predict, train_epoch

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--epochs", "1", "--limit", "256", "--test-limit", "100", "--batch-size", "64", "--no-progress"]


# --- helpers -------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder` (links not followed): type, size, mtime and mode."""
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            info = os.lstat(path)
            size = 0 if stat.S_ISDIR(info.st_mode) else info.st_size  # a folder's size changes with its entries
            entries[str(path.relative_to(folder))] = (stat.S_IFMT(info.st_mode), size, info.st_mtime_ns, info.st_mode)
    return entries


def changed(before: dict, after: dict) -> set[str]:
    """Names created, removed, or whose file changed, between two snapshots (folder mtimes ignored)."""
    names = set(before) ^ set(after)
    for name in set(before) & set(after):
        if not stat.S_ISDIR(before[name][0]) and before[name] != after[name]:
            names.add(name)
    return names


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `mnist-lab ARGS` in this process: exit status, stdout, stderr (which never holds a traceback)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    return code, captured.out, captured.err


def refused(capsys, folder: Path, *args: str) -> str:
    """`mnist-lab ARGS` must exit 2 before training, with one message, changing nothing under `folder`."""
    before = snapshot(folder)
    code, out, err = cli(capsys, *args)
    assert code == 2, (out, err)
    assert "Training" not in out, "refused only after training started"
    assert err.startswith("mnist-lab: error:") and err.count("\n") == 1, err
    assert changed(before, snapshot(folder)) == set()
    return err


def train_args(model: str = "softmax_regression", *extra) -> list[str]:
    return ["train", "--model", model, *SMALL, *extra]


@pytest.fixture()
def tiny_checkpoint(tmp_path):
    """A resumable checkpoint of softmax_regression after 1 epoch (256 images), and its recipe."""
    path = tmp_path / "run.pt"
    config = build_model("softmax_regression").RECIPE.replace(epochs=1, limit=256, test_limit=100)
    fit(build_model("softmax_regression", seed=0), config, checkpoint=path, progress=False, log=None)
    return path, config


# --- 1. writes that replace what they should not -------------------------------------------


@pytest.mark.parametrize("flag", ["--json", "--plot", "--checkpoint"])
def test_1_an_output_that_is_a_symlink_is_refused_and_neither_link_nor_target_changes(tmp_path, capsys, flag):
    (tmp_path / "precious.txt").write_text("keep me")
    (tmp_path / "out.png").symlink_to(tmp_path / "precious.txt")
    err = refused(capsys, tmp_path, *train_args(), flag, tmp_path / "out.png")
    assert "symbolic link" in err and "--overwrite" in err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("flag", ["--json", "--checkpoint"])
def test_1_a_pipe_or_device_is_never_replaced(tmp_path, capsys, flag):
    os.mkfifo(tmp_path / "fifo")
    err = refused(capsys, tmp_path, *train_args(), flag, tmp_path / "fifo", "--overwrite")
    assert "device, pipe or socket" in err and "Choose a file name" in err


def test_1_a_device_node_or_a_link_to_stdout_stays_what_it_is(tmp_path, capsys):
    # A device node and a link like /dev/stdout, made in tmp_path so that a regression cannot harm the system's.
    try:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    (tmp_path / "stdout").symlink_to("/proc/self/fd/1")
    for target, phrase in (("null", "device, pipe or socket"), ("stdout", "symbolic link")):
        before = snapshot(tmp_path)
        code, out, err = cli(capsys, *train_args(), "--json", tmp_path / target)
        assert code == 2 and phrase in err
        assert snapshot(tmp_path) == before


def test_1_a_write_protected_file_is_refused_unless_overwrite(tmp_path, capsys):
    protected = tmp_path / "h.json"
    protected.write_text('{"mine": true}')
    protected.chmod(0o444)
    err = refused(capsys, tmp_path, *train_args(), "--json", protected)
    assert "write-protected" in err and "chmod u+w" in err and "--overwrite" in err
    write_json(protected, {"new": True}, overwrite=True)  # asked for: replaced, its permissions kept
    assert json.loads(protected.read_text()) == {"new": True} and protected.stat().st_mode & 0o777 == 0o444


def test_1_a_data_file_given_as_checkpoint_is_refused(raw_mnist_dir, capsys):
    target = raw_mnist_dir / "t10k-labels-idx1-ubyte"
    err = refused(capsys, raw_mnist_dir, *train_args(), "--data-dir", raw_mnist_dir, "--checkpoint", target)
    assert "MNIST data file" in err and "Choose another output path" in err


def test_1_another_models_checkpoint_is_refused_unless_overwrite(tmp_path, capsys):
    path = save_checkpoint(tmp_path / "ck.pt", build_model("mlp"))
    err = refused(capsys, tmp_path, *train_args(), "--checkpoint", path)
    assert "holds a checkpoint of 'mlp'" in err and "--overwrite" in err and "nothing was started" in err
    check_checkpoint_target(path, build_model("softmax_regression"), False, overwrite=True)  # asked for: allowed


def test_1_with_overwrite_another_models_checkpoint_is_replaced_and_nothing_else(tmp_path, capsys):
    path = save_checkpoint(tmp_path / "ck.pt", build_model("mlp"))
    before = snapshot(tmp_path)
    code, out, err = cli(capsys, *train_args(), "--checkpoint", path, "--overwrite")
    assert code == 0 and err == ""
    assert changed(before, snapshot(tmp_path)) == {"ck.pt"}
    assert load_checkpoint(path)["model"] == "softmax_regression"


def test_1_a_file_that_is_not_a_checkpoint_is_refused_as_checkpoint(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("my notes")
    err = refused(capsys, tmp_path, *train_args(), "--checkpoint", tmp_path / "notes.txt")
    assert "not a PyTorch file" in err and "--overwrite" in err


def test_1_an_earlier_run_of_the_same_model_may_be_replaced_and_says_so(tmp_path):
    path = save_checkpoint(tmp_path / "ck.pt", build_model("softmax_regression"))
    lines = []
    check_checkpoint_target(path, build_model("softmax_regression"), False, False, log=lines.append)
    assert "earlier run" in lines[0] and "--resume" in lines[0]


@pytest.mark.parametrize(
    ("first", "second"), [("--json", "--plot"), ("--json", "--checkpoint"), ("--plot", "--checkpoint")]
)
def test_1_outputs_may_not_alias_each_other(tmp_path, capsys, first, second):
    (tmp_path / "sub").mkdir()
    same, spelled = tmp_path / "out.png", tmp_path / "sub" / ".." / "out.png"
    err = refused(capsys, tmp_path, *train_args(), first, same, second, spelled)
    assert f"{first} and {second} both name" in err and "its own file" in err


def test_1_a_hard_link_to_an_output_is_an_alias_too(tmp_path, capsys):
    (tmp_path / "a.json").write_text("{}")
    os.link(tmp_path / "a.json", tmp_path / "b.png")
    err = refused(capsys, tmp_path, *train_args(), "--json", tmp_path / "a.json", "--plot", tmp_path / "b.png")
    assert "both name" in err


def test_1_overwrite_replaces_a_link_itself_never_the_file_it_points_to(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    (tmp_path / "h.json").symlink_to(tmp_path / "precious.txt")
    with pytest.raises(OutputError, match="symbolic link"):
        write_json(tmp_path / "h.json", {"a": 1})
    write_json(tmp_path / "h.json", {"a": 1}, overwrite=True)
    assert not (tmp_path / "h.json").is_symlink() and json.loads((tmp_path / "h.json").read_text()) == {"a": 1}
    assert (tmp_path / "precious.txt").read_text() == "keep me"


# --- 2. every output path checked before training -----------------------------------------


@pytest.mark.parametrize("flag", ["--json", "--plot", "--checkpoint"])
def test_2_a_folder_given_as_an_output_file_is_refused_before_training(tmp_path, capsys, flag):
    (tmp_path / "results").mkdir()
    err = refused(capsys, tmp_path, *train_args(), flag, tmp_path / "results")
    assert "is a folder, not a file" in err and "give a file name inside it" in err


def test_2_a_plot_suffix_matplotlib_cannot_write_is_refused_before_training(tmp_path, capsys):
    err = refused(capsys, tmp_path, *train_args(), "--plot", tmp_path / "curves.docx")
    assert "'docx'" in err and ".png" in err and ".pdf" in err


@pytest.mark.parametrize("flag", ["--json", "--plot", "--checkpoint"])
def test_2_an_output_below_a_file_is_refused_before_training(tmp_path, capsys, flag):
    (tmp_path / "a-file").write_text("not a folder")
    err = refused(capsys, tmp_path, *train_args(), flag, tmp_path / "a-file" / "out" / "x.png")
    assert "is a file, not a folder" in err


def test_2_checking_an_output_creates_nothing(tmp_path):
    before = snapshot(tmp_path)
    check_writable(tmp_path / "new" / "deeper" / "h.json")
    assert snapshot(tmp_path) == before


# --- 3. faults while a checkpoint is written ---------------------------------------------


def _failing_save(exc: BaseException):
    """A torch.save whose file fails after the first bytes, as Ctrl-C or a full disk would."""
    real_save = torch.save

    def save(obj, handle, *args, **kwargs):
        class Failing(io.RawIOBase):
            written = 0

            def writable(self):
                return True

            def write(self, chunk):
                Failing.written += 1
                if Failing.written > 2:
                    raise exc
                return handle.write(chunk)

        return real_save(obj, Failing(), *args, **kwargs)

    return save


@pytest.mark.parametrize(
    ("exc", "expected"),
    [(KeyboardInterrupt(), KeyboardInterrupt), (OSError(errno.ENOSPC, "No space left on device"), OutputError)],
)
def test_3_an_interrupt_or_full_disk_inside_torch_save_is_itself_and_leaves_the_old_file(
    tmp_path, monkeypatch, exc, expected
):
    path = save_checkpoint(tmp_path / "ck.pt", build_model("softmax_regression", seed=0))
    before = snapshot(tmp_path)
    monkeypatch.setattr(torch, "save", _failing_save(exc))
    with pytest.raises(expected) as info:
        save_checkpoint(path, build_model("softmax_regression", seed=1))
    if expected is OutputError:
        assert "disk is full" in str(info.value) and "Nothing was changed" in str(info.value)
    assert snapshot(tmp_path) == before  # the old checkpoint, and no .part file


def test_3_ctrl_c_inside_the_first_checkpoint_write_keeps_the_history_and_says_what_is_saved(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(torch, "save", _failing_save(KeyboardInterrupt()))
    ck, js = tmp_path / "ck.pt", tmp_path / "h.json"
    code, out, err = cli(capsys, *train_args(), "--checkpoint", ck, "--json", js)
    assert code == 130
    assert "Interrupted after 1 finished epoch(s)." in out and "holds epoch" not in out  # no checkpoint was saved
    assert json.loads(js.read_text())["epochs"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.json"]


def test_3_a_full_tmpfs_during_a_checkpoint(tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        before = snapshot(disk)
        code, out, err = cli(capsys, *train_args("mlp"), "--checkpoint", disk / "mlp.pt")  # 0.8 MB of weights
        assert code == 2 and "No space left on device" in err and "disk is full" in err
        assert snapshot(disk) == before  # no .part file
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# --- 4. resume checks the checkpoint -----------------------------------------------------


def _resume(path, config, **changes):
    lines = []
    history = fit(
        build_model("softmax_regression", seed=0), config.replace(**changes), checkpoint=path, resume=True,
        progress=False, log=lines.append,
    )  # fmt: skip
    return history, lines


def test_4_another_optimizers_state_is_refused(tmp_path):
    path = tmp_path / "adam.pt"
    config = build_model("softmax_regression").RECIPE.replace(epochs=1, limit=256, test_limit=100, optimizer="adam")
    fit(build_model("softmax_regression"), config, checkpoint=path, progress=False, log=None)
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError) as info:
        _resume(path, config, optimizer="sgd", epochs=2)
    assert "optimizer 'adam' then, 'sgd' now" in str(info.value) and "--overwrite" in str(info.value)
    assert snapshot(tmp_path) == before


def test_4_an_optimizer_state_of_another_kind_under_the_same_name_is_refused(tmp_path):
    model = build_model("softmax_regression")
    adam = torch.optim.Adam(model.parameters())
    config = TrainConfig(epochs=2, limit=256, test_limit=100)
    from mnist_lab.history import History

    save_checkpoint(tmp_path / "ck.pt", model, adam, History.start(model, torch.device("cpu"), config))
    with pytest.raises(CheckpointError, match="another optimiser than SGD"):
        _resume(tmp_path / "ck.pt", config)


def test_4_a_checkpoint_with_weights_only_cannot_be_resumed(tmp_path):
    path = save_checkpoint(tmp_path / "w.pt", build_model("softmax_regression"))
    with pytest.raises(CheckpointError) as info:
        _resume(path, TrainConfig(epochs=2, limit=256, test_limit=100))
    assert "weights only" in str(info.value) and "load_checkpoint(path, model)" in str(info.value)


def test_4_changed_batches_are_refused_and_changed_step_sizes_are_said(tiny_checkpoint):
    path, config = tiny_checkpoint
    before = snapshot(path.parent)
    with pytest.raises(CheckpointError, match="batch_size 64 then, 32 now"):
        _resume(path, config, batch_size=32, epochs=2)
    assert snapshot(path.parent) == before
    history, lines = _resume(path, config, lr=0.05, epochs=2)
    assert history.epochs == 2 and any("lr 0.1 -> 0.05" in line for line in lines)


def test_4_more_finished_epochs_than_asked_for_is_refused_and_equal_is_done(tiny_checkpoint):
    path, config = tiny_checkpoint
    fit(build_model("softmax_regression"), config.replace(epochs=2), checkpoint=path, resume=True, progress=False)
    with pytest.raises(CheckpointError) as info:
        _resume(path, config, epochs=1)
    assert "already holds 2 finished epochs, more than the 1" in str(info.value) and "--epochs 3" in str(info.value)
    history, lines = _resume(path, config, epochs=2)
    assert history.epochs == 2 and "nothing left to train" in lines[0]


def test_4_resuming_another_models_checkpoint_names_both_models_first(tiny_checkpoint):
    path, config = tiny_checkpoint
    model = build_model("mlp", seed=0)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        CheckpointError, match="holds a 'softmax_regression' model, but you are loading it into a 'mlp'"
    ):
        fit(model, config.replace(epochs=2), checkpoint=path, resume=True, progress=False, log=None)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())  # the model is left as it was


def test_4_resume_without_checkpoint_is_refused_before_training(tmp_path, capsys):
    err = refused(capsys, tmp_path, *train_args(), "--resume")
    assert "--resume" in err and "checkpoint=PATH" in err


def test_4_a_whole_pickled_model_is_named_as_such(tmp_path):
    torch.save(build_model("softmax_regression"), tmp_path / "model.pt")  # the tutorials' way
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "model.pt")
    assert "torch.save(model)" in str(info.value) and "truncated" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"", "not a PyTorch file (an empty file)"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not a PyTorch file (a file that starts with b'\\x89PNG"),
        ("truncated", "looks truncated"),
        ("state_dict", "bare state_dict"),
    ],
)
def test_4_unreadable_checkpoints_are_described_as_what_they_are(tmp_path, content, phrase):
    path = tmp_path / "x.pt"
    if content == "truncated":
        save_checkpoint(path, build_model("softmax_regression"))
        path.write_bytes(path.read_bytes()[:5000])
    elif content == "state_dict":
        torch.save(build_model("softmax_regression").state_dict(), path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, build_model("softmax_regression"))
    assert phrase in str(info.value)


def test_4_a_folder_as_checkpoint_to_load(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        read_checkpoint(tmp_path)


# --- 5. text and numbers -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["cpu:x", "cpu:1", "cuda:-1", "auto:0", "mps:abc", "cuda:", "cuda:1e3"])
def test_5_the_part_after_the_colon_is_checked(capsys, name):
    with pytest.raises(InvalidParameterError, match="after the colon comes a device number"):
        get_device(name)
    code, out, err = cli(capsys, *train_args(), "--device", name)
    assert code == 2 and "Valid choices" in err


def test_5_cpu_colon_zero_is_the_cpu():
    assert get_device("cpu:0") == torch.device("cpu:0")


def test_5_seeds_beyond_64_bits_are_refused(capsys):
    with pytest.raises(InvalidParameterError, match="at most 18,446,744,073,709,551,615"):
        TrainConfig(seed=2**64)
    set_seed(2**64 - 1)  # the largest one works
    code, out, err = cli(capsys, *train_args(), "--seed", str(2**64))
    assert code == 2 and "seed must be at most" in err


@pytest.mark.parametrize(
    "failure",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
    ],
)
def test_5_a_batch_too_large_for_memory_gives_advice(tmp_path, capsys, monkeypatch, failure):
    import mnist_lab.models as models

    def out_of_memory(self, x):
        raise failure

    monkeypatch.setattr(models.SoftmaxRegression, "forward", out_of_memory)
    before = snapshot(tmp_path)
    code, out, err = cli(capsys, *train_args(), "--json", tmp_path / "h.json")
    assert code == 2 and "Out of memory" in err and "--batch-size" in err
    assert changed(before, snapshot(tmp_path)) == set()


# --- 6. data faults ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda p: p.write_text("not a folder"), "is a file, not a folder"),
        (lambda p: (p.symlink_to(p.with_name("loop2")), p.with_name("loop2").symlink_to(p)), "cannot be used"),
        (lambda p: None, "that folder does not exist"),
    ],
    ids=["file", "symlink-loop", "missing"],
)
def test_6_mnist_lab_data_that_is_not_a_folder_is_said_not_skipped(tmp_path, capsys, monkeypatch, make, phrase):
    target = tmp_path / "mnist"
    make(target)
    monkeypatch.setenv("MNIST_LAB_DATA", str(target))
    err = refused(capsys, tmp_path, *train_args(), "--json", tmp_path / "h.json")
    assert phrase in err and "MNIST_LAB_DATA" in err
    code, out, err = cli(capsys, "data")
    assert code == 2 and phrase in err


def test_6_an_io_error_while_reading_is_a_data_error(raw_mnist_dir, monkeypatch):
    real_open = open

    def failing_open(path, *args, **kwargs):
        if str(path).endswith("t10k-labels-idx1-ubyte"):
            raise OSError(errno.EIO, "Input/output error")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(DataError) as info:
        data_module.load_mnist("test", data_dir=raw_mnist_dir)
    assert "Input/output error" in str(info.value) and "MNIST_LAB_DATA" in str(info.value)


def test_6_a_decompression_bomb_is_refused_after_reading_one_byte_too_many(tmp_path):
    bomb = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as handle:
        zeros = bytes(1 << 20)
        for _ in range(64):  # 64 MB of zeros in about 64 kB
            handle.write(zeros)
    assert bomb.stat().st_size < 1 << 20
    before = snapshot(tmp_path)
    tracemalloc.start()
    with pytest.raises(DataError) as info:
        data_module._verified_bytes("t10k-labels-idx1-ubyte", bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "longer than the MNIST file" in str(info.value) and "10,008 bytes" in str(info.value)
    assert peak < 4 << 20, f"read {peak:,} bytes into memory"  # 10 kB expected, 64 MB if read whole
    assert snapshot(tmp_path) == before


def test_6_a_folder_named_like_a_data_file_is_not_taken_for_it(tmp_path):
    for name in data_module.FILES:
        (tmp_path / name).mkdir()
    with pytest.raises(DataError, match="not found"):
        data_module.locate(tmp_path, download=False)


# --- 7. arrays given to predict, empty loaders (the parts in `train`) ---------------------


@pytest.mark.parametrize(
    ("images", "phrase"),
    [
        (torch.zeros(56, 56, dtype=torch.uint8), "got (56, 56)"),
        (torch.zeros(2, 3, 28, 28, dtype=torch.uint8), "got (2, 3, 28, 28)"),
        (torch.zeros(0, 28, 28, dtype=torch.uint8), "no images"),
        (torch.full((28, 28), float("nan")), "NaN or infinite"),
        (torch.full((28, 28), float("inf")), "NaN or infinite"),
        (torch.full((28, 28), 200.0), "look like raw 0-255 values"),
        (np.full((28, 28), 4000, dtype=np.uint16), "scale 16-bit images down"),
        (np.zeros((28, 28), dtype=bool), "not torch.bool"),
        ("a string", "tensor or NumPy array"),
    ],
)
def test_7_predict_refuses_what_is_not_a_batch_of_digits(images, phrase):
    with pytest.raises(InvalidParameterError) as info:
        predict(build_model("softmax_regression"), images)
    assert phrase in str(info.value)


def test_7_predict_takes_numpy_and_already_normalised_tensors(test_set):
    from mnist_lab.data import normalize

    model = build_model("softmax_regression", seed=0)
    raw = test_set[0][:4]  # uint8 (4, 28, 28)
    expected = predict(model, raw)[1]
    assert torch.equal(predict(model, raw.numpy())[1], expected)
    assert torch.equal(predict(model, raw.numpy().astype(np.int64))[1], expected)
    assert torch.equal(predict(model, normalize(raw, model.RECIPE.normalize))[1], expected)


def test_7_evaluate_and_fit_refuse_empty_loaders_and_never_swap_in_mnist(monkeypatch):
    import mnist_lab.train as train

    model = build_model("softmax_regression")
    with pytest.raises(InvalidParameterError, match="no samples"):
        evaluate(model, [])
    monkeypatch.setattr(train, "mnist_loader", lambda *a, **k: pytest.fail("MNIST loaded instead"))
    with pytest.raises(InvalidParameterError, match="train_loader is empty"):
        fit(model, train_loader=[], test_loader=[(torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long))])
    with pytest.raises(InvalidParameterError, match="yielded no samples"):
        train_epoch(model, iter(()), torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.functional.cross_entropy)


# --- 9. signals, and errors in a notebook -------------------------------------------------

DRIVER = textwrap.dedent(
    """
    import sys, time, torch
    import mnist_lab.data as data
    from mnist_lab.cli import main

    phase = sys.argv[1]

    def wait():
        print("MARK", flush=True)
        time.sleep(120)  # the test sends its signal now

    if phase == "startup":  # while MNIST is being read
        data._load_cached = lambda *args: wait()
    elif phase == "epoch":  # in the middle of epoch 2 (4 steps an epoch), counted from fit's first step
        import mnist_lab.cli as cli

        real_fit, real_step, steps = cli.fit, torch.optim.SGD.step, [0]

        def step(self, *args, **kwargs):
            steps[0] += 1
            if steps[0] == 6:
                wait()
            return real_step(self, *args, **kwargs)

        def fit(*args, **kwargs):  # Speed.auto's trial steps, before fit, are not counted
            torch.optim.SGD.step = step
            return real_fit(*args, **kwargs)

        cli.fit = fit
    elif phase == "checkpoint":  # while the second checkpoint is being written
        real_save, saves = torch.save, [0]

        def save(obj, handle, *args, **kwargs):
            saves[0] += 1
            if saves[0] == 2:
                handle.write(b"PK" + bytes(4096))
                handle.flush()
                wait()
            return real_save(obj, handle, *args, **kwargs)

        torch.save = save
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", ["startup", "epoch", "checkpoint"])
def test_9_signals_stop_cleanly(tmp_path, sig, phase):
    (tmp_path / "driver.py").write_text(DRIVER)
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(out)
    args = ["train", "--model", "softmax_regression", "--epochs", "3", "--limit", "256", "--test-limit", "100",
            "--no-progress", "--json", out / "h.json", "--checkpoint", out / "ck.pt"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "driver.py"), phase, *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.strip() == "MARK":
            break
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    stdout = "".join(lines) + stdout
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), (stdout, stderr)
    assert "Traceback" not in stderr and "Traceback" not in stdout
    created = changed(before, snapshot(out))
    if phase == "startup":
        assert created == set() and "stopped by" in stderr and stderr.count("\n") == 1
        assert ("SIGTERM" if sig == signal.SIGTERM else "Ctrl-C") in stderr
        return
    assert created == {"h.json", "ck.pt"}  # no .part file
    finished = 1 if phase == "epoch" else 2
    assert f"Interrupted after {finished} finished epoch(s); {out / 'ck.pt'} holds epoch 1." in stdout
    assert json.loads((out / "h.json").read_text())["epochs"] == finished
    assert load_checkpoint(out / "ck.pt", build_model("softmax_regression"))["history"]["epoch"] == [1]


# While `import torch` runs, before `mnist_lab.cli.main` has started: this import hook (a
# sitecustomize.py on PYTHONPATH, which `site` imports at start-up) prints MARK when torch's
# import begins and then sleeps, so the test's signal lands inside that import every time.
SLOW_TORCH = textwrap.dedent(
    """
    import sys, time

    class SlowTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch":
                print("MARK", flush=True)
                time.sleep(120)
            return None  # let the real finders import it

    sys.meta_path.insert(0, SlowTorch())
    """
)


def console_script() -> list[str]:
    """What pip's ``mnist-lab`` script runs: the entry point pyproject.toml names (the installed
    script may come from another checkout, so it is rebuilt from this one's pyproject)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    entry = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["mnist-lab"]
    module, function = entry.split(":")
    return [sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("how", ["console_script", "python_m"])
def test_9_a_signal_while_torch_is_imported_gives_one_line_and_130_or_143(tmp_path, sig, how):
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(SLOW_TORCH)
    command = console_script() if how == "console_script" else [sys.executable, "-m", "mnist_lab"]
    out = tmp_path / "out"
    out.mkdir()
    args = ["train", "--model", "softmax_regression", *SMALL, "--json", str(out / "h.json")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "hook"), str(REPO)])}
    proc = subprocess.Popen(
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    first = proc.stdout.readline()
    assert first == "MARK\n", (first, proc.communicate(timeout=60))  # torch's import has begun
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    name, status = ("SIGTERM", 143) if sig == signal.SIGTERM else ("Ctrl-C", 130)
    assert proc.returncode == status, (stdout, stderr)
    assert stderr == f"mnist-lab: stopped by {name} while starting, before anything was run.\n"
    assert stdout == "" and list(out.iterdir()) == []


def test_9_importing_the_package_or_its_entry_point_imports_no_torch():
    code = "import sys, mnist_lab, mnist_lab.__main__; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert done.returncode == 0 and done.stdout == "[]\n", done


def test_9_the_launcher_exits_as_the_command_line_does():
    import mnist_lab
    import mnist_lab.__main__ as launcher
    from mnist_lab import cli as cli_module

    assert (launcher.EXIT_INTERRUPTED, launcher.EXIT_TERMINATED) == (
        cli_module.EXIT_INTERRUPTED,
        cli_module.EXIT_TERMINATED,
    )
    assert mnist_lab.fit is fit and mnist_lab.train.fit is fit  # names and modules, imported on first use
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        mnist_lab.no_such_name  # noqa: B018


def test_9_outside_ipython_nothing_changes_and_messages_are_one_paragraph():
    assert show_errors_briefly() is False
    message = brief_message(InvalidParameterError("epochs must be at least 1, got 0."))
    assert message == "InvalidParameterError: epochs must be at least 1, got 0."
    assert "--batch-size" in brief_message(torch.OutOfMemoryError("CUDA out of memory."))
    assert brief_message(RuntimeError("shape mismatch")) is None


@pytest.mark.slow
def test_9_a_notebook_shows_a_mnist_lab_error_as_one_paragraph_and_the_cell_still_fails(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    allowed = {"tags": ["raises-exception"]}  # nbclient lets these cells fail and goes on
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("from mnist_lab.notebook import start\ndevice = start(seed=0, device='cpu')"),
        nbformat.v4.new_code_cell("from mnist_lab import TrainConfig\nTrainConfig(epochs=0)", metadata=allowed),
        nbformat.v4.new_code_cell("raise RuntimeError('boom')", metadata=allowed),
        nbformat.v4.new_code_cell("TrainConfig(lr=-1)"),  # not allowed to fail: the run must stop here
        nbformat.v4.new_code_cell("print('never run')"),
    ]
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    with pytest.raises(nbclient.exceptions.CellExecutionError):
        client.execute()
    error = next(o for o in nb.cells[1].outputs if o.output_type == "error")
    assert error.ename == "InvalidParameterError" and len(error.traceback) == 1
    assert "epochs must be at least 1, got 0." in error.traceback[0] and "Traceback" not in error.traceback[0]
    other = next(o for o in nb.cells[2].outputs if o.output_type == "error")
    assert other.ename == "RuntimeError" and "Traceback" in "".join(other.traceback)  # others: the full traceback
    assert "lr must be greater than 0" in nb.cells[3].outputs[0].traceback[0] and nb.cells[4].outputs == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- permissions, as an unprivileged user -------------------------------------------------


def _as_nobody(job) -> object:
    """Run `job()` in a forked child as the user `nobody`; returns what it returns (or its exception)."""
    import pickle
    import pwd

    if os.geteuid() != 0:
        pytest.skip("needs root to become an unprivileged user (as a normal user, permissions already apply)")
    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, send the result back, exit without cleanup
        os.close(read)
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            result = job()
        except BaseException as exc:  # noqa: BLE001 (sent to the parent as it is)
            result = exc
        with os.fdopen(write, "wb") as handle:
            pickle.dump(result, handle)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as handle:
        result = pickle.loads(handle.read())
    os.waitpid(pid, 0)
    return result


@pytest.fixture()
def shared_dir():
    """A folder the unprivileged user may enter (pytest's tmp_path is private to root)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="mnist-lab-perm-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_6_an_unreadable_data_file_is_a_data_error(shared_dir, raw_mnist_dir):
    import shutil

    for name in data_module.FILES:
        shutil.copy(raw_mnist_dir / name, shared_dir / name)
        (shared_dir / name).chmod(0o644)
    (shared_dir / "t10k-labels-idx1-ubyte").chmod(0o000)
    result = _as_nobody(lambda: data_module.load_mnist("test", data_dir=shared_dir))
    assert isinstance(result, DataError) and "Permission denied" in str(result), result


def test_6_a_data_folder_that_cannot_be_entered_is_a_data_error(shared_dir):
    (shared_dir / "mnist").mkdir(mode=0o700)
    result = _as_nobody(lambda: data_module.locate(shared_dir / "mnist", download=False))
    assert isinstance(result, DataError) and "permission denied" in str(result).lower(), result


def test_12_an_output_folder_you_may_not_write_is_refused(shared_dir):
    (shared_dir / "ro").mkdir(mode=0o755)  # owned by root: nobody may not write there
    before = snapshot(shared_dir)
    result = _as_nobody(lambda: check_writable(shared_dir / "ro" / "h.json"))
    assert isinstance(result, OutputError) and "You may not write there" in str(result), result
    assert snapshot(shared_dir) == before


def test_4_an_unreadable_checkpoint_says_so(shared_dir):
    path = save_checkpoint(shared_dir / "ck.pt", build_model("softmax_regression"))
    path.chmod(0o600)
    result = _as_nobody(lambda: load_checkpoint(path))
    assert isinstance(result, CheckpointError) and "check its permissions" in str(result), result


# --- concurrent use -----------------------------------------------------------------------


def test_concurrent_writers_of_one_checkpoint_leave_one_whole_file_and_no_parts(tmp_path):
    models = [build_model("softmax_regression", seed=s) for s in range(4)]
    errors = []

    def writer(model):
        try:
            for _ in range(5):
                save_checkpoint(tmp_path / "ck.pt", model)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(m,)) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
    loaded = load_checkpoint(tmp_path / "ck.pt")["model_state"]
    assert any(all(torch.equal(loaded[k], m.state_dict()[k]) for k in loaded) for m in models)


def test_concurrent_atomic_writes_of_one_report(tmp_path):
    def writer(i):
        for _ in range(20):
            with atomic_write(tmp_path / "r.json", "w") as handle:
                json.dump({"writer": i, "pad": "x" * 10_000}, handle)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert json.loads((tmp_path / "r.json").read_text())["writer"] in range(4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
