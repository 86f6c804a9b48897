"""Errors written for a learner (what happened, why, what to do next), and the checks that raise them.

Every error that bad input can cause is a `MnistLabError`: the command line prints its message (no
traceback) and exits with status 2, a notebook shows one readable paragraph. The ``check_*``
functions validate settings at the edges of the package (`TrainConfig`, the command line,
`load_mnist`, checkpoints, `preprocess`) before any training starts: each returns the value or
raises `InvalidParameterError` naming the setting, the value and what would be valid (a learner can
type ``epochs = "ten"``; booleans are refused where a number is wanted).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from numbers import Integral, Real


class MnistLabError(Exception):
    """Base class of every error that `mnist_lab` raises on purpose."""


class InvalidParameterError(MnistLabError, ValueError):
    """A setting is of the wrong type, out of range, or not one of the choices."""


class DataError(MnistLabError):
    """MNIST is missing, corrupt or truncated."""


class DataNotFoundError(DataError, FileNotFoundError):
    """No folder searched holds the four MNIST files."""


class ChecksumError(DataError):
    """A data file is present but its bytes are not the published MNIST bytes."""


class DeviceUnavailableError(MnistLabError, RuntimeError):
    """A device was named (``cuda``, ``mps``) that this machine does not have."""


class CheckpointError(MnistLabError):
    """A checkpoint cannot be read, or belongs to another model or version."""


class OutputError(MnistLabError, OSError):
    """A result could not be written (folder not writable, disk full)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt (see `mnist_lab.cli`) so that every clean-up of Ctrl-C runs for it too."""


class DivergenceWarning(UserWarning):
    """Training stopped because the loss became NaN or infinite."""


class ImageError(MnistLabError, ValueError):
    """An image of your own cannot be used: missing, unreadable, blank, huge, or several digits."""


def unknown_choice(kind: str, value: object, choices: Iterable[str]) -> InvalidParameterError:
    """The error for a name that is not one of `choices`, with the closest one as a suggestion."""
    choices = sorted(choices)
    by_lower = {choice.lower(): choice for choice in choices}
    close = [by_lower[c] for c in difflib.get_close_matches(str(value).lower(), by_lower, n=1, cutoff=0.5)]
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return InvalidParameterError(f"Unknown {kind} {value!r}.{hint} Valid choices: {', '.join(choices)}.")


def check_choice(kind: str, value: object, choices: Iterable[str]) -> str:
    """`value` must be one of `choices` (case-sensitive)."""
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise unknown_choice(kind, value, choices)
    return value


def check_int(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not a bool, not a float), at least `minimum` and at most `maximum` if given."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise InvalidParameterError(f"{name} must be a whole number, got {value!r} ({type(value).__name__}).")
    if minimum is not None and value < minimum:
        raise InvalidParameterError(f"{name} must be at least {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise InvalidParameterError(f"{name} must be at most {maximum:,}, got {value:,}.")
    return int(value)


def check_seed(name: str, value: object) -> int:
    """A random seed: a whole number from 0 to 2**64 - 1 (torch.manual_seed takes an unsigned 64-bit number)."""
    return check_int(name, value, minimum=0, maximum=2**64 - 1)


def check_positive_int(name: str, value: object) -> int:
    """An integer >= 1."""
    return check_int(name, value, minimum=1)


def check_float(name: str, value: object, *, positive: bool = False, minimum: float | None = None) -> float:
    """A finite real number; `positive` demands > 0, `minimum` demands >= minimum."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidParameterError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidParameterError(f"{name} must be a finite number, got {value}.")
    if positive and value <= 0:
        raise InvalidParameterError(f"{name} must be greater than 0, got {value}.")
    if minimum is not None and value < minimum:
        raise InvalidParameterError(f"{name} must be at least {minimum}, got {value}.")
    return value


def check_bool(name: str, value: object) -> bool:
    """A real ``True`` or ``False`` (not the string ``"False"``, which is truthy)."""
    if not isinstance(value, bool):
        raise InvalidParameterError(f"{name} must be True or False, got {value!r}.")
    return value


def check_optional_limit(name: str, value: object) -> int | None:
    """``None`` (use everything) or a whole number >= 1."""
    return None if value is None else check_positive_int(name, value)


def out_of_memory(exc: BaseException) -> str | None:
    """Advice for an allocation that failed (GPU or CPU), or None if `exc` is something else."""
    text = str(exc)
    gpu = (
        type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in text or "MPS backend out of memory" in text
    )
    if not (gpu or "can't allocate memory" in text or isinstance(exc, MemoryError)):
        return None
    return (
        f"Out of memory: {'the GPU' if gpu else 'the computer'} could not hold this step "
        "(a batch, the model or the data). "
        "Use a smaller --batch-size / --test-batch-size (batch_size=, test_batch_size=), a smaller model, "
        "or --limit; on a GPU, close other programs that use it."
    )
