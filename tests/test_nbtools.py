"""Normal form, declared parameters and CI smoke copies (mnist_lab.nbtools), on synthetic notebooks."""

from __future__ import annotations

import json

import nbformat
import pytest

from mnist_lab import nbtools
from mnist_lab.errors import InvalidParameterError, MnistLabError
from mnist_lab.nbtools import NotebookError


def make_notebook(params: str = "epochs = 10  # passes\nlr = 0.1  # step\n", **extra_metadata) -> nbformat.NotebookNode:
    """Title, parameters cell, one code cell with a committed output and execution count."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.update(extra_metadata)
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
    nb.cells.insert(2, injected)
    return nb


def test_normal_form_drops_run_metadata_and_keeps_outputs_counts_ids_tags():
    clean = make_notebook()
    normal = nbtools.normalize_notebook(papermill_run_residue(clean))
    assert "papermill" not in normal.metadata and "widgets" not in normal.metadata
    assert normal.metadata["kernelspec"]["name"] == "python3"
    assert [cell["id"] for cell in normal.cells] == [cell["id"] for cell in clean.cells]  # injected cell gone
    for cell in normal.cells:
        assert "papermill" not in cell.metadata and "execution" not in cell.metadata
    assert normal.cells[0].metadata == {}  # the empty tags list papermill added is gone too
    assert normal.cells[1].metadata == {"tags": ["parameters"]}
    assert normal.cells[2].outputs == clean.cells[2].outputs and normal.cells[2].execution_count == 3
    assert nbtools.notebook_text(normal) == nbtools.notebook_text(clean)


def test_normalize_file_is_idempotent_and_written_like_nbformat(tmp_path):
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(papermill_run_residue(make_notebook())))  # compact JSON, not nbformat's layout
    assert not nbtools.is_normalized(path)
    assert nbtools.normalize_file(path) is True
    first = path.read_text()
    assert first.endswith("}\n") and first.startswith('{\n "cells": [\n')  # indent 1, trailing newline
    assert first == nbformat.writes(nbtools.normalize_notebook(nbtools.read_notebook(path))) + "\n"
    assert nbtools.normalize_file(path) is False and path.read_text() == first
    assert nbtools.is_normalized(path)
    assert not list(tmp_path.glob("*.part"))  # atomic write left no temporary file
    path.chmod(0o640)
    path.write_text(json.dumps(papermill_run_residue(make_notebook())))
    assert nbtools.normalize_file(path) and path.stat().st_mode & 0o777 == 0o640  # permissions kept


def test_missing_cell_ids_get_reproducible_ids(tmp_path):
    nb = json.loads(json.dumps(make_notebook()))
    for cell in nb["cells"]:
        del cell["id"]
    texts = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.ipynb"
        path.write_text(json.dumps(nb))
        nbtools.normalize_file(path)
        texts.append(path.read_text())
    ids = [cell["id"] for cell in json.loads(texts[0])["cells"]]
    assert texts[0] == texts[1] and len(set(ids)) == 3


def test_declared_parameters_reads_literals_in_order(tmp_path):
    params = 'epochs = 10  # passes\nlr: float = 0.5\nname = "x"\nlimit = None\nsizes = [1, (2, 3)]\nflag = True\n'
    path = tmp_path / "p.ipynb"
    nbformat.write(make_notebook(params), path)
    declared = nbtools.declared_parameters(path)
    assert declared == {"epochs": 10, "lr": 0.5, "name": "x", "limit": None, "sizes": [1, (2, 3)], "flag": True}
    assert list(declared) == ["epochs", "lr", "name", "limit", "sizes", "flag"]
    assert nbtools.declared_parameters(make_notebook(params)) == declared  # a notebook object works too


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("epochs = 10\nlr = 1 / 3\n", "line 2 (`lr = 1 / 3`): 1 / 3 is not a literal"),
        ("import os\n", "line 1 (`import os`): the parameters cell may only hold"),
        ("epochs = compute()\n", "compute() is not a literal"),
        ("a = b = 1\n", "may only hold `name = literal`"),
        ("x.y = 1\n", "assign to one plain name"),
        ("epochs = 1\nepochs = 2\n", "'epochs' is assigned twice"),
        ("epochs = (\n", "not valid Python"),
    ],
)
def test_non_literal_parameters_are_refused_naming_notebook_and_line(tmp_path, source, fragment):
    path = tmp_path / "bad.ipynb"
    nbformat.write(make_notebook(source), path)
    with pytest.raises(NotebookError) as info:
        nbtools.declared_parameters(path)
    assert fragment in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, MnistLabError)


def test_parameters_cell_must_be_exactly_one(tmp_path):
    nb = make_notebook()
    nb.cells[1].metadata = {}
    with pytest.raises(NotebookError, match="no cell tagged 'parameters'"):
        nbtools.parameters_cell(nb)
    nb.cells[1].metadata = {"tags": ["parameters"]}
    nb.cells[2].metadata = {"tags": ["parameters"]}
    with pytest.raises(NotebookError, match="2 cells tagged 'parameters'"):
        nbtools.parameters_cell(nb)


def write_series(tmp_path, smoke: str, nb: nbformat.NotebookNode | None = None):
    folder = tmp_path / "notebooks"
    (folder / "smoke").mkdir(parents=True)
    path = folder / "01_demo.ipynb"
    nbformat.write(nb or make_notebook(), path)
    (folder / "smoke" / "01_demo.yaml").write_text(smoke)
    return path


def test_prepare_smoke_injects_parameters_and_keeps_committed_outputs(tmp_path):
    path = write_series(tmp_path, "# smoke\nepochs: 1\nlr: 0.5\n")
    out = nbtools.prepare_smoke(path, nbtools.smoke_file(path), tmp_path / "build" / "01_demo.ipynb")
    prepared = nbformat.read(out, as_version=4)
    injected = [cell for cell in prepared.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert len(injected) == 1 and "epochs = 1\n" in injected[0].source and "lr = 0.5" in injected[0].source
    assert prepared.cells.index(injected[0]) == 2  # right after the parameters cell
    checked = [cell for cell in prepared.cells if "nbval-check-output" in cell.metadata.get("tags", [])]
    assert checked[0].outputs[0]["text"] == "20\n" and checked[0].execution_count == 3


def test_prepare_smoke_refuses_undeclared_keys_before_writing(tmp_path):
    path = write_series(tmp_path, "epoch: 1\n")
    out = tmp_path / "build" / "01_demo.ipynb"
    with pytest.raises(InvalidParameterError) as info:
        nbtools.prepare_smoke(path, nbtools.smoke_file(path), out)
    message = str(info.value)
    assert "'epoch' (did you mean 'epochs'?)" in message and "epochs, lr" in message and str(path) in message
    assert not out.exists()


def test_smoke_file_must_be_a_mapping(tmp_path):
    path = write_series(tmp_path, "- 1\n- 2\n")
    with pytest.raises(InvalidParameterError, match="must be a YAML mapping"):
        nbtools.prepare_smoke(path, nbtools.smoke_file(path), tmp_path / "out.ipynb")


def test_cli_check_normalize_smoke_and_params(tmp_path, capsys):
    path = write_series(tmp_path, "epochs: 1\n", papermill_run_residue(make_notebook()))
    assert nbtools.main(["check", str(path)]) == 1
    assert str(path) in capsys.readouterr().err
    assert nbtools.main(["normalize", str(path)]) == 0
    assert nbtools.main(["check", str(path)]) == 0
    assert nbtools.main(["check"]) == 0 and "0 notebook(s)" in capsys.readouterr().out
    assert nbtools.main(["smoke", "--out", str(tmp_path / "smoke"), str(path)]) == 0
    assert (tmp_path / "smoke" / "01_demo.ipynb").exists()
    assert nbtools.main(["params", str(path)]) == 0
    assert "epochs = 10\nlr = 0.1" in capsys.readouterr().out


def test_cli_smoke_without_smoke_file_is_a_clear_error(tmp_path, capsys):
    path = write_series(tmp_path, "epochs: 1\n")
    nbtools.smoke_file(path).unlink()
    assert nbtools.main(["smoke", "--out", str(tmp_path / "smoke"), str(path)]) == 2
    assert "has no smoke-parameter file" in capsys.readouterr().err
    assert not (tmp_path / "smoke").exists()
