"""``mnist-lab batch``: run notebooks of the series with papermill on Dask, sweep their parameters, tabulate.

README.md ("For instructors: `mnist-lab batch`") shows the use and ``mnist-lab batch --help`` the options.
What a caller can rely on beyond them:

- The working directory of every notebook is the repository root (the checkout holding mnist_lab; else
  the current folder), its kernel ``python3`` of the worker's own Python.
- A run ``R`` (``<stem>``, or ``<stem>/<name>=<value>,...`` with values made safe for a file name)
  writes ``DIR/R.ipynb`` (atomically; a failed run keeps the cells it ran), ``DIR/R/`` (its
  ``output_dir``) and, last and only after success, ``DIR/R/batch.json`` (the notebook's SHA-256 and
  the effective parameters): the same notebook file and parameters are then skipped unless ``--force``.
- Parameters: ``-f`` common < ``-f`` per-notebook section < ``-p``; ``output_dir`` is set by batch.
  ``results_dir``, where a notebook declares it and neither ``-f`` nor ``-p`` gives it, is DIR: the
  outputs of the runs before it (notebook 07 finds the checkpoints of 05 and 06 there). A worker on
  another machine does not see DIR; notebook 07 then trains what it cannot find.
- Only this process writes, only inside DIR, under names from each notebook file's own stem. Refused
  before anything runs (exit status 2): a name no chosen notebook declares (as papermill's
  ``inspect_notebook`` reads it); a result that would land on a source notebook; a file where a run
  folder belongs or a folder, link or device where a file belongs; in ``-f``/``-p`` a key given twice,
  a key that is not text, a value JSON cannot hold or an unquoted ``1e-3`` (text in YAML 1.1); a DIR
  another batch holds (``DIR/.mnist-lab-batch.lock``, an ``flock``; the refusal names its process).
- Exit status: 0; 1 when a run failed (an exception, a cell longer than ``--timeout``, a dead kernel
  or worker: the other runs go on); 130 on Ctrl-C and 143 on SIGTERM (``mnist_lab.cli`` raises it as
  `Terminated`): what has not finished is cancelled, the summary written.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import hashlib
import io
import itertools
import json
import os
import re
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidParameterError, MnistLabError, OutputError, Terminated
from .files import atomic_write, check_target, check_writable, save_figure, write_json

STATE_FILE = "batch.json"
METRICS_FILE = "metrics.json"  # what mnist_lab.notebook.save_metrics writes
SWEEP_FILE = "sweep.csv"
FIGURE_FILE = "sweep.png"
LOCK_FILE = ".mnist-lab-batch.lock"
LAPTOP_FILE = "laptop.yaml"  # beside the notebooks: CPU-sized settings for the whole series
SUMMARY_COLUMNS = ("notebook", "status", "test_acc", "epochs", "seconds", "device", "error")
AGGREGATE_COLUMNS = ("runs", "failed", "mean", "std", "min", "max")
EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 130, 143
INJECTED = "output_dir"  # set by batch for every notebook that declares it
EARLIER = "results_dir"  # set by batch to DIR where declared and not given: the earlier runs' outputs
SEED = "seed"  # the grid parameter the aggregate table averages over
KERNEL_NAME = "python3"
RECIPES = ("full", "laptop", "auto")
PLAIN_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
# YAML 1.1 (PyYAML) reads an exponent without a dot (1e-3) as a string; a notebook would then get "1e-3".
_BARE_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
JSON_SCALARS = (str, int, float, bool, type(None))


class SchedulerError(MnistLabError, ConnectionError):
    """The Dask scheduler given with ``--scheduler`` cannot be reached."""


@dataclass
class Job:
    """One run: which notebook, what it declares, its effective parameters, its swept values, its name."""

    notebook: Path
    stem: str
    declared: dict[str, object]
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, Any] = field(default_factory=dict)  # this run's swept values, name -> value
    name: str = ""  # DIR-relative: "<stem>" or "<stem>/<name>=<value>,..."

    def key(self) -> str:
        """Hash of the notebook file and the effective parameters: equal keys, same run."""
        params = json.dumps(self.params, sort_keys=True, default=repr)
        return hashlib.sha256((file_sha256(self.notebook) + params).encode()).hexdigest()


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


def sized_params_file(
    recipes: str, params_file: str | os.PathLike[str] | None, log: Callable[[str], None] = print
) -> str | os.PathLike[str] | None:
    """The ``-f`` file for ``--recipes``: ``full`` `params_file`, ``laptop`` ``notebooks/laptop.yaml``
    (refused with ``-f``), ``auto`` laptop where there is no CUDA GPU and no ``-f``, else `params_file`."""
    if recipes not in RECIPES:
        raise InvalidParameterError(f"--recipes must be one of {', '.join(RECIPES)}, got {recipes!r}.")
    if recipes == "full" or (recipes == "auto" and params_file is not None):
        return params_file
    if params_file is not None:
        raise InvalidParameterError(
            f"--recipes laptop reads notebooks/{LAPTOP_FILE}, and -f names {params_file}: give one "
            f"(copy the sections of {LAPTOP_FILE} you want into your file)."
        )
    if recipes == "auto":
        import torch

        if torch.cuda.is_available():
            log(f"CUDA GPU found ({torch.cuda.get_device_name()}): every notebook runs its full recipes.")
            return None
    laptop = repo_root() / "notebooks" / LAPTOP_FILE
    log(
        f"{'No CUDA GPU here: r' if recipes == 'auto' else 'R'}unning the CPU-sized settings of {laptop} "
        "(AlexNet in notebook 06: 3 epochs on 3,200 images; every other notebook its tutorial's full recipes). "
        "For the full recipes everywhere (AlexNet alone takes about 12 hours on a 2-core CPU): "
        "make run RECIPES=full, or mnist-lab batch --recipes full."
    )
    return laptop


def load_yaml(text: str) -> Any:
    """`text` read as YAML by a `yaml.SafeLoader` that refuses duplicate keys and an unquoted ``1e-3``
    (raises `InvalidParameterError` for those, `yaml.YAMLError` for bad YAML)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, JSON_SCALARS) and key in seen:
                    raise InvalidParameterError(
                        f"{key!r} is given twice in one mapping (line {key_node.start_mark.line + 1}); "
                        "YAML would silently keep the last value. Keep one."
                    )
                with contextlib.suppress(TypeError):
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_str(self, node: Any) -> str:
            text = super().construct_yaml_str(node)
            if node.style is None and _BARE_EXPONENT.fullmatch(text):
                mantissa, _, exponent = text.lower().partition("e")
                example = f"{mantissa}.0e{exponent}" if "." not in mantissa else text
                raise InvalidParameterError(
                    f"{text!r} is read as text, not a number, by YAML 1.1 (line {node.start_mark.line + 1}): "
                    f"write {example} or {float(text):g} (or quote it if you mean text)."
                )
            return text

    StrictLoader.add_constructor("tag:yaml.org,2002:str", StrictLoader.construct_yaml_str)
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def check_json_value(value: Any, where: str) -> Any:
    """Refuse what JSON (and so a notebook's parameters cell) cannot hold: dates, bytes, sets, non-text keys."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidParameterError(
                    f"{where}: the key {key!r} is a {type(key).__name__}, not text; quote it (e.g. '{key}')."
                )
            check_json_value(item, f"{where}, {key!r}")
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, where)
    elif not isinstance(value, JSON_SCALARS):
        raise InvalidParameterError(
            f"{where}: {value!r} is a {type(value).__name__}, which a notebook parameter cannot hold "
            "(only numbers, text, true/false, null, lists and mappings). Quote it to pass it as text."
        )
    return value


def parse_value(text: str) -> Any:
    """A ``-p`` value as YAML: ``3`` -> 3, ``0.1`` -> 0.1, ``true`` -> True, ``null`` -> None, ``cpu`` -> 'cpu'."""
    import yaml

    try:
        return check_json_value(load_yaml(text), f"Value {text!r}")
    except yaml.YAMLError as exc:
        raise InvalidParameterError(
            f"Value {text!r} is not valid YAML ({exc}). Quote strings that hold ':' or '#'."
        ) from exc


def parse_grid(spec: str) -> tuple[str, list[Any]]:
    """``--grid lr=0.05,0.1`` -> ('lr', [0.05, 0.1]); ``seed=0..3`` -> ('seed', [0, 1, 2, 3])."""
    name, sep, text = spec.partition("=")
    name = name.strip()
    usage = "write NAME=V1,V2,... (e.g. --grid lr=0.05,0.1) or NAME=A..B for the whole numbers A to B (seed=0..9)"
    if not sep or not name.isidentifier() or not text.strip():
        raise InvalidParameterError(f"--grid {spec!r}: {usage}.")
    span = re.fullmatch(r"\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*", text)
    if span:
        first, last = int(span[1]), int(span[2])
        if last < first:
            raise InvalidParameterError(f"--grid {spec!r}: {first}..{last} is empty; put the smaller first.")
        return name, list(range(first, last + 1))
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise InvalidParameterError(f"--grid {spec!r}: an empty value between commas; {usage}.")
    values = [parse_value(item) for item in items]
    if len({json.dumps(v, sort_keys=True, default=repr) for v in values}) != len(values):
        raise InvalidParameterError(f"--grid {spec!r}: a value is listed twice; list each once.")
    return name, values


def safe_value(value: Any) -> str:
    """A value as part of a folder name: ``0.1`` -> '0.1', ``'cuda:0'`` -> 'cuda-0-1a2b3c' (hash when changed)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=repr)
    safe = re.sub(r"[^A-Za-z0-9.+-]+", "-", text)[:40]
    if safe != text:  # made safe or shortened: a short hash keeps different values apart
        safe += "-" + hashlib.sha256(text.encode()).hexdigest()[:6]
    return safe


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice most like `name` (a likely typo), or None."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def undeclared_error(
    names: Iterable[str], notebook: str, declared: Iterable[str], origin: str
) -> InvalidParameterError:
    """The error for parameters that `notebook` does not declare, with the closest declared names."""
    declared = list(declared)
    guesses = {name: closest(name, declared) for name in names}
    parts = [f"{name!r}" + (f" (did you mean {guess!r}?)" if guess else "") for name, guess in guesses.items()]
    return InvalidParameterError(
        f"{origin} sets {', '.join(parts)}, which {notebook} does not declare. Its parameters are: "
        f"{', '.join(declared) or '(none)'}. Use one of those names, or declare the new one in its parameters cell."
    )


