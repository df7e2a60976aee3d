"""Data-parallel training as a thin layer over the single-process loop.

Launched by ``torchrun --nproc_per_node N -m mubundle.cli train ...`` (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT in the environment) the loop calls into this module to

- join the process group (``gloo`` on CPU, ``nccl`` on CUDA);
- make the replicas identical at the start (parameters broadcast from rank 0);
- gradients are averaged over ranks by the step itself (``train.step``: one all-reduce
  after the micro-batch accumulation, before the finiteness check, so a NaN on one rank is
  a NaN on all and every rank skips the same update; DDP module wrapping would not fit
  the gradient penalty's double backward with several critic calls per backward);
- agree on per-step decisions (a step counts as applied only if it was applied on every
  rank) so the divergence guard rolls back on all ranks together;
- gather per-rank state (data cursor, RNG states) for rank 0's checkpoint;
- turn the backend's errors of a lost peer or a busy MASTER_PORT into one
  :class:`~mubundle.errors.DistributedRunError` line (exit 7, :func:`backend_failure`).

Each rank reads its own shard of the data (``EventStream(rank=, world_size=)``), so the
effective batch is ``world_size * batch_size`` events. Only rank 0 writes checkpoints,
metrics, TensorBoard and the exported model. Without RANK/WORLD_SIZE everything here is
a no-op and the loop is the plain single-process loop.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from typing import Any, Iterable, Iterator

import torch
import torch.distributed as dist

from mubundle.errors import DistributedRunError
from mubundle.train.dist_env import DistContext, context_from_env  # noqa: F401 (the loop's names)

#: torch's own distributed errors (torch 2.13: DistError and its subclasses DistBackendError,
#: DistNetworkError, DistStoreError; all RuntimeErrors)
_DIST_ERRORS: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(dist, "DistError", None),) if isinstance(cls, type)
)
#: a plain RuntimeError raised by the backend itself: gloo's messages start with its source path
#: (``[.../third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error ...``), c10d names itself
_BACKEND_MESSAGE = re.compile(r"/gloo/|\bc10d\b|ProcessGroup(Gloo|NCCL)")
_PORT_IN_USE = re.compile(r"EADDRINUSE|address already in use", re.IGNORECASE)


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def master_address(environ: dict[str, str] | None = None) -> str:
    """``MASTER_ADDR:MASTER_PORT`` of the environment (``?`` for a missing part)."""
    environ = os.environ if environ is None else environ
    return f"{environ.get('MASTER_ADDR', '?')}:{environ.get('MASTER_PORT', '?')}"


def init_distributed(context: DistContext, device: torch.device) -> None:
    """Join the process group described by the environment (no-op for one process).

    Says on stderr what it waits for (the wait lasts until every rank has joined, up to the
    backend's 30-minute timeout). SIGTERM and Ctrl-C end the process at once during the wait:
    torch's C++ connect loop would otherwise hold them back until the timeout (nothing is
    written before the group exists, and the kernel drops the run directory's lock).
    """
    if not context.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    others = context.world_size - 1
    print(f"waiting for the other {others} process{'es' if others > 1 else ''} at {master_address()} "
          f"(rank {context.rank} of {context.world_size})", file=sys.stderr, flush=True)
    try:
        with _stop_signals_end_the_process():
            dist.init_process_group(backend=backend_for(device), rank=context.rank, world_size=context.world_size)
    except RuntimeError as error:
        failure = backend_failure(error, context, joining=True)
        if failure is None:
            raise
        raise failure from error


@contextlib.contextmanager
def _stop_signals_end_the_process() -> Iterator[None]:
    """SIGTERM and SIGINT with their default action (end the process) inside the block; the
    handlers are restored after it. Only the main thread may change handlers: elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    for signum in saved:
        signal.signal(signum, signal.SIG_DFL)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _first_sentence(error: BaseException) -> str:
    """The backend's message without its source location, up to its first sentence's end."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # gloo's source locations ("[/__w/.../gloo/transport/tcp/pair.cc:537] ") say nothing to a user
    text = re.sub(r"\[[^\]\s]*\.(?:cc|cpp|h):\d+\]\s*", "", lines[0]) if lines else type(error).__name__
    return re.split(r"(?<=[^.\s])\.\s", text, maxsplit=1)[0].rstrip(".")


def backend_failure(error: BaseException, context: DistContext, joining: bool = False) -> DistributedRunError | None:
    """The one-line :class:`~mubundle.errors.DistributedRunError` for a failure of the process
    group (None for anything else, which keeps its own report).

    Recognised narrowly: only in a distributed run (``context.enabled``), and only torch's
    ``DistError`` family or a RuntimeError whose message comes from gloo or c10d. ``joining``:
    the error ended :func:`init_distributed` (MASTER_PORT in use, nobody to join) rather than a
    collective of a running group (a peer that died: another rank failed and printed why).
    """
    if not context.enabled or not isinstance(error, RuntimeError) or isinstance(error, DistributedRunError):
        return None
    if not isinstance(error, _DIST_ERRORS) and not _BACKEND_MESSAGE.search(str(error)):
        return None
    detail = _first_sentence(error)
    if _PORT_IN_USE.search(str(error)):
        port = os.environ.get("MASTER_PORT", "?")
        return DistributedRunError(
            f"MASTER_PORT {port} is in use by another program ({detail}): choose a free port "
            f"(torchrun --master-port P, or MASTER_PORT=P)"
        )
    if joining:
        return DistributedRunError(
            f"could not join the other processes at {master_address()} ({detail}): check MASTER_ADDR and "
            f"MASTER_PORT and that all {context.world_size} processes were started; then run the same command again"
        )
    return DistributedRunError(
        f"lost contact with the other processes ({detail}): another rank failed (see its error); "
        f"run the same command again to resume from the last checkpoint"
    )


@contextlib.contextmanager
def backend_failures_reported(context: DistContext) -> Iterator[None]:
    """Re-raise a lost peer's backend error inside the block as :func:`backend_failure`'s line."""
    try:
        yield
    except RuntimeError as error:
        failure = backend_failure(error, context) if dist.is_initialized() else None
        if failure is None:
            raise
        raise failure from error


def shutdown_distributed(context: DistContext) -> None:
    """Leave the process group (no-op for one process)."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistContext) -> None:
    if context.enabled:
        dist.barrier()


def broadcast_parameters(modules: Iterable[torch.nn.Module], context: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not context.enabled:
        return
    with torch.no_grad():
        for module in modules:
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)


def all_ranks_true(flag: bool, context: DistContext, device: torch.device) -> bool:
    """Logical AND of ``flag`` over ranks."""
    if not context.enabled:
        return bool(flag)
    value = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def _summed_over_ranks(values: dict, dtype: torch.dtype, context: DistContext, device: torch.device) -> dict:
    """All-reduce (sum) of each scalar of ``values`` over ranks; same keys on every rank."""
    if not context.enabled or not values:
        return dict(values)
    names = sorted(values)
    tensor = torch.tensor([values[n] for n in names], dtype=dtype, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return dict(zip(names, tensor.tolist()))


def mean_over_ranks(values: dict[str, float], context: DistContext, device: torch.device) -> dict[str, float]:
    """Average of each scalar over ranks (for logging); same keys on every rank."""
    summed = _summed_over_ranks({n: float(v) for n, v in values.items()}, torch.float64, context, device)
    return {n: v / context.world_size for n, v in summed.items()} if context.enabled else summed


def sum_over_ranks(values: dict[str, int], context: DistContext, device: torch.device) -> dict[str, int]:
    """Sum of each integer over ranks (event and muon counts)."""
    summed = _summed_over_ranks({n: int(v) for n, v in values.items()}, torch.int64, context, device)
    return {n: int(v) for n, v in summed.items()}


def all_gather(obj: Any, context: DistContext) -> list[Any]:
    """List of every rank's ``obj`` on every rank; ``[obj]`` for one process."""
    if not context.enabled:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def gather_to_main(obj: Any, context: DistContext) -> list[Any] | None:
    """List of every rank's ``obj`` on rank 0 (None elsewhere); ``[obj]`` for one process."""
    if not context.enabled:
        return [obj]
    gathered: list[Any] | None = [None] * context.world_size if context.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered
