"""`mnist-lab batch` on tiny synthetic notebooks (no MNIST; a kernel start is the main cost), run on Dask.

Most tests share one local Dask cluster (`cluster`); the sweep tests at the end also start their
own local cluster (no --scheduler) and a real `dask scheduler` with two `dask worker` processes
on 127.0.0.1 (`dask_processes`), which is also where a worker is killed and a client interrupted.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from conftest import REPO

from mnist_lab import batch, cli

# Each notebook: (parameters cell or None, code cells). The "ok" ones report metrics.
NOTEBOOKS = {
    "01_ok": (
        'epochs = 10  # passes\nlr = 0.1  # step\noutput_dir = "results/01_ok"  # results\n',
        [
            "import os\nfrom mnist_lab.notebook import save_metrics",
            'save_metrics(output_dir, "01_ok", test_acc=0.5 + epochs / 100, epochs=epochs, seconds=0.0, '
            'device="cpu", cwd=os.getcwd(), lr=lr, omp=os.environ.get("OMP_NUM_THREADS"), '
            'trim=os.environ.get("MALLOC_TRIM_THRESHOLD_"))',
        ],
    ),
    "02_raises": ("epochs = 1  # passes\n", ['raise ValueError("bad value\\nsecond line")']),
    "03_slow": ('output_dir = "x"  # results\n', ["import time\ntime.sleep(60)"]),
    "04_dies": (None, ["import os\nos._exit(1)"]),
    "05_after": (
        'seed = 0  # seed\noutput_dir = "r"  # results\n',
        [
            "import json, pathlib\np = pathlib.Path(output_dir)\np.mkdir(parents=True, exist_ok=True)\n"
            '(p / "metrics.json").write_text(json.dumps({"test_acc": 0.9, "epochs": 2, "device": "cpu", '
            '"seed": seed}))'
        ],
    ),
}


OMP_OUTSIDE = os.environ.get("OMP_NUM_THREADS")  # read before a Dask nanny sets it in this process
TRIM_OUTSIDE = os.environ.get("MALLOC_TRIM_THRESHOLD_")
MAIN = ["01_ok", "02_raises", "04_dies", "05_after"]  # 03_slow has its own test (a timeout costs seconds)

# A second quick "ok" notebook (no torch import in its kernel) for the rerun tests.
LIGHT = (
    "epochs = 10  # passes\n",
    ['print("epochs", epochs)'],
)


def write_notebook(folder, stem, params, codes):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {stem}")]
    if params is not None:
        nb.cells.append(nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}))
    nb.cells += [nbformat.v4.new_code_cell(code) for code in codes]
    path = folder / f"{stem}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notebooks")
    paths = {stem: write_notebook(folder, stem, *spec) for stem, spec in NOTEBOOKS.items()}
    paths["06_light"] = write_notebook(folder, "06_light", *LIGHT)
    return paths


@pytest.fixture(scope="module")
def cluster():
    """A local Dask cluster of two worker processes on 127.0.0.1, shared by this module's tests."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as local:
        yield local.scheduler_address


@pytest.fixture(scope="module")
def first_run(notebooks, cluster, tmp_path_factory):
    """One batch over an ok, a raising, a dying and an ok notebook, with -p epochs 3."""
    out = tmp_path_factory.mktemp("batch") / "out"
    lines: list[str] = []
    chosen = [notebooks[stem] for stem in MAIN]
    status = batch.run_batch(chosen, [("epochs", "3")], out=out, log=lines.append, scheduler=cluster)
    return status, out, lines


def read_csv(out):
    with open(out / "summary.csv", newline="") as handle:
        return {row["notebook"]: row for row in csv.DictReader(handle)}