def load_params_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML file of parameters as a dict (an empty file is ``{}``); clear errors otherwise."""
    import yaml

    path = Path(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidParameterError(f"Parameter file {path} does not exist.") from exc
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"Parameter file {path}: {exc}") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidParameterError(f"Parameter file {path} is not readable YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise InvalidParameterError(
            f"Parameter file {path} must be a YAML mapping of parameter names to values (e.g. `epochs: 1`)."
        )
    return check_json_value(data, f"In {path}")


def declared_parameters(notebook: str | os.PathLike[str]) -> dict[str, str]:
    """Name -> default (as written) of the parameters a notebook declares, read by papermill; {} if none."""
    import papermill

    try:
        found = papermill.inspect_notebook(str(notebook))
    except Exception as exc:  # papermill raises plain exceptions for unreadable JSON
        raise InvalidParameterError(f"Cannot read the parameters of {notebook}: {exc}") from exc
    return {name: info["default"] for name, info in found.items()}


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


def _chosen_notebooks(notebooks: Sequence[str | os.PathLike[str]] | None, out: Path) -> list[Job]:
    """One planless Job per notebook: paths checked, duplicates dropped, declared parameters read."""
    root = repo_root()
    chosen = [Path(p) for p in notebooks] if notebooks else default_notebooks(root)
    if not chosen:
        raise InvalidParameterError(f"No notebooks to run: {root / 'notebooks'} holds no [0-9]*.ipynb file.")
    jobs: list[Job] = []
    for path in chosen:
        if path.suffix != ".ipynb" or not path.is_file():
            raise InvalidParameterError(f"{path} is not a notebook file (.ipynb). Check the path.")
        resolved = path.resolve()
        stem = resolved.stem  # of the file itself: "../x.ipynb" is "x"; output names derive from it
        if not PLAIN_STEM.fullmatch(stem):
            raise InvalidParameterError(
                f"{path}: batch names its results after the notebook ({stem!r}), so the name must be a plain "
                "file name of letters, digits, '_', '-' and '.', not starting with '.' (e.g. 03_mlp.ipynb). "
                "Rename or copy the notebook."
            )
        if any(job.notebook == resolved for job in jobs):
            continue  # named twice: run once
        if any(job.stem == stem for job in jobs):
            raise InvalidParameterError(
                f"Two notebooks are named {stem!r}; their results would share {out / stem}. "
                "Run them in separate batches (different --out)."
            )
        jobs.append(Job(resolved, stem, declared_parameters(path)))
    return jobs


def check_run_paths(runs: list[Job], out: Path) -> None:
    """Refuse, before anything runs, outputs that would leave `out`, replace a source notebook, or land on
    a file where a folder belongs (or a folder, link or device where a file belongs)."""
    sources = {job.notebook for job in runs}
    for job in runs:
        copy, folder = out / f"{job.name}.ipynb", out / job.name
        for path in (copy, folder):
            if not path.resolve().is_relative_to(out):
                raise OutputError(f"Run {job.name!r} would write {path}, outside --out {out}; nothing was run.")
        for source in sources:
            if copy.resolve() == source or source.is_relative_to(folder.resolve()):
                raise OutputError(
                    f"--out {out} would put run {job.name!r} over its source notebook {source}; nothing was "
                    "run. Choose an --out folder apart from the notebooks (e.g. results/batch)."
                )
        for parent in [folder, *folder.parents]:
            if parent == out.parent:
                break
            if parent.exists() and not parent.is_dir():
                raise OutputError(
                    f"{parent} is a file, but batch keeps the results of run {job.name!r} in a folder there; "
                    "nothing was run. Move or delete that file, or choose another --out."
                )
        check_target(copy)
    for name in ("summary.md", "summary.csv", SWEEP_FILE):
        check_target(out / name)


def _check_names(names: dict[str, str], jobs: list[Job]) -> None:
    """Refuse a name (-> where it was given) that batch sets itself or that no chosen notebook declares."""
    for name, origin in names.items():
        if name == INJECTED:
            raise InvalidParameterError(
                f"{origin} sets {INJECTED!r}, which batch sets itself (DIR/<notebook>); choose DIR with --out."
            )
        if any(name in job.declared for job in jobs):
            continue
        if len(jobs) == 1:
            raise undeclared_error([name], str(jobs[0].notebook), jobs[0].declared, origin)
        guess = closest(name, sorted({p for job in jobs for p in job.declared}))
        hint = f" Did you mean {guess!r}?" if guess else ""
        listing = "; ".join(f"{job.stem}: {', '.join(job.declared) or '(none)'}" for job in jobs)
        raise InvalidParameterError(
            f"{origin} sets {name!r}, which none of the chosen notebooks declares.{hint} Their parameters: {listing}."
        )


def plan(
    notebooks: Sequence[str | os.PathLike[str]] | None,
    cli_params: Sequence[tuple[str, str]] = (),
    params_file: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] = "results/batch",
    grid: Sequence[str] = (),
) -> list[Job]:
    """Check everything and decide every run's parameters; raises (`MnistLabError`) before anything is written."""
    out_dir = Path(out).resolve()
    notebooks_found = _chosen_notebooks(notebooks, out_dir)
    by_stem = {job.stem: job for job in notebooks_found}
    common_file: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    if params_file is not None:
        # stems a section may name: the chosen notebooks, their neighbours, and the series
        known = {p.stem for job in notebooks_found for p in job.notebook.parent.glob("*.ipynb")}
        known |= {p.stem for p in default_notebooks()}
        common_file, sections = _split_params_file(load_params_yaml(params_file), str(params_file), known)
    cli: dict[str, Any] = {}
    for name, value in cli_params:
        if not name.isidentifier():
            raise InvalidParameterError(f"-p {name!r}: a parameter name is a Python identifier, e.g. `-p epochs 3`.")
        cli[name] = parse_value(value)
    sweeps: dict[str, list[Any]] = {}
    for spec in grid:
        name, values = parse_grid(spec)
        if name in sweeps or name in cli:
            raise InvalidParameterError(f"--grid {spec!r}: {name!r} is already set by -p or another --grid; keep one.")
        sweeps[name] = values

    _check_names({name: "-p" for name in cli} | {name: f"{params_file}" for name in common_file}, notebooks_found)
    _check_names({name: f"--grid {name}=..." for name in sweeps}, notebooks_found)
    for stem, values in sections.items():
        if stem not in by_stem:
            continue  # a section for a notebook not chosen this time
        job = by_stem[stem]
        unknown = [name for name in values if name not in job.declared]
        if unknown:
            raise undeclared_error(unknown, str(job.notebook), job.declared, f"{params_file}, section {stem!r},")
        if INJECTED in values:
            raise InvalidParameterError(f"{params_file}, section {stem!r}, sets {INJECTED!r}; batch sets it itself.")

    runs: list[Job] = []
    for base in notebooks_found:
        params = {k: v for k, v in common_file.items() if k in base.declared}
        params.update(sections.get(base.stem, {}))
        params.update({k: v for k, v in cli.items() if k in base.declared})
        swept = {name: values for name, values in sweeps.items() if name in base.declared}
        for combination in itertools.product(*swept.values()):
            values = dict(zip(swept, combination))
            # "03_mlp" without swept values, else e.g. "03_mlp/lr=0.1,seed=3" (one level below DIR/stem)
            name = base.stem + ("/" + ",".join(f"{k}={safe_value(v)}" for k, v in values.items()) if values else "")
            run = Job(base.notebook, base.stem, base.declared, {**params, **values}, values, name)
            if INJECTED in base.declared:
                run.params[INJECTED] = str(out_dir / name)
            if EARLIER in base.declared and EARLIER not in run.params:
                run.params[EARLIER] = str(out_dir)
            runs.append(run)
    return runs


