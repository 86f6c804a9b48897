"""``mnist-lab batch``: run notebooks of the series with papermill and tabulate what they report.

    mnist-lab batch [NOTEBOOK ...] [-p NAME VALUE]... [-f params.yaml] --out DIR
                    [--jobs N] [--force] [--timeout SECONDS]

Runs the given notebooks (default: every ``notebooks/[0-9]*.ipynb`` of the repository, in
order) on the Jupyter kernel ``python3`` of the Python running mnist-lab (not some other
``python3`` kernel installed elsewhere), with the **repository root as working directory**
(the folder holding ``pyproject.toml`` and ``notebooks/``; the current folder when mnist_lab is
installed outside a checkout), the same as the committed outputs were made. For each
notebook ``<stem>`` it writes:

- ``DIR/<stem>.ipynb``: the executed copy (atomically; a failed run keeps the cells it ran and
  the traceback);
- ``DIR/<stem>/``: the notebook's own results: ``output_dir`` is set to this folder for every
  notebook that declares it, so its ``save_metrics`` writes ``DIR/<stem>/metrics.json`` here;
- ``DIR/<stem>/batch.json``: written last, atomically, after a successful run: the notebook's
  SHA-256 and the effective parameters. A later run with the same notebook file and the same
  parameters skips the notebook (status ``skipped``) unless ``--force``; so an interrupted
  batch (Ctrl-C) resumes where it stopped, and a half-run notebook is run again;
- ``DIR/summary.md`` and ``DIR/summary.csv``: one row per notebook: notebook, status (ok,
  failed, skipped), final test accuracy, epochs, seconds (wall clock of the whole notebook),
  device, error (first line of the exception).

Parameters. ``-p NAME VALUE`` (repeatable) parses VALUE as YAML (``-p epochs 3`` is the int 3,
``-p data_dir null`` is None, ``-p device cuda`` a string). ``-f FILE`` is a YAML mapping that
may mix two kinds of keys: a parameter name sets it for every notebook; a notebook stem
(e.g. ``03_mlp:``) holds a mapping of parameters for that notebook only. Precedence: ``-f``
common values < ``-f`` per-notebook values < ``-p``. A common parameter (from ``-p`` or ``-f``)
is passed only to the chosen notebooks that declare it; a name that none of them declares, or a
per-notebook name that its notebook does not declare, is an error before anything runs
(exit status 2). ``output_dir`` is set by batch and cannot be given.

Failures (an exception, a cell running longer than ``--timeout`` seconds, a dying kernel) are
recorded in the summary and do not stop the other notebooks; the exit status is then 1.
``--jobs N`` runs N notebooks at once, each in its own worker process.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidParameterError
from .files import atomic_write, check_writable, write_json
from .nbtools import (
    KERNEL_NAME,
    PARAMETERS_TAG,
    closest,
    declared_parameters,
    load_params_yaml,
    read_notebook,
    undeclared_error,
)

STATE_FILE = "batch.json"
METRICS_FILE = "metrics.json"  # what mnist_lab.notebook.save_metrics writes
SUMMARY_COLUMNS = ("notebook", "status", "test_acc", "epochs", "seconds", "device", "error")
EXIT_FAILED, EXIT_INTERRUPTED = 1, 130
INJECTED = "output_dir"  # set by batch to DIR/<stem> for every notebook that declares it


@dataclass
class Job:
    """One notebook to run: where it is, what it declares, and its effective parameters."""

    notebook: Path
    stem: str
    declared: dict[str, object]
    params: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """Hash of the notebook file and the effective parameters: equal keys, same run."""
        digest = hashlib.sha256()
        digest.update(file_sha256(self.notebook).encode())
        digest.update(json.dumps(self.params, sort_keys=True, default=repr).encode())
        return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def repo_root() -> Path:
    """The working directory of every notebook: the checkout holding mnist_lab, else the current folder."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").exists() and (checkout / "notebooks").is_dir():
        return checkout
    return Path.cwd()


def default_notebooks(root: Path | None = None) -> list[Path]:
    """Every numbered notebook of the series, in order (``notebooks/[0-9]*.ipynb``)."""
    return sorted(((root or repo_root()) / "notebooks").glob("[0-9]*.ipynb"))


