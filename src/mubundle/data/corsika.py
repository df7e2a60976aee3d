"""CORSIKA 7 particle files (``DATnnnnnn``; plain, thinned, gzip/zstd-compressed) read with ``corsikaio``.

One shower = one event at the observation level (depth 0):

- conditions ``[E0 GeV, zenith rad, A, 0 km]`` from the event header (words 4, 11, 3);
  primary codes (CORSIKA user's guide, D. Heck and T. Pierog, "Extensive Air Shower
  Simulation with CORSIKA", particle codes table): 14 = proton and 13 = neutron -> A = 1,
  ``A * 100 + Z`` (2 <= A <= 59, 1 <= Z <= A) -> A. Every other primary (1 gamma, 2/3 e+-,
  5/6 mu+-, pions, kaons, ...) is not a nucleus: the shower is rejected as
  ``primary_not_nucleus`` (counted and quarantined with the CORSIKA code in ``mass``).
- muons: particle records with id 5 (mu+) or 6 (mu-), id = description // 1000
  (positive descriptions only: negative ones are EHISTORY mother/grandmother records;
  ids 75/76 are the additional-muon-information records of MUADDI, not muons). With several
  observation levels only the lowest one is taken (its core is CORSIKA's origin).
  Energy = sqrt(p^2 + m_mu^2), m_mu = 0.1056583755 GeV (PDG 2024). Positions (cm, CORSIKA
  puts the origin where the shower axis meets the observation level) are projected along the
  axis onto the plane perpendicular to it through the core, with the rotation that turns the
  axis vertical (MuonGun ``Muonitron::RotateToZenith``): for a vertical shower x, y are
  CORSIKA's x, y in metres.
- thinned files: a muon record whose thinning weight is not 1 stands for several muons, which
  an unweighted bundle cannot hold; such a shower is rejected as ``muon_thinned``.
- ids ``(major, minor)`` = (run number, event number).

Bad files (truncated, an event header without its end record, a run header that is not
CORSIKA 7, eventio files) raise ``OSError``/``ValueError`` with a one-line reason; the
caller names the file (:func:`mubundle.data.sources.file_errors`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from mubundle.data.batch import RaggedBatch
from mubundle.data.validate import REASON_CODE, DecodedRows

LAYOUT = "corsika"
MUON_IDS = (5, 6)
MUON_MASS_GEV = 0.1056583755  # PDG 2024
_BLOCK_BYTES, _BLOCK_BYTES_THIN = 273 * 4, 312 * 4
#: CORSIKA 7 versions corsikaio knows (its MIN_VERSION/MAX_VERSION) widened to 6.5 - 7.9.
_VERSION_RANGE = (6.5, 7.9)
# event header flags (CORSIKA user's guide, event header table, words 75, 76, 139, 141, 143)
_HIGH_ENERGY_MODELS = {0: "HDPM", 1: "VENUS", 2: "SIBYLL", 3: "QGSJET", 4: "DPMJET", 5: "NEXUS", 6: "EPOS"}
_LOW_ENERGY_MODELS = {1: "GHEISHA", 2: "UrQMD", 3: "FLUKA"}
_SIBYLL_VERSIONS = {1: "1.6", 2: "2.1", 3: "2.3c", 4: "2.3d"}
_QGSJET_VERSIONS = {1: "QGSJETOLD", 2: "QGSJET01d", 3: "QGSJET-II"}


def _open(path: str | os.PathLike):
    from corsikaio.io import open_compressed

    return open_compressed(path)


def looks_like_corsika(path: str | os.PathLike) -> bool:
    """True if the (possibly gzip/zstd-compressed) file starts with a CORSIKA run header ``RUNH``
    (raw, or after a 4-byte Fortran record marker)."""
    try:
        with _open(path) as handle:
            head = handle.read(8)
    except (OSError, ValueError, ImportError):
        return False
    return head[:4] == b"RUNH" or head[4:8] == b"RUNH"


def detect_thinning(path: str | os.PathLike) -> bool:
    """Whether the file is in the thinned format (312-word blocks) or plain (273 words): the
    block after the run header must be an event header (or the run end)."""
    with _open(path) as handle:
        head = handle.read(4 + _BLOCK_BYTES_THIN + 4)
    first = 0 if head[:4] == b"RUNH" else 4
    if head[first : first + 4] != b"RUNH":
        raise ValueError("no CORSIKA run header (RUNH) at the start of the file")
    for thinning, size in ((False, _BLOCK_BYTES), (True, _BLOCK_BYTES_THIN)):
        if head[first + size : first + size + 4] in (b"EVTH", b"RUNE"):
            return thinning
    raise ValueError("no event header after the run header (neither 273- nor 312-word blocks): not a CORSIKA particle file")


@dataclass
class CorsikaScan:
    """What the record markers and headers of one CORSIKA file say (no event decoded).

    ``run``: version, run number, observation levels (m), energy cuts (GeV), interaction
    models, atmosphere parameters, flags; ``records``: particle records by kind
    (``muons`` = ids 5/6, ``muon_information`` = 75/76, ``history`` = negative descriptions,
    ``unknown`` = id 0, ``other_particles``) over all observation levels.
    """

    thinning: bool
    showers: int
    run: dict[str, Any]
    records: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {**self.run, "records": dict(self.records)}

    def note(self) -> str | None:
        """One line when the file holds no muon record at all (and what it holds instead)."""
        if self.records["muons"]:
            return None
        found = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in self.records.items() if n)
        hint = " (particle id 0 is no particle code: Cherenkov photon bunches?)" if self.records["unknown"] else ""
        return f"no muon records (ids 5/6) in {self.showers} shower(s); found {found or 'no particle records'}{hint}"


def _count_records(block: bytes, words: int, records: dict[str, int]) -> None:
    rows = np.frombuffer(block, dtype=np.float32).reshape(-1, words)
    description = rows[(rows != 0).any(axis=1), 0].astype(np.float64)
    positive = description > 0
    particle_id = np.floor(description[positive] / 1000.0)
    records["muons"] += int(np.isin(particle_id, MUON_IDS).sum())
    records["muon_information"] += int(np.isin(particle_id, (75, 76)).sum())
    records["unknown"] += int((particle_id == 0).sum())
    records["other_particles"] += int(((particle_id > 0) & ~np.isin(particle_id, (5, 6, 75, 76))).sum())
    records["history"] += int((description < 0).sum())


@contextmanager
def _truncation_named(showers: Callable[[], int]) -> Iterator[None]:
    """corsikaio's error for a file cut inside a record ("Read less bytes than expected, file seems to
    be truncated") as this module's one line, with the showers read (``showers()``) before the cut."""
    try:
        yield
    except OSError as error:
        if "truncated" not in str(error):
            raise
        raise OSError(f"file is truncated: it ends inside a record after {showers()} complete shower(s)") from error