def describe_failure(exc: BaseException) -> str:
    """The summary's error text: exception name and the first line of its message."""
    ename = getattr(exc, "ename", None)  # papermill's PapermillExecutionError: the notebook's own exception
    evalue = getattr(exc, "evalue", "") if ename else str(exc)
    first = next((line.strip() for line in str(evalue).splitlines() if line.strip()), "")
    if ename:
        where = f" (at In [{exc.exec_count}])" if getattr(exc, "exec_count", None) else ""
        return f"{ename}: {first}{where}"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


KERNEL_SETTLE_SECONDS = 10  # the longest a kernel shutting down may take to finish an interrupted cell


def this_python_kernel_manager() -> type:
    """A jupyter kernel manager whose ``python3`` kernel is the interpreter running this code (a ``python3``
    kernelspec of another Python install, e.g. in ``~/.local/share/jupyter/kernels``, would otherwise win
    and run the notebooks without this environment's mnist_lab and torch)."""
    import ipykernel.kernelspec
    import zmq
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from traitlets import default

    class ThisPythonKernelSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> Any:
            if kernel_name == KERNEL_NAME:  # argv: [sys.executable, "-m", "ipykernel_launcher", ...]
                spec = ipykernel.kernelspec.get_kernel_dict()
                # The kernel's own warnings (e.g. "Parent appears to have exited" when Ctrl-C stopped the
                # worker running it) reach the batch's terminal as jargon; its errors still do.
                spec["argv"] = [*spec["argv"], "--IPKernelApp.log_level=ERROR"]
                return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES, **spec)
            return super().get_kernel_spec(kernel_name)

    class ThisPythonKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            # CurveZMQ keys for a kernel that declares it takes them (ipykernel >= 7.4, which otherwise
            # warns on every start that it runs "over TCP without encryption"); older ones run as before.
            if self.has_trait("transport_encryption") and zmq.has("curve"):
                self.transport_encryption = "auto"

        @default("kernel_spec_manager")
        def _this_python_specs(self) -> KernelSpecManager:
            return ThisPythonKernelSpecs(data_dir=self.data_dir)

        async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            # Interrupt a busy kernel and wait (KERNEL_SETTLE_SECONDS at most) until it answers, then shut
            # it down: jupyter_client asks for the shutdown at once, so after a timeout the cell's reply
            # races the closing sockets and the kernel logs a ZMQError traceback.
            if not now and self.has_kernel and await self.is_alive():
                await self.interrupt_kernel()
                client = self.client()
                client.start_channels()
                try:
                    await client.wait_for_ready(timeout=KERNEL_SETTLE_SECONDS)
                except RuntimeError:
                    pass  # the cell ignores the interrupt, or the kernel died: shut down as before
                finally:
                    client.stop_channels()
            await super().shutdown_kernel(now=now, restart=restart)

    return ThisPythonKernelManager


