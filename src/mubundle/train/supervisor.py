"""Supervisor: run training in a child process and restart it after a crash.

Replaces the old ``train_with_restart.sh``. Every attempt is a fresh ``python -m
mubundle.cli train ...`` process on the same run directory, so it resumes from the last
checkpoint (weights, optimizers, RNG states and the data cursor): across any number of
restarts the data set is walked exactly once per epoch, and the updates computed after
the last checkpoint by a crashed attempt are recomputed, not duplicated.

- attempt logs: ``RUN/logs/attempt-NNN.log`` (stdout + stderr of the child, also echoed);
- backoff: ``backoff_s * 2**(failures - 1)`` seconds, capped at ``backoff_max_s``;
- at most ``max_restarts`` restarts (``max_restarts + 1`` attempts); then a clear message
  and a non-zero exit;
- exit codes 2 (usage/config error), 3 (the divergence guard gave up), 4 (output refused),
  5 (file system refused), 6 (device missing), 130 and 143 (Ctrl-C / SIGTERM) are not
  retried: a restart cannot fix them (mubundle.errors);
- the run directory's lock (:mod:`mubundle.data.lock`) is held by the supervisor and
  handed to each attempt (``pass_fds``), so a second ``mubundle train`` on the directory is
  refused between attempts too, while the supervisor's own children are not.

Testing hook: the child exports ``MUBUNDLE_ATTEMPT`` (1 for the first attempt); see
``MUBUNDLE_FAIL_AT_STEP`` in :mod:`mubundle.train.loop`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TextIO

from mubundle.data.lock import DirectoryLock
from mubundle.errors import (
    EXIT_DEVICE,
    EXIT_DIVERGED,
    EXIT_FILESYSTEM,
    EXIT_INTERRUPTED,
    EXIT_OUTPUT,
    EXIT_TERMINATED,
    EXIT_USAGE,
)

LOG_DIR = "logs"
ATTEMPT_ENV = "MUBUNDLE_ATTEMPT"
# exit codes of mubundle.errors that a restart cannot fix: usage/config error, the divergence
# guard gave up, an output refused, the file system refused (read-only, full, permission),
# the device is missing, Ctrl-C, SIGTERM
NOT_RETRIED_EXIT_CODES = (
    EXIT_USAGE, EXIT_DIVERGED, EXIT_OUTPUT, EXIT_FILESYSTEM, EXIT_DEVICE, EXIT_INTERRUPTED, EXIT_TERMINATED
)
_ATTEMPT_LOG = re.compile(r"^attempt-(\d{3,})\.log$")


@dataclass
class SupervisorResult:
    """Outcome of a supervised run."""

    exit_code: int
    attempts: int
    log_paths: list[Path] = field(default_factory=list)


def next_attempt_number(run_dir: Path) -> int:
    """1 + the highest ``attempt-NNN.log`` already in ``RUN/logs`` (logs of earlier supervisors are kept)."""
    directory = Path(run_dir) / LOG_DIR
    numbers = [int(m.group(1)) for p in directory.glob("attempt-*.log") if (m := _ATTEMPT_LOG.match(p.name))]
    return max(numbers, default=0) + 1


def backoff_seconds(failures: int, backoff_s: float, backoff_max_s: float) -> float:
    """Wait before restart number ``failures`` (1-based): exponential, capped."""
    return min(backoff_s * 2.0 ** (failures - 1), backoff_max_s)


def _run_attempt(
    command: Sequence[str], log_path: Path, env: dict[str, str], echo: TextIO | None, pass_fds: Sequence[int] = ()
) -> int:
    with log_path.open("w") as log:
        log.write(f"# command: {' '.join(command)}\n")
        log.flush()
        child = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, bufsize=1,
            pass_fds=tuple(pass_fds),
        )
        try:
            assert child.stdout is not None
            for line in child.stdout:
                log.write(line)
                if echo is not None:
                    echo.write(line)
                    echo.flush()
            return child.wait()
        except KeyboardInterrupt:
            child.terminate()
            child.wait()
            raise


def supervise(
    child_args: Sequence[str],
    run_dir: Path,
    max_restarts: int,
    backoff_s: float,
    backoff_max_s: float,
    echo: TextIO | None = sys.stdout,
    program: Sequence[str] | None = None,
    lock: DirectoryLock | None = None,
) -> SupervisorResult:
    """Run ``python -m mubundle.cli <child_args>`` until it succeeds or restarts are used up.

    ``child_args`` are the ``train`` arguments without ``--max-restarts``; ``program``
    replaces ``[python, -m, mubundle.cli]`` (tests supervise small scripts with it);
    ``lock``: the run directory's lock held by the caller, handed to every attempt.
    Returns the exit code to use (0 on success, the child's last code otherwise).
    """
    run_dir = Path(run_dir)
    (run_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)
    program = [sys.executable, "-m", "mubundle.cli"] if program is None else list(program)
    command = [*program, *child_args]
    first_number = next_attempt_number(run_dir)
    logs: list[Path] = []
    failures = 0
    while True:
        attempt = failures + 1
        log_path = run_dir / LOG_DIR / f"attempt-{first_number + failures:03d}.log"
        logs.append(log_path)
        env = dict(os.environ if lock is None else lock.child_environment(), **{ATTEMPT_ENV: str(attempt)})
        pass_fds = () if lock is None or lock.fd is None else (lock.fd,)
        code = _run_attempt(command, log_path, env, echo, pass_fds)
        if code == 0:
            return SupervisorResult(0, attempt, logs)
        failures += 1
        if code in NOT_RETRIED_EXIT_CODES:
            print(f"mubundle train: attempt {attempt} exited with code {code} (not retried); see {log_path}",
                  file=sys.stderr)
            return SupervisorResult(code, attempt, logs)
        if failures > max_restarts:
            print(
                f"mubundle train: giving up after {failures} failed attempt(s) ({max_restarts} restart(s) allowed); "
                f"last exit code {code}; logs in {run_dir / LOG_DIR}",
                file=sys.stderr,
            )
            return SupervisorResult(code, attempt, logs)
        wait = backoff_seconds(failures, backoff_s, backoff_max_s)
        print(f"mubundle train: attempt {attempt} failed with exit code {code} (log {log_path}); "
              f"restarting in {wait:g} s ({failures}/{max_restarts} restarts)", file=sys.stderr)
        time.sleep(wait)
