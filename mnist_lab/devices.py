"""Devices and seeds: which device to run on, how to name it, how to wait for it.

``device="auto"`` picks CUDA, then Apple MPS, then the CPU. Naming a device this
machine does not have is an error, never a silent fall-back, so that no timing or
result is reported for a device it did not run on.
"""

from __future__ import annotations

import platform
import random

import numpy as np
import torch

from .errors import DeviceUnavailableError, InvalidParameterError, check_choice, check_seed

DEVICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """The devices this machine offers, best first (always ends with ``cpu``)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if torch.backends.mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def get_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"`` (CUDA, then Apple MPS, then CPU) or check a named device.

    A name is ``auto``, ``cpu``, ``mps`` or ``cuda``, optionally with ``:N`` (``cuda:1``;
    ``cpu`` and ``mps`` have only ``:0``). Asking for ``cuda`` or ``mps`` where there
    is none raises `DeviceUnavailableError`.
    """
    name = str(device)
    kind, colon, index = name.partition(":")
    check_choice("device", kind, DEVICES)
    if colon and (
        kind == "auto"
        or not (index.isascii() and index.isdigit() and len(index) <= 3)
        or (kind != "cuda" and int(index))
    ):
        raise InvalidParameterError(
            f"Unknown device {name!r}: after the colon comes a device number, as in 'cuda:0' or 'cuda:1' "
            "('cpu' and 'mps' have only ':0'; 'auto' takes none). Valid choices: "
            f"{', '.join(DEVICES)}, or cuda:N."
        )
    have = available_devices()
    if kind == "auto":
        return torch.device(have[0])
    if kind not in have:
        raise DeviceUnavailableError(
            f"Device {name!r} is not available on this machine (available: {', '.join(have)}). "
            "Use device='auto' to take the best one there is, or 'cpu'."
        )
    resolved = torch.device(name)
    if kind == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"Device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA "
            "device(s), numbered from 0."
        )
    return resolved


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's random generators (all devices)."""
    check_seed("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def describe(device: torch.device) -> str:
    """A readable name for a device, e.g. ``cuda (NVIDIA H100 80GB HBM3)`` or ``cpu (x86_64, 2 threads)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    """Wait until `device` has finished all queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def bf16_supported(device: torch.device | str) -> bool:
    """Whether `device` computes in bfloat16 natively (elsewhere autocast emulates it, slowly)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:  # AVX-512 BF16 or AMX, as oneDNN sees it
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False
