"""The entry point of the ``mnist-lab`` command and of ``python -m mnist_lab``.

This module and ``mnist_lab/__init__.py`` import nothing heavy, so that `launch` installs the SIGTERM
handler before importing the command line (`mnist_lab.cli` imports torch: seconds on a busy machine).
"""

from __future__ import annotations

import signal
import sys

from .errors import Terminated

# The same statuses as mnist_lab.cli's, which cannot be imported before the handler is in place.
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


def _on_sigterm(signum, frame) -> None:
    raise Terminated("SIGTERM")


def launch() -> int:
    """Run ``mnist-lab`` with the arguments in `sys.argv`; returns the exit status. A Ctrl-C or SIGTERM
    before `mnist_lab.cli.main` handles them (while torch is imported or the options are read) prints
    one line and returns 130 or 143, as later; never a traceback, and nothing has been written yet."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        from .cli import main

        return main()
    except KeyboardInterrupt as exc:  # Terminated (SIGTERM) is one too
        name = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        print(f"mnist-lab: stopped by {name} while starting, before anything was run.", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(launch())
