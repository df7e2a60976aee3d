"""The in-memory event model: a ragged batch of muon bundles.

A batch of B events holds

- ``conditions``: (B, 4) float32 ``[energy GeV, zenith rad, mass A, slant depth km]``
- ``counts``:     (B,)   int64   number of muons of each event (0 allowed)
- ``flat_muons``: (M, 3) float32 ``[energy GeV, x m, y m]``, all muons of all events
  concatenated in event order, ``M == counts.sum()``
- ``weights``:    optional (B,) float64 event weights (Hz, flux-mode generation)
- ``ids``:        optional (B, 2) uint64 event ids ``(major, minor)`` of the source: the I3
  particle ids of the original pipeline's primaries, or (run, event) of a CORSIKA shower

``offsets`` (B + 1,) and ``event_index`` (M,) are derived from ``counts``. No per-event
Python objects exist anywhere: every operation is a vectorised numpy call.
:meth:`RaggedBatch.to_torch` gives a :class:`TorchRaggedBatch` of ``conditions``, ``counts``
and ``flat_muons`` only (no weights, no ids); on the CPU its tensors share memory with the
numpy arrays, on another device they are copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class RaggedBatch:
    """Ragged batch of B muon bundles holding M muons in all.

    ``conditions``: (B, 4) float32, one row per event ``[E0 GeV, zenith rad, mass number A,
    slant depth km]``.
    ``counts``: (B,) int64, number of muons of each event (0 allowed).
    ``flat_muons``: (M, 3) float32 ``[energy GeV, x m, y m]`` (x, y in the plane perpendicular
    to the shower axis), the muons of all events concatenated in event order, ``M == counts.sum()``.
    ``weights``: (B,) float64 event weights in Hz (flux-weighted generation or simulation),
    or None.
    ``ids``: (B, 2) uint64 source event ids ``(major, minor)`` (the I3 particle ids of the
    original pipeline's primaries, or (run, event) of a CORSIKA shower), or None.

    Arrays given in another dtype are converted on construction; inconsistent shapes or
    counts raise ``ValueError`` (:meth:`check`). ``offsets`` (B + 1,) and ``event_index``
    (M,) are derived from ``counts``.
    """

    conditions: np.ndarray
    counts: np.ndarray
    flat_muons: np.ndarray
    weights: np.ndarray | None = None
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        conditions = np.ascontiguousarray(self.conditions, dtype=np.float32)
        counts = np.ascontiguousarray(self.counts, dtype=np.int64)
        flat_muons = np.ascontiguousarray(self.flat_muons, dtype=np.float32)
        if flat_muons.size == 0:
            flat_muons = flat_muons.reshape(0, 3)
        if conditions.size == 0:
            conditions = conditions.reshape(0, 4)
        object.__setattr__(self, "conditions", conditions)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "flat_muons", flat_muons)
        if self.weights is not None:
            object.__setattr__(self, "weights", np.ascontiguousarray(self.weights, dtype=np.float64))
        if self.ids is not None:
            object.__setattr__(self, "ids", np.ascontiguousarray(self.ids, dtype=np.uint64).reshape(-1, 2))
        self.check()

    # ------------------------------------------------------------------ invariants
    def check(self) -> None:
        """Raise ``ValueError`` if shapes or counts are inconsistent."""
        if self.conditions.ndim != 2 or self.conditions.shape[1] != 4:
            raise ValueError(f"conditions must be (B, 4), got {self.conditions.shape}")
        if self.counts.ndim != 1 or self.counts.shape[0] != self.conditions.shape[0]:
            raise ValueError(
                f"counts must be (B,) with B={self.conditions.shape[0]}, got {self.counts.shape}"
            )
        if self.flat_muons.ndim != 2 or self.flat_muons.shape[1] != 3:
            raise ValueError(f"flat_muons must be (M, 3), got {self.flat_muons.shape}")
        if self.counts.size and self.counts.min() < 0:
            raise ValueError("counts must be non-negative")
        total = int(self.counts.sum())
        if total != self.flat_muons.shape[0]:
            raise ValueError(f"counts sum to {total} but flat_muons has {self.flat_muons.shape[0]} rows")
        if self.weights is not None and self.weights.shape != self.counts.shape:
            raise ValueError(f"weights must be (B,), got {self.weights.shape}")
        if self.ids is not None and self.ids.shape[0] != self.counts.shape[0]:
            raise ValueError(f"ids must be (B, 2), got {self.ids.shape}")

    # ------------------------------------------------------------------ derived views
    def __len__(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_events(self) -> int:
        return len(self)

    @property
    def n_muons(self) -> int:
        return int(self.flat_muons.shape[0])

    @property
    def offsets(self) -> np.ndarray:
        """(B + 1,) int64: muons of event i are ``flat_muons[offsets[i]:offsets[i + 1]]``."""
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(self.counts, out=offsets[1:])
        return offsets

    @property
    def event_index(self) -> np.ndarray:
        """(M,) int64: index of the event each muon belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.counts)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def empty(cls) -> "RaggedBatch":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, 3), np.float32))

    @classmethod
    def from_offsets(
        cls,
        conditions: np.ndarray,
        offsets: np.ndarray,
        flat_muons: np.ndarray,
        weights: np.ndarray | None = None,
        ids: np.ndarray | None = None,
    ) -> "RaggedBatch":
        """Build from (B + 1,) offsets (e.g. Arrow list offsets); offsets[0] may be non-zero."""
        offsets = np.asarray(offsets, dtype=np.int64)
        start, stop = int(offsets[0]), int(offsets[-1])
        return cls(conditions, np.diff(offsets), flat_muons[start:stop], weights, ids)

    @classmethod
    def concat(cls, batches: Sequence["RaggedBatch"]) -> "RaggedBatch":
        """Concatenate batches in order (weights and ids kept only if every batch has them)."""
        batches = [b for b in batches]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        weights = None
        if all(b.weights is not None for b in batches):
            weights = np.concatenate([b.weights for b in batches])
        ids = None
        if all(b.ids is not None for b in batches):
            ids = np.concatenate([b.ids for b in batches])
        return cls(
            np.concatenate([b.conditions for b in batches]),
            np.concatenate([b.counts for b in batches]),
            np.concatenate([b.flat_muons for b in batches]),
            weights,
            ids,
        )

    # ------------------------------------------------------------------ selection
    def slice(self, start: int, stop: int) -> "RaggedBatch":
        """Events ``start:stop`` as views (no copy)."""
        offsets = self.offsets
        start, stop, _ = slice(start, stop).indices(len(self))
        stop = max(stop, start)
        return RaggedBatch(
            self.conditions[start:stop],
            self.counts[start:stop],
            self.flat_muons[offsets[start] : offsets[stop]],
            None if self.weights is None else self.weights[start:stop],
            None if self.ids is None else self.ids[start:stop],
        )

    def take(self, indices: np.ndarray) -> "RaggedBatch":
        """Events at ``indices`` (any order, repeats allowed), vectorised gather."""
        indices = np.asarray(indices, dtype=np.int64)
        counts = self.counts[indices]
        starts = self.offsets[:-1][indices]
        # muon gather index: for each selected event, starts[i] + 0..counts[i]-1
        new_offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(counts, out=new_offsets[1:])
        within = np.arange(int(new_offsets[-1]), dtype=np.int64) - np.repeat(new_offsets[:-1], counts)
        muon_index = np.repeat(starts, counts) + within
        return RaggedBatch(
            self.conditions[indices],
            counts,
            self.flat_muons[muon_index],
            None if self.weights is None else self.weights[indices],
            None if self.ids is None else self.ids[indices],
        )

    def muons_of(self, event: int) -> np.ndarray:
        """(counts[event], 3) view of one event's muons (for inspection, not hot paths)."""
        offsets = self.offsets
        return self.flat_muons[offsets[event] : offsets[event + 1]]

    # ------------------------------------------------------------------ interop
    def to_torch(self, device: "torch.device | str | None" = None) -> "TorchRaggedBatch":
        """``conditions``, ``counts`` and ``flat_muons`` as a :class:`TorchRaggedBatch` on ``device``.

        ``weights`` and ``ids`` are not carried over. With ``device`` None or CPU the tensors
        share memory with the numpy arrays; on another device they are copies (sent from
        pinned memory, without blocking).
        """
        import torch

        conditions = torch.from_numpy(self.conditions)
        counts = torch.from_numpy(self.counts)
        flat_muons = torch.from_numpy(self.flat_muons)
        if device is not None and torch.device(device).type != "cpu":
            non_blocking = True
            conditions = conditions.pin_memory().to(device, non_blocking=non_blocking)
            counts = counts.pin_memory().to(device, non_blocking=non_blocking)
            flat_muons = flat_muons.pin_memory().to(device, non_blocking=non_blocking)
        return TorchRaggedBatch(conditions, counts, flat_muons)

    def to_awkward(self):
        """Awkward array of B records ``{energy, zenith, mass, depth, muons: [{energy, x, y}]}``.

        Units as in the batch: event ``energy`` (E0) GeV, ``zenith`` rad, ``mass`` mass number
        A, ``depth`` slant depth km; muon ``energy`` GeV, ``x``, ``y`` m (float32). With
        ``weights`` each record also has ``weight`` (float64, Hz); ``ids`` are not included.
        """
        import awkward as ak

        muons = ak.zip(
            {
                "energy": self.flat_muons[:, 0],
                "x": self.flat_muons[:, 1],
                "y": self.flat_muons[:, 2],
            }
        )
        fields = {
            "energy": self.conditions[:, 0],
            "zenith": self.conditions[:, 1],
            "mass": self.conditions[:, 2],
            "depth": self.conditions[:, 3],
            "muons": ak.unflatten(muons, self.counts),
        }
        if self.weights is not None:
            fields["weight"] = self.weights
        return ak.zip(fields, depth_limit=1)

    def equals(self, other: "RaggedBatch") -> bool:
        """Exact equality of all arrays (weights included; ids compared when both batches have them)."""
        same = (
            np.array_equal(self.conditions, other.conditions)
            and np.array_equal(self.counts, other.counts)
            and np.array_equal(self.flat_muons, other.flat_muons)
        )
        if (self.weights is None) != (other.weights is None):
            return False
        if self.ids is not None and other.ids is not None and not np.array_equal(self.ids, other.ids):
            return False
        return same and (self.weights is None or np.array_equal(self.weights, other.weights))


