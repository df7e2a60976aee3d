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

This module imports nothing of the package.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import multiprocessing
import pickle
import uuid
import warnings
from typing import Any, Callable, Iterable, Iterator, TypeVar

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
            for future in pending:
                future.cancel()

    def _submit(self, task: Callable[[Job], Result], job: Job, key: str) -> Any:
        raise NotImplementedError

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


class DaskExecutor(Executor):
    """Tasks on a ``dask.distributed`` cluster.

    ``address``: a scheduler address, or ``local:N`` to start a ``LocalCluster`` of N
    worker processes with one thread each (closed with the executor). A worker that dies
    while running a task is replaced and its task re-run by the scheduler (up to
    ``distributed.scheduler.allowed-failures`` times, default 3); since a chunk's content
    depends only on its job, the re-run result is the same. ``timeout_s``: how long to try
    to reach the scheduler [s].
    """

    def __init__(self, address: str, timeout_s: float = 30.0) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ValueError(DASK_MISSING) from None

        self._cluster = None
        if address.startswith("local:"):
            count = address.split(":", 1)[1]
            self._cluster = LocalCluster(
                n_workers=int(count), threads_per_worker=1, processes=True, dashboard_address=None
            )
            self.client = Client(self._cluster)
        else:
            try:
                self.client = Client(address, timeout=timeout_s)
            except OSError as error:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ValueError(f"cannot connect to the Dask scheduler at {address}: {reason}") from None
        self.description = f"dask {address}"
        self._token = uuid.uuid4().hex[:8]

    def slots(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def default_window(self) -> int:
        # at least DASK_MIN_WINDOW queued chunks: an adaptive cluster (cluster.adapt) grows with
        # the tasks it sees waiting, so a window sized to the workers present would keep it small
        return max(DASK_MIN_WINDOW, 2 * self.slots())

    def _submit(self, task, job, key):
        # pure=False + a unique key: identical jobs of two runs are two tasks, never a cached result
        return self.client.submit(_in_worker(task), job, key=f"{key}-{self._token}", pure=False)

    def _wait_any(self, futures):
        from distributed import wait

        return wait(futures, return_when="FIRST_COMPLETED").done

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def check_executor_arguments(dask: str | None, workers: int = 1) -> None:
    """Refuse ``--dask`` / ``--workers`` combinations that cannot run (``ValueError``, one line), before a
    command writes anything: both given, ``local:N`` without a positive N, or ``--dask`` without
    dask.distributed installed (the message :class:`DaskExecutor` would give later)."""
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


def open_executor(dask: str | None = None, workers: int = 1, jobs: int | None = None) -> Executor:
    """The executor for ``--dask`` / ``--workers``.

    ``dask`` (an address or ``local:N``) selects :class:`DaskExecutor`; otherwise
    ``workers`` > 1 gives :class:`ProcessExecutor` (capped at ``jobs`` when the number of
    jobs is known; one job runs in this process) and 1 :class:`SerialExecutor`.
    """
    check_executor_arguments(dask, workers)
    if dask is not None:
        return DaskExecutor(dask)
    if jobs is not None:
        workers = min(workers, jobs)
    return ProcessExecutor(workers) if workers > 1 else SerialExecutor()


__all__ = [
    "Executor", "SerialExecutor", "ProcessExecutor", "DaskExecutor", "open_executor", "check_executor_arguments",
    "add_dask_argument",
    "DASK_OPTION_HELP",
]
