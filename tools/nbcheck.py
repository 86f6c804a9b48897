"""Notebook housekeeping for the series (a repository tool, not part of the installed package).

    python tools/nbcheck.py strip FILE...          put notebooks in normal form, in place
    python tools/nbcheck.py verify FILE...         exit 1 listing those that are not (CI: make notebooks)
    python tools/nbcheck.py conventions FILE...    exit 1 listing every broken convention
    python tools/nbcheck.py smoke --out DIR NB...  CI copies with notebooks/smoke/<stem>.yaml

Normal form = nbstripout with `NBSTRIPOUT_ARGS` (outputs, execution counts and cell ids kept,
because the committed outputs are what a learner reads and what nbval compares; papermill's
metadata stripped with nbstripout's default list of UI and run metadata), plus what nbstripout
cannot do: drop the cells papermill adds to an executed copy (injected parameters, error
markers) and the empty ``tags`` lists it leaves on every cell. An executed copy from
``mnist-lab batch`` or papermill becomes a committable notebook with ``strip``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat

from mnist_lab.batch import KERNEL_NAME, declared_parameters, load_params_yaml, undeclared_error
from mnist_lab.errors import MnistLabError
from mnist_lab.files import atomic_write

# The normal form, configured here once (strip and verify both use it).
NBSTRIPOUT_ARGS = ["--keep-output", "--keep-count", "--keep-id"]
NBSTRIPOUT_ARGS += ["--extra-keys", "metadata.papermill cell.metadata.papermill"]
PAPERMILL_CELL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}
PARAMETERS_TAG = "parameters"
CHECK_OUTPUT_TAG = "nbval-check-output"


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def papermill_residue(nb: Any) -> bool:
    """True if `nb` holds a cell papermill added or an empty tag list (what `drop_papermill_cells` removes)."""
    return any(PAPERMILL_CELL_TAGS & set(_tags(c)) or c.get("metadata", {}).get("tags") == [] for c in nb.cells)


def drop_papermill_cells(nb: Any) -> Any:
    """`nb` without papermill's injected-parameters and error-marker cells and without empty tag lists."""
    nb.cells = [cell for cell in nb.cells if not PAPERMILL_CELL_TAGS & set(_tags(cell))]
    for cell in nb.cells:
        if cell.get("metadata", {}).get("tags") == []:
            del cell.metadata["tags"]  # papermill adds "tags": [] to every cell it runs
    return nb


