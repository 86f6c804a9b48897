"""Issue 15, class 8: `mnist-lab batch` refuses what it must not do, before anything runs.

Each case runs the command line in this process (`mnist_lab.cli.main`) on tiny notebooks in
tmp_path and asserts the exit status 2, one message naming the problem and the fix, no
traceback, and (a snapshot of tmp_path before and after) that nothing was created, changed
or removed. Only the SIGTERM case starts Dask (a subprocess; marked slow).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from test_batch import write_notebook
from test_faults_round2 import changed, snapshot

from mnist_lab import batch
from mnist_lab.cli import main

PARAMS = 'epochs = 1  # passes\nlr = 0.1  # step\noutput_dir = "r"  # results\n'


@pytest.fixture
def nb(tmp_path):
    """A quick notebook declaring epochs, lr and output_dir, in tmp_path/notebooks."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    return write_notebook(folder, "01_tiny", PARAMS, ['print("epochs", epochs)'])


def refused(capsys, folder: Path, *args) -> str:
    """`mnist-lab batch ARGS` exits 2 with one line and no traceback, changing nothing under `folder`."""
    before = snapshot(folder)
    code = main(["batch", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == 2, (out, err)
    assert err.startswith("mnist-lab: error:") and err.count("\n") == 1, err
    assert changed(before, snapshot(folder)) == set()
    return err


def test_1_out_equal_to_the_notebooks_folder_is_refused(tmp_path, capsys, nb):
    err = refused(capsys, tmp_path, nb, "--out", nb.parent)
    assert "over its source notebook" in err and "Choose an --out folder apart" in err


def test_1_a_source_notebook_inside_a_run_folder_is_refused(tmp_path, capsys, nb):
    other = write_notebook(tmp_path / "notebooks", "02_other", PARAMS, ["pass"])
    (tmp_path / "out" / "01_tiny").mkdir(parents=True)
    inside = write_notebook(tmp_path / "out" / "01_tiny", "03_inside", PARAMS, ["pass"])
    err = refused(capsys, tmp_path, nb, other, inside, "--out", tmp_path / "out")
    assert "03_inside.ipynb" in err and "source notebook" in err


@pytest.mark.parametrize("name", ["...ipynb", ".hidden.ipynb", "a b.ipynb"])
def test_2_a_notebook_name_that_is_not_a_plain_file_name_is_refused(tmp_path, capsys, nb, name):
    odd = tmp_path / "notebooks" / name
    odd.write_bytes(nb.read_bytes())
    err = refused(capsys, tmp_path, odd, "--out", tmp_path / "notebooks" / "out")
    assert "plain file name" in err and "Rename or copy" in err


def test_2_a_relative_path_names_its_results_after_the_file_itself(tmp_path, nb, monkeypatch):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    runs = batch.plan(["../notebooks/01_tiny.ipynb"], out="out")
    assert [run.name for run in runs] == ["01_tiny"]
    assert runs[0].params["output_dir"] == str(tmp_path / "sub" / "out" / "01_tiny")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01_tiny:\n  1: 2\n", "the key 1 is a int, not text"),
        ("lr: 2026-12-02\n", "is a date, which a notebook parameter cannot hold"),
        ("lr: !!binary aGk=\n", "is a bytes, which a notebook parameter cannot hold"),
        ("lr: 1e-3\n", "write 1.0e-3 or 0.001"),
        ("lr: 0.1\nepochs: 2\nlr: 0.2\n", "'lr' is given twice"),
        ("01_tiny:\n  lr: 0.1\n  lr: 0.2\n", "'lr' is given twice"),
    ],
)
def test_3_parameter_file_problems_are_refused_with_a_hint(tmp_path, capsys, nb, text, expected):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    err = refused(capsys, tmp_path, nb, "-f", params, "--out", tmp_path / "out")
    assert expected in err and str(params) in err


def test_3_a_bare_exponent_on_the_command_line_gets_the_same_hint(tmp_path, capsys, nb):
    err = refused(capsys, tmp_path, nb, "-p", "lr", "1e-3", "--out", tmp_path / "out")
    assert "write 1.0e-3 or 0.001" in err
    assert batch.parse_value("1.0e-3") == 0.001 and batch.parse_value("'1e-3'") == "1e-3"  # quoted: text


def test_4_a_file_where_a_run_folder_belongs_is_refused(tmp_path, capsys, nb):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "01_tiny").write_text("mine")
    err = refused(capsys, tmp_path, nb, "--out", tmp_path / "out")
    assert "is a file, but batch keeps the results" in err and "Move or delete" in err


def test_4_a_file_where_a_sweep_folder_belongs_is_refused(tmp_path, capsys, nb):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "01_tiny").write_text("mine")
    err = refused(capsys, tmp_path, nb, "--grid", "lr=0.1,0.2", "--out", tmp_path / "out")
    assert "is a file, but batch keeps the results" in err


def test_4_a_folder_where_the_executed_copy_belongs_is_refused(tmp_path, capsys, nb):
    (tmp_path / "out" / "01_tiny.ipynb").mkdir(parents=True)
    err = refused(capsys, tmp_path, nb, "--out", tmp_path / "out")
    assert "01_tiny.ipynb is a folder, not a file" in err


