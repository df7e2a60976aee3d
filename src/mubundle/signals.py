"""SIGTERM handled like Ctrl-C (SIGINT) by the ``mubundle`` command.

Batch schedulers (Slurm, HTCondor, Kubernetes) stop a job with SIGTERM, then SIGKILL after
a grace period. Python's default for SIGTERM is to die at once, skipping every ``finally``
block and context manager, so temporary files stay behind. :func:`install_sigterm_handler`
turns SIGTERM into :class:`Terminated`, a ``KeyboardInterrupt``: the same cleanup as Ctrl-C
runs (temporary files removed, complete shards and checkpoints kept where a re-run resumes
from them), and :func:`interrupt_exit_code` gives the shell convention 128 + signal number
(130 for SIGINT, 143 for SIGTERM).

Imports nothing of the package (usable from any layer).
"""

from __future__ import annotations

import signal
from types import FrameType


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""

    signum = int(signal.SIGTERM)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"received signal {signum}")


def install_sigterm_handler() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (call from the main thread)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def interrupt_exit_code(error: BaseException) -> int:
    """128 + the signal that interrupted the run: 143 for SIGTERM, 130 for Ctrl-C."""
    return 128 + (error.signum if isinstance(error, Terminated) else int(signal.SIGINT))