# papermill changes the working directory of the whole process while it runs a notebook, so a
# worker process with several threads runs one notebook at a time (the local cluster has one thread).
_ONE_AT_A_TIME = threading.Lock()
# What Dask's nanny sets on its worker processes (so that tasks sharing one do not oversubscribe the CPUs
# or hold memory) and a notebook's kernel, a process of its own, must not inherit: the thread limits, and
# glibc's trim threshold (65,536 bytes: memory freed is handed back to the system at once, so every
# training step page-faults its activations in again; measured on the 2-core CPU, 2026-12-02, one epoch
# of keras_cnn on 12,800 images took 4.65 s in a batch kernel against 1.7 s).
KERNEL_LIFTED_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")


@contextlib.contextmanager
def kernel_env_as_outside_dask() -> Iterator[None]:
    """Lift `KERNEL_LIFTED_VARIABLES` while a kernel starts, where they hold what Dask's nanny sets."""
    import dask

    set_by_dask = dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}
    lifted = {
        name: os.environ.pop(name)
        for name in KERNEL_LIFTED_VARIABLES
        if name in set_by_dask and os.environ.get(name) == str(set_by_dask[name])
    }
    try:
        yield
    finally:
        os.environ.update(lifted)


def execute_run(notebook: bytes, params: dict[str, Any], timeout: int | None) -> dict[str, Any]:
    """Run one notebook in a scratch folder of this (worker) machine; never raises for a failing notebook.

    Returns what the client writes under DIR: ``status``, ``error``, ``seconds``, ``notebook``
    (the executed copy's bytes, or None if papermill wrote none), ``files`` ({path relative to
    output_dir: bytes}) and ``host``.
    """
    import papermill

    with (
        _ONE_AT_A_TIME,
        kernel_env_as_outside_dask(),
        tempfile.TemporaryDirectory(prefix="mnist-lab-batch-") as scratch,
    ):
        source, executed, output = Path(scratch, "input.ipynb"), Path(scratch, "executed.ipynb"), Path(scratch, "out")
        source.write_bytes(notebook)
        output.mkdir()
        if INJECTED in params:  # the notebook writes here; the files travel back to DIR/<run>/
            params = {**params, INJECTED: str(output)}
        status, error, started = "ok", "", time.perf_counter()
        try:
            papermill.execute_notebook(
                str(source),
                str(executed),
                parameters=params,
                kernel_name=KERNEL_NAME,
                cwd=str(repo_root()),
                execution_timeout=timeout,
                progress_bar=False,
                log_output=False,
                kernel_manager_class=this_python_kernel_manager(),
            )
        except Exception as exc:  # any failure of the notebook, its kernel or papermill: record, go on
            status, error = "failed", describe_failure(exc)
        return {
            "status": status,
            "error": error,
            "seconds": round(time.perf_counter() - started, 1),
            "notebook": executed.read_bytes() if executed.exists() else None,
            "files": {str(p.relative_to(output)): p.read_bytes() for p in sorted(output.rglob("*")) if p.is_file()},
            "host": socket.gethostname(),
        }


