"""Generation chunks as executor tasks: what a worker process receives and how it finds its model.

A job is ``(model, conditions, seed, events_per_chunk, weights)``. ``model`` is either a
loaded sampler (jobs run in this process: nothing is pickled) or a :class:`ModelRef`,
which a worker process resolves once through a process-wide cache: a Dask worker loads
the model for its first chunk and reuses it for every later chunk of that model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from mubundle.data.batch import RaggedBatch
from mubundle.model.domain import quiet_extrapolation


@dataclass(frozen=True)
class ModelRef:
    """How a worker loads the model: ``path`` = model directory or shipped name (None =
    the default shipped model), as for ``load_model``; ``device`` = torch device string.

    A directory must be readable at that path on every worker (shared filesystem);
    shipped models are found inside each worker's mubundle installation.
    """

    path: str | None = None
    device: str = "cpu"

    def load(self) -> Any:
        """The model, loaded once per process and ``(path, device)``."""
        with _CACHE_LOCK:
            if self not in _MODELS:
                from mubundle.generate.api import load_model

                _MODELS[self] = (load_model(self.path, device=self.device), threading.Lock())
            return _MODELS[self]


def require_model_ref(model: Any, dask: str | None) -> None:
    """Raise ``ValueError`` unless ``model`` is a :class:`ModelRef` when chunks go to Dask
    (a loaded model would be pickled into every task instead of loaded once per worker)."""
    if dask is not None and not isinstance(model, ModelRef):
        raise ValueError(f"generation on Dask needs a ModelRef (what each worker loads), got {type(model).__name__}")


_MODELS: dict[ModelRef, tuple[Any, threading.Lock]] = {}
_CACHE_LOCK = threading.Lock()
_LOCAL_LOCK = threading.Lock()

def sample_conditions(model: Any, conditions: np.ndarray, seed: int, events_per_chunk: int) -> RaggedBatch:
    """One generated event per row of ``conditions`` (B, 4) [GeV, rad, A, km]."""
    return model.sample(
        conditions[:, 0], conditions[:, 1], conditions[:, 2], conditions[:, 3], seed=seed,
        events_per_chunk=events_per_chunk,
    )


#: ``(model or ModelRef, conditions (B, 4) [GeV, rad, A, km], seed, events_per_chunk, weights (B,) Hz or None)``
SampleJob = tuple[Any, np.ndarray, int, int, "np.ndarray | None"]


def sample_chunk_job(job: SampleJob) -> RaggedBatch:
    """Executor task: one generated event per row of the job's conditions, with its weights.

    The caller has checked the conditions against the model's domain (outside events are
    refused or counted there), so the chunk is sampled without a second check or warning.
    One chunk at a time per model and process: sampling already uses the process's cores,
    and a worker with several threads must not run two chunks on one model at once.
    """
    model, conditions, seed, events_per_chunk, weights = job
    model, lock = model.load() if isinstance(model, ModelRef) else (model, _LOCAL_LOCK)
    with lock, quiet_extrapolation():
        # the driver checked the chunk against the model's domain (generate.run.check_domain)
        batch = model.sample(
            conditions[:, 0], conditions[:, 1], conditions[:, 2], conditions[:, 3], seed=seed,
            events_per_chunk=events_per_chunk, allow_extrapolation=True,
        )
    if weights is None:
        return batch
    return RaggedBatch(batch.conditions, batch.counts, batch.flat_muons, weights)


__all__ = ["ModelRef", "require_model_ref", "sample_chunk_job", "sample_conditions", "SampleJob"]