def test_parameters_are_injected_and_metrics_collected(first_run):
    status, out, _ = first_run
    metrics = json.loads((out / "01_ok" / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and isinstance(metrics["epochs"], int)  # -p value parsed as YAML
    assert metrics["lr"] == 0.1  # not given: the notebook's default
    assert metrics["cwd"] == str(REPO)  # notebooks run in the repository root
    if OMP_OUTSIDE is None:  # Dask's nanny sets OMP_NUM_THREADS=1; the kernel must train on every core
        assert metrics["omp"] is None
    if TRIM_OUTSIDE is None:  # ... and MALLOC_TRIM_THRESHOLD_=65536, which made every step re-fault its memory
        assert metrics["trim"] is None
    executed = nbformat.read(out / "01_ok.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    # On the worker, output_dir is a scratch folder whose files travel back to DIR/01_ok.
    assert 'output_dir = "' in injected[0].source and "mnist-lab-batch-" in injected[0].source
    state = json.loads((out / "01_ok" / "batch.json").read_text())
    assert state["parameters"] == {"epochs": 3, "output_dir": str(out.resolve() / "01_ok")}


def test_failures_are_recorded_and_do_not_stop_the_batch(first_run):
    status, out, lines = first_run
    assert status == batch.EXIT_FAILED
    rows = read_csv(out)
    assert [rows[s]["status"] for s in MAIN] == ["ok", "failed", "failed", "ok"]
    assert rows["02_raises"]["error"] == "ValueError: bad value (at In [3])"  # first line only
    assert rows["04_dies"]["error"] == "DeadKernelError: Kernel died"
    for stem in ("02_raises", "04_dies"):
        assert (out / f"{stem}.ipynb").exists()  # the executed copy shows how far it got
        assert not (out / stem / "batch.json").exists()  # not done: a rerun tries again
    failed = nbformat.read(out / "02_raises.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in failed.cells for o in c.get("outputs", []))
    assert not list(out.glob(".*.part*"))
    assert lines[-1].startswith("Summary:") and any("05_after: ok" in line for line in lines)


def test_summary_is_well_formed(first_run):
    _, out, _ = first_run
    rows = read_csv(out)
    assert list(rows) == MAIN
    assert list(rows["01_ok"]) == list(batch.SUMMARY_COLUMNS)
    assert rows["01_ok"]["test_acc"] == "0.53" and rows["01_ok"]["epochs"] == "3"
    assert rows["01_ok"]["device"] == "cpu" and float(rows["01_ok"]["seconds"]) > 0
    assert rows["04_dies"]["test_acc"] == ""
    md = (out / "summary.md").read_text().splitlines()
    table = [line for line in md if line.startswith("|")]
    assert table[0] == "| notebook | status | test_acc | epochs | seconds | device | error |"
    assert len(table) == 2 + len(MAIN)
    assert all(line.count(" | ") == len(batch.SUMMARY_COLUMNS) - 1 for line in table[2:])  # no stray pipes
    assert table[2].startswith("| 01_ok | ok | 53.00% | 3 |")
    assert "4 notebooks: 2 ok, 2 failed, 0 skipped" in md[2]
    assert "- 01_ok: `epochs = 3`" in md and "- 04_dies: defaults" in md


@pytest.mark.slow
def test_second_run_skips_finished_notebooks_and_force_reruns(notebooks, cluster, tmp_path):
    out = tmp_path / "out"
    chosen = [notebooks["05_after"], notebooks["06_light"]]
    stems = ["05_after", "06_light"]

    def statuses(*params, force=False):
        assert batch.run_batch(chosen, list(params), out=out, force=force, log=lambda _: None, scheduler=cluster) == 0
        rows = read_csv(out)
        return [rows[stem]["status"] for stem in stems]

    assert statuses() == ["ok", "ok"]
    copies = {stem: (out / f"{stem}.ipynb").stat().st_mtime_ns for stem in stems}
    assert statuses() == ["skipped", "skipped"]
    assert read_csv(out)["05_after"]["test_acc"] == "0.9"  # metrics of the recorded run
    assert {stem: (out / f"{stem}.ipynb").stat().st_mtime_ns for stem in stems} == copies  # not rewritten

    (out / "05_after" / "batch.json").unlink()  # as if Ctrl-C had stopped it half-way
    assert statuses() == ["ok", "skipped"]
    assert statuses(("epochs", "2")) == ["skipped", "ok"]  # changed parameters: run again
    executed = nbformat.read(out / "06_light.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "epochs 2\n"
    assert statuses(("epochs", "2"), force=True) == ["ok", "ok"]


@pytest.mark.slow
def test_an_edited_notebook_is_run_again(notebooks, cluster, tmp_path):
    out = tmp_path / "out"
    source = notebooks["05_after"]
    path = write_notebook(tmp_path, "05_after", *NOTEBOOKS["05_after"])
    assert batch.run_batch([path], out=out, log=lambda _: None, scheduler=cluster) == 0
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("1 + 1"))
    nbformat.write(nb, path)
    assert batch.run_batch([path], out=out, log=lambda _: None, scheduler=cluster) == 0
    assert read_csv(out)["05_after"]["status"] == "ok"
    assert source.exists()


@pytest.mark.slow
def test_kernel_is_this_python_whatever_kernels_are_installed(notebooks, tmp_path, monkeypatch):
    # A python3 kernelspec from another Python, found first on the jupyter path, must not be used.
    # No --scheduler: a new local cluster, whose workers inherit JUPYTER_PATH.
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "other", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    out = tmp_path / "out"
    assert batch.run_batch([notebooks["06_light"]], out=out, log=lambda _: None) == 0
    assert read_csv(out)["06_light"]["status"] == "ok"


@pytest.mark.slow
def test_interrupted_batch_resumes_without_redoing_finished_notebooks(notebooks, cluster, tmp_path, monkeypatch):
    out = tmp_path / "out"
    chosen = [notebooks["05_after"], notebooks["06_light"]]
    real = batch.save_result

    def interrupted_at_second(job, *args):  # Ctrl-C while the client waits for 06_light
        if job.stem == "06_light":
            raise KeyboardInterrupt
        return real(job, *args)

    monkeypatch.setattr(batch, "save_result", interrupted_at_second)
    assert batch.run_batch(chosen[:1], out=out, log=lambda _: None, scheduler=cluster) == 0  # 05_after done
    assert batch.run_batch(chosen, out=out, log=lambda _: None, scheduler=cluster) == batch.EXIT_INTERRUPTED
    rows = read_csv(out)
    assert rows["05_after"]["status"] == "skipped"
    assert rows["06_light"]["status"] == "failed" and "interrupted" in rows["06_light"]["error"]
    assert not (out / "06_light.ipynb").exists() and not (out / "06_light" / "batch.json").exists()
    monkeypatch.setattr(batch, "save_result", real)
    assert batch.run_batch(chosen, out=out, log=lambda _: None, scheduler=cluster) == 0
    rows = read_csv(out)
    assert [rows[s]["status"] for s in ("05_after", "06_light")] == ["skipped", "ok"]


@pytest.mark.slow
def test_jobs_run_in_parallel_processes_and_a_cell_over_the_timeout_fails(notebooks, tmp_path):
    out = tmp_path / "out"
    chosen = [notebooks["02_raises"], notebooks["03_slow"], notebooks["05_after"]]
    lines: list[str] = []
    assert batch.run_batch(chosen, out=out, jobs=2, timeout=5, log=lines.append) == batch.EXIT_FAILED
    rows = read_csv(out)
    assert list(rows) == ["02_raises", "03_slow", "05_after"]  # notebook order, not completion order
    assert [rows[s]["status"] for s in rows] == ["failed", "failed", "ok"]
    assert rows["02_raises"]["error"] == "ValueError: bad value (at In [2])"  # no injected cell here
    assert rows["03_slow"]["error"].startswith("CellTimeoutError: A cell timed out")
    assert float(rows["03_slow"]["seconds"]) < 40  # stopped by --timeout 5, not by the 60 s sleep
    assert "a local Dask cluster of 2 worker process(es)" in lines[0]
    assert any(line.startswith("Dask dashboard: http://127.0.0.1:") for line in lines)
    assert not list(out.rglob("*.part"))


# --------------------------------------------------------------------------- refused before anything runs


def run_cli(argv, capsys):
    status = cli.main(["batch", *map(str, argv)])
    return status, capsys.readouterr().err


def test_undeclared_parameter_is_refused_before_anything_runs(notebooks, tmp_path, capsys):
    out = tmp_path / "out"
    status, err = run_cli([notebooks["01_ok"], "-p", "epoch", "3", "--out", out], capsys)
    assert status == 2
    assert "'epoch' (did you mean 'epochs'?)" in err and "01_ok.ipynb" in err and "epochs, lr, output_dir" in err
    assert not out.exists()  # nothing written, nothing run


def test_parameter_declared_by_none_of_several_is_refused(notebooks, tmp_path, capsys):
    out = tmp_path / "out"
    status, err = run_cli([notebooks["01_ok"], notebooks["05_after"], "-p", "sed", "1", "--out", out], capsys)
    assert status == 2 and "none of the chosen notebooks declares" in err and "Did you mean 'seed'?" in err
    assert "01_ok: epochs, lr, output_dir; 05_after: seed, output_dir" in err
    assert not out.exists()


def test_output_dir_cannot_be_set_by_hand(notebooks, tmp_path, capsys):
    status, err = run_cli([notebooks["01_ok"], "-p", "output_dir", "x", "--out", tmp_path / "o"], capsys)
    assert status == 2 and "--out" in err


def test_a_notebook_that_reads_earlier_results_is_pointed_at_the_batch_folder(tmp_path):
    # Notebook 07 looks for 05's and 06's checkpoints in results_dir (default: the folder above its
    # output_dir). Its output_dir is a scratch folder on the worker, so batch says where DIR is.
    reader = write_notebook(tmp_path, "07_reader", 'results_dir = None  # earlier outputs\noutput_dir = "r"\n', [])
    (job,) = batch.plan([reader], [], None, tmp_path / "o")
    assert job.params == {"results_dir": str((tmp_path / "o").resolve()), "output_dir": job.params["output_dir"]}
    (given,) = batch.plan([reader], [("results_dir", "elsewhere")], None, tmp_path / "o")
    assert given.params["results_dir"] == "elsewhere"  # what the instructor says wins


def test_params_file_common_and_per_notebook(notebooks, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("seed: 4\nlr: 0.5\n01_ok:\n  epochs: 2\n  lr: 0.25\n")
    jobs = batch.plan([notebooks["01_ok"], notebooks["05_after"]], [("epochs", "7")], params, tmp_path / "o")
    given = {job.stem: {k: v for k, v in job.params.items() if k != "output_dir"} for job in jobs}
    # per-notebook beats common; -p beats both; common values only go where declared
    assert given == {"01_ok": {"lr": 0.25, "epochs": 7}, "05_after": {"seed": 4}}
    assert all(job.params["output_dir"] == str((tmp_path / "o" / job.stem).resolve()) for job in jobs)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("01_ok:\n  epoch: 2\n", "section '01_ok', sets 'epoch' (did you mean 'epochs'?)"),
        ("01_okk:\n  epochs: 2\n", "Did you mean the notebook '01_ok'?"),
        ("01_ok: 3\n", "its value must be a mapping"),
        ("- epochs\n", "must be a YAML mapping"),
        ("sead: 1\n", "Did you mean 'seed'?"),
    ],
)
def test_bad_params_file_is_refused(notebooks, tmp_path, content, fragment):
    params = tmp_path / "params.yaml"
    params.write_text(content)
    with pytest.raises(batch.InvalidParameterError) as info:
        batch.plan([notebooks["01_ok"], notebooks["05_after"]], [], params, tmp_path / "o")
    assert fragment in str(info.value)


def test_section_for_a_notebook_not_chosen_is_ignored(notebooks, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("05_after:\n  seed: 3\n")
    (job,) = batch.plan([notebooks["01_ok"]], [], params, tmp_path / "o")
    assert job.params == {"output_dir": str((tmp_path / "o" / "01_ok").resolve())}


def test_bad_notebook_paths_and_options_are_refused(notebooks, tmp_path, capsys):
    assert run_cli([tmp_path / "missing.ipynb", "--out", tmp_path / "o"], capsys)[0] == 2
    assert run_cli([notebooks["01_ok"], "--out", tmp_path / "o", "--jobs", "0"], capsys)[0] == 2
    assert run_cli([notebooks["01_ok"], "--out", tmp_path / "o", "--timeout", "0"], capsys)[0] == 2
    twin = tmp_path / "other"
    twin.mkdir()
    copy = twin / "01_ok.ipynb"
    copy.write_bytes(notebooks["01_ok"].read_bytes())
    status, err = run_cli([notebooks["01_ok"], copy, "--out", tmp_path / "o"], capsys)
    assert status == 2 and "Two notebooks are named '01_ok'" in err
    assert not (tmp_path / "o").exists()


def test_values_are_parsed_as_yaml():
    assert [batch.parse_value(v) for v in ("3", "0.5", "true", "null", "cpu", "cuda:0", "[1, 2]")] == [
        3,
        0.5,
        True,
        None,
        "cpu",
        "cuda:0",
        [1, 2],
    ]


def test_default_notebooks_are_the_numbered_series_in_order():
    found = batch.default_notebooks(REPO)
    assert found == sorted(found) and all(p.name[0].isdigit() for p in found)
    assert found == sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))
    assert os.path.samefile(batch.repo_root(), REPO)


# --------------------------------------------------------------------------- sweeps: planning


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("seed=0..3", ("seed", [0, 1, 2, 3])),
        ("seed=-1..1", ("seed", [-1, 0, 1])),
        ("lr=0.05,0.1", ("lr", [0.05, 0.1])),
        ("device=cpu, cuda:0", ("device", ["cpu", "cuda:0"])),
        ("shuffle=true,false", ("shuffle", [True, False])),
        ("limit=null,100", ("limit", [None, 100])),
    ],
)
def test_grid_values_are_typed_like_p(spec, expected):
    assert batch.parse_grid(spec) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("seed", "write NAME=V1,V2"),
        ("seed=", "write NAME=V1,V2"),
        ("1x=2", "write NAME=V1,V2"),
        ("seed=3..1", "3..1 is empty"),
        ("lr=0.1,,0.2", "an empty value"),
        ("lr=0.1,0.1", "listed twice"),
    ],
)
def test_bad_grids_are_refused(spec, fragment):
    with pytest.raises(batch.InvalidParameterError, match=fragment):
        batch.parse_grid(spec)