def _json_object(data: Path | bytes) -> dict[str, Any]:
    """`data` (a file, or bytes) as a JSON object; {} for anything else (missing, not JSON, cut short, a list)."""
    try:
        parsed = json.loads(data.read_bytes() if isinstance(data, Path) else data)
    except (OSError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _row(job: Job, out: Path, status: str, seconds: float | None, error: str = "") -> dict[str, Any]:
    metrics = _json_object(out / job.name / METRICS_FILE)
    reported = {key: metrics.get(key) for key in ("test_acc", "epochs", "device")}
    return {"notebook": job.stem, **job.grid, "status": status, "seconds": seconds, "error": error, **reported}


def finished_row(job: Job, out: Path) -> dict[str, Any] | None:
    """The ``skipped`` row if `job` already ran successfully with the same notebook and parameters."""
    state = _json_object(out / job.name / STATE_FILE)
    if state.get("status") != "ok" or state.get("key") != job.key() or not (out / f"{job.name}.ipynb").exists():
        return None
    return _row(job, out, "skipped", state.get("seconds"))


def save_result(job: Job, result: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write what a worker sent back under ``DIR`` (each file atomically, ``batch.json`` last); its row."""
    folder = out / job.name
    folder.mkdir(parents=True, exist_ok=True)
    for relative, data in result["files"].items():
        path = (folder / relative).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise InvalidParameterError(f"A worker sent a file {relative!r} outside {folder}; it was not written.")
        with atomic_write(path, "wb") as handle:
            handle.write(data)
    if result["notebook"] is not None and not isinstance(_json_object(result["notebook"]).get("cells"), list):
        # papermill's write of the executed copy broke off (a killed kernel or worker): keep no torso
        result = {**result, "notebook": None, "status": "failed"}
        result["error"] = result["error"] or "the executed copy came back incomplete (not a notebook)"
    if result["notebook"] is not None:
        with atomic_write(out / f"{job.name}.ipynb", "wb") as handle:
            handle.write(result["notebook"])
    if result["status"] == "ok":
        state = {
            "notebook": str(job.notebook),
            "notebook_sha256": file_sha256(job.notebook),
            "parameters": job.params,
            "key": job.key(),
            "status": "ok",
            "seconds": result["seconds"],
            "host": result["host"],
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        write_json(folder / STATE_FILE, state)  # last: its presence means "done with these parameters"
    return _row(job, out, result["status"], result["seconds"], result["error"])


@contextlib.contextmanager
def dask_client(scheduler: str | None, jobs: int) -> Iterator[Any]:
    """A `distributed.Client`: of the cluster at `scheduler`, else of a new local cluster of `jobs` processes.

    After an exception in the block (Ctrl-C, a failure), Dask, tornado and asyncio log nothing while the
    client and cluster close, so they close without zmq/asyncio tracebacks.
    """
    import logging

    from distributed import Client, LocalCluster

    loggers = {logging.getLogger(name): logging.getLogger(name).level for name in ("distributed", "tornado", "asyncio")}
    try:
        with contextlib.ExitStack() as stack:
            if scheduler is None:
                # One thread per worker process: papermill changes the process's working directory.
                # Everything listens on 127.0.0.1 only; port 0 = any free port.
                cluster = LocalCluster(
                    n_workers=jobs,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                    # The workers log nothing below CRITICAL: on Ctrl-C or SIGTERM a worker's heartbeat can
                    # meet the closed scheduler and log an ERROR traceback; a failed or dead run is reported
                    # by batch itself (its line and the summary), not by the worker's log.
                    silence_logs=logging.CRITICAL,
                )
                client = stack.enter_context(Client(stack.enter_context(cluster)))
            else:
                try:
                    client = stack.enter_context(Client(scheduler, timeout="10s"))
                except (OSError, TimeoutError, ValueError) as exc:
                    raise SchedulerError(
                        f"No Dask scheduler answers at {scheduler!r} ({exc}). Start one (`dask scheduler`, then "
                        "`dask worker ADDRESS` on each machine) and pass the address it prints, e.g. "
                        "tcp://10.0.0.5:8786."
                    ) from exc
            try:
                yield client
            except BaseException:
                for logger in loggers:
                    logger.setLevel(logging.CRITICAL + 1)
                raise
    finally:
        for logger, level in loggers.items():
            logger.setLevel(level)


def gpu_resources(client: Any) -> dict[str, int] | None:
    """``{"GPU": 1}`` if any worker declares GPU resources (then every run takes one), else None."""
    workers = client.scheduler_info().get("workers", {}).values()
    return {"GPU": 1} if any(w.get("resources", {}).get("GPU") for w in workers) else None


def run_on_dask(
    todo: list[Job], out: Path, timeout: int | None, client: Any, done: Callable[[Job, dict[str, Any]], None]
) -> None:
    """Submit every run in `todo`, write each result as it arrives and call ``done(job, row)``.

    Dask resubmits a run whose worker died (``distributed.scheduler.allowed-failures`` times), then it
    is recorded as failed (``KilledWorker``). On Ctrl-C every unfinished run is cancelled.
    """
    from distributed import as_completed

    resources = gpu_resources(client)
    futures = {}
    for job in todo:
        for stale in (STATE_FILE, METRICS_FILE):  # an earlier run's, which must not describe this one
            with contextlib.suppress(FileNotFoundError):
                (out / job.name / stale).unlink()
        key = f"mnist-lab-batch-{job.name}-{job.key()[:12]}"
        args = (job.notebook.read_bytes(), job.params, timeout)
        futures[client.submit(execute_run, *args, key=key, resources=resources, pure=False)] = job
    try:
        for future in as_completed(futures):
            job = futures[future]
            try:
                row = save_result(job, future.result(), out)
            except MnistLabError:
                raise  # e.g. DIR not writable: stop the batch, say why
            except Exception as exc:  # the worker died too often, or the task failed in Dask itself
                row = _row(job, out, "failed", None, describe_failure(exc))
            done(job, row)
    except BaseException:
        client.cancel(list(futures))
        raise


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt_acc(value: Any) -> str:
    return f"{value:.2%}" if _is_number(value) else ""


def _fmt(value: Any) -> str:
    return "" if value is None else str(value)


def _finished(row: dict[str, Any]) -> bool:
    """A run that counts in the aggregate: done (now or before) and reporting a test accuracy."""
    return row["status"] != "failed" and _is_number(row["test_acc"])


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for cells in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return lines


def aggregate(rows: list[dict[str, Any]], jobs: list[Job]) -> dict[str, list[dict[str, Any]]]:
    """Per swept notebook, one entry per combination of its non-seed swept values (in run order).

    Each entry: the values, ``accuracies`` (test accuracy of each run that finished), ``runs``,
    ``failed``, and ``mean``, ``std`` (sample standard deviation; None for fewer than 2),
    ``min``, ``max`` of the accuracies (None when none finished).
    """
    tables: dict[str, dict[tuple, dict[str, Any]]] = {}
    for job, row in zip(jobs, rows):
        if not job.grid:
            continue
        values = {k: v for k, v in job.grid.items() if k != SEED}
        group = tables.setdefault(job.stem, {}).setdefault(
            tuple(json.dumps(v, default=repr) for v in values.values()),
            {**values, "accuracies": [], "runs": 0, "failed": 0},
        )
        group["runs"] += 1
        group["failed"] += row["status"] == "failed"
        if _finished(row):
            group["accuracies"].append(row["test_acc"])
    for groups in tables.values():
        for group in groups.values():
            accs = group["accuracies"]
            group["mean"] = statistics.fmean(accs) if accs else None
            group["std"] = statistics.stdev(accs) if len(accs) > 1 else None
            group["min"], group["max"] = min(accs, default=None), max(accs, default=None)
    return {stem: list(groups.values()) for stem, groups in tables.items()}


def sweep_figure(stem: str, groups: list[dict[str, Any]], names: list[str], seeds: list[Any]) -> Any:
    """One notebook's sweep: accuracy against its first non-seed parameter (one series per the rest), or per seed.

    `seeds`: the seed of each accuracy when seed is the only swept name (then every group is one
    combination and its accuracies are in seed order).
    """
    from .plots import plot_sweep

    others = [name for name in names if name != SEED and name in groups[0]]
    title = f"{stem}: test accuracy{' over seeds' if SEED in names else ''}"
    if not others:  # a seed-only sweep: accuracy against the seed, the mean and spread across them
        return plot_sweep({"": dict(zip(seeds, ([a] for a in groups[0]["accuracies"])))}, SEED, title, True)
    series: dict[str, dict[Any, list[float]]] = {}
    for group in groups:
        label = ", ".join(f"{name}={group[name]}" for name in others[1:])
        series.setdefault(label, {})[group[others[0]]] = group["accuracies"]
    return plot_sweep(series, xlabel=others[0], title=title)


def write_summary(rows: list[dict[str, Any]], jobs: list[Job], out: Path) -> tuple[Path, Path]:
    """Write ``summary.md``, ``summary.csv`` and, if swept, ``sweep.csv`` and figures; returns the first two."""
    names = list(dict.fromkeys(name for job in jobs for name in job.grid))
    columns = [SUMMARY_COLUMNS[0], *names, *SUMMARY_COLUMNS[1:]]
    _write_csv(out / "summary.csv", columns, rows)
    counts = {status: sum(row["status"] == status for row in rows) for status in ("ok", "failed", "skipped")}
    noun = "run" if names else "notebook"
    lines = [
        "# mnist-lab batch summary",
        "",
        f"{len(rows)} {noun}{'s' if len(rows) != 1 else ''}: {counts['ok']} ok, {counts['failed']} failed, "
        f"{counts['skipped']} skipped (already done with the same notebook and parameters). "
        "Seconds: wall clock of the whole notebook.",
        "",
    ]
    cells = [
        [row["notebook"], *(_fmt(row.get(name)) for name in names), row["status"], _fmt_acc(row["test_acc"])]
        + [_fmt(row[key]) for key in ("epochs", "seconds", "device", "error")]
        for row in rows
    ]
    lines += [*_markdown_table(columns, cells), "", "## Parameters passed", ""]
    for job in {job.stem: job for job in jobs}.values():  # one per notebook: its runs differ in swept values only
        given = {k: v for k, v in job.params.items() if k != INJECTED and k not in job.grid}
        shown = ", ".join(f"`{k} = {v!r}`" for k, v in given.items()) or "defaults"
        lines.append(f"- {job.stem}: {shown}" + (f"; swept: {', '.join(job.grid)}" if job.grid else ""))
    lines += _write_sweeps(rows, jobs, out, names)
    with atomic_write(out / "summary.md", "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return out / "summary.md", out / "summary.csv"


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows({key: _fmt(row.get(key)) for key in columns} for row in rows)
    with atomic_write(path, "w") as handle:
        handle.write(buffer.getvalue())


def _write_sweeps(rows: list[dict[str, Any]], jobs: list[Job], out: Path, names: list[str]) -> list[str]:
    """The aggregate tables (``sweep.csv`` and Markdown lines) and one figure per swept notebook."""
    tables = aggregate(rows, jobs)
    if not tables:
        return []
    others = [name for name in names if name != SEED]
    flat = [{"notebook": stem, **group} for stem, groups in tables.items() for group in groups]
    _write_csv(out / SWEEP_FILE, ["notebook", *others, *AGGREGATE_COLUMNS], flat)
    lines = []
    for stem, groups in tables.items():
        shown = [name for name in others if name in groups[0]]
        over = "over seeds" if any(SEED in job.grid for job in jobs if job.stem == stem) else "per run"
        lines += ["", f"## Sweep of {stem}: test accuracy {over}", ""]
        cells = [
            [*(_fmt(g[name]) for name in shown), g["runs"], g["failed"], _fmt_acc(g["mean"])]
            + ["" if g["std"] is None else f"{100 * g['std']:.2f} pp", _fmt_acc(g["min"]), _fmt_acc(g["max"])]
            for g in groups
        ]
        lines += _markdown_table([*shown, *AGGREGATE_COLUMNS], cells)
        if any(g["accuracies"] for g in groups):
            seeds = [job.grid.get(SEED) for job, row in zip(jobs, rows) if job.stem == stem and _finished(row)]
            figure = save_figure(sweep_figure(stem, groups, names, seeds), out / stem / FIGURE_FILE)
            lines += ["", f"![{stem} sweep]({figure.relative_to(out).as_posix()})"]
    return lines


def _report(log: Callable[[str], None], index: int, total: int, name: str, row: dict[str, Any]) -> None:
    detail = f" in {row['seconds']} s" if row["seconds"] is not None else ""
    if row["test_acc"] is not None:
        detail += f", test accuracy {_fmt_acc(row['test_acc'])}"
    if row["error"]:
        detail += f": {row['error']}"
    log(f"[{index}/{total}] {name}: {row['status']}{detail}")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@contextlib.contextmanager
def batch_lock(out: Path) -> Iterator[Path]:
    """Hold ``out/.mnist-lab-batch.lock`` (an `fcntl.flock`, which the system frees even on SIGKILL)
    while a batch writes under `out`; a second batch on the same folder is refused, naming the first."""
    import fcntl

    path = out / LOCK_FILE
    try:
        out.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise OutputError(
                    f"Another mnist-lab batch (process {holder}) is writing to {out}; two batches on one "
                    "folder would replace each other's results. Wait for it to finish (or stop it), or choose "
                    "another --out."
                ) from None
            if os.path.exists(path) and os.path.samestat(os.fstat(fd), os.stat(path)):
                break  # not a lock file the previous holder removed just before we locked it
            os.close(fd)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"Could not lock {path}: {exc.strerror or exc}. Choose a writable --out.") from exc
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still locked, so no one locks the file being removed
        os.close(fd)


def run_batch(
    notebooks: Sequence[str | os.PathLike[str]] | None = None,
    params: Sequence[tuple[str, str]] = (),
    params_file: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] = "results/batch",
    jobs: int = 1,
    force: bool = False,
    timeout: int | None = None,
    log: Callable[[str], None] = print,
    grid: Sequence[str] = (),
    scheduler: str | None = None,
    recipes: str = "full",
) -> int:
    """Run the batch (see the module docstring); returns the exit status: 0, 1 (a failure) or 130 (Ctrl-C)."""
    if not _whole(jobs):
        raise InvalidParameterError(f"--jobs must be a whole number >= 1, got {jobs!r}.")
    if timeout is not None and not _whole(timeout):
        raise InvalidParameterError(f"--timeout must be a whole number of seconds >= 1, got {timeout!r}.")
    if scheduler is not None and not scheduler.strip():
        raise InvalidParameterError("--scheduler needs an address, e.g. tcp://127.0.0.1:8786.")
    planned = plan(notebooks, params, sized_params_file(recipes, params_file, log), out, grid)
    out_dir = Path(out).resolve()
    check_writable(out_dir / "summary.md")
    check_run_paths(planned, out_dir)
    with batch_lock(out_dir):
        return _run_locked(planned, out_dir, jobs, force, timeout, log, scheduler)


def _run_locked(
    planned: list[Job],
    out_dir: Path,
    jobs: int,
    force: bool,
    timeout: int | None,
    log: Callable[[str], None],
    scheduler: str | None,
) -> int:
    """`run_batch` once its runs are planned, checked and `out_dir` is locked."""
    rows = {job.name: row for job in planned if not force and (row := finished_row(job, out_dir)) is not None}
    todo = [job for job in planned if job.name not in rows]
    where = f"the Dask cluster at {scheduler}" if scheduler else f"a local Dask cluster of {jobs} worker process(es)"
    log(
        f"mnist-lab batch: {len(planned)} run(s), {len(todo)} to run ({len(rows)} already done) on {where}; "
        f"results in {out_dir}"
    )
    index = {job.name: i + 1 for i, job in enumerate(planned)}
    for name, row in rows.items():
        _report(log, index[name], len(planned), name, row)

    def done(job: Job, row: dict[str, Any]) -> None:
        rows[job.name] = row
        _report(log, index[job.name], len(planned), job.name, row)

    interrupted: KeyboardInterrupt | None = None
    try:
        if todo:
            with dask_client(scheduler, jobs) as client:
                log(f"Dask dashboard: {client.dashboard_link}")
                run_on_dask(todo, out_dir, timeout, client, done)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (`Terminated`) as `mnist_lab.cli` raises it
        interrupted = exc
        by = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        log(f"Interrupted. Stopped by {by}; finished runs are recorded: run the same command again to do the rest.")
    for job in planned:
        rows.setdefault(job.name, _row(job, out_dir, "failed", None, "not run: the batch was interrupted"))
    ordered = [rows[job.name] for job in planned]
    md, csv_path = write_summary(ordered, planned, out_dir)
    log(f"Summary: {md} and {csv_path}")
    if interrupted is not None:
        return EXIT_TERMINATED if isinstance(interrupted, Terminated) else EXIT_INTERRUPTED
    return EXIT_FAILED if any(row["status"] == "failed" for row in ordered) else 0
