"""Worker threads for the independent generator calls of one CPU sampling call.

PyTorch splits every op over its intra-op threads and ends it with a barrier. A generator
call is ~100 ops, most on (16k, 64) tensors of ~0.1-1 ms, so two intra-op threads spend much
of their time waiting for each other (one thread is only 1.3-1.5x slower than two), and on a
shared machine a descheduled thread stalls the other at every barrier. The generator calls
of a sampling run are independent (each has its own events and pre-drawn noise), so
:class:`SamplingWorkers` runs whole calls concurrently on threads that each run their ops
single-threaded: no barriers inside a call (measured on 2 cores: 15-25 % more events/s,
benchmarks/generate_throughput.py, docs/model.md).

Results do not depend on the number of workers: every call runs the same single-threaded
kernels on the same shapes whichever thread runs it, and all random numbers are drawn by the
caller's thread in a fixed order before the calls are submitted.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

import torch

Result = TypeVar("Result")


def _single_threaded_ops() -> None:
    # thread-local for OpenMP (the worker's own team size) and MKL: the caller's setting stays
    torch.set_num_threads(1)


def _without_autograd(function: Callable[..., Result], *args) -> Result:
    # grad mode is thread-local: a worker does not inherit the caller's torch.no_grad()
    with torch.no_grad():
        return function(*args)


class SamplingWorkers:
    """``count`` threads with single-threaded torch ops and autograd off; ``count <= 1``:
    functions run at once in the caller's thread. A context manager: leaving it waits for
    the running functions and cancels those not started (e.g. after an error)."""

    def __init__(self, count: int) -> None:
        self.count = max(1, int(count))
        self._pool = (
            ThreadPoolExecutor(self.count, thread_name_prefix="mubundle-sampling", initializer=_single_threaded_ops)
            if self.count > 1
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
    """Workers for sampling on ``device``: torch's intra-op thread count on CPU (what
    ``torch.set_num_threads`` or ``OMP_NUM_THREADS`` asked for), 1 on accelerators (their
    kernels are asynchronous already)."""
    return torch.get_num_threads() if device.type == "cpu" else 1