def test_a_grid_runs_every_combination_in_its_own_folder(notebooks, tmp_path):
    chosen = [notebooks["01_ok"], notebooks["05_after"]]
    jobs = batch.plan(chosen, [("epochs", "2")], None, tmp_path / "o", ["lr=0.1,0.5", "seed=0..1"])
    # 01_ok declares lr but not seed; 05_after declares seed only; each gets the grids it declares.
    assert [job.name for job in jobs] == ["01_ok/lr=0.1", "01_ok/lr=0.5", "05_after/seed=0", "05_after/seed=1"]
    assert jobs[1].params == {"epochs": 2, "lr": 0.5, "output_dir": str((tmp_path / "o" / "01_ok/lr=0.5").resolve())}
    assert jobs[3].grid == {"seed": 1} and jobs[3].params["seed"] == 1
    assert len({job.key() for job in jobs}) == 4


def test_run_folders_are_safe_names_inside_out(notebooks, tmp_path):
    (job,) = batch.plan([notebooks["05_after"]], [], None, tmp_path / "o", ["seed=../../etc/x"])
    folder = (tmp_path / "o" / job.name).resolve()
    assert folder.parent == (tmp_path / "o" / "05_after").resolve()  # one level below DIR/<stem>, nowhere else
    assert "/" not in job.name.split("/", 1)[1] and job.name.startswith("05_after/seed=..-..-etc-x-")
    assert batch.safe_value("cuda:0") != batch.safe_value("cuda/0")  # made safe, still told apart
    assert batch.safe_value(0.001) == "0.001" and batch.safe_value(True) == "true"


def test_undeclared_or_doubly_set_grid_names_are_refused_before_anything_runs(notebooks, tmp_path, capsys):
    out = tmp_path / "out"
    status, err = run_cli([notebooks["05_after"], "--grid", "sed=0..2", "--out", out], capsys)
    assert status == 2 and "--grid sed=... sets 'sed' (did you mean 'seed'?)" in err
    status, err = run_cli([notebooks["05_after"], "-p", "seed", "1", "--grid", "seed=0..2", "--out", out], capsys)
    assert status == 2 and "already set by -p" in err
    status, err = run_cli([notebooks["05_after"], "--grid", "seed=2..0", "--out", out], capsys)
    assert status == 2 and "is empty" in err
    assert not out.exists()


@pytest.mark.slow
def test_jobs_and_scheduler_are_exclusive_and_an_unreachable_scheduler_is_a_clear_error(notebooks, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["batch", str(notebooks["06_light"]), "--out", str(tmp_path / "o"), "--jobs", "2", "--scheduler", "x"])
    assert "not allowed with argument" in capsys.readouterr().err
    import socket

    with socket.socket() as free:  # a port on 127.0.0.1 where nothing listens
        free.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{free.getsockname()[1]}"
    status, err = run_cli([notebooks["06_light"], "--out", tmp_path / "o", "--scheduler", address], capsys)
    assert status == 2 and f"No Dask scheduler answers at {address!r}" in err and "dask scheduler" in err


