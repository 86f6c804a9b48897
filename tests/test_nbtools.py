"""The notebook tools of the repository (tools/nbcheck.py): normal form, parameters cell, CI smoke copies."""

from __future__ import annotations

import json
import sys

import nbformat
import pytest
from conftest import REPO

from mnist_lab import batch

sys.path.insert(0, str(REPO / "tools"))
import nbcheck  # noqa: E402  (a repository tool, not an installed module)


def make_notebook(params: str = "epochs = 10  # passes\nlr = 0.1  # step\n") -> nbformat.NotebookNode:
    """Title, parameters cell, one code cell with a committed output and execution count."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    title = nbformat.v4.new_markdown_cell("# A title")
    parameters = nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]})
    checked = nbformat.v4.new_code_cell("print(epochs * 2)", metadata={"tags": ["nbval-check-output"]})
    checked.outputs = [nbformat.v4.new_output("stream", name="stdout", text="20\n")]
    checked.execution_count = 3
    nb.cells = [title, parameters, checked]
    return nb


def papermill_run_residue(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What an executed-by-papermill copy carries that is not content."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    nb.metadata["papermill"] = {"duration": 1.5, "parameters": {"epochs": 1}}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for cell in nb.cells:
        cell.metadata["papermill"] = {"status": "completed", "duration": 0.1}
        cell.metadata["execution"] = {"iopub.status.busy": "2024-01-01T00:00:00"}
        cell.metadata.setdefault("tags", [])
    injected = nbformat.v4.new_code_cell("# Parameters\nepochs = 1\n", metadata={"tags": ["injected-parameters"]})
    error = nbformat.v4.new_markdown_cell("An Exception occurred", metadata={"tags": ["papermill-error-cell-tag"]})
    nb.cells.insert(2, injected)
    nb.cells.insert(0, error)
    return nb


@pytest.mark.slow  # nbstripout runs in a subprocess, several times
def test_strip_drops_run_residue_and_keeps_outputs_counts_ids_tags(tmp_path):
    clean, path = make_notebook(), tmp_path / "n.ipynb"
    nbformat.write(papermill_run_residue(clean), path)
    assert nbcheck.not_normal([path]) == [path]
    assert nbcheck.main(["strip", str(path)]) == 0
    stripped = nbformat.read(path, as_version=4)
    assert "papermill" not in stripped.metadata and "widgets" not in stripped.metadata
    assert stripped.metadata["kernelspec"]["name"] == "python3"
    assert [cell["id"] for cell in stripped.cells] == [cell["id"] for cell in clean.cells]  # papermill's cells gone
    assert [cell.metadata for cell in stripped.cells] == [cell.metadata for cell in clean.cells]  # no "tags": []
    assert stripped.cells[2].outputs == clean.cells[2].outputs and stripped.cells[2].execution_count == 3
    assert nbcheck.not_normal([path]) == []
    before = path.read_bytes()
    nbcheck.main(["strip", str(path)])
    assert path.read_bytes() == before  # stripping twice changes nothing


@pytest.mark.slow  # nbstripout runs in a subprocess, several times
def test_verify_names_only_the_notebooks_out_of_normal_form(tmp_path, capsys):
    good, bad, tagged = tmp_path / "good.ipynb", tmp_path / "bad.ipynb", tmp_path / "tagged.ipynb"
    nbformat.write(make_notebook(), good)
    nb = make_notebook()
    nb.cells[2].metadata["execution"] = {"iopub.status.idle": "2024-01-01T00:00:01"}  # nbstripout's own key
    nbformat.write(nb, bad)
    nb = make_notebook()
    nb.cells[0].metadata["tags"] = []  # papermill's residue, which nbstripout keeps
    nbformat.write(nb, tagged)
    assert nbcheck.main(["verify", str(good), str(bad), str(tagged)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and str(tagged) in err and str(good) not in err
    assert nbcheck.main(["verify", str(good)]) == 0


def test_the_committed_notebooks_are_what_strip_writes(tmp_path):
    # Byte for byte: stripping a copy of each committed notebook leaves it unchanged.
    copies = []
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        copies.append(tmp_path / path.name)
        copies[-1].write_bytes(path.read_bytes())
    nbcheck.strip(copies)
    for copy in copies:
        assert copy.read_bytes() == (REPO / "notebooks" / copy.name).read_bytes(), copy.name


@pytest.mark.slow
def test_an_executed_copy_from_batch_strips_back_to_its_source(tmp_path):
    # What an engineer commits after running a notebook through `mnist-lab batch`: strip, and it
    # is in normal form with the source's cells (outputs of this run included).
    source = make_notebook()
    path = tmp_path / "01_demo.ipynb"
    nbformat.write(source, path)
    result = batch.execute_run(path.read_bytes(), {"epochs": 4}, timeout=60)
    assert result["status"] == "ok"
    executed = tmp_path / "executed.ipynb"
    executed.write_bytes(result["notebook"])
    assert nbcheck.not_normal([executed]) == [executed]
    nbcheck.strip([executed])
    assert nbcheck.not_normal([executed]) == []
    stripped = nbformat.read(executed, as_version=4)
    cells = [(c.id, c.source, c.metadata) for c in stripped.cells]
    assert cells == [(c.id, c.source, c.metadata) for c in source.cells]
    assert stripped.cells[2].outputs[0]["text"] == "8\n"  # this run's output (epochs = 4) is kept


def test_declared_parameters_come_from_papermill_in_order(tmp_path):
    path = tmp_path / "p.ipynb"
    nbformat.write(make_notebook('epochs = 10  # passes\nname = "x"\nlimit = None\nflag = True\n'), path)
    assert batch.declared_parameters(path) == {"epochs": "10", "name": '"x"', "limit": "None", "flag": "True"}
    nb = make_notebook()
    nb.cells[1].metadata = {}
    nbformat.write(nb, path)
    assert batch.declared_parameters(path) == {}  # no parameters cell: nothing to override


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("epochs = 10\nlr = 1 / 3\n", "line 2: 1 / 3 is not a literal"),
        ("import os\n", "line 1: only `name = literal` lines"),
        ("epochs = compute()\n", "compute() is not a literal"),
        ("a = b = 1\n", "only `name = literal`"),
        ("x.y = 1\n", "only `name = literal`"),
        ("epochs = (\n", "not valid Python"),
    ],
)
def test_non_literal_parameters_are_refused_naming_the_line(source, fragment):
    (problem,) = nbcheck.parameters_problems(make_notebook(source))
    assert fragment in problem


def test_literal_parameters_pass():
    params = 'epochs = 10  # passes\nlr: float = 0.5\nname = "x"\nlimit = None\nsizes = [1, (2, 3)]\nflag = True\n'
    assert nbcheck.parameters_problems(make_notebook(params)) == []


def test_parameters_cell_must_be_exactly_one():
    nb = make_notebook()
    nb.cells[2].metadata = {"tags": ["parameters"]}
    assert nbcheck.parameters_problems(nb) == [
        "it has 2 cells tagged 'parameters'; it needs exactly one code cell with that tag"
    ]


def write_series(tmp_path, smoke: str, nb: nbformat.NotebookNode | None = None):
    folder = tmp_path / "notebooks"
    (folder / "smoke").mkdir(parents=True)
    path = folder / "01_demo.ipynb"
    nbformat.write(nb or make_notebook(), path)
    (folder / "smoke" / "01_demo.yaml").write_text(smoke)
    return path


def test_prepare_smoke_injects_parameters_and_keeps_committed_outputs(tmp_path):
    path = write_series(tmp_path, "# smoke\nepochs: 1\nlr: 0.5\n")
    assert nbcheck.main(["smoke", "--out", str(tmp_path / "build"), str(path)]) == 0
    prepared = nbformat.read(tmp_path / "build" / "01_demo.ipynb", as_version=4)
    injected = [cell for cell in prepared.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert len(injected) == 1 and "epochs = 1\n" in injected[0].source and "lr = 0.5" in injected[0].source
    assert prepared.cells.index(injected[0]) == 2  # right after the parameters cell
    checked = [cell for cell in prepared.cells if "nbval-check-output" in cell.metadata.get("tags", [])]
    assert checked[0].outputs[0]["text"] == "20\n" and checked[0].execution_count == 3


@pytest.mark.parametrize(
    ("smoke", "fragment"),
    [
        ("epoch: 1\n", "'epoch' (did you mean 'epochs'?)"),
        ("- 1\n- 2\n", "must be a YAML mapping"),
        (None, "has no smoke-parameter file"),
    ],
)
def test_prepare_smoke_refuses_a_bad_smoke_file_before_writing(tmp_path, smoke, fragment):
    path = write_series(tmp_path, smoke or "")
    if smoke is None:
        nbcheck.smoke_file(path).unlink()
    with pytest.raises(SystemExit) as info:
        nbcheck.main(["smoke", "--out", str(tmp_path / "build"), str(path)])
    assert fragment in str(info.value) and str(path) in str(info.value)
    assert not (tmp_path / "build").exists()
