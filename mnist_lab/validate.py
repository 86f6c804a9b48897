"""Checks for settings, so that a bad value fails before any training starts.

Each check returns the value (so it can be used inline) or raises
`InvalidParameterError` with a message that names the setting, the value, and
what would be valid. Papermill passes parameters as typed literals, but a learner
can still type ``epochs = "ten"``; booleans are refused where a number is wanted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real

from .errors import InvalidParameterError, unknown_choice


def check_choice(kind: str, value: object, choices: Iterable[str]) -> str:
    """`value` must be one of `choices` (case-sensitive); suggests the closest one."""
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise unknown_choice(kind, value, choices)
    return value


def check_int(name: str, value: object, minimum: int | None = None) -> int:
    """An integer (not a bool, not a float), at least `minimum` if given."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise InvalidParameterError(f"{name} must be a whole number, got {value!r} ({type(value).__name__}).")
    if minimum is not None and value < minimum:
        raise InvalidParameterError(f"{name} must be at least {minimum}, got {value}.")
    return int(value)


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
