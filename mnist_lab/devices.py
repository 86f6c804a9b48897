"""Devices and seeds: which device to run on, how to name it, how to wait for it.

``device="auto"`` picks CUDA, then Apple MPS, then the CPU. Naming a device this
machine does not have is an error, never a silent fall-back, so that no timing or
result is reported for a device it did not run on.
"""

from __future__ import annotations

import ctypes
import platform
import random
import sys

import numpy as np
import torch

from .errors import DeviceUnavailableError, InvalidParameterError, check_choice, check_seed

DEVICES = ("auto", "cpu", "cuda", "mps")

# glibc's mallopt parameters (malloc.h) and the values `keep_freed_memory` sets.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES, MMAP_FROM_BYTES = 2**30, 2**28  # keep up to 1 GiB free; blocks of 256 MiB and more still mmap


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


def glibc() -> bool:
    """Whether this process runs on Linux's GNU C library, whose ``malloc`` `keep_freed_memory` tunes."""
    return sys.platform == "linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Ask the C library to keep freed memory for reuse instead of handing it back to the OS (glibc only).

    On the GPU, PyTorch's caching allocator keeps freed blocks. On the CPU every tensor
    is the C library's ``malloc``, and glibc hands big freed blocks back to the OS (unmaps
    them, or trims the heap). The next step's tensors then touch fresh pages, one page
    fault per 4 KiB: 4,468 a step for T0's 5×5 CNN in float32 on this project's 2-core
    CPU, whose step then took 31.1 ms against 26.2 ms with none (README, "Training fast";
    `docs/bench-cpu-2026-12-03/page-faults-0713.md`). After this call glibc keeps
    up to 1 GiB free in the process: the memory it reports stays near its peak until it
    exits. It holds for the whole process and cannot be undone. Returns whether it was
    applied: False elsewhere than Linux with glibc (macOS, musl), where nothing changes.
    """
    if not glibc():
        return False
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    return bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES) and libc.mallopt(M_MMAP_THRESHOLD, MMAP_FROM_BYTES))
