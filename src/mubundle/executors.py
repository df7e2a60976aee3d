"""Where independent chunks run: in this process, in local worker processes, or on Dask.

``mubundle simulate`` and ``mubundle generate`` cut their work into chunks whose content
depends only on the chunk index and the seed. They hand an iterable of jobs and a
top-level task function to one :class:`Executor` and consume the results as they come;
scale-out is the choice of executor, not a second code path:

* :class:`SerialExecutor` runs the jobs one after the other in this process;
* :class:`ProcessExecutor` runs them in N spawned worker processes
  (``concurrent.futures.ProcessPoolExecutor``);
* :class:`DaskExecutor` submits them as tasks to a ``dask.distributed`` cluster, given by
  its scheduler address (``tcp://host:8786``) or ``local:N`` (a ``LocalCluster`` of N
  single-threaded worker processes started and stopped with the executor).

All three keep at most ``window`` jobs submitted but not yet handed back to the caller, so
the memory held by results is bounded however long the job list is. Results come back
unordered (as tasks finish) or in job order (``ordered=True``, for a single output file).
The task function and its jobs must be picklable; on Dask they run in other processes,
possibly on other machines, which import ``mubundle`` themselves. Their Python warnings are
formatted as in the submitting process when its ``warnings.formatwarning`` pickles (a command's
one-line format, :class:`mubundle.errors.OneLineWarningFormat`).

A Dask scheduler that cannot be reached, or is lost while chunks run, is a
:class:`DaskConnectionError` (a ``ConnectionError``: an environment failure, not a bad argument)
with one line naming the scheduler; a scheduler without workers is waited for, with one warning.

This module imports nothing of the package but :mod:`mubundle.errors` (which imports only the
standard library).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import logging
import multiprocessing
import pickle
import socket
import uuid
import warnings
from typing import Any, Callable, Iterable, Iterator, TypeVar

from mubundle.errors import EXIT_DISTRIBUTED, CommandError

Job = TypeVar("Job")
Result = TypeVar("Result")

#: Help text of the ``--dask`` option of ``simulate`` and ``generate``.
DASK_OPTION_HELP = (
    "run the chunks as tasks on a dask.distributed cluster: a scheduler address "
    "(tcp://host:8786) or local:N for N local worker processes (docs/scale-out.md)"
)


def add_dask_argument(parser: argparse.ArgumentParser) -> None:
    """Declare ``--dask ADDRESS`` on ``parser`` (default None: no Dask)."""
    parser.add_argument("--dask", metavar="ADDRESS", default=None, help=DASK_OPTION_HELP)


#: The refusal of ``--dask`` where the optional extra is not installed.
DASK_MISSING = "--dask needs dask.distributed: pip install 'mubundle[scale]'"

#: Fewest chunks a :class:`DaskExecutor` keeps submitted (see ``DaskExecutor.default_window``).
DASK_MIN_WINDOW = 64

#: The refusal of a ``--dask`` value that is neither an address nor ``local:N``.
DASK_ADDRESS_FORMS = "--dask takes a scheduler address (tcp://host:8786) or local:N"


#: Schemes of distributed's transports that are not TCP sockets (inproc: within this process;
#: ucx, ucxx: UCX over InfiniBand, NVLink, ..., distributed-ucxx): their addresses are neither
#: parsed as host:port nor probed by a TCP connection here; the client's own connection decides.
SCHEMES_NOT_OVER_TCP = frozenset({"inproc", "ucx", "ucxx"})


class DaskConnectionError(CommandError, ConnectionError):
    """The Dask scheduler cannot be reached, or the connection to it was lost mid-run.

    An ``OSError``: the environment failed, not an argument (``mubundle`` exits with the code of
    a failed distributed run, 7, as for a lost torchrun rank). The message is one line naming the
    scheduler's address.
    """

    exit_code = EXIT_DISTRIBUTED


class Executor:
    """Runs ``task(job)`` for every job and yields the results (see module docstring).

    Subclasses implement ``_submit`` (returns a future) and ``_wait_any`` (blocks until at
    least one of the given futures is done and returns the done ones). Use as a context
    manager or call :meth:`close`.
    """

    #: Human-readable description for messages ("2 local processes", "dask tcp://...").
    description = "this process"

    def slots(self) -> int:
        """How many tasks can run at the same time now."""
        return 1

    def default_window(self) -> int:
        """Jobs in flight when ``map`` is given no window: twice the slots, at least 2."""
        return max(2, 2 * self.slots())

    def map(
        self,
        task: Callable[[Job], Result],
        jobs: Iterable[Job],
        ordered: bool = False,
        window: int | None = None,
        name: str = "task",
    ) -> Iterator[Result]:
        """Yield ``task(job)`` for each job: as they finish, or in job order if ``ordered``.

        ``window``: most jobs submitted and not yet yielded (default: twice the slots,
        at least 2); ``jobs`` is consumed lazily, so it may be a generator reading input.
        An exception of a task is raised here and cancels the jobs still pending.
        """
        job_iter = iter(jobs)
        pending: dict[Any, int] = {}  # future -> job index
        finished: dict[int, Result] = {}  # ordered mode: done but waiting for an earlier job
        next_index = 0  # index of the next job to submit
        next_out = 0  # ordered mode: index of the next result to yield
        exhausted = False
        try:
            while True:
                limit = window if window is not None else self.default_window()
                while not exhausted and next_index - next_out < limit:
                    job = next(job_iter, _END)
                    if job is _END:
                        exhausted = True
                        break
                    pending[self._submit(task, job, f"{name}-{next_index}")] = next_index
                    next_index += 1
                if not pending:
                    return
                for future in self._wait_any(list(pending)):
                    index = pending.pop(future)
                    result = future.result()
                    if ordered:
                        finished[index] = result
                    else:
                        next_out += 1
                        yield result
                while ordered and next_out in finished:
                    result = finished.pop(next_out)
                    next_out += 1
                    yield result
        finally:
            self._cancel(list(pending))

    def _submit(self, task: Callable[[Job], Result], job: Job, key: str) -> Any:
        raise NotImplementedError

    def _cancel(self, futures: list[Any]) -> None:
        """Cancel the futures still pending when ``map`` stops early."""
        for future in futures:
            future.cancel()

    def _wait_any(self, futures: list[Any]) -> Iterable[Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Release worker processes / the cluster connection."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_END = object()


class _Done:
    """An already computed result with the future interface the loop above needs."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value

    def cancel(self) -> bool:
        return False


class SerialExecutor(Executor):
    """Runs each job in this process when it is submitted."""

    def default_window(self) -> int:
        return 1  # a job runs at submission: one result held at a time

    def _submit(self, task, job, key):
        return _Done(task(job))

    def _wait_any(self, futures):
        return futures


#: Python's own warning format (a process that never changed it passes nothing to its workers).
_PYTHON_FORMATWARNING = warnings.formatwarning


def _in_worker(task: Callable[[Job], Result]) -> Callable[[Job], Result]:
    """``task`` as it should run in another process: with this process's warning format when
    that format is not Python's and can be pickled (a closure cannot), else unchanged."""
    formatter = warnings.formatwarning
    if formatter is _PYTHON_FORMATWARNING:
        return task
    try:
        pickle.dumps(formatter)
    except (pickle.PicklingError, AttributeError, TypeError):  # a caller's own closure: Python's format there
        return task
    return functools.partial(_run_with_warning_format, formatter, task)


def _run_with_warning_format(formatter: Callable[..., str], task: Callable[[Job], Result], job: Job) -> Result:
    warnings.formatwarning = formatter
    return task(job)


class ProcessExecutor(Executor):
    """``workers`` spawned processes on this machine; each lives for the whole map, so a
    task's per-process cache (a loaded model) is built once per process."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.description = f"{workers} local processes"
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def slots(self) -> int:
        return self.workers

    def _submit(self, task, job, key):
        if self._pool is None:
            # spawn: the Fortran interaction models must be initialised fresh in each worker
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool.submit(_in_worker(task), job)

    def _wait_any(self, futures):
        return concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED).done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


#: What to do after a lost scheduler, when the caller does not say (``lost_hint``).
LOST_HINT = "start the cluster again and run the same command again"

#: The reason distributed gives the futures it cancels when the client loses its scheduler.
_CONNECTION_LOST = "scheduler-connection-lost"


class DaskExecutor(Executor):
    """Tasks on a ``dask.distributed`` cluster.

    ``address``: a scheduler address, or ``local:N`` to start a ``LocalCluster`` of N
    worker processes with one thread each (closed with the executor). A worker that dies
    while running a task is replaced and its task re-run by the scheduler (up to
    ``distributed.scheduler.allowed-failures`` times, default 3); since a chunk's content
    depends only on its job, the re-run result is the same. ``timeout_s``: how long to try
    to reach the scheduler [s] (a refused connection fails at once). ``lost_hint``: what the
    user should do when the scheduler is lost mid-run, the end of that
    :class:`DaskConnectionError`'s message (the finished shards are kept, the output was not written).

    A cluster without workers is waited for, as an adaptive cluster or queued batch jobs start
    them later: when no task has finished for ``WORKER_CHECK_S`` seconds and the scheduler has
    no worker, one ``UserWarning`` says so. While the executor is open in a program that has
    configured no logging (no handler on the root logger, as in the ``mubundle`` command), the
    ``distributed.client`` logger's records about a lost scheduler (reconnection attempts and
    their tracebacks) are dropped: the :class:`DaskConnectionError` reports the loss in one line.
    """

    #: Seconds without a finished task after which the executor checks that the cluster has workers.
    WORKER_CHECK_S = 5.0

    def __init__(self, address: str, timeout_s: float = 30.0, lost_hint: str = LOST_HINT) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ValueError(DASK_MISSING) from None

        self.address = address
        self.lost_hint = lost_hint
        self._lost = False
        self._warned_no_workers = False
        self._cluster = None
        if address.startswith("local:"):
            count = address.split(":", 1)[1]
            self._cluster = LocalCluster(
                n_workers=int(count), threads_per_worker=1, processes=True, dashboard_address=None
            )
            self.client = Client(self._cluster)
        else:
            # distributed retries a refused connection until timeout_s; the probe refuses at once
            check_scheduler_reachable(address, timeout_s)
            try:
                self.client = Client(address, timeout=timeout_s)
            except OSError as error:
                raise DaskConnectionError(f"cannot connect to the Dask scheduler at {address}: {_reason(error)}") from None
        self.description = f"dask {address}"
        self._token = uuid.uuid4().hex[:8]
        self._log_filter = _ConnectionLossFilter.install(self)

    def slots(self) -> int:
        if self.connection_lost():  # asking a lost scheduler would retry for the connect timeout (30 s)
            raise DaskConnectionError(f"lost the connection to the Dask scheduler at {self.address}")
        return max(1, sum(self.client.nthreads().values()))

    def default_window(self) -> int:
        # at least DASK_MIN_WINDOW queued chunks: an adaptive cluster (cluster.adapt) grows with
        # the tasks it sees waiting, so a window sized to the workers present would keep it small
        return max(DASK_MIN_WINDOW, 2 * self.slots())

    def map(self, task, jobs, ordered=False, window=None, name="task"):
        """:meth:`Executor.map`; a scheduler lost on the way raises :class:`DaskConnectionError`."""
        finished = 0
        try:
            for result in super().map(task, jobs, ordered=ordered, window=window, name=name):
                finished += 1
                yield result
        except Exception as error:
            if not self.connection_lost(error):
                raise  # a task's own exception, or a bug: as it is
            self._lost = True
            raise DaskConnectionError(
                f"lost the connection to the Dask scheduler at {self.address} "
                f"({finished} {'chunk' if finished == 1 else 'chunks'} of this run had finished); {self.lost_hint}"
            ) from error

    def connection_lost(self, error: BaseException | None = None) -> bool:
        """True once the client has lost its scheduler (it is reconnecting or gave up), or when
        ``error`` is the cancellation distributed gives the futures of a lost scheduler."""
        if self._lost or self.client.status != "running":
            return True
        groups = getattr(error, "error_groups", None) or [error]  # FuturesCancelledError / FutureCancelledError
        return any(getattr(group, "reason", None) == _CONNECTION_LOST for group in groups)

    def _submit(self, task, job, key):
        # pure=False + a unique key: identical jobs of two runs are two tasks, never a cached result
        return self.client.submit(_in_worker(task), job, key=f"{key}-{self._token}", pure=False)

    def _cancel(self, futures):
        if futures and not self.connection_lost():  # a lost scheduler has nothing left to cancel
            self.client.cancel(futures)

    def _wait_any(self, futures):
        from distributed import TimeoutError as DaskTimeoutError
        from distributed import wait

        while True:
            try:
                return wait(futures, timeout=self.WORKER_CHECK_S, return_when="FIRST_COMPLETED").done
            except DaskTimeoutError:  # nothing finished yet: normal, unless there is nothing to run it
                self._warn_without_workers()

    def _warn_without_workers(self) -> None:
        if self._warned_no_workers or self.client.nthreads():
            return
        self._warned_no_workers = True
        warnings.warn(f"the Dask scheduler at {self.address} has no workers yet; waiting for them (Ctrl-C to stop)",
                      UserWarning, stacklevel=2)

    def close(self) -> None:
        from distributed import TimeoutError as DaskTimeoutError

        try:
            if self.connection_lost():
                try:  # the client may still be retrying its scheduler: give it a short while
                    self.client.close(timeout=5)
                except DaskTimeoutError:
                    pass  # the scheduler is gone (map raised DaskConnectionError): nothing left to release there
            else:
                self.client.close()
            if self._cluster is not None:
                self._cluster.close()
        finally:
            _ConnectionLossFilter.remove(self._log_filter)


class _ConnectionLossFilter(logging.Filter):
    """Drops the ``distributed.client`` records of one :class:`DaskExecutor` that has lost its
    scheduler (reconnection attempts, "Failed to reconnect ...", the tracebacks of its closing)."""

    LOGGER = "distributed.client"

    def __init__(self, executor: DaskExecutor) -> None:
        super().__init__()
        self.executor = executor

    def filter(self, record: logging.LogRecord) -> bool:
        # "connecting": the client is retrying its lost scheduler; a normal close ("closing") keeps its records
        return not (self.executor._lost or self.executor.client.status == "connecting")

    @classmethod
    def install(cls, executor: DaskExecutor) -> "_ConnectionLossFilter | None":
        """The filter, added to the logger; None where the program configured logging itself
        (a handler on the root logger): it sees distributed's records as it chose to."""
        if logging.getLogger().handlers:
            return None
        log_filter = cls(executor)
        logging.getLogger(cls.LOGGER).addFilter(log_filter)
        return log_filter

    @classmethod
    def remove(cls, log_filter: "_ConnectionLossFilter | None") -> None:
        if log_filter is not None:
            logging.getLogger(cls.LOGGER).removeFilter(log_filter)


