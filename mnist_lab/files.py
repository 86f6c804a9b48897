"""Writing files so that nothing half-written is ever left under a final name.

Every file `mnist_lab` writes (checkpoints, JSON reports, figures, MNIST itself) goes
through `atomic_write`: the bytes land in a temporary file in the same folder, are
flushed to disk, and only then renamed over the target. A crash, a full disk or
Ctrl-C leaves the previous file untouched and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import OutputError

_HINTS = {
    errno.ENOSPC: "The disk is full: free some space or choose another output folder.",
    errno.EACCES: "You may not write there: choose a folder you own.",
    errno.EROFS: "That file system is read-only: choose another output folder.",
    errno.EDQUOT: "Your disk quota is used up: free some space.",
}


def _output_error(path: Path, exc: OSError) -> OutputError:
    hint = _HINTS.get(exc.errno or 0, "Check that the folder exists and is writable.")
    reason = exc.strerror or str(exc)
    return OutputError(f"Could not write {path}: {reason}. {hint} Nothing was changed there.")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success rename it to `path`.

    On any exception (including KeyboardInterrupt) the temporary file is removed
    and `path` keeps its previous content. OS errors become `OutputError`. The
    result gets the permissions of the file it replaces, or of a plain ``open``
    (a temporary file starts private, 0o600).
    """
    path = Path(path)
    permissions = path.stat().st_mode & 0o777 if path.exists() else default_file_mode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise _output_error(path, exc) from exc
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, permissions)
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise _output_error(path, exc) from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def _read_umask() -> int:
    umask = os.umask(0)  # the only way to read it is to set it: done once, at import
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def default_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give a new file (0o666 less the umask)."""
    return 0o666 & ~_UMASK


def _remove_quietly(tmp: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early (before hours of training) if `path` could not be written later."""
    path = Path(path)
    with atomic_write(path.parent / f".{path.name}.probe", "wb"):
        pass
    os.unlink(path.parent / f".{path.name}.probe")
    return path


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write `data` as indented JSON, atomically. Returns the path."""
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
    return Path(path)


def save_figure(figure: Any, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically; the format follows the file suffix."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format=fmt, dpi=dpi, bbox_inches="tight")
    return path
