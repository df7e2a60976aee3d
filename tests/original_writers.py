"""Writers of the original pipeline (briedel/cr_muons ``utils/data_converters/``), followed line by line
without IceTray, so tests get files exactly as the original tools write them.

- :class:`DumpHdf5` = ``dump_muonitron_data.py`` ``convert_muonitron_hdf5`` (resizable datasets,
  one ``[major, minor, 0, 0, 0, 0]`` row with count 1 for a depth without muons)
- :class:`DumpParquet` = ``dump_muonitron_data.py`` ``convert_muonitron_parquet`` (uint64 ids,
  ``primary`` [E, zenith, mass, depth], muons [E, x, y])
- :func:`convert_h5_to_parquet` = ``convert_to_parquet.py`` (7-value primaries, 6-value muon rows)

Frames are :class:`Frame` objects standing in for the I3 frame: ``primary`` (``I3Particle``:
``major_id``, ``minor_id``, ``energy``, ``zenith``, ``mass`` = rest mass in GeV, ``time``) and
``tracks`` (Muonitron's ``Tracks``: {vertical depth in m: [Track(energy, radius, time)]}).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

#: I3Particle rest masses in GeV quoted in the issue/PHYSICS.md (what IceTray stores).
REST_MASS_GEV = {1: 0.938272, 4: 3.7274, 14: 13.0434, 27: 25.1331, 56: 52.0898}


@dataclass
class Track:
    energy: float
    radius: float
    time: float = 0.0


@dataclass
class Primary:
    major_id: int
    minor_id: int
    energy: float
    zenith: float
    mass: float
    time: float = 0.0


@dataclass
class Frame:
    primary: Primary
    tracks: dict[float, list[Track]] = field(default_factory=dict)


class DumpHdf5:
    """``convert_muonitron_hdf5`` (Configure / DAQ / Finish / _append_datasets)."""

    def __init__(self, outfile, buffer_size=1000000):
        self.outfile = outfile
        self.buffer_size = buffer_size
        self.file_handle = h5py.File(self.outfile, "w")
        self.dset_prims = self.file_handle.create_dataset("primaries", shape=(0, 6), maxshape=(None, 7), dtype="f4", chunks=(10000, 7))
        self.dset_muons = self.file_handle.create_dataset("muons", shape=(0, 5), maxshape=(None, 6), dtype="f4", chunks=(100000, 6))
        self.dset_counts = self.file_handle.create_dataset("counts", shape=(0,), maxshape=(None,), dtype="i4", chunks=(10000,))
        self.buf_prim = []
        self.buf_muons = []
        self.buf_counts = []

    def DAQ(self, frame: Frame):
        tracks = frame.tracks
        primary = frame.primary
        phis = [random.uniform(0, 2 * math.pi) for _ in range(50000)]
        for d, ts in tracks.items():
            self.buf_prim.append([primary.major_id, primary.minor_id, primary.energy, primary.zenith, primary.mass, primary.time, d])
            if len(ts) > 0:
                self.buf_muons.extend(
                    [[primary.major_id, primary.minor_id, t.energy, t.radius * math.sin(phis[j]), t.radius * math.cos(phis[j]), t.time]
                     for j, t in enumerate(ts)]
                )
                self.buf_counts.append(len(ts))
            else:
                self.buf_muons.extend([[primary.major_id, primary.minor_id, 0, 0, 0, 0]])
                self.buf_counts.append(1)
        if len(self.buf_prim) >= self.buffer_size:
            self._append_datasets()
            self.buf_prim = []
            self.buf_muons = []
            self.buf_counts = []

    def Finish(self):
        self._append_datasets()
        self.file_handle.close()

    def _append_datasets(self):
        curr_p = self.dset_prims.shape[0]
        curr_m = self.dset_muons.shape[0]
        curr_n = self.dset_counts.shape[0]
        new_p = curr_p + len(self.buf_prim)
        new_m = curr_m + len(self.buf_muons)
        new_n = curr_n + len(self.buf_counts)
        self.dset_prims.resize((new_p, 7))
        self.dset_muons.resize((new_m, 6))
        self.dset_counts.resize((new_n,))
        self.dset_prims[curr_p:] = self.buf_prim
        self.dset_muons[curr_m:] = self.buf_muons
        self.dset_counts[curr_n:] = self.buf_counts


class DumpParquet:
    """``convert_muonitron_parquet`` (Configure / DAQ / Finish / _flush)."""

    def __init__(self, outfile, buffer_size=10000):
        self.outfile = str(outfile)
        self.buffer_size = int(buffer_size)
        self.schema = pa.schema([
            ("primary_major_id", pa.uint64()),
            ("primary_minor_id", pa.uint64()),
            ("primary", pa.list_(pa.float32())),
            ("muons", pa.list_(pa.list_(pa.float32()))),
        ])
        self.writer = pq.ParquetWriter(self.outfile, self.schema)
        self.buf_primary_major_id = []
        self.buf_primary_minor_id = []
        self.buf_primary = []
        self.buf_muons = []

    def DAQ(self, frame: Frame):
        tracks = frame.tracks
        primary = frame.primary
        major_id = np.uint64(primary.major_id)
        minor_id = np.uint64(primary.minor_id)
        for depth, ts in tracks.items():
            self.buf_primary_major_id.append(major_id)
            self.buf_primary_minor_id.append(minor_id)
            self.buf_primary.append([float(primary.energy), float(primary.zenith), float(primary.mass), float(depth)])
            mu_rows = []
            for t in ts:
                phi = random.uniform(0, 2 * math.pi)
                mu_rows.append([float(t.energy), float(t.radius * math.sin(phi)), float(t.radius * math.cos(phi))])
            self.buf_muons.append(mu_rows)
        if len(self.buf_primary) >= self.buffer_size:
            self._flush()

    def Finish(self):
        self._flush()
        if getattr(self, "writer", None) is not None:
            self.writer.close()

    def _flush(self):
        if not self.buf_primary:
            return
        table = pa.Table.from_pydict(
            {
                "primary_major_id": self.buf_primary_major_id,
                "primary_minor_id": self.buf_primary_minor_id,
                "primary": self.buf_primary,
                "muons": self.buf_muons,
            },
            schema=self.schema,
        )
        self.writer.write_table(table)
        self.buf_primary_major_id = []
        self.buf_primary_minor_id = []
        self.buf_primary = []
        self.buf_muons = []


def convert_h5_to_parquet(h5_path, parquet_path, batch_size=10000):
    """``convert_to_parquet.py`` ``convert_h5_to_parquet``."""
    schema = pa.schema([("primary", pa.list_(pa.float32())), ("muons", pa.list_(pa.list_(pa.float32())))])
    with h5py.File(h5_path, "r") as f:
        primaries_ds = f["primaries"]
        muons_ds = f["muons"]
        counts_ds = f["counts"]
        total_events = counts_ds.shape[0]
        writer = None
        muon_offset = 0
        for i in range(0, total_events, batch_size):
            batch_counts = counts_ds[i : i + batch_size]
            batch_primaries = primaries_ds[i : i + batch_size]
            n_batch = len(batch_counts)
            total_muons_in_batch = np.sum(batch_counts)
            batch_muons = muons_ds[muon_offset : muon_offset + total_muons_in_batch]
            muon_offset += total_muons_in_batch
            primary_list = []
            muons_list = []
            local_muon_idx = 0
            for j in range(n_batch):
                count = batch_counts[j]
                p = batch_primaries[j]
                primary_list.append(p)
                if count == 0:
                    m = []
                else:
                    m = batch_muons[local_muon_idx : local_muon_idx + count]
                    local_muon_idx += count
                    m = m.tolist()
                muons_list.append(m)
            batch_table = pa.Table.from_pydict({"primary": primary_list, "muons": muons_list}, schema=schema)
            if writer is None:
                writer = pq.ParquetWriter(parquet_path, schema)
            writer.write_table(batch_table)
        if writer:
            writer.close()


def make_frames(n_frames: int, depths_m=(1500.0, 2000.0, 2500.0), seed: int = 0) -> list[Frame]:
    """Random frames: primaries of the five usual nuclei (rest masses in GeV), zenith < 60 deg,
    muons thinning out with depth (some depths without muons)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_frames):
        a = int(rng.choice(list(REST_MASS_GEV)))
        primary = Primary(
            major_id=int(rng.integers(1, 2**40)), minor_id=int(i), energy=float(10 ** rng.uniform(4, 7)),
            zenith=float(rng.uniform(0, 1.0)), mass=REST_MASS_GEV[a], time=float(rng.uniform(0, 1e3)),
        )
        n_surface = int(rng.integers(0, 30))
        tracks = {}
        for k, depth in enumerate(depths_m):
            n = max(0, n_surface - 8 * k)
            tracks[depth] = [Track(float(10 ** rng.uniform(1, 4)), float(rng.uniform(0, 50)), float(rng.uniform(0, 100))) for _ in range(n)]
        frames.append(Frame(primary, tracks))
    return frames


def write_hdf5(path, frames, buffer_size=1000000):
    writer = DumpHdf5(str(path), buffer_size)
    for frame in frames:
        writer.DAQ(frame)
    writer.Finish()


def write_parquet(path, frames, buffer_size=10000):
    writer = DumpParquet(path, buffer_size)
    for frame in frames:
        writer.DAQ(frame)
    writer.Finish()