def test_5_an_incomplete_executed_copy_is_never_saved_under_its_name(tmp_path, nb):
    (run,) = batch.plan([nb], out=tmp_path / "out")
    result = {"status": "ok", "error": "", "seconds": 1.0, "notebook": b'{"cells": [', "files": {}, "host": "h"}
    row = batch.save_result(run, result, (tmp_path / "out").resolve())
    assert row["status"] == "failed" and "incomplete" in row["error"]
    assert not (tmp_path / "out" / "01_tiny.ipynb").exists()
    assert not (tmp_path / "out" / "01_tiny" / batch.STATE_FILE).exists()  # not recorded as done
    assert not list((tmp_path / "out").rglob("*.part"))


def test_6_a_second_batch_on_the_same_out_is_refused_naming_the_first(tmp_path, capsys, nb):
    out = (tmp_path / "out").resolve()
    with batch.batch_lock(out) as lock:
        assert lock.read_text().startswith(f"{os.getpid()} on ")
        err = refused(capsys, tmp_path, nb, "--out", out)
    assert f"process {os.getpid()} on" in err and "Wait for it to finish" in err and "another --out" in err
    assert not lock.exists()  # released
    with batch.batch_lock(out):  # and free again
        pass


def test_6_the_lock_is_released_when_the_batch_fails(tmp_path, nb, monkeypatch):
    out = tmp_path / "out"

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(batch, "_run_locked", boom)
    with pytest.raises(RuntimeError):
        batch.run_batch([nb], out=out)
    assert not (out / batch.LOCK_FILE).exists()
    with batch.batch_lock(out.resolve()):
        pass


@pytest.mark.slow
def test_5_sigterm_stops_the_client_with_143_one_line_and_no_part_files(tmp_path):
    slow = write_notebook(tmp_path, "01_slow", 'output_dir = "x"  # results\n', ["import time\ntime.sleep(120)"])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "mnist_lab", "batch", str(slow), "--out", str(out)]
    client = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / batch.LOCK_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # the cluster starting, the run submitted
    client.send_signal(signal.SIGTERM)
    printed, errors = client.communicate(timeout=180)
    assert client.returncode == batch.EXIT_TERMINATED, (printed, errors)
    assert "Traceback" not in printed + errors, errors
    assert "Stopped by SIGTERM" in printed
    assert not list(out.rglob("*.part")) and not (out / batch.LOCK_FILE).exists()
    assert "not run: the batch was interrupted" in (out / "summary.csv").read_text()


# --- 7. a timeout or an interrupt while a cell runs: one clear line, no kernel or zmq noise ---

KERNEL_NOISE = ("Traceback", "zmq", "IPKernelApp")  # the kernel's log: ZMQError tracebacks, transport warnings


def run_batch_process(notebook: Path, out: Path, *options: str) -> subprocess.Popen:
    """`python -m mnist_lab batch NOTEBOOK --out OUT OPTIONS` as a process, its output in pipes."""
    argv = [sys.executable, "-m", "mnist_lab", "batch", str(notebook), "--out", str(out), *options]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_no_kernel_noise(printed: str, errors: str) -> None:
    for noise in KERNEL_NOISE:
        assert noise.lower() not in (printed + errors).lower(), errors


@pytest.mark.slow
def test_7_a_cell_over_the_timeout_fails_its_run_with_one_line_naming_both(tmp_path):
    slow = write_notebook(tmp_path, "01_sleepy", 'output_dir = "x"  # results\n', ["import time\ntime.sleep(120)"])
    out = tmp_path / "out"
    client = run_batch_process(slow, out, "--timeout", "3")
    printed, errors = client.communicate(timeout=240)
    assert client.returncode == batch.EXIT_FAILED, (printed, errors)  # 1: a run failed
    line = "[1/1] 01_sleepy: failed in "
    (report,) = [text for text in printed.splitlines() if text.startswith(line)]
    assert report.endswith(": CellTimeoutError: A cell timed out while it was being executed, after 3 seconds.")
    assert float(report[len(line) :].split(" s:")[0]) < 60  # stopped by --timeout, not by the 120 s sleep
    assert_no_kernel_noise(printed, errors)
    assert (out / "01_sleepy.ipynb").exists() and not list(out.rglob("*.part"))
    assert "CellTimeoutError" in (out / "summary.csv").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_7_ctrl_c_or_sigterm_while_a_cell_runs_stops_with_one_line_and_no_kernel_noise(tmp_path, sig):
    started = tmp_path / "started"
    cell = f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(120)"
    slow = write_notebook(tmp_path, "01_sleepy", 'output_dir = "x"  # results\n', [cell])
    out = tmp_path / "out"
    client = run_batch_process(slow, out)
    deadline = time.monotonic() + 240
    while not started.exists() and client.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert started.exists(), client.communicate(timeout=60)  # the kernel is inside the cell
    client.send_signal(sig)
    printed, errors = client.communicate(timeout=180)
    by, status = ("SIGTERM", batch.EXIT_TERMINATED) if sig == signal.SIGTERM else ("Ctrl-C", batch.EXIT_INTERRUPTED)
    assert client.returncode == status, (printed, errors)
    assert f"Interrupted. Stopped by {by}; finished runs are recorded" in printed
    assert_no_kernel_noise(printed, errors)
    assert not list(out.rglob("*.part")) and not (out / batch.LOCK_FILE).exists()
