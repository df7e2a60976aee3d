"""Advisory directory locks: one live mubundle process per run or output directory.

``train`` and ``distill`` (run directory), ``simulate`` and ``convert`` (output directory)
take :func:`directory_lock` before writing. The lock is ``fcntl.flock`` on ``DIR/.mubundle.lock``:
the kernel drops it when the holder's last file descriptor closes, so a process killed
with SIGKILL (or a machine that rebooted) never leaves a stale lock, and the next run
starts without manual cleanup. The file itself stays; it holds the holder's PID and
purpose so that a refused process can say who holds the directory.

A supervised ``train`` (``--max-restarts``) locks in the supervisor and hands the locked
file descriptor to each child (:data:`INHERITED_FD_ENV`): the child re-asserts the lock on
that same open file description, which succeeds because it *is* the holder, and keeps the
directory locked if the supervisor dies first. A forged variable cannot take a lock that
another process holds: ``flock`` on a different open file description is refused.

Within one process the lock is re-entrant (``train_from_args`` and ``train`` both take it):
a nested :func:`acquire` of a directory this process already holds shares the descriptor.

Only POSIX systems have ``fcntl``; elsewhere locking is a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

#: Name of the lock file inside a locked directory (hidden: never read as data).
LOCK_NAME = ".mubundle.lock"
#: Environment variable carrying an inherited, already locked file descriptor (supervised train).
INHERITED_FD_ENV = "MUBUNDLE_LOCK_FD"


#: Locks this process holds: resolved directory -> [descriptor, holders]
_HELD: dict[Path, list[int]] = {}


class DirectoryLocked(ValueError):
    """Another live process holds the directory; the message names it and the holder's PID."""


class DirectoryLock:
    """A held lock on ``directory`` (see :func:`directory_lock`)."""

    def __init__(self, directory: Path, fd: int | None) -> None:
        self.directory = directory
        self.fd = fd

    @property
    def path(self) -> Path:
        return self.directory / LOCK_NAME

    def child_environment(self, environ: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a child process that continues this process's work in the directory.

        The child must be started with ``pass_fds=(lock.fd,)``; it then holds the same lock.
        """
        env = dict(os.environ if environ is None else environ)
        if self.fd is not None:
            env[INHERITED_FD_ENV] = f"{self.fd}:{self.path}"
        return env

    def release(self) -> None:
        """Give the lock up (the last holder in this process closes the descriptor)."""
        if self.fd is None:
            return
        key = self.directory.resolve()
        entry = _HELD.get(key)
        if entry is not None and entry[0] == self.fd:
            entry[1] -= 1
            if entry[1] > 0:
                self.fd = None
                return
            del _HELD[key]
        os.close(self.fd)  # closing the descriptor releases the flock
        self.fd = None


def _holder(path: Path) -> str:
    """'PID 1234 (mubundle train ...)' from the lock file, or 'an unknown process'."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "an unknown process"
    return text.splitlines()[0] if text else "an unknown process"


def _inherited_fd(path: Path) -> int | None:
    """The inherited descriptor for ``path`` if the environment names one that is open on it."""
    value = os.environ.get(INHERITED_FD_ENV, "")
    fd_text = value.partition(":")[0]  # "FD:PATH"; the path is for people, identity is checked below
    if not fd_text.isdigit():
        return None
    fd = int(fd_text)
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return None
    return fd if same else None


def acquire(directory: str | os.PathLike, purpose: str) -> DirectoryLock:
    """Lock ``directory`` (created if missing) for this process, or raise :class:`DirectoryLocked`.

    ``purpose`` (e.g. ``"mubundle train"``) is recorded with the PID for the refusal message.
    """
    directory = Path(directory)
    if fcntl is None:  # pragma: no cover
        return DirectoryLock(directory, None)
    directory.mkdir(parents=True, exist_ok=True)
    key = directory.resolve()
    if key in _HELD:  # nested acquisition in this process
        _HELD[key][1] += 1
        return DirectoryLock(directory, _HELD[key][0])
    path = directory / LOCK_NAME
    inherited = _inherited_fd(path)
    fd = inherited if inherited is not None else os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DirectoryLocked(
            f"{directory} is in use by {_holder(path)}; wait for it to finish or stop it "
            f"(a killed process releases the lock by itself)"
        ) from None
    if inherited is None:  # the holder's identity, for the message a refused process prints
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} ({purpose})\n".encode(), 0)
    _HELD[key] = [fd, 1]
    return DirectoryLock(directory, fd)


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike, purpose: str) -> Iterator[DirectoryLock]:
    """Hold the lock of ``directory`` for the ``with`` block (see :func:`acquire`).

    A block that fails in a directory the lock created, having written nothing there, removes
    the directory again: a refused command leaves no output folder holding only a lock file.
    """
    created = not Path(directory).exists()
    lock = acquire(directory, purpose)
    try:
        yield lock
    except BaseException:
        if created:
            _remove_if_only_the_lock(lock)
        raise
    finally:
        lock.release()


def _remove_if_only_the_lock(lock: DirectoryLock) -> None:
    """Delete ``lock``'s directory when it holds nothing but the lock file, while the lock is held
    (a process that opens the file meanwhile is refused; one that comes later makes both anew)."""
    entry = _HELD.get(lock.directory.resolve())
    if lock.fd is None or entry is None or entry[1] != 1:  # no lock, or a nested holder still works here
        return
    try:
        if os.listdir(lock.directory) != [LOCK_NAME]:
            return
        lock.path.unlink()
        lock.directory.rmdir()
    except OSError as error:  # the folder stays as it is: harmless, and the command's own error is the news
        logging.getLogger(__name__).debug("left %s in place: %s", lock.directory, error)