# --------------------------------------------------------------------------- sweeps: tables and figure


def test_aggregate_is_per_combination_of_the_non_seed_values(notebooks, tmp_path):
    jobs = batch.plan([notebooks["01_ok"]], [], None, tmp_path, ["lr=0.1,0.5"])
    jobs = [
        batch.Job(j.notebook, j.stem, j.declared, {}, {**j.grid, "seed": s}, f"{j.name}-{s}")
        for j in jobs
        for s in (0, 1, 2)
    ]
    accs = [0.90, 0.92, None, 0.80, 0.85, 0.83]  # lr=0.1 seed 2 failed
    rows = [{"status": "ok" if a else "failed", "test_acc": a} for a in accs]
    (first, second) = batch.aggregate(rows, jobs)["01_ok"]
    assert first["lr"] == 0.1 and first["runs"] == 3 and first["failed"] == 1 and first["accuracies"] == [0.90, 0.92]
    assert first["mean"] == pytest.approx(0.91) and first["std"] == pytest.approx(0.0141421, rel=1e-4)
    assert (first["min"], first["max"]) == (0.90, 0.92)
    assert second["mean"] == pytest.approx(0.8266667) and second["std"] == pytest.approx(0.0251661, rel=1e-4)
    assert (second["min"], second["max"], second["failed"]) == (0.80, 0.85, 0)


