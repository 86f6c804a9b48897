"""Errors written for a learner: what happened, why, and what to do next.

Every error that bad input can cause is a `MnistLabError`, so the command line can
print the message (not a traceback) and exit with status 2, and a notebook shows
one readable paragraph.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable


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


class ImageError(MnistLabError, ValueError):
    """An image of your own cannot be used: missing, unreadable, blank, huge, or several digits."""


def unknown_choice(kind: str, value: object, choices: Iterable[str]) -> InvalidParameterError:
    """Build the error for a name that is not one of `choices`, with a suggestion."""
    choices = sorted(choices)
    by_lower = {choice.lower(): choice for choice in choices}
    close = [by_lower[c] for c in difflib.get_close_matches(str(value).lower(), by_lower, n=1, cutoff=0.5)]
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return InvalidParameterError(f"Unknown {kind} {value!r}.{hint} Valid choices: {', '.join(choices)}.")


EXIT_USAGE = 2  # the exit status of every command line for a usage error (argparse's too)


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Run ``args.func(args)`` for a command line; a `MnistLabError` prints one line and returns `EXIT_USAGE`."""
    try:
        return args.func(args)
    except MnistLabError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
