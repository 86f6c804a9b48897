"""Writing files so that nothing half-written is ever left under a final name, and nothing is replaced by surprise.

Every file `mnist_lab` writes (checkpoints, JSON reports, figures, MNIST itself) goes through
`atomic_write`: a temporary file in the same folder, flushed to disk, then renamed over the target.
A crash, a full disk, Ctrl-C or SIGTERM leaves the previous file untouched and no temporary file.
A rename replaces whatever sits at the target, so `check_target` first refuses a folder, a device,
pipe or socket (as root, ``--json /dev/stdout`` would otherwise replace the system's ``/dev/stdout``)
and, unless the caller asks to ``overwrite``, a symbolic link or a write-protected file.
`check_writable` and `check_outputs` refuse bad output paths before hours of training, not after.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from .errors import OutputError

_HINTS = {
    errno.ENOSPC: "The disk is full: free some space or choose another output folder.",
    errno.EACCES: "You may not write there: choose a folder you own.",
    errno.EPERM: "You may not write there: choose a folder you own.",
    errno.EROFS: "That file system is read-only: choose another output folder.",
    errno.EDQUOT: "Your disk quota is used up: free some space.",
    errno.ENOTDIR: "A part of that path is a file, not a folder: choose another path.",
    errno.ENAMETOOLONG: "The file name is too long: choose a shorter one.",
}
_NAME_MAX = 200  # of the target's name inside a temporary name (file systems allow 255 bytes)
_UMASK = os.umask(0)  # the only way to read the umask is to set it: done once, at import
os.umask(_UMASK)


def _output_error(path: Path, exc: OSError) -> OutputError:
    hint = _HINTS.get(exc.errno or 0, "Check that the folder exists and is writable.")
    reason = exc.strerror or str(exc)
    return OutputError(f"Could not write {path}: {reason}. {hint} Nothing was changed there.")


def check_target(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Refuse a target that a results file must not replace (see the module docstring); returns the path.

    With ``overwrite=True`` a symbolic link (the link itself, never the file it points to) or a
    write-protected file is replaced.
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise _output_error(path, exc) from exc
    if stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{path} is a folder, not a file: give a file name inside it, e.g. {path / 'results.json'}.")
    if stat.S_ISLNK(info.st_mode) and not overwrite:
        raise OutputError(
            f"{path} is a symbolic link (to {os.readlink(path)}); mnist_lab does not write through links. "
            "Name the file itself, or ask to overwrite (--overwrite, overwrite=True) to replace the link."
        )
    if not stat.S_ISREG(info.st_mode) and not stat.S_ISLNK(info.st_mode):
        raise OutputError(
            f"{path} is a device, pipe or socket, not a regular file; mnist_lab never replaces one. "
            "Choose a file name for the output."
        )
    if stat.S_ISREG(info.st_mode) and not info.st_mode & 0o222 and not overwrite:
        raise OutputError(
            f"{path} is write-protected, so it was left as it is. Choose another name, make it writable "
            "(chmod u+w), or ask to overwrite it (--overwrite, overwrite=True)."
        )
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", *, overwrite: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success rename it to `path` (checked by `check_target` first).

    On any exception (including KeyboardInterrupt) the temporary file is removed and `path` keeps its
    previous content; OS errors become `OutputError`. The result gets the permissions of the file it
    replaces, or of a plain ``open`` (0o666 less the umask; a temporary file starts private, 0o600).
    """
    path = check_target(path, overwrite=overwrite)
    permissions = path.stat().st_mode & 0o777 if path.is_file() and not path.is_symlink() else 0o666 & ~_UMASK
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:_NAME_MAX]}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise _output_error(path, exc) from exc
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, permissions)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _output_error(path, exc) from exc
        raise


def check_writable(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Fail early if `path` could not be written later (`check_target`, then a probe file created and
    removed in the nearest existing folder on its way); leaves nothing behind."""
    path = check_target(path, overwrite=overwrite)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"Could not write {path}: {folder} is a file, not a folder. Choose another path.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mnist-lab-probe.", dir=folder)
    except OSError as exc:
        raise _output_error(path, exc) from exc
    os.close(fd)
    os.unlink(probe)
    return path


def figure_format(path: str | os.PathLike[str]) -> str:
    """The format matplotlib will write `path` in: its suffix, or ``png`` without one; refuses unknown ones."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    suffix = path.suffix.lstrip(".").lower()
    if suffix and suffix not in (known := sorted(FigureCanvasBase.get_supported_filetypes())):
        raise OutputError(
            f"Cannot save a figure as {path}: matplotlib does not know the format {suffix!r}. "
            f"Use one of: {', '.join('.' + s for s in known)}."
        )
    return suffix or "png"


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links, or two spellings through a link
    except OSError:
        return False


def check_outputs(outputs: Mapping[str, Any], inputs: Mapping[str, Any] | None = None) -> None:
    """Refuse two outputs naming one file, and an output naming an input; both map what the user knows
    them by (``"--json"``, ``"an MNIST data file"``) to a path or None."""
    inputs = inputs or {}
    named = [(label, Path(p)) for label, p in outputs.items() if p]
    for i, (label, path) in enumerate(named):
        for other, other_path in named[i + 1 :]:
            if _same_file(path, other_path):
                raise OutputError(f"{label} and {other} both name {path}: give each output its own file.")
        for source, source_path in inputs.items():
            if source_path and _same_file(path, Path(source_path)):
                raise OutputError(
                    f"{label} names {path}, which is {source}; writing there would destroy it. "
                    "Choose another output path."
                )


def write_json(path: str | os.PathLike[str], data: Any, *, overwrite: bool = False) -> Path:
    """Write `data` as indented JSON, atomically. Returns the path."""
    with atomic_write(path, "w", overwrite=overwrite) as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
    return Path(path)


def save_figure(figure: Any, path: str | os.PathLike[str], dpi: int = 120, *, overwrite: bool = False) -> Path:
    """Save a matplotlib figure atomically; the format follows the file suffix (none: PNG)."""
    path, fmt = Path(path), figure_format(path)
    with atomic_write(path, "wb", overwrite=overwrite) as handle:
        figure.savefig(handle, format=fmt, dpi=dpi, bbox_inches="tight")
    return path