def scan(path: str | os.PathLike) -> CorsikaScan:
    """Check the record structure of a CORSIKA particle file and read its headers.

    Raises ``OSError`` for a truncated file (no run end record) and ``ValueError`` for an
    event header without its end record or a run header that is not CORSIKA 7. The result
    is cached per (path, size, modification time): listing, inspecting and converting a file
    scan it once.
    """
    status = os.stat(path)
    return _scan_cached(os.fspath(path), status.st_size, status.st_mtime_ns)


@lru_cache(maxsize=256)
def _scan_cached(path: str, size: int, mtime_ns: int) -> CorsikaScan:
    from corsikaio.io import iter_blocks
    from corsikaio.subblocks import (
        parse_event_header, parse_event_header_thin, parse_run_header, parse_run_header_thin,
    )

    thinning = detect_thinning(path)
    words = 8 if thinning else 7
    showers, open_event, run_end = 0, False, False
    run_block = event_block = None
    records = {"muons": 0, "muon_information": 0, "other_particles": 0, "history": 0, "unknown": 0}
    with _open(path) as handle, _truncation_named(lambda: showers - int(open_event)):
        for block in iter_blocks(handle, thinning=thinning):
            marker = block[:4]
            if marker == b"RUNH":
                run_block = block
            elif marker == b"EVTH":
                if open_event:
                    raise ValueError(f"event header of shower {showers + 1} follows shower {showers}'s without its end record (EVTE)")
                open_event = True
                showers += 1
                event_block = event_block or block
            elif marker == b"EVTE":
                if not open_event:
                    raise ValueError(f"event end record (EVTE) without an event header after shower {showers}")
                open_event = False
            elif marker == b"RUNE":
                if open_event:
                    raise ValueError(f"run end record inside shower {showers} (its event end record EVTE is missing)")
                run_end = True
                break
            elif marker != b"LONG" and open_event:
                _count_records(block, words, records)
    if run_block is None:
        raise ValueError("no CORSIKA run header (RUNH) at the start of the file")
    if not run_end:
        raise OSError(f"file is truncated: no run end record (RUNE) after {showers} shower(s)")
    version = float(np.frombuffer(run_block, dtype=np.float32)[3])  # run header word 4
    if not (_VERSION_RANGE[0] <= version <= _VERSION_RANGE[1]):
        raise ValueError(f"run header version {version:.6g} is not a CORSIKA 7 version: not a CORSIKA particle file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # corsikaio warns about versions newer than it knows
        run_header = (parse_run_header_thin if thinning else parse_run_header)(run_block)[0]
        event_header = None
        if event_block is not None:
            event_header = (parse_event_header_thin if thinning else parse_event_header)(event_block)[0]
    return CorsikaScan(thinning, showers, _run_info(run_header, event_header, thinning, showers), records)


def primary_mass_number(codes: np.ndarray) -> np.ndarray:
    """Mass number A of CORSIKA primary codes (float32, NaN where the primary is no nucleon/nucleus)."""
    codes = np.asarray(codes, dtype=np.float64)
    whole = np.isfinite(codes) & (codes == np.round(codes))
    code = np.where(whole, codes, 0).astype(np.int64)
    mass_number = np.full(code.shape, np.nan, dtype=np.float32)
    mass_number[whole & ((code == 14) | (code == 13))] = 1.0
    a, z = code // 100, code % 100
    nucleus = whole & (code >= 200) & (a >= 2) & (a <= 59) & (z >= 1) & (z <= a)
    mass_number[nucleus] = a[nucleus]
    return mass_number


def shower_plane(x_m: np.ndarray, y_m: np.ndarray, zenith: float, azimuth: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(x, y)`` (m) on the observation level, core at the origin, projected along the
    shower axis onto the plane perpendicular to it, in the frame rotated so the axis is vertical.

    The axis direction of travel is ``(sin t cos p, sin t sin p, -cos t)`` (CORSIKA: azimuth of the
    momentum, z up). The basis vectors are the images of x and y under the minimal rotation that
    takes the axis to the vertical, as MuonGun's ``Muonitron::RotateToZenith``.
    """
    ct, cp, sp = np.cos(zenith), np.cos(azimuth), np.sin(azimuth)
    u1 = (cp * cp * ct + sp * sp, sp * cp * (ct - 1.0))  # x-, y-components (the z one meets z = 0)
    u2 = (sp * cp * (ct - 1.0), sp * sp * ct + cp * cp)
    x = np.asarray(x_m, dtype=np.float64)
    y = np.asarray(y_m, dtype=np.float64)
    return (u1[0] * x + u1[1] * y).astype(np.float32), (u2[0] * x + u2[1] * y).astype(np.float32)


def _float(value: Any) -> float:
    return float(np.asarray(value).reshape(-1)[0])


def _run_info(run_header: Any, event_header: Any | None, thinning: bool, showers: int) -> dict[str, Any]:
    n_levels = int(_float(run_header["n_observation_levels"]))
    info: dict[str, Any] = {
        "corsika_version": f"{_float(run_header['version']):.4g}",
        "run_number": int(_float(run_header["run_number"])),
        "showers": showers,
        "thinning": bool(thinning),
        "observation_levels_m": [float(h) / 100.0 for h in np.asarray(run_header["observation_height"])[:n_levels]],
        "energy_cuts_gev": {
            kind: _float(run_header[f"energy_cutoff_{kind}"]) for kind in ("hadrons", "muons", "electrons", "photons")
        },
        # Linsley parameters T(h) = a + b exp(-h / c) of the five layers (run header words 255-269)
        "atmosphere": {key: [float(v) for v in np.asarray(run_header[key])] for key in ("aatm", "batm", "catm")},
    }
    if event_header is not None:
        high = int(_float(event_header["high_energy_hadron_model"]))
        low = int(_float(event_header["low_energy_hadron_model"]))
        model = _HIGH_ENERGY_MODELS.get(high, f"code {high}")
        sibyll = int(_float(event_header["sybill_interaction_flag"]))
        qgsjet = int(_float(event_header["qgsjet_interaction_flag"]))
        if high == 2 and sibyll in _SIBYLL_VERSIONS:
            model = f"SIBYLL-{_SIBYLL_VERSIONS[sibyll]}"
        elif high == 3 and qgsjet in _QGSJET_VERSIONS:
            model = _QGSJET_VERSIONS[qgsjet]
        info["high_energy_model"] = model
        info["low_energy_model"] = _LOW_ENERGY_MODELS.get(low, f"code {low}")
        info["muon_additional_information"] = bool(_float(event_header["additional_muon_information_flag"]))
        info["curved_atmosphere"] = bool(_float(event_header["curved_flag"]))
    return info


def read_file(path: str | os.PathLike, thinning: bool | None = None) -> DecodedRows:
    """All showers of one CORSIKA particle file as depth-0 events (see module docstring).

    ``thinning``: the block format when already known (:func:`scan`); checked otherwise.
    """
    from corsikaio import CorsikaParticleFile

    path = str(path)
    if thinning is None:
        thinning = scan(path).thinning
    conditions: list[tuple[float, float, float, float]] = []
    raw_conditions: list[tuple[float, float, float, float]] = []
    ids: list[tuple[int, int]] = []
    structural: list[int] = []
    muon_parts: list[np.ndarray] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # corsikaio's version warnings: scan() checks the version
        with CorsikaParticleFile(path, thinning=thinning) as corsika:
            for event in corsika:
                header = event.header
                code = _float(header["particle_id"])
                energy0, zenith, azimuth = _float(header["total_energy"]), _float(header["zenith"]), _float(header["azimuth"])
                mass_number = float(primary_mass_number(np.array([code]))[0])
                conditions.append((energy0, zenith, mass_number, 0.0))
                raw_conditions.append((energy0, zenith, code, 0.0))
                ids.append((int(_float(header["run_number"])), int(_float(header["event_number"]))))
                reason = 0 if np.isfinite(mass_number) else REASON_CODE["primary_not_nucleus"]
                particles = event.particles
                description = particles["particle_description"].astype(np.float64)
                positive = description > 0
                particle_id = np.where(positive, np.floor(description / 1000.0), -1).astype(np.int64)
                muon = np.isin(particle_id, MUON_IDS)
                level = np.where(positive, np.round(description) % 10, 0).astype(np.int64)
                if muon.any() and level[muon].max() > 1:
                    muon &= level == level[muon].max()  # the lowest observation level
                p = np.stack([particles[k][muon] for k in ("px", "py", "pz")], axis=1).astype(np.float64)
                energy = np.sqrt((p * p).sum(axis=1) + MUON_MASS_GEV**2)
                x, y = shower_plane(particles["x"][muon] / 100.0, particles["y"][muon] / 100.0, zenith, azimuth)
                if thinning and reason == 0 and (particles["thinning_weight"][muon] != 1).any():
                    reason = REASON_CODE["muon_thinned"]
                structural.append(reason)
                muon_parts.append(np.stack([energy.astype(np.float32), x, y], axis=1))
    n_showers = len(conditions)
    counts = np.array([part.shape[0] for part in muon_parts], dtype=np.int64)
    flat_muons = np.concatenate(muon_parts) if muon_parts else np.zeros((0, 3), np.float32)
    batch = RaggedBatch(
        np.array(conditions, np.float32).reshape(-1, 4), counts, flat_muons, ids=np.array(ids, np.uint64).reshape(-1, 2)
    )
    return DecodedRows(
        path, batch, np.array(structural, np.int8), np.arange(n_showers, dtype=np.int64),
        np.array(raw_conditions, np.float32).reshape(-1, 4),
    )
