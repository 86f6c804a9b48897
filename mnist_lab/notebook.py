"""What every notebook of the series calls at its start (`start`) and at its end (`save_metrics`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from .devices import describe, get_device, set_seed
from .errors import MnistLabError, out_of_memory
from .files import write_json

METRICS_FILE = "metrics.json"


def start(seed: int = 0, device: str = "auto") -> torch.device:
    """Seed every generator, resolve `device`, print where this notebook runs (so committed outputs state
    their device); returns the device. Inside IPython, `show_errors_briefly` first, so that a bad
    parameter already shows briefly."""
    show_errors_briefly()
    set_seed(seed)
    resolved = get_device(device)
    print(f"torch {torch.__version__} on {describe(resolved)}; seed {seed}")
    return resolved


def save_metrics(output_dir: str | os.PathLike[str], notebook: str, **metrics: Any) -> Path:
    """Write ``output_dir/metrics.json`` (atomically) for `mnist-lab batch` to collect; returns the path.

    Give at least ``test_acc`` (a fraction), ``epochs``, ``seconds`` and ``device``; other JSON values are kept.
    """
    report = {"notebook": notebook, "torch": torch.__version__, **metrics}
    return write_json(Path(output_dir) / METRICS_FILE, report)


def show_errors_briefly() -> bool:
    """In IPython, show `MnistLabError` (and out-of-memory errors) as one paragraph (what happened, what to
    do) instead of a traceback from deep inside the package; False outside IPython. The cell still
    fails, so a batch still marks the notebook failed; every other exception keeps its traceback."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.set_custom_exc((MnistLabError, torch.OutOfMemoryError, MemoryError, RuntimeError), _brief)
    return True


def brief_message(exc: BaseException) -> str | None:
    """The one paragraph shown for `exc`, or None if it deserves its full traceback."""
    if isinstance(exc, MnistLabError):
        return f"{type(exc).__name__}: {exc}"
    advice = out_of_memory(exc)
    return f"{type(exc).__name__}: {advice}" if advice else None


def _brief(shell, etype, value, tb, tb_offset=None) -> None:
    """IPython's custom handler: it must show the error itself (its return value is ignored)."""
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb  # so that %debug still works
    message = brief_message(value)
    if message is None:  # a RuntimeError that is not about memory: the usual traceback
        stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
    else:
        stb = [f"\x1b[0;31m{message}\x1b[0m"]  # red, as IPython shows errors
    # _showtraceback is what every IPython front end overrides to show an error (ipykernel
    # sends it as the cell's error output, so papermill and nbval still see the cell fail).
    shell._showtraceback(etype, value, stb)
