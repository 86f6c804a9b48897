"""Guard: every numbered notebook follows the conventions that CI and `mnist-lab batch` rely on.

The checks live in tools/nbcheck.py (`convention_problems`; the normal form is checked once, by
`make notebooks`); the second half of this file proves on synthetic notebooks that each check
catches what it should.
"""

from __future__ import annotations

import sys

import nbformat
import pytest
from conftest import REPO

from mnist_lab import batch

sys.path.insert(0, str(REPO / "tools"))
import nbcheck  # noqa: E402  (a repository tool, not an installed module)

NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9]*.ipynb"))


def test_notebooks_folder_exists():
    assert NOTEBOOK_DIR.is_dir()
    assert (NOTEBOOK_DIR / "nbval_sanitize.cfg").is_file()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_follows_the_conventions(path):
    problems = nbcheck.convention_problems(path)
    assert not problems, f"{path.name}:\n- " + "\n- ".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_smoke_parameters_shorten_the_run(path):
    smoke = batch.load_params_yaml(nbcheck.smoke_file(path))
    declared = batch.declared_parameters(path)
    assert smoke, f"{nbcheck.smoke_file(path)} is empty: CI would run the full recipe"
    if "progress" in declared:
        assert smoke.get("progress") is False, "smoke runs set progress: false (no progress bars in CI logs)"


# --------------------------------------------------------------------------- the guard itself


def good_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 01 · Demo"),
        nbformat.v4.new_code_cell("epochs = 3  # passes\nprogress = True  # bars\n", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print('shape', (2, 3))", metadata={"tags": ["nbval-check-output"]}),
    ]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="shape (2, 3)\n")]
    return nb


def write(tmp_path, nb: nbformat.NotebookNode, smoke: str | None = "epochs: 1\nprogress: false\n"):
    (tmp_path / "smoke").mkdir(exist_ok=True)
    path = tmp_path / "01_demo.ipynb"
    nbformat.write(nb, path)
    if smoke is not None:
        (tmp_path / "smoke" / "01_demo.yaml").write_text(smoke)
    return path


def test_guard_accepts_a_good_notebook(tmp_path):
    assert nbcheck.convention_problems(write(tmp_path, good_notebook())) == []


def test_guard_catches_a_missing_parameters_cell(tmp_path):
    nb = good_notebook()
    nb.cells[1].metadata = {}
    (problem,) = nbcheck.convention_problems(write(tmp_path, nb))
    assert "no cell tagged 'parameters'" in problem


def test_guard_catches_a_parameters_cell_that_is_not_second(tmp_path):
    nb = good_notebook()
    nb.cells.insert(1, nbformat.v4.new_code_cell("import torch"))
    (problem,) = nbcheck.convention_problems(write(tmp_path, nb))
    assert "must be the second cell" in problem


def test_guard_catches_non_literal_parameters(tmp_path):
    nb = good_notebook()
    nb.cells[1].source = "epochs = int('3')\nprogress = True\n"
    (problem,) = nbcheck.convention_problems(write(tmp_path, nb))
    assert "int('3') is not a literal" in problem


def test_guard_catches_an_undeclared_smoke_key(tmp_path):
    (problem,) = nbcheck.convention_problems(write(tmp_path, good_notebook(), smoke="epochs: 1\nlimit: 100\n"))
    assert "'limit'" in problem and "does not declare" in problem


def test_guard_catches_a_missing_smoke_file(tmp_path):
    (problem,) = nbcheck.convention_problems(write(tmp_path, good_notebook(), smoke=None))
    assert "no smoke-parameter file" in problem


def test_guard_catches_a_wrong_kernel(tmp_path):
    nb = good_notebook()
    nb.metadata["kernelspec"]["name"] = "my-env"
    (problem,) = nbcheck.convention_problems(write(tmp_path, nb))
    assert "'my-env'" in problem and "'python3'" in problem


def test_guard_catches_no_checked_cell_and_a_markdown_less_start(tmp_path):
    nb = good_notebook()
    nb.cells[0] = nbformat.v4.new_code_cell("# a title in a code cell")
    nb.cells[2].metadata = {}
    problems = nbcheck.convention_problems(write(tmp_path, nb))
    assert len(problems) == 2
    assert "first cell must be markdown" in problems[0] and "'nbval-check-output'" in problems[1]


def test_guard_catches_a_committed_error_unless_it_is_the_lesson(tmp_path):
    nb = good_notebook()
    error = nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[])
    nb.cells.append(nbformat.v4.new_code_cell("raise ValueError('boom')", outputs=[error]))
    (problem,) = nbcheck.convention_problems(write(tmp_path, nb))
    assert "cell 4 has a committed error (ValueError)" in problem
    nb.cells[3].metadata["tags"] = ["raises-exception"]
    assert nbcheck.convention_problems(write(tmp_path, nb)) == []


def test_the_laptop_settings_fit_the_series(tmp_path):
    jobs = batch.plan(None, params_file=NOTEBOOK_DIR / "laptop.yaml", out=tmp_path)
    alexnet = next(job for job in jobs if job.stem == "06_alexnet")
    assert alexnet.params["epochs"] < 50 and alexnet.params["limit"] < 60_000  # a CPU-sized AlexNet
    set_by_batch = {batch.INJECTED, batch.EARLIER}  # output_dir everywhere, results_dir where 07 declares it
    others = [set(job.params) - set_by_batch - {"progress"} for job in jobs if job.stem != "06_alexnet"]
    assert others and all(not names for names in others)  # the others: full recipes, only the bars off


@pytest.mark.parametrize("stem", ["03_mlp", "05_cnn"])
@pytest.mark.slow
def test_a_wrong_type_from_papermill_stops_the_notebook_before_training(stem, tmp_path):
    [job] = batch.plan([NOTEBOOK_DIR / f"{stem}.ipynb"], cli_params=[("limit", "ten thousand")], out=tmp_path)
    result = batch.execute_run(job.notebook.read_bytes(), job.params, timeout=300)  # what a Dask worker runs
    row = batch.save_result(job, result, tmp_path)
    assert row["status"] == "failed"
    assert "InvalidParameterError" in row["error"] and "limit" in row["error"] and "ten thousand" in row["error"]
    executed = nbformat.read(tmp_path / f"{stem}.ipynb", as_version=4)
    ran = [cell.source for cell in executed.cells if cell.cell_type == "code" and cell.get("execution_count")]
    assert not any("fit(" in source for source in ran)  # it stopped in the validation cell, before any training
