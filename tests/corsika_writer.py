"""A minimal CORSIKA 7 particle-file writer for tests of bad and special input.

Blocks of 273 words (312 when thinned) written back to back without Fortran record markers
(a layout corsikaio reads); word positions from the CORSIKA user's guide run/event header
tables (1-based words): RUNH 2 run, 4 version, 5 levels, 6.. heights (cm); EVTH 2 event,
3 primary code, 4 energy (GeV), 11 zenith, 12 azimuth (rad), 44 run, 46 version, 47 levels,
48.. heights, 61-64 energy cuts. Particle records: description (id * 1000 + level), px, py,
pz (GeV/c), x, y (cm), t (+ thinning weight).
"""

from __future__ import annotations

import numpy as np


def _block(words: int, marker: bytes, values: dict[int, float]) -> np.ndarray:
    block = np.zeros(words, dtype=np.float32)
    block[0] = np.frombuffer(marker, dtype=np.float32)[0]
    for word, value in values.items():
        block[word - 1] = value
    return block


def corsika_bytes(
    showers: list[dict], version: float = 7.75, run: int = 7, thinning: bool = False, observation_cm: float = 11000.0
) -> bytes:
    """A particle file with ``showers``: dicts with ``code``, ``energy``, ``zenith``, ``azimuth``
    (optional) and ``particles`` ((n, 7) or (n, 8) rows)."""
    words = 312 if thinning else 273
    width = 8 if thinning else 7
    blocks = [_block(words, b"RUNH", {2: run, 4: version, 5: 1, 6: observation_cm, 22: 1000.0, 21: 1000.0})]
    for number, shower in enumerate(showers, start=1):
        blocks.append(_block(words, b"EVTH", {
            2: number, 3: shower["code"], 4: shower["energy"], 11: shower["zenith"], 12: shower.get("azimuth", 0.0),
            44: run, 46: version, 47: 1, 48: observation_cm, 61: 1000.0, 62: 1000.0, 76: 2, 75: 2, 139: 4,
        }))
        particles = np.asarray(shower.get("particles", np.zeros((0, width))), dtype=np.float32).reshape(-1, width)
        for start in range(0, particles.shape[0], 39):
            data = np.zeros((39, width), dtype=np.float32)
            chunk = particles[start : start + 39]
            data[: chunk.shape[0]] = chunk
            blocks.append(data.reshape(-1))
        if not shower.get("drop_end", False):
            blocks.append(_block(words, b"EVTE", {2: number}))
    blocks.append(_block(words, b"RUNE", {2: run, 3: len(showers)}))
    return b"".join(block.tobytes() for block in blocks)


def muon_rows(energies, x_cm, y_cm, ids=None, weights=None, thinning=False) -> np.ndarray:
    """Vertical muon records (pz = momentum) at observation level 1."""
    energies = np.asarray(energies, dtype=np.float64)
    n = energies.shape[0]
    ids = np.full(n, 5) if ids is None else np.asarray(ids)
    momentum = np.sqrt(np.maximum(energies**2 - 0.1056583755**2, 0))
    rows = np.zeros((n, 8 if thinning else 7), dtype=np.float32)
    rows[:, 0] = ids * 1000 + 1
    rows[:, 3] = momentum
    rows[:, 4], rows[:, 5] = x_cm, y_cm
    if thinning:
        rows[:, 7] = 1.0 if weights is None else weights
    return rows
