"""torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), read without importing torch.

The ``mubundle`` command (its error prefix), the supervising parent of ``train --max-restarts``
and the training loop (:mod:`mubundle.train.distributed`) all read it here, the first two
before (or without) torch is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


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