def _nbstripout(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbstripout", *NBSTRIPOUT_ARGS, *args], capture_output=True, text=True)


def strip(paths: list[Path]) -> None:
    """Put each notebook in normal form, in place (atomically for the papermill part)."""
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if papermill_residue(nb):
            with atomic_write(path, "w") as handle:
                nbformat.write(drop_papermill_cells(nb), handle)
    done = _nbstripout(*map(str, paths))
    if done.returncode:
        raise SystemExit(f"nbstripout failed: {done.stderr.strip()}")


def not_normal(paths: list[Path]) -> list[Path]:
    """The notebooks of `paths` that `strip` would change (nbstripout --verify names each on stdout)."""
    verify = _nbstripout("--verify", *map(str, paths))
    flagged = {line.removeprefix("Dry run: would have stripped ").strip() for line in verify.stdout.splitlines()}
    if verify.returncode and not flagged:
        raise SystemExit(f"nbstripout --verify failed: {verify.stderr.strip()}")
    return [path for path in paths if str(path) in flagged or papermill_residue(nbformat.read(path, as_version=4))]


# --------------------------------------------------------------------------- conventions


def parameters_problems(nb: Any) -> list[str]:
    """The parameters cell: exactly one code cell tagged ``parameters``, second, holding only literals."""
    cells = [cell for cell in nb.cells if PARAMETERS_TAG in _tags(cell)]
    if len(cells) != 1 or cells[0].cell_type != "code":
        found = "no cell" if not cells else f"{len(cells)} cells" if len(cells) > 1 else "a markdown cell"
        return [f"it has {found} tagged 'parameters'; it needs exactly one code cell with that tag"]
    problems = [] if nb.cells.index(cells[0]) == 1 else ["the parameters cell must be the second cell"]
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError as exc:
        return [*problems, f"parameters cell line {exc.lineno}: not valid Python ({exc.msg})"]
    for statement in tree.body:
        where = f"parameters cell line {statement.lineno}"
        value = statement.value if isinstance(statement, (ast.Assign, ast.AnnAssign)) else None
        targets = statement.targets if isinstance(statement, ast.Assign) else [getattr(statement, "target", None)]
        if value is None or len(targets) != 1 or not isinstance(targets[0], ast.Name):
            problems.append(f"{where}: only `name = literal` lines (the rest goes in the next cell)")
            continue
        try:
            ast.literal_eval(value)
        except ValueError:
            problems.append(
                f"{where}: {ast.unparse(value)} is not a literal (a number, string, True/False/None or a "
                "list/tuple/dict of those), so papermill and batch could not override it; compute it in the next cell"
            )
    return problems


def smoke_file(notebook: Path) -> Path:
    """Where the smoke parameters of a notebook live: ``<its folder>/smoke/<stem>.yaml``."""
    return notebook.parent / "smoke" / f"{notebook.stem}.yaml"


def smoke_problems(notebook: Path, check_keys: bool = True) -> list[str]:
    """A missing smoke file, or (`check_keys`) a key in it that the notebook does not declare."""
    smoke = smoke_file(notebook)
    if not smoke.exists():
        return [f"it has no smoke-parameter file {smoke}"]
    if not check_keys:
        return []
    try:
        declared = declared_parameters(notebook)
        unknown = [key for key in load_params_yaml(smoke) if key not in declared]
    except MnistLabError as exc:
        return [str(exc)]
    return [str(undeclared_error(unknown, str(notebook), declared, f"Smoke file {smoke}"))] if unknown else []


def convention_problems(path: Path) -> list[str]:
    """Every way the notebook at `path` breaks the conventions of the series (normal form aside: `verify`)."""
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        return [f"not a readable notebook: {exc}"]
    problems = []
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        problems.append("its first cell must be markdown: the title, what it teaches, what it needs")
    cell_problems = parameters_problems(nb)
    problems += cell_problems
    problems += smoke_problems(path, check_keys=not cell_problems)  # keys are checked against a valid cell
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != KERNEL_NAME:
        problems.append(f"its kernelspec name is {kernel!r}; it must be {KERNEL_NAME!r} (what CI and batch start)")
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


# --------------------------------------------------------------------------- CI smoke copies


def prepare_smoke(notebook: Path, out_path: Path) -> Path:
    """Write the CI copy of `notebook`: papermill prepare-only with its smoke parameters, committed outputs kept."""
    import papermill

    problems = smoke_problems(notebook)
    if problems:
        raise SystemExit(f"{notebook}: {problems[0]}")
    prepared = papermill.execute_notebook(
        str(notebook),
        None,
        parameters=load_params_yaml(smoke_file(notebook)),
        prepare_only=True,
        kernel_name=KERNEL_NAME,
        progress_bar=False,
        log_output=False,
    )
    committed = {cell["id"]: cell for cell in nbformat.read(notebook, as_version=4).cells if "id" in cell}
    for cell in prepared.cells:  # nbval compares these: keep them exactly as committed
        source = committed.get(cell.get("id"))
        if source is not None and cell.cell_type == "code":
            cell.outputs = copy.deepcopy(source.get("outputs", []))
            cell.execution_count = source.get("execution_count")
    with atomic_write(out_path, "w") as handle:
        nbformat.write(prepared, handle)
    return out_path


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python tools/nbcheck.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("strip", "verify", "conventions"):
        sub.add_parser(name).add_argument("files", nargs="+", type=Path, metavar="FILE")
    smoke = sub.add_parser("smoke")
    smoke.add_argument("--out", required=True, type=Path, metavar="DIR")
    smoke.add_argument("files", nargs="+", type=Path, metavar="NOTEBOOK")
    args = parser.parse_args(argv)
    if args.command == "strip":
        strip(args.files)
        return 0
    if args.command == "verify":
        bad = not_normal(args.files)
        for path in bad:
            print(f"{path}: not in normal form; run `python tools/nbcheck.py strip {path}`", file=sys.stderr)
        print(f"nbcheck verify: {len(args.files) - len(bad)} of {len(args.files)} notebook(s) in normal form")
        return 1 if bad else 0
    if args.command == "conventions":
        found = {path: convention_problems(path) for path in args.files}
        for path, problems in found.items():
            for problem in problems:
                print(f"{path}: {problem}", file=sys.stderr)
        return 1 if any(found.values()) else 0
    for path in args.files:
        print(f"prepared {prepare_smoke(path, args.out / path.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
