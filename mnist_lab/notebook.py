"""What every notebook of the series calls at its start and at its end.

``device = start(seed=seed, device=device)`` seeds everything, resolves the device
and prints one line saying where the notebook runs (so committed outputs state
their device). ``save_metrics(output_dir, "03_mlp", test_acc=..., ...)`` writes the
small JSON report that ``mnist-lab batch`` collects into its summary table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .devices import describe, get_device, set_seed
from .files import write_json

METRICS_FILE = "metrics.json"


def start(seed: int = 0, device: str = "auto") -> torch.device:
    """Seed every generator, resolve `device`, print where this notebook runs; returns the device."""
    set_seed(seed)
    resolved = get_device(device)
    print(f"torch {torch.__version__} on {describe(resolved)}; seed {seed}")
    return resolved


def save_metrics(output_dir: str | os.PathLike[str], notebook: str, **metrics: Any) -> Path:
    """Write ``output_dir/metrics.json`` (atomically) for `mnist-lab batch` to collect.

    Give at least ``test_acc`` (a fraction), ``epochs``, ``seconds`` and ``device``;
    any other JSON-friendly values are kept too. Returns the path.
    """
    report = {"notebook": notebook, "torch": torch.__version__, **metrics}
    return write_json(Path(output_dir) / METRICS_FILE, report)
