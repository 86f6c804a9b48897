"""Notebook housekeeping for the series: normal form, declared parameters, CI smoke copies.

Three jobs, each also a command (``python -m mnist_lab.nbtools --help``):

``normalize FILE...``
    Rewrite committed notebooks in *normal form*, in place and atomically: outputs and
    execution counts are kept (like ``nbstripout --keep-output --keep-count``) because the
    committed outputs are what a learner reads and what nbval compares; what a run leaves
    behind that is not content is removed: notebook- and cell-level ``papermill`` metadata,
    cell ``execution``/``ExecuteTime`` timings, widget state, UI state (``collapsed``,
    ``scrolled``, ...), empty ``tags`` lists, papermill's ``injected-parameters`` cell and its
    error-marker cells. Cell ids are kept (a missing one gets an id derived from the cell's
    position and source, so it is the same every time). The JSON is written the way nbformat
    writes it (indent 1, sorted keys, trailing newline): normalising twice changes nothing.
``check FILE...``
    Exit 1 and list the notebooks that are not in normal form (CI and a test run this).
``smoke --out DIR NOTEBOOK...``
    What CI does before nbval: for each notebook, ``papermill --prepare-only`` with the
    parameters of ``notebooks/smoke/<stem>.yaml``, refusing any smoke key that the notebook
    does not declare (papermill itself only warns). The committed outputs stay in the
    prepared copy, so nbval can compare the cells tagged ``nbval-check-output``.
``params FILE``
    Print the parameters a notebook declares, with their defaults.

The parameters cell is the code cell tagged ``parameters``; it may only hold ``name = literal``
statements (numbers, strings, True/False/None and lists, tuples, dicts of them), so that
papermill and ``mnist-lab batch`` can override any of them and a tool can read them without
running anything.
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import hashlib
import json
import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import InvalidParameterError, MnistLabError
from .files import atomic_write

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
ERROR_MARKER_TAG = "papermill-error-cell-tag"  # papermill's "An Exception was encountered" cells
CHECK_OUTPUT_TAG = "nbval-check-output"
KERNEL_NAME = "python3"

# Metadata a run or a UI leaves behind that is not content (nbstripout's list, plus papermill's).
NOTEBOOK_METADATA_DROPPED = ("papermill", "widgets", "signature")
CELL_METADATA_DROPPED = (
    "papermill",
    "execution",
    "ExecuteTime",
    "collapsed",
    "scrolled",
    "heading_collapsed",
    "hidden",
)


class NotebookError(MnistLabError, ValueError):
    """A notebook cannot be read, or breaks a convention of the series (e.g. its parameters cell)."""


# --------------------------------------------------------------------------- reading and writing


def read_notebook(path: str | os.PathLike[str]) -> Any:
    """Read a notebook file as an ``nbformat.NotebookNode`` (version 4), without changing it.

    The JSON is loaded as it is (no validation repairs, no random cell ids), so that
    `normalize_notebook` alone decides what changes.
    """
    import nbformat

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotebookError(f"Notebook {path} does not exist. Check the path (e.g. notebooks/03_mlp.ipynb).") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotebookError(
            f"Notebook {path} is not readable notebook JSON ({exc}). If it was edited by hand, open it in "
            "Jupyter and save it again, or restore it from git."
        ) from exc
    if not isinstance(data, dict) or "cells" not in data or "nbformat" not in data:
        raise NotebookError(f"{path} is JSON but not a Jupyter notebook (it has no 'cells' or 'nbformat').")
    nb = nbformat.from_dict(data)
    if nb.nbformat != 4:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.convert(nb, 4)
    return nb


def notebook_text(nb: Any) -> str:
    """The file content nbformat writes for `nb`: JSON, indent 1, sorted keys, trailing newline."""
    import nbformat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # validation warnings: `check`/the guard test report problems
        text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


def write_notebook(nb: Any, path: str | os.PathLike[str]) -> Path:
    """Write `nb` to `path` atomically (never a half-written notebook under the final name)."""
    path = Path(path)
    _write_text(path, notebook_text(nb))
    return path


# --------------------------------------------------------------------------- normal form


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _stable_id(index: int, source: str, taken: set[str]) -> str:
    """An id for a cell that has none: derived from its position and source, so it is reproducible."""
    salt = 0
    while True:
        digest = hashlib.sha1(f"{index}:{salt}:{source}".encode()).hexdigest()[:8]
        if digest not in taken:
            return digest
        salt += 1


def normalize_notebook(nb: Any) -> Any:
    """Return a copy of `nb` in the normal form of the series (see the module docstring).

    Kept: every cell's source, outputs, execution count, id and tags; the notebook's
    kernelspec and language_info. Removed: papermill metadata and its injected-parameters and
    error-marker cells, cell execution timings, widget state, UI state, empty tag lists.
    """
    nb = copy.deepcopy(nb)
    for key in NOTEBOOK_METADATA_DROPPED:
        nb.metadata.pop(key, None)
    nb.cells = [cell for cell in nb.cells if not {INJECTED_TAG, ERROR_MARKER_TAG} & set(_tags(cell))]
    wants_ids = (nb.nbformat, nb.nbformat_minor) >= (4, 5)
    taken = {cell["id"] for cell in nb.cells if "id" in cell}
    for index, cell in enumerate(nb.cells):
        metadata = cell.setdefault("metadata", {})
        for key in CELL_METADATA_DROPPED:
            metadata.pop(key, None)
        if "tags" in metadata and not metadata["tags"]:
            del metadata["tags"]  # papermill adds "tags": [] to every cell it touches
        if wants_ids and "id" not in cell:
            source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
            cell["id"] = _stable_id(index, source, taken)
            taken.add(cell["id"])
    return nb


def is_normalized(path: str | os.PathLike[str]) -> bool:
    """True if the file at `path` is byte for byte what `normalize` would write."""
    path = Path(path)
    return path.read_text(encoding="utf-8") == notebook_text(normalize_notebook(read_notebook(path)))


def normalize_file(path: str | os.PathLike[str]) -> bool:
    """Normalise the notebook at `path` in place (atomically); True if the file changed."""
    path = Path(path)
    before = path.read_text(encoding="utf-8") if path.exists() else None
    after = notebook_text(normalize_notebook(read_notebook(path)))
    if after == before:
        return False
    _write_text(path, after)
    return True


# --------------------------------------------------------------------------- parameters


def _load(path_or_nb: Any) -> tuple[Any, str]:
    """(notebook, name for messages) from a path or an already-read notebook."""
    if isinstance(path_or_nb, (str, os.PathLike)):
        return read_notebook(path_or_nb), str(path_or_nb)
    return path_or_nb, "the notebook"


def parameters_cell(nb: Any, name: str = "the notebook") -> Any:
    """The one code cell tagged ``parameters``; a `NotebookError` if there is none or several."""
    cells = [cell for cell in nb.cells if PARAMETERS_TAG in _tags(cell)]
    if len(cells) != 1 or cells[0].cell_type != "code":
        found = "no cell" if not cells else f"{len(cells)} cells" if len(cells) > 1 else "a markdown cell"
        raise NotebookError(
            f"{name} has {found} tagged 'parameters'; it needs exactly one code cell with that tag "
            '(cell metadata {"tags": ["parameters"]}) holding its `name = literal` settings, so '
            "papermill and `mnist-lab batch` know what may be overridden."
        )
    return cells[0]


def _source(cell: Any) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def declared_parameters(path_or_nb: Any) -> dict[str, object]:
    """The parameters a notebook declares, name -> default, in the order of its parameters cell.

    Every statement of the cell must be ``name = literal`` (``ast.literal_eval`` must accept
    the value); anything else is a `NotebookError` naming the notebook and the line.
    """
    nb, name = _load(path_or_nb)
    source = _source(parameters_cell(nb, name))
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise NotebookError(
            f"{name}, parameters cell line {exc.lineno}: not valid Python ({exc.msg}). Fix that line."
        ) from exc
    lines = source.splitlines()
    params: dict[str, object] = {}
    for statement in tree.body:
        line = lines[statement.lineno - 1].strip() if statement.lineno <= len(lines) else ""
        where = f"{name}, parameters cell line {statement.lineno} (`{line}`)"
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            raise NotebookError(
                f"{where}: the parameters cell may only hold `name = literal` assignments, one per line. "
                "Move imports, computations and checks to the next cell."
            )
        if not isinstance(target, ast.Name):
            raise NotebookError(f"{where}: assign to one plain name (e.g. `epochs = 10`), not {ast.unparse(target)}.")
        try:
            default = ast.literal_eval(value)
        except ValueError as exc:
            raise NotebookError(
                f"{where}: {ast.unparse(value)} is not a literal. A parameter's default must be a number, string, "
                "True/False/None or a list/tuple/dict of those, so it can be overridden without running code; "
                "compute derived values in the next cell."
            ) from exc
        if target.id in params:
            raise NotebookError(f"{where}: {target.id!r} is assigned twice; keep one line per parameter.")
        params[target.id] = default
    return params


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice most like `name` (a likely typo), or None."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def undeclared_error(
    names: Iterable[str], notebook: str, declared: Iterable[str], origin: str
) -> InvalidParameterError:
    """The error for parameters that `notebook` does not declare, with the closest declared names."""
    declared = list(declared)
    parts = []
    for name in names:
        guess = closest(name, declared)
        parts.append(f"{name!r}" + (f" (did you mean {guess!r}?)" if guess else ""))
    return InvalidParameterError(
        f"{origin} sets {', '.join(parts)}, which {notebook} does not declare. Its parameters are: "
        f"{', '.join(declared) or '(none)'}. Use one of those names, or declare the new one in its parameters cell."
    )


def load_params_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML file of parameters as a dict (an empty file is ``{}``); clear errors otherwise."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidParameterError(f"Parameter file {path} does not exist.") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidParameterError(f"Parameter file {path} is not readable YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise InvalidParameterError(
            f"Parameter file {path} must be a YAML mapping of parameter names to values (e.g. `epochs: 1`)."
        )
    return data


def smoke_file(notebook: str | os.PathLike[str]) -> Path:
    """Where the smoke parameters of a notebook live: ``<its folder>/smoke/<stem>.yaml``."""
    notebook = Path(notebook)
    return notebook.parent / "smoke" / f"{notebook.stem}.yaml"


def prepare_smoke(
    notebook: str | os.PathLike[str], params_yaml: str | os.PathLike[str], out_path: str | os.PathLike[str]
) -> Path:
    """Write the CI copy of `notebook`: papermill prepare-only with the parameters of `params_yaml`.

    Refuses (`InvalidParameterError`, nothing written) any key the notebook does not declare.
    The copy keeps the committed outputs and execution counts (restored by cell id should
    papermill ever drop them), so nbval can compare the cells tagged ``nbval-check-output``.
    """
    import papermill

    notebook, out_path = Path(notebook), Path(out_path)
    original = read_notebook(notebook)
    declared = declared_parameters(original)
    params = load_params_yaml(params_yaml)
    unknown = [key for key in params if key not in declared]
    if unknown:
        raise undeclared_error(unknown, str(notebook), declared, f"Smoke file {params_yaml}")
    prepared = papermill.execute_notebook(
        str(notebook),
        None,  # written below, atomically, after the outputs are checked
        parameters=params,
        prepare_only=True,
        kernel_name=KERNEL_NAME,
        progress_bar=False,
        log_output=False,
    )
    committed = {cell["id"]: cell for cell in original.cells if "id" in cell}
    for cell in prepared.cells:
        source = committed.get(cell.get("id"))
        if source is not None and cell.cell_type == "code":
            cell.outputs = copy.deepcopy(source.get("outputs", []))
            cell.execution_count = source.get("execution_count")
    return write_notebook(prepared, out_path)


# --------------------------------------------------------------------------- conventions


def convention_problems(path: str | os.PathLike[str]) -> list[str]:
    """Every way the notebook at `path` breaks the conventions of the series (empty: none).

    Checked: first cell markdown; exactly one ``parameters`` code cell, second, holding only
    literal assignments; a smoke file ``smoke/<stem>.yaml`` beside it whose keys the notebook
    declares; kernelspec ``python3``; normal form; at least one ``nbval-check-output`` cell;
    no committed error output outside cells tagged ``raises-exception``.
    """
    path = Path(path)
    try:
        nb = read_notebook(path)
    except NotebookError as exc:
        return [str(exc)]
    problems = []
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        problems.append("its first cell must be markdown: the title, what it teaches, what it needs")
    declared: dict[str, object] | None = None
    try:
        cell = parameters_cell(nb, str(path))
        if nb.cells.index(cell) != 1:
            problems.append("the parameters cell must be the second cell, right after the title")
        declared = declared_parameters(nb)
    except NotebookError as exc:
        problems.append(str(exc))
    smoke = smoke_file(path)
    if not smoke.exists():
        problems.append(f"it has no smoke-parameter file {smoke}")
    elif declared is not None:
        try:
            unknown = [key for key in load_params_yaml(smoke) if key not in declared]
            if unknown:
                problems.append(str(undeclared_error(unknown, str(path), declared, f"Smoke file {smoke}")))
        except InvalidParameterError as exc:
            problems.append(str(exc))
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != KERNEL_NAME:
        problems.append(f"its kernelspec name is {kernel!r}; it must be {KERNEL_NAME!r} (what CI and batch start)")
    if not is_normalized(path):
        problems.append(f"it is not in normal form: run `python -m mnist_lab.nbtools normalize {path}`")
    if not any(CHECK_OUTPUT_TAG in _tags(cell) for cell in nb.cells):
        problems.append(f"no cell is tagged {CHECK_OUTPUT_TAG!r}, so nbval compares nothing in CI")
    for index, cell in enumerate(nb.cells):
        errors = [out for out in cell.get("outputs", []) if out.get("output_type") == "error"]
        if errors and "raises-exception" not in _tags(cell):
            problems.append(
                f"cell {index + 1} has a committed error ({errors[0].get('ename')}); fix it, or tag the cell "
                "'raises-exception' if the error is the lesson"
            )
    return problems


# --------------------------------------------------------------------------- command line


def _normalize_cmd(args: argparse.Namespace) -> int:
    for path in args.files:
        changed = normalize_file(path)
        print(f"{path}: {'normalised' if changed else 'already normal'}")
    return 0


def _check_cmd(args: argparse.Namespace) -> int:
    bad = [path for path in args.files if not is_normalized(path)]
    if bad:
        print("Not in normal form (run `python -m mnist_lab.nbtools normalize FILE` on each):", file=sys.stderr)
        for path in bad:
            print(f"  {path}", file=sys.stderr)
        return 1
    print(f"nbtools check: {len(args.files)} notebook(s) in normal form")
    return 0


def _smoke_cmd(args: argparse.Namespace) -> int:
    jobs = []
    for notebook in args.notebooks:
        params = smoke_file(notebook)
        if not params.exists():
            raise NotebookError(
                f"{notebook} has no smoke-parameter file {params}. Create it with small values (epochs, limit, "
                "test_limit, progress: false) so the whole notebook runs in well under 90 s on a 2-core CPU."
            )
        jobs.append((Path(notebook), params))
    for notebook, params in jobs:  # every smoke file checked before anything is written
        unknown = [key for key in load_params_yaml(params) if key not in declared_parameters(notebook)]
        if unknown:
            raise undeclared_error(unknown, str(notebook), declared_parameters(notebook), f"Smoke file {params}")
    for notebook, params in jobs:
        out = prepare_smoke(notebook, params, Path(args.out) / notebook.name)
        print(f"prepared {out} with {params}")
    print(f"nbtools smoke: prepared {len(jobs)} notebook(s) in {args.out}")
    return 0


def _params_cmd(args: argparse.Namespace) -> int:
    for name, default in declared_parameters(args.file).items():
        print(f"{name} = {default!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m mnist_lab.nbtools``."""
    parser = argparse.ArgumentParser(
        prog="python -m mnist_lab.nbtools", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("normalize", help="rewrite notebooks in normal form, in place")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.set_defaults(func=_normalize_cmd)
    p = sub.add_parser("check", help="exit 1 listing the notebooks that are not in normal form")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.set_defaults(func=_check_cmd)
    p = sub.add_parser("smoke", help="prepare CI copies with notebooks/smoke/<stem>.yaml (papermill --prepare-only)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the prepared copies (e.g. build/smoke)")
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK")
    p.set_defaults(func=_smoke_cmd)
    p = sub.add_parser("params", help="print the parameters a notebook declares")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=_params_cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; a `MnistLabError` prints its message and returns 2."""
    from .cli import run_command

    return run_command(build_parser().parse_args(argv), "nbtools")


if __name__ == "__main__":
    sys.exit(main())
