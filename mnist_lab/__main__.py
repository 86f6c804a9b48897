"""The entry point of the ``mnist-lab`` command and of ``python -m mnist_lab``.

`launch` installs the SIGTERM handler first and only then imports the command line
(`mnist_lab.cli`, which imports torch: seconds on a busy machine). So Ctrl-C or SIGTERM at
any moment of start-up gives the same one line and exit status as later (130 or 143), never
a traceback from inside torch's import. This module and ``mnist_lab/__init__.py`` import
nothing heavy for that reason.
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
    """Run ``mnist-lab`` with the arguments in `sys.argv`; returns the exit status.

    A Ctrl-C or SIGTERM that arrives before `mnist_lab.cli.main` handles it itself (while
    torch and the package are imported, or the options are read) prints one line and
    returns 130 or 143; nothing has been written by then.
    """
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
