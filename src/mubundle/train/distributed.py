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
- gather per-rank state (data cursor, RNG states) for rank 0's checkpoint.

Each rank reads its own shard of the data (``EventStream(rank=, world_size=)``), so the
effective batch is ``world_size * batch_size`` events. Only rank 0 writes checkpoints,
metrics, TensorBoard and the exported model. Without RANK/WORLD_SIZE everything here is
a no-op and the loop is the plain single-process loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes checkpoints, metrics and logs."""
        return self.rank == 0


def context_from_env(environ: dict[str, str] | None = None) -> DistContext:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK (defaults: single process)."""
    environ = os.environ if environ is None else environ
    world_size = int(environ.get("WORLD_SIZE", "1"))
    rank = int(environ.get("RANK", "0"))
    local_rank = int(environ.get("LOCAL_RANK", str(rank)))
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world_size})")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank)


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(context: DistContext, device: torch.device) -> None:
    """Join the process group described by the environment (no-op for one process)."""
    if not context.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend_for(device), rank=context.rank, world_size=context.world_size)


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


def gather_to_main(obj: Any, context: DistContext) -> list[Any] | None:
    """List of every rank's ``obj`` on rank 0 (None elsewhere); ``[obj]`` for one process."""
    if not context.enabled:
        return [obj]
    gathered: list[Any] | None = [None] * context.world_size if context.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered
