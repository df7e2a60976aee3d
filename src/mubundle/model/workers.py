"""Worker threads for the independent generator calls of one CPU sampling call.

PyTorch splits every op over its intra-op threads and ends it with a barrier. A generator
call is ~100 ops, most on (16k, 64) tensors of ~0.1-1 ms, so two intra-op threads spend much
of their time waiting for each other (one thread is only 1.3-1.5x slower than two), and on a
shared machine a descheduled thread stalls the other at every barrier. The generator calls
of a sampling run are independent (each has its own events and pre-drawn noise), so
:class:`SamplingWorkers` runs whole calls concurrently on worker threads, each with its own
share of the intra-op threads (one each on a small machine): no barriers across workers
(measured on 2 cores: 15-30 % more events/s, benchmarks/generate_throughput.py,
docs/model.md). A 16k-event chunk has only ~8 generator calls at the ``mubundle simulate``
defaults, so at most :data:`MAX_DEFAULT_WORKERS` workers are used by default and a larger
machine's threads are split among them (not measured on more than 2 cores).

All random numbers are drawn by the caller's thread in a fixed order before the calls are
submitted, and each call computes the same function of its inputs whichever thread runs it.
With one intra-op thread per worker (any machine of up to 4 threads with the default count)
the result cannot depend on the worker count; otherwise only through float rounding that
changes with a kernel's thread count (none seen on the development CPU: bit-identical for 1,
2 and 3 workers at 1 and 2 threads).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

import torch

Result = TypeVar("Result")
MAX_DEFAULT_WORKERS = 4


def _set_op_threads(threads: int) -> None:
    # thread-local for OpenMP (the worker's own team size) and MKL: the caller's setting stays
    torch.set_num_threads(threads)


def _without_autograd(function: Callable[..., Result], *args) -> Result:
    # grad mode is thread-local: a worker does not inherit the caller's torch.no_grad()
    with torch.no_grad():
        return function(*args)


class SamplingWorkers:
    """``count`` threads with autograd off, each running its torch ops on
    ``torch.get_num_threads() // count`` intra-op threads (at least 1); ``count <= 1``:
    functions run at once in the caller's thread. A context manager: leaving it waits for
    the running functions and cancels those not started (e.g. after an error)."""

    def __init__(self, count: int) -> None:
        count = max(1, int(count))
        self._pool = (
            ThreadPoolExecutor(
                count, thread_name_prefix="mubundle-sampling", initializer=_set_op_threads,
                initargs=(max(1, torch.get_num_threads() // count),),
            )
            if count > 1
            else None
        )

    def submit(self, function: Callable[..., Result], *args) -> "Future[Result]":
        """Run ``function(*args)`` under ``torch.no_grad()`` on a worker (or now, without workers)."""
        if self._pool is not None:
            return self._pool.submit(_without_autograd, function, *args)
        done: Future[Result] = Future()
        done.set_result(_without_autograd(function, *args))
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "SamplingWorkers":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def default_worker_count(device: torch.device) -> int:
    """Workers for sampling on ``device``: on CPU torch's intra-op thread count (what
    ``torch.set_num_threads`` or ``OMP_NUM_THREADS`` asked for), at most
    :data:`MAX_DEFAULT_WORKERS`; 1 on accelerators (their kernels are asynchronous already)."""
    return min(torch.get_num_threads(), MAX_DEFAULT_WORKERS) if device.type == "cpu" else 1