def _reason(error: OSError) -> str:
    """'Connection refused', 'timed out', 'Name or service not known': the one-line reason of a
    network ``error``."""
    if error.strerror:
        return error.strerror
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _scheduler_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a scheduler address over TCP (``tcp://host:8786``, ``host:8786``, ``tls://...``);
    None for a scheme in :data:`SCHEMES_NOT_OVER_TCP`; ``ValueError`` naming the accepted forms for
    an unknown scheme or a TCP address without host and port."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)  # an unknown scheme
        if scheme in SCHEMES_NOT_OVER_TCP:
            return None
        host, port = parse_host_port(location)
    except (ValueError, TypeError):
        raise ValueError(f"{DASK_ADDRESS_FORMS}, got {address!r}") from None
    if not host:
        raise ValueError(f"{DASK_ADDRESS_FORMS}, got {address!r}")
    return host, int(port)


def check_scheduler_reachable(dask: str | None, timeout_s: float = 30.0) -> None:
    """Open (and close) one TCP connection to the scheduler at ``dask``, so that a refused
    connection, an unknown host or an unreachable network fails at once, before a command
    writes anything: :class:`DaskConnectionError` naming the address. ``None``, ``local:N`` and
    schemes not over TCP (:data:`SCHEMES_NOT_OVER_TCP`) pass; the client's own connection decides."""
    if dask is None or dask.startswith("local:"):
        return
    endpoint = _scheduler_endpoint(dask)
    if endpoint is None:
        return
    host, port = endpoint
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as error:
        raise DaskConnectionError(
            f"cannot connect to the Dask scheduler at {dask}: {_reason(error)} "
            "(is the scheduler running, and is the address right?)"
        ) from None


def check_executor_arguments(dask: str | None, workers: int = 1) -> None:
    """Refuse ``--dask`` / ``--workers`` combinations that cannot run (``ValueError``, one line), before a
    command writes anything: both given, ``local:N`` without a positive N, an address that is
    neither ``tcp://host:port`` (or another scheme distributed knows; one of
    :data:`SCHEMES_NOT_OVER_TCP` is not parsed further) nor ``local:N``, or ``--dask`` without
    dask.distributed installed (the message :class:`DaskExecutor` would give later).
    Nothing is connected to (:func:`check_scheduler_reachable` does that)."""
    if dask is None:
        return
    if workers > 1:
        raise ValueError("--workers and --dask exclude each other; use --dask local:N for N local Dask workers")
    if dask.startswith("local:"):
        count = dask.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--dask local:N needs a positive number of workers, got {dask!r}")
    try:
        import distributed  # noqa: F401  (DaskExecutor imports it anyway; an optional extra)
    except ImportError:
        raise ValueError(DASK_MISSING) from None
    if not dask.startswith("local:"):
        _scheduler_endpoint(dask)


def open_executor(dask: str | None = None, workers: int = 1, jobs: int | None = None,
                  lost_hint: str = LOST_HINT) -> Executor:
    """The executor for ``--dask`` / ``--workers``.

    ``dask`` (an address or ``local:N``) selects :class:`DaskExecutor` (``lost_hint``: what to do
    if its scheduler is lost mid-run); otherwise ``workers`` > 1 gives :class:`ProcessExecutor`
    (capped at ``jobs`` when the number of jobs is known; one job runs in this process) and 1
    :class:`SerialExecutor`.
    """
    check_executor_arguments(dask, workers)
    if dask is not None:
        return DaskExecutor(dask, lost_hint=lost_hint)
    if jobs is not None:
        workers = min(workers, jobs)
    return ProcessExecutor(workers) if workers > 1 else SerialExecutor()


__all__ = [
    "Executor", "SerialExecutor", "ProcessExecutor", "DaskExecutor", "DaskConnectionError", "open_executor",
    "check_executor_arguments", "check_scheduler_reachable", "add_dask_argument",
    "DASK_OPTION_HELP", "DASK_ADDRESS_FORMS", "SCHEMES_NOT_OVER_TCP",
]