@dataclass(frozen=True)
class TorchRaggedBatch:
    """A ragged batch's ``conditions``, ``counts`` and ``flat_muons`` as torch tensors (on any
    device); it has no weights and no ids.

    ``conditions`` (B, 4) float32 ``[E0 GeV, zenith rad, A, slant depth km]``, ``counts`` (B,)
    int64, ``flat_muons`` (M, 3) float32 ``[energy GeV, x m, y m]``.
    ``event_index`` is computed on the device with ``repeat_interleave`` and
    ``output_size`` = M so no host sync is needed.
    """

    conditions: "torch.Tensor"
    counts: "torch.Tensor"
    flat_muons: "torch.Tensor"

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_muons(self) -> int:
        return int(self.flat_muons.shape[0])

    @property
    def event_index(self) -> "torch.Tensor":
        import torch

        return torch.repeat_interleave(
            torch.arange(len(self), device=self.counts.device), self.counts, output_size=self.n_muons
        )

    def to(self, device) -> "TorchRaggedBatch":
        return TorchRaggedBatch(self.conditions.to(device), self.counts.to(device), self.flat_muons.to(device))

    def numpy(self) -> RaggedBatch:
        return RaggedBatch(
            self.conditions.detach().cpu().numpy(),
            self.counts.detach().cpu().numpy(),
            self.flat_muons.detach().cpu().numpy(),
        )
