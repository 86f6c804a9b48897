"""`mnist-lab batch` on tiny synthetic notebooks (no MNIST; a kernel start is the main cost)."""

from __future__ import annotations

import csv
import json
import os

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
            'device="cpu", cwd=os.getcwd(), lr=lr)',
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
def first_run(notebooks, tmp_path_factory):
    """One batch over an ok, a raising, a dying and an ok notebook, with -p epochs 3."""
    out = tmp_path_factory.mktemp("batch") / "out"
    lines: list[str] = []
    chosen = [notebooks[stem] for stem in MAIN]
    status = batch.run_batch(chosen, [("epochs", "3")], out=out, log=lines.append)
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
    executed = nbformat.read(out / "01_ok.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert f'output_dir = "{out.resolve() / "01_ok"}"' in injected[0].source
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


def test_second_run_skips_finished_notebooks_and_force_reruns(notebooks, tmp_path):
    out = tmp_path / "out"
    chosen = [notebooks["05_after"], notebooks["06_light"]]
    stems = ["05_after", "06_light"]

    def statuses(*params, force=False):
        assert batch.run_batch(chosen, list(params), out=out, force=force, log=lambda _: None) == 0
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


def test_an_edited_notebook_is_run_again(notebooks, tmp_path):
    out = tmp_path / "out"
    source = notebooks["05_after"]
    path = write_notebook(tmp_path, "05_after", *NOTEBOOKS["05_after"])
    assert batch.run_batch([path], out=out, log=lambda _: None) == 0
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("1 + 1"))
    nbformat.write(nb, path)
    assert batch.run_batch([path], out=out, log=lambda _: None) == 0
    assert read_csv(out)["05_after"]["status"] == "ok"
    assert source.exists()


def test_kernel_is_this_python_whatever_kernels_are_installed(notebooks, tmp_path, monkeypatch):
    # A python3 kernelspec from another Python, found first on the jupyter path, must not be used.
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "other", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    out = tmp_path / "out"
    assert batch.run_batch([notebooks["06_light"]], out=out, log=lambda _: None) == 0
    assert read_csv(out)["06_light"]["status"] == "ok"


def test_interrupted_batch_resumes_without_redoing_finished_notebooks(notebooks, tmp_path, monkeypatch):
    out = tmp_path / "out"
    chosen = [notebooks["05_after"], notebooks["06_light"]]
    real = batch.run_job

    def interrupted_second(job, *args):
        if job.stem == "06_light":
            raise KeyboardInterrupt
        return real(job, *args)

    monkeypatch.setattr(batch, "run_job", interrupted_second)
    assert batch.run_batch(chosen, out=out, log=lambda _: None) == batch.EXIT_INTERRUPTED
    rows = read_csv(out)
    assert rows["05_after"]["status"] == "ok"
    assert rows["06_light"]["status"] == "failed" and "interrupted" in rows["06_light"]["error"]
    monkeypatch.setattr(batch, "run_job", real)
    assert batch.run_batch(chosen, out=out, log=lambda _: None) == 0
    rows = read_csv(out)
    assert [rows[s]["status"] for s in ("05_after", "06_light")] == ["skipped", "ok"]


def test_jobs_run_in_parallel_processes_and_a_cell_over_the_timeout_fails(notebooks, tmp_path):
    out = tmp_path / "out"
    chosen = [notebooks["02_raises"], notebooks["03_slow"], notebooks["05_after"]]
    assert batch.run_batch(chosen, out=out, jobs=2, timeout=5, log=lambda _: None) == batch.EXIT_FAILED
    rows = read_csv(out)
    assert list(rows) == ["02_raises", "03_slow", "05_after"]  # notebook order, not completion order
    assert [rows[s]["status"] for s in rows] == ["failed", "failed", "ok"]
    assert rows["02_raises"]["error"] == "ValueError: bad value (at In [2])"  # no injected cell here
    assert rows["03_slow"]["error"].startswith("CellTimeoutError: A cell timed out")
    assert float(rows["03_slow"]["seconds"]) < 40  # stopped by --timeout 5, not by the 60 s sleep
    assert not list(out.glob(".*.part*"))


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