def parse_value(text: str) -> Any:
    """A ``-p`` value as YAML: ``3`` -> 3, ``0.1`` -> 0.1, ``true`` -> True, ``null`` -> None, ``cpu`` -> 'cpu'."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidParameterError(
            f"Value {text!r} is not valid YAML ({exc}). Quote strings that hold ':' or '#'."
        ) from exc


# --------------------------------------------------------------------------- planning (no side effects)


def _declared(notebook: Path) -> dict[str, object]:
    nb = read_notebook(notebook)
    if not any(PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []) for cell in nb.cells):
        return {}  # a notebook without parameters runs as it is
    return declared_parameters(nb)


def _split_params_file(
    data: dict[str, Any], path: str, stems: set[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(common parameters, {stem: parameters}) from a ``-f`` mapping."""
    common: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key in stems:
            if not isinstance(value, dict):
                raise InvalidParameterError(
                    f"In {path}, {key!r} is a notebook, so its value must be a mapping of its parameters "
                    f"(e.g. `{key}: {{epochs: 1}}`), not {value!r}."
                )
            sections[key] = value
        elif key.isidentifier():
            common[key] = value
        else:
            guess = closest(key, stems)
            hint = f" Did you mean the notebook {guess!r}?" if guess else ""
            raise InvalidParameterError(
                f"In {path}, {key!r} is neither a parameter name nor the stem of a notebook.{hint} "
                f"Notebooks: {', '.join(sorted(stems)) or '(none)'}."
            )
    return common, sections


def plan(
    notebooks: Sequence[str | os.PathLike[str]] | None,
    cli_params: Sequence[tuple[str, str]] = (),
    params_file: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] = "results/batch",
) -> list[Job]:
    """Check everything and decide each notebook's parameters; raises before anything is written.

    Errors (`MnistLabError`): a missing or duplicate notebook, a malformed parameters cell,
    a bad ``-f`` file, a parameter no chosen notebook declares, a per-notebook parameter its
    notebook does not declare, ``output_dir`` given by hand.
    """
    root = repo_root()
    chosen = [Path(p) for p in notebooks] if notebooks else default_notebooks(root)
    if not chosen:
        raise InvalidParameterError(f"No notebooks to run: {root / 'notebooks'} holds no [0-9]*.ipynb file.")
    jobs: list[Job] = []
    for path in chosen:
        if path.suffix != ".ipynb" or not path.is_file():
            raise InvalidParameterError(f"{path} is not a notebook file (.ipynb). Check the path.")
        resolved = path.resolve()
        if any(job.notebook == resolved for job in jobs):
            continue  # named twice: run once
        if any(job.stem == path.stem for job in jobs):
            raise InvalidParameterError(
                f"Two notebooks are named {path.stem!r}; their results would share {Path(out) / path.stem}. "
                "Run them in separate batches (different --out)."
            )
        jobs.append(Job(resolved, path.stem, _declared(path)))
    by_stem = {job.stem: job for job in jobs}

    common_file: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    if params_file is not None:
        # stems a section may name: the chosen notebooks, their neighbours, and the series
        known = {p.stem for job in jobs for p in job.notebook.parent.glob("*.ipynb")}
        known |= {p.stem for p in default_notebooks(root)}
        common_file, sections = _split_params_file(load_params_yaml(params_file), str(params_file), known)
    cli: dict[str, Any] = {}
    for name, value in cli_params:
        if not name.isidentifier():
            raise InvalidParameterError(f"-p {name!r}: a parameter name is a Python identifier, e.g. `-p epochs 3`.")
        cli[name] = parse_value(value)

    for origin, names in (("-p", list(cli)), (f"{params_file}", list(common_file))):
        for name in names:
            if name == INJECTED:
                raise InvalidParameterError(
                    f"{origin} sets {INJECTED!r}, which batch sets itself (DIR/<notebook>); choose DIR with --out."
                )
            if not any(name in job.declared for job in jobs):
                raise _declared_by_none(name, origin, jobs)
    for stem, values in sections.items():
        if stem not in by_stem:
            continue  # a section for a notebook not chosen this time
        job = by_stem[stem]
        unknown = [name for name in values if name not in job.declared]
        if unknown:
            raise undeclared_error(unknown, str(job.notebook), job.declared, f"{params_file}, section {stem!r},")
        if INJECTED in values:
            raise InvalidParameterError(f"{params_file}, section {stem!r}, sets {INJECTED!r}; batch sets it itself.")

    out_dir = Path(out).resolve()
    for job in jobs:
        params = {k: v for k, v in common_file.items() if k in job.declared}
        params.update(sections.get(job.stem, {}))
        params.update({k: v for k, v in cli.items() if k in job.declared})
        if INJECTED in job.declared:
            params[INJECTED] = str(out_dir / job.stem)
        job.params = params
    return jobs


