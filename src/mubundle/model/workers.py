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

All random numbers are drawn in a fixed order by one thread (the producer, below) before the
calls are submitted, and each call computes the same function of its inputs whichever thread runs it.
With one intra-op thread per worker (any machine of up to 4 threads with the default count)
the result cannot depend on the worker count; otherwise only through float rounding that
changes with a kernel's thread count (none seen on the development CPU: bit-identical for 1,
2 and 3 workers at 1 and 2 threads).

The producer (the multiplicity network, every random draw, submitting the calls) runs on a
thread of its own with ``torch.get_num_threads() // (count + 1)`` intra-op threads (at least 1).
In the caller's thread it kept all the threads while the workers used them too: twice as many
busy threads as cores, whose OpenMP barriers stalled each other. While nothing is in flight
(the first chunk) the idle workers run the multiplicity network on row blocks
(:meth:`SamplingWorkers.split_rows`; row blocks give the same parameters bit for bit).
Measured on 2 cores, medians of 8 interleaved runs of 20 000 benchmark events: 0.234 s with
both against 0.281 s without (each alone: 0.237 vs 0.269 s, 0.224 vs 0.258 s); samples
bit-identical (docs/model.md).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

import torch
from torch import Tensor

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
    ``torch.get_num_threads() // count`` intra-op threads (at least 1), plus one producer
    thread (:meth:`produce`); ``count <= 1``: functions run at once in the caller's thread.
    A context manager: leaving it waits for the running functions and cancels those not
    started (e.g. after an error or Ctrl-C; a producer stops at its next check of
    :attr:`closing`)."""

    def __init__(self, count: int) -> None:
        count = max(1, int(count))
        threads = torch.get_num_threads()
        self._count = count
        self._closing = threading.Event()
        self._pool, self._producer = None, None
        if count > 1:
            self._pool = ThreadPoolExecutor(
                count, thread_name_prefix="mubundle-sampling", initializer=_set_op_threads,
                initargs=(max(1, threads // count),),
            )
            self._producer = ThreadPoolExecutor(
                1, thread_name_prefix="mubundle-producer", initializer=_set_op_threads,
                initargs=(max(1, threads // (count + 1)),),
            )

    def produce(self, function: Callable[..., Result], *args) -> Result:
        """Run ``function(*args)`` (which submits to this pool) on the producer thread under
        ``torch.no_grad()`` and return its result; without workers, in the caller's thread."""
        if self._producer is None:
            return _without_autograd(function, *args)
        return self._producer.submit(_without_autograd, function, *args).result()

    def submit(self, function: Callable[..., Result], *args) -> "Future[Result]":
        """Run ``function(*args)`` under ``torch.no_grad()`` on a worker (or now, without workers)."""
        if self._pool is not None:
            return self._pool.submit(_without_autograd, function, *args)
        done: Future[Result] = Future()
        done.set_result(_without_autograd(function, *args))
        return done

    def split_rows(self, function: Callable[[Tensor], tuple[Tensor, ...]], rows: Tensor) -> tuple[Tensor, ...]:
        """``function(rows)`` for a row-wise ``function`` returning a tuple of (B, ...) tensors,
        run as one block of rows per worker concurrently (for when the workers are idle); the
        blocks' outputs are concatenated. Without workers, one call."""
        if self._pool is None or rows.shape[0] < self._count:
            return _without_autograd(function, rows)
        calls = [self.submit(function, block) for block in rows.tensor_split(self._count)]
        return tuple(torch.cat(parts) for parts in zip(*(call.result() for call in calls)))

    @property
    def closing(self) -> bool:
        """True once :meth:`close` has begun: a producer should stop submitting and return."""
        return self._closing.is_set()

    def close(self) -> None:
        self._closing.set()
        for executor in (self._producer, self._pool):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "SamplingWorkers":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def default_worker_count(device: torch.device) -> int:
    """Workers for sampling on ``device``: on CPU torch's intra-op thread count (what
    ``torch.set_num_threads`` or ``OMP_NUM_THREADS`` asked for), at most
    :data:`MAX_DEFAULT_WORKERS`; 1 on accelerators (their kernels are asynchronous already)."""
    return min(torch.get_num_threads(), MAX_DEFAULT_WORKERS) if device.type == "cpu" else 1