def test_plot_sweep_draws_every_run_and_the_spread():
    from mnist_lab.plots import plot_sweep

    fig = plot_sweep({"": {0.01: [0.9, 0.92, 0.91], 0.1: [0.95, 0.97]}}, xlabel="lr")
    ax = fig.axes[0]
    dots = [line for line in ax.lines if line.get_linestyle() == "None" and line.get_marker() == "o"]
    assert sorted(y for line in dots for y in line.get_ydata()) == pytest.approx([90, 91, 92, 95, 97])
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "lr"  # 0.01 to 0.1: a factor of 10
    (bars,) = ax.containers  # the mean with ±1 std error bars
    assert bars.lines[0].get_ydata() == pytest.approx([91, 96])


def read_sweep(out):
    with open(out / batch.SWEEP_FILE, newline="") as handle:
        return list(csv.DictReader(handle))


def check_smoke_sweep(out, status):
    """What a 2 x 2 smoke sweep of notebook 02 must leave: 4 runs ok, 2 aggregate rows, the figure."""
    assert status == 0
    rows = list(read_csv_rows(out))
    assert [(r["lr"], r["seed"], r["status"]) for r in rows] == [
        ("0.05", "0", "ok"),
        ("0.05", "1", "ok"),
        ("0.2", "0", "ok"),
        ("0.2", "1", "ok"),
    ]
    assert all(0.5 < float(r["test_acc"]) <= 1 for r in rows)
    table = read_sweep(out)
    assert [(t["notebook"], t["lr"], t["runs"], t["failed"]) for t in table] == [
        (STEM_02, "0.05", "2", "0"),
        (STEM_02, "0.2", "2", "0"),
    ]
    for t, pair in zip(table, (rows[:2], rows[2:])):
        accs = [float(r["test_acc"]) for r in pair]
        assert float(t["mean"]) == pytest.approx(sum(accs) / 2) and float(t["min"]) == min(accs)
    assert (out / STEM_02 / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "summary.md").read_text()
    assert f"## Sweep of {STEM_02}" in md and f"![{STEM_02} sweep]({STEM_02}/sweep.png)" in md
    for r in rows:
        name = f"{STEM_02}/lr={r['lr']},seed={r['seed']}"
        assert (out / f"{name}.ipynb").exists() and (out / name / "metrics.json").exists()
        assert (out / name / "batch.json").exists()
    assert not list(out.rglob("*.part"))


def read_csv_rows(out):
    with open(out / "summary.csv", newline="") as handle:
        yield from csv.DictReader(handle)


STEM_02 = "02_softmax_and_cross_entropy"
SMOKE_SWEEP = [
    str(REPO / "notebooks" / f"{STEM_02}.ipynb"),
    "-f",
    str(REPO / "notebooks" / "smoke" / f"{STEM_02}.yaml"),
    "--grid",
    "lr=0.05,0.2",
    "--grid",
    "seed=0..1",
]


@pytest.mark.slow
def test_a_smoke_sweep_on_a_local_cluster(tmp_path, capsys):
    out = tmp_path / "out"
    status = cli.main(["batch", *SMOKE_SWEEP, "--out", str(out), "--jobs", "2"])
    printed = capsys.readouterr().out
    assert "Dask dashboard: http://127.0.0.1:" in printed and "[4/4]" in printed
    check_smoke_sweep(out, status)


# --------------------------------------------------------------------------- a real scheduler and two workers


def _dask(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "dask", *args], **kwargs)