def _declared_by_none(name: str, origin: str, jobs: list[Job]) -> InvalidParameterError:
    if len(jobs) == 1:
        return undeclared_error([name], str(jobs[0].notebook), jobs[0].declared, origin)
    every = sorted({p for job in jobs for p in job.declared})
    guess = closest(name, every)
    hint = f" Did you mean {guess!r}?" if guess else ""
    listing = "; ".join(f"{job.stem}: {', '.join(job.declared) or '(none)'}" for job in jobs)
    return InvalidParameterError(
        f"{origin} sets {name!r}, which none of the chosen notebooks declares.{hint} Their parameters: {listing}."
    )


# --------------------------------------------------------------------------- running one notebook


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def describe_failure(exc: BaseException) -> str:
    """The summary's error text: exception name and the first line of its message."""
    ename = getattr(exc, "ename", None)  # papermill's PapermillExecutionError: the notebook's own exception
    if ename:
        where = f" (at In [{exc.exec_count}])" if getattr(exc, "exec_count", None) else ""
        return f"{ename}: {_first_line(getattr(exc, 'evalue', ''))}{where}"
    message = _first_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _row(job: Job, out: Path, status: str, seconds: float | None, error: str = "") -> dict[str, Any]:
    metrics = _read_json(out / job.stem / METRICS_FILE)
    return {
        "notebook": job.stem,
        "status": status,
        "test_acc": metrics.get("test_acc"),
        "epochs": metrics.get("epochs"),
        "seconds": None if seconds is None else round(seconds, 1),
        "device": metrics.get("device"),
        "error": error,
    }


def finished_row(job: Job, out: Path) -> dict[str, Any] | None:
    """The ``skipped`` row if `job` already ran successfully with the same notebook and parameters."""
    state = _read_json(out / job.stem / STATE_FILE)
    if state.get("status") != "ok" or state.get("key") != job.key() or not (out / f"{job.stem}.ipynb").exists():
        return None
    return _row(job, out, "skipped", state.get("seconds"))


def this_python_kernel_manager() -> type:
    """A jupyter kernel manager whose ``python3`` kernel is the interpreter running this code.

    A ``python3`` kernelspec elsewhere (e.g. ``~/.local/share/jupyter/kernels``, from another
    Python install) would otherwise win and run the notebooks without this environment's
    mnist_lab and torch.
    """
    import ipykernel.kernelspec
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from traitlets import default

    class ThisPythonKernelSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> Any:
            if kernel_name == KERNEL_NAME:  # argv: [sys.executable, "-m", "ipykernel_launcher", ...]
                spec = ipykernel.kernelspec.get_kernel_dict()
                return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES, **spec)
            return super().get_kernel_spec(kernel_name)

    class ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _this_python_specs(self) -> KernelSpecManager:
            return ThisPythonKernelSpecs(data_dir=self.data_dir)

    return ThisPythonKernelManager


