"""What a run reports while it trains: ``metrics.jsonl``, TensorBoard, a progress bar.

Only the main process (rank 0) creates these writers. ``metrics.jsonl`` holds one JSON
object per logged step; when a run resumes (or rolls back) from the checkpoint at step k,
lines with ``step > k`` are removed first so the file always describes exactly one
trajectory (the steps after k are about to be recomputed). TensorBoard gets the same
effect through ``SummaryWriter(purge_step=k + 1)``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mubundle.data.atomic import atomic_write_bytes

METRICS_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsLog:
    """Append-only JSON-lines file of per-step metrics, truncated to a step on resume."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def truncate_after(self, step: int) -> int:
        """Drop records with ``record["step"] > step``; returns how many were dropped.

        A torn last line (crash mid-write) is dropped as well; the rewrite is atomic.
        """
        if not self.path.exists():
            return 0
        kept, dropped = [], 0
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            if int(record.get("step", -1)) <= step:
                kept.append(line)
            else:
                dropped += 1
        if dropped:
            atomic_write_bytes(self.path, "".join(f"{line}\n" for line in kept).encode())
        return dropped

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line (non-finite floats become JSON null, never NaN)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.path.open("a") as handle:
            handle.write(json.dumps(clean) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """All records (for tests and summaries)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


class RateMeter:
    """Events/s and muons/s over the steps since the last :meth:`rates` call (wall clock)."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._events = 0
        self._muons = 0

    def add(self, n_events: int, n_muons: int) -> None:
        self._events += int(n_events)
        self._muons += int(n_muons)

    def rates(self) -> tuple[float, float]:
        """``(events_per_s, muons_per_s)`` since the previous call; resets the window."""
        now = time.perf_counter()
        elapsed = max(now - self._start, 1e-9)
        rates = (self._events / elapsed, self._muons / elapsed)
        self._start, self._events, self._muons = now, 0, 0
        return rates


class TensorBoardLog:
    """Scalars every logged step and real-vs-generated histograms every ``histogram_every``."""

    def __init__(self, run_dir: Path, resume_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR), purge_step=resume_step + 1)

    def scalars(self, record: dict[str, Any]) -> None:
        """Every number of a metrics record as ``train/NAME``; flags (``applied``,
        ``multiplicity_frozen``) as 0/1, so that a step chart shows when they change."""
        step = int(record["step"])
        for name, value in record.items():
            if name != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"train/{name}", int(value) if isinstance(value, bool) else value, step)

    def feature_histograms(self, step: int, real: dict[str, np.ndarray], generated: dict[str, np.ndarray]) -> None:
        """Histograms of the same features for real and generated events (names as keys)."""
        for name, values in real.items():
            if values.size:
                self.writer.add_histogram(f"real/{name}", values, step)
        for name, values in generated.items():
            if values.size:
                self.writer.add_histogram(f"generated/{name}", values, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def bundle_features(counts: np.ndarray, flat_muons: np.ndarray) -> dict[str, np.ndarray]:
    """Histogrammed features of a batch: ``log10_energy`` (per muon, log10 of GeV), ``log10_radius``
    (per muon, log10 of m: radii span 0.1-300 m; a muon on the axis, r = 0, has no logarithm and is
    left out, as a muon without energy is), ``multiplicity`` (per event)."""
    energy = flat_muons[:, 0].astype(np.float64)
    radius = np.hypot(flat_muons[:, 1], flat_muons[:, 2]).astype(np.float64)
    return {
        "log10_energy": np.log10(energy[energy > 0]),
        "log10_radius": np.log10(radius[radius > 0]),
        "multiplicity": counts.astype(np.float64),
    }


def progress_bar(total: int, initial: int, enabled: bool) -> tqdm:
    """tqdm bar over generator steps; rates are shown in its postfix."""
    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True, desc="train")


def generated_histogram_features(model: Any, conditions: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
    """Sample N and the muons for the given (B,4) physical conditions with a private generator.

    A private ``torch.Generator`` keeps the training RNG streams untouched, so enabling or
    disabling histograms never changes the training trajectory (exact resume).
    """
    generator = torch.Generator(device=conditions.device).manual_seed(seed)
    with torch.no_grad():
        cond_features = model.transform.condition_features(conditions)
        counts = model.multiplicity.sample(cond_features, generator)
        flat_muons = model.sample_muons(conditions, counts, generator)
    return bundle_features(counts.cpu().numpy(), flat_muons.float().cpu().numpy())