@pytest.fixture(scope="module")
def dask_processes(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1; yields (address, [worker Popen])."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    file, logs = folder / "scheduler.json", open(folder / "dask.log", "w")  # noqa: SIM115
    listen = ["--host", "127.0.0.1", "--no-dashboard"]
    processes = [_dask("scheduler", *listen, "--port", "0", "--scheduler-file", str(file), stderr=logs)]
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        for name in ("w1", "w2"):
            args = ("worker", "--scheduler-file", str(file), "--nthreads", "1", "--name", name, *listen)
            processes.append(_dask(*args, stderr=logs))
        with Client(scheduler_file=str(file), timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
            address = client.scheduler.address
        yield address, processes[1:]
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        logs.close()


@pytest.mark.slow
def test_a_smoke_sweep_on_a_scheduler_and_two_workers(dask_processes, tmp_path, capsys):
    address, _ = dask_processes
    out = tmp_path / "out"
    status = cli.main(["batch", *SMOKE_SWEEP, "--out", str(out), "--scheduler", address])
    assert f"on the Dask cluster at {address}" in capsys.readouterr().out
    check_smoke_sweep(out, status)
    hosts = {json.loads((out / p).read_text())["host"] for p in out.rglob("batch.json")}
    assert len(hosts) == 1  # all on this machine (127.0.0.1), written here by the client


# A run that, the first time, records where it runs and waits (so the test can kill that worker
# or interrupt the client), and the second time finishes at once.
ONCE = (
    'marker = "x"  # file written by the first attempt\nseed = 0  # seed\noutput_dir = "r"  # results\n',
    [
        "import json, os, pathlib, time\nm = pathlib.Path(marker)\nfirst = not m.exists()\n"
        "m.write_text(json.dumps({'kernel': os.getpid(), 'worker': os.getppid()}))\n"
        "if first:\n    time.sleep(25)",
        "p = pathlib.Path(output_dir)\n(p / 'metrics.json').write_text(json.dumps({'test_acc': 0.5, 'seed': seed}))\n"
        "print('finished')",
    ],
)


def _wait_for(path, seconds=120):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_retried_and_nothing_is_half_written(dask_processes, tmp_path):
    address, workers = dask_processes
    path = write_notebook(tmp_path, "08_once", *ONCE)
    marker, out = tmp_path / "marker.json", tmp_path / "out"
    killed = {}

    def kill_the_worker_running_it():
        _wait_for(marker)
        killed.update(json.loads(marker.read_text()))
        _kill(killed["worker"])  # the worker process; its nanny starts a new one
        _kill(killed["kernel"])  # its kernel, orphaned

    killer = threading.Thread(target=kill_the_worker_running_it)
    killer.start()
    params = [("marker", str(marker))]
    status = batch.run_batch([path], params, out=out, grid=["seed=0"], log=lambda _: None, scheduler=address)
    killer.join()
    assert killed["worker"] != os.getpid()
    assert status == 0  # Dask ran it again on a live worker
    (row,) = read_csv_rows(out)
    assert row["status"] == "ok" and row["test_acc"] == "0.5"
    executed = nbformat.read(out / "08_once" / "seed=0.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "finished\n"  # the whole notebook, from the retry
    assert json.loads(marker.read_text())["worker"] != killed["worker"]
    assert not list(out.rglob("*.part"))


@pytest.mark.slow
def test_an_interrupted_client_resumes_without_redoing_finished_runs(dask_processes, notebooks, tmp_path):
    address, _ = dask_processes
    path = write_notebook(tmp_path, "08_once", *ONCE)
    marker, out = tmp_path / "marker.json", tmp_path / "out"
    argv = [str(notebooks["05_after"]), str(path), "-p", "marker", str(marker), "--grid", "seed=0..1"]
    argv += ["--out", str(out), "--scheduler", address]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    client = subprocess.Popen([sys.executable, "-m", "mnist_lab", "batch", *argv], env=env, stdout=subprocess.PIPE)
    for seed in (0, 1):  # both of 05_after's quick runs have finished (their order varies); 08_once waits
        _wait_for(out / "05_after" / f"seed={seed}" / "batch.json")
    _wait_for(marker)
    client.send_signal(signal.SIGINT)  # Ctrl-C
    printed = client.communicate(timeout=120)[0].decode()
    assert client.returncode == batch.EXIT_INTERRUPTED and "Interrupted." in printed
    rows = list(read_csv_rows(out))
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "failed"]
    assert all("interrupted" in r["error"] for r in rows[2:])
    assert not (out / "08_once" / "seed=0" / "batch.json").exists()
    _kill(json.loads(marker.read_text())["kernel"])  # the cancelled run's kernel: not needed any more

    lines: list[str] = []
    assert (
        batch.run_batch(
            argv[:2], [("marker", str(marker))], out=out, grid=["seed=0..1"], log=lines.append, scheduler=address
        )
        == 0
    )
    rows = list(read_csv_rows(out))
    assert [r["status"] for r in rows] == ["skipped", "skipped", "ok", "ok"]
    assert "4 run(s), 2 to run (2 already done)" in lines[0]


@pytest.mark.slow
def test_the_slurm_recipe_job_script_runs_a_worker_that_batch_uses(notebooks, tmp_path):
    # Everything short of sbatch: the job script that tools/slurm_cluster.py would submit, run here
    # with bash (its #SBATCH lines are comments), must start a worker that runs batch's runs.
    sys.path.insert(0, str(REPO / "tools"))
    from slurm_cluster import slurm_cluster

    data = os.environ["MNIST_LAB_DATA"]
    with slurm_cluster("gpu", gpus=1, cores=2, data=data, interface="lo") as cluster:  # 127.0.0.1 only
        script = cluster.job_script()
        for line in ("#SBATCH -p gpu", "#SBATCH --gres=gpu:1", "#SBATCH --cpus-per-task=2", f"MNIST_LAB_DATA={data}"):
            assert line in script
        assert f"dask_worker {cluster.scheduler_address} " in script and "--resources GPU=1" in script
        assert (
            "--nthreads 1 " in script
            and "--interface lo" in script
            and cluster.scheduler_address.startswith("tcp://127.")
        )
        (tmp_path / "job.sh").write_text(script)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        job = subprocess.Popen(
            ["bash", str(tmp_path / "job.sh")], env=env, start_new_session=True, stderr=subprocess.DEVNULL
        )
        try:
            from distributed import Client

            with Client(cluster.scheduler_address) as client:
                client.wait_for_workers(1, timeout=120)
                (worker,) = client.scheduler_info()["workers"].values()
                assert worker["resources"] == {"GPU": 1}
            out = tmp_path / "out"
            chosen = [notebooks["05_after"]]
            status = batch.run_batch(
                chosen, out=out, grid=["seed=0..1"], log=lambda _: None, scheduler=cluster.scheduler_address
            )
            assert status == 0 and [r["status"] for r in read_csv_rows(out)] == ["ok", "ok"]
        finally:
            os.killpg(job.pid, signal.SIGTERM)
            job.wait(timeout=60)


def test_runs_ask_for_a_gpu_only_where_workers_declare_gpus():
    class Scheduler:
        def __init__(self, *resources):
            self.info = {"workers": {f"tcp://w{i}": {"resources": r} for i, r in enumerate(resources)}}

        def scheduler_info(self):
            return self.info

    assert batch.gpu_resources(Scheduler({}, {})) is None
    assert batch.gpu_resources(Scheduler({}, {"GPU": 2})) == {"GPU": 1}
    assert batch.gpu_resources(Scheduler()) is None


@pytest.mark.slow
def test_a_run_whose_workers_keep_dying_is_recorded_as_failed(tmp_path):
    # With no retries allowed (Dask's default is 3), a run that kills its worker is failed (KilledWorker).
    import dask
    from distributed import LocalCluster

    code = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"  # the kernel's parent: the worker
    killer = write_notebook(tmp_path, "09_kills_worker", None, [code])
    out = tmp_path / "out"
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as local,
    ):
        status = batch.run_batch([killer], out=out, log=lambda _: None, scheduler=local.scheduler_address)
    assert status == batch.EXIT_FAILED
    row = read_csv(out)["09_kills_worker"]
    assert row["status"] == "failed" and row["error"].startswith("KilledWorker")
    assert not (out / "09_kills_worker.ipynb").exists()  # nothing came back, nothing half-written


def test_recipes_auto_sizes_the_series_for_the_machine(monkeypatch):
    import torch

    from mnist_lab.batch import sized_params_file

    said = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    laptop = sized_params_file("auto", None, said.append)
    assert Path(laptop) == REPO / "notebooks" / "laptop.yaml" and Path(laptop).is_file()
    assert said[0].startswith("No CUDA GPU here") and "make run RECIPES=full" in said[0]
    assert sized_params_file("auto", "mine.yaml", said.append) == "mine.yaml"  # your file, untouched
    assert sized_params_file("full", None, said.append) is None and len(said) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "a test GPU")
    assert sized_params_file("auto", None, said.append) is None and "a test GPU" in said[-1]
    with pytest.raises(batch.InvalidParameterError, match="give one"):
        sized_params_file("laptop", "mine.yaml")
    with pytest.raises(batch.InvalidParameterError, match="--recipes must be one of"):
        sized_params_file("huge", None)