def run_job(job: Job, out: Path, timeout: int | None, cwd: Path) -> dict[str, Any]:
    """Execute one notebook with papermill; never raises for a failing notebook (Ctrl-C excepted)."""
    import papermill

    folder = out / job.stem
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (STATE_FILE, METRICS_FILE):  # from an earlier run: must not describe this one
        with contextlib.suppress(FileNotFoundError):
            (folder / stale).unlink()
    final = out / f"{job.stem}.ipynb"
    partial = out / f".{job.stem}.{os.getpid()}.part.ipynb"  # papermill saves as it goes; renamed at the end
    key, started = job.key(), time.perf_counter()
    status, error = "ok", ""
    try:
        papermill.execute_notebook(
            str(job.notebook),
            str(partial),
            parameters=job.params,
            kernel_name=KERNEL_NAME,
            cwd=str(cwd),
            execution_timeout=timeout,
            progress_bar=False,
            log_output=False,
            kernel_manager_class=this_python_kernel_manager(),
        )
    except KeyboardInterrupt:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    except Exception as exc:  # any failure of the notebook, its kernel or papermill: record, go on
        status, error = "failed", describe_failure(exc)
    seconds = time.perf_counter() - started
    if partial.exists():
        os.replace(partial, final)  # atomic: the executed copy is complete or absent
    if status == "ok":
        state = {
            "notebook": str(job.notebook),
            "notebook_sha256": file_sha256(job.notebook),
            "parameters": job.params,
            "key": key,
            "status": "ok",
            "seconds": round(seconds, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        write_json(folder / STATE_FILE, state)  # last: its presence means "done with these parameters"
    return _row(job, out, status, seconds, error)


def _worker(job: Job, out: Path, timeout: int | None, cwd: Path) -> dict[str, Any]:
    """`run_job` in a pool process: Ctrl-C becomes a failed row instead of a broken pool."""
    try:
        return run_job(job, out, timeout, cwd)
    except KeyboardInterrupt:
        return _row(job, out, "failed", None, "interrupted (Ctrl-C)")


# --------------------------------------------------------------------------- summary


def _fmt_acc(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def _fmt(value: Any) -> str:
    return "" if value is None else str(value)


def write_summary(rows: list[dict[str, Any]], jobs: list[Job], out: Path) -> tuple[Path, Path]:
    """Write ``summary.md`` and ``summary.csv`` in `out` (atomically); returns their paths."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _fmt(row[key]) for key in SUMMARY_COLUMNS})
    with atomic_write(out / "summary.csv", "w") as handle:
        handle.write(buffer.getvalue())

    counts = {status: sum(row["status"] == status for row in rows) for status in ("ok", "failed", "skipped")}
    lines = [
        "# mnist-lab batch summary",
        "",
        f"{len(rows)} notebook{'s' if len(rows) != 1 else ''}: {counts['ok']} ok, {counts['failed']} failed, "
        f"{counts['skipped']} skipped (already done with the same notebook and parameters). "
        "Seconds: wall clock of the whole notebook.",
        "",
        "| " + " | ".join(SUMMARY_COLUMNS) + " |",
        "|" + "|".join(["---", "---", "---:", "---:", "---:", "---", "---"]) + "|",
    ]
    for row in rows:
        cells = [row["notebook"], row["status"], _fmt_acc(row["test_acc"]), _fmt(row["epochs"]), _fmt(row["seconds"])]
        cells += [_fmt(row["device"]), _fmt(row["error"])]
        lines.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    lines += ["", "## Parameters passed", ""]
    for job in jobs:
        given = {k: v for k, v in job.params.items() if k != INJECTED}
        shown = ", ".join(f"`{k} = {v!r}`" for k, v in given.items()) or "defaults"
        lines.append(f"- {job.stem}: {shown}")
    with atomic_write(out / "summary.md", "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return out / "summary.md", out / "summary.csv"


# --------------------------------------------------------------------------- the batch


def _report(log: Callable[[str], None], index: int, total: int, row: dict[str, Any]) -> None:
    detail = f" in {row['seconds']} s" if row["seconds"] is not None else ""
    if row["test_acc"] is not None:
        detail += f", test accuracy {_fmt_acc(row['test_acc'])}"
    if row["error"]:
        detail += f": {row['error']}"
    log(f"[{index}/{total}] {row['notebook']}: {row['status']}{detail}")


def run_batch(
    notebooks: Sequence[str | os.PathLike[str]] | None = None,
    params: Sequence[tuple[str, str]] = (),
    params_file: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] = "results/batch",
    jobs: int = 1,
    force: bool = False,
    timeout: int | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Run the batch (see the module docstring); returns the exit status: 0, 1 (a failure) or 130 (Ctrl-C)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InvalidParameterError(f"--jobs must be a whole number >= 1, got {jobs!r}.")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1):
        raise InvalidParameterError(f"--timeout must be a whole number of seconds >= 1, got {timeout!r}.")
    planned = plan(notebooks, params, params_file, out)
    out_dir = Path(out).resolve()
    check_writable(out_dir / "summary.md")
    cwd = repo_root()
    rows: dict[str, dict[str, Any]] = {}
    todo: list[Job] = []
    for job in planned:
        done = None if force else finished_row(job, out_dir)
        if done is not None:
            rows[job.stem] = done
        else:
            todo.append(job)
    log(
        f"mnist-lab batch: {len(planned)} notebook(s), {len(todo)} to run ({len(planned) - len(todo)} already done), "
        f"{jobs} at a time, working directory {cwd}, results in {out_dir}"
    )
    index = {job.stem: i + 1 for i, job in enumerate(planned)}
    for stem, row in rows.items():
        _report(log, index[stem], len(planned), row)
    interrupted = False
    current: Job | None = None
    try:
        if jobs == 1:
            for current in todo:
                log(f"[{index[current.stem]}/{len(planned)}] {current.stem}: running")
                rows[current.stem] = run_job(current, out_dir, timeout, cwd)
                _report(log, index[current.stem], len(planned), rows[current.stem])
        else:
            interrupted = _run_pool(todo, out_dir, timeout, cwd, jobs, rows, index, log)
    except KeyboardInterrupt:
        interrupted = True
        if current is not None:
            rows.setdefault(current.stem, _row(current, out_dir, "failed", None, "interrupted (Ctrl-C)"))
    if interrupted:
        for job in planned:
            rows.setdefault(job.stem, _row(job, out_dir, "failed", None, "not run: the batch was interrupted"))
        log("Interrupted. Finished notebooks are recorded: run the same command again to do the rest.")
    ordered = [rows[job.stem] for job in planned]
    md, csv_path = write_summary(ordered, planned, out_dir)
    log(f"Summary: {md} and {csv_path}")
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(row["status"] == "failed" for row in ordered) else 0


def _run_pool(
    todo: list[Job],
    out: Path,
    timeout: int | None,
    cwd: Path,
    jobs: int,
    rows: dict[str, dict[str, Any]],
    index: dict[str, int],
    log: Callable[[str], None],
) -> bool:
    """Run `todo` in `jobs` worker processes, filling `rows`; True if interrupted by Ctrl-C."""
    import multiprocessing

    # Processes, not threads: papermill changes the working directory of its process. "forkserver"
    # (where available): workers fork from a clean server that imported mnist_lab once, which is
    # both fast and safe (forking this process, which may hold threads, is not); else "spawn".
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload([__name__])
    executor = ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    futures: dict[Future[dict[str, Any]], Job] = {}
    try:
        for job in todo:
            futures[executor.submit(_worker, job, out, timeout, cwd)] = job
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = futures[future]
                try:
                    rows[job.stem] = future.result()
                except Exception as exc:  # the worker process itself died
                    rows[job.stem] = _row(job, out, "failed", None, describe_failure(exc))
                _report(log, index[job.stem], len(index), rows[job.stem])
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches the workers too; a signal sent to this process alone is passed on.
        for process in list(getattr(executor, "_processes", {}).values()):
            with contextlib.suppress(ProcessLookupError, OSError):
                os.kill(process.pid, signal.SIGINT)
        executor.shutdown(wait=True, cancel_futures=True)
        for future, job in futures.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                rows.setdefault(job.stem, future.result())
        return True
    executor.shutdown(wait=True)
    return False


# --------------------------------------------------------------------------- command line


def _batch(args: argparse.Namespace) -> int:
    return run_batch(
        notebooks=args.notebooks or None,
        params=[tuple(pair) for pair in args.param or []],
        params_file=args.file,
        out=args.out,
        jobs=args.jobs,
        force=args.force,
        timeout=args.timeout,
    )


def add_batch_command(sub: argparse._SubParsersAction) -> None:
    """Register ``mnist-lab batch`` on the CLI's subparsers."""
    p = sub.add_parser(
        "batch",
        help="run notebooks with papermill and summarise their results",
        description="Run notebooks (default: every notebooks/[0-9]*.ipynb, in order) with papermill on the "
        "python3 kernel, working directory = the repository root. Writes DIR/<stem>.ipynb (executed copy), "
        "DIR/<stem>/ (the notebook's output_dir: metrics.json, figures) and DIR/summary.md + summary.csv. "
        "Notebooks already run with the same parameters are skipped unless --force.",
        epilog="-f FILE: a YAML mapping; a parameter name applies to every notebook that declares it, a notebook "
        "stem (e.g. 03_mlp) maps to that notebook's own parameters. -p beats -f. A name no chosen notebook "
        "declares is an error before anything runs.",
    )
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help="notebooks to run (default: the whole series)")
    p.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="set a parameter (VALUE read as YAML: 3 is an int, null is None); repeatable",
    )
    p.add_argument("-f", "--file", metavar="FILE", help="YAML file of parameters (common and/or per notebook)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for executed copies, results and summary")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="notebooks run at once (default 1)")
    p.add_argument("--force", action="store_true", help="rerun notebooks already done with the same parameters")
    p.add_argument("--timeout", type=int, metavar="SECONDS", help="fail a notebook whose cell runs longer than this")
    p.set_defaults(func=_batch)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mnist_lab.batch ...``, the same as ``mnist-lab batch ...``."""
    parser = argparse.ArgumentParser(prog="python -m mnist_lab.batch")
    add_batch_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["batch", *(sys.argv[1:] if argv is None else argv)])
    from .cli import run_command

    return run_command(args, "mnist-lab batch")


if __name__ == "__main__":
    sys.exit(main())
