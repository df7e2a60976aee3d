"""A legacy file's depth column holds the vertical depth in metres below the surface of ITS site's
overburden, the sphere `mubundle simulate --site` uses (Earth for KM3NeT, the Earth in m w.e. for
rock), written and read back through that sphere; a file without a recorded site is IceCube's
(Muonitron's ice sphere) and converts bit for bit as before; an unknown site is refused in one line."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import make_synthetic_batch, same_events_up_to_depth_rounding

from mubundle import geometry
from mubundle.data import conventions, legacy
from mubundle.data.batch import RaggedBatch
from mubundle.data.sources import read_events
from mubundle.data.writers import legacy_parquet_table, write_batch
from mubundle.sim.config import SimConfig
from mubundle.sim.run import chunk_metadata, slant_depths_km
from mubundle.sim.site import SITES

FORMATS = ("legacy-parquet", "hdf5")
#: vertical depths (km of each site's depth unit) around each site's detector
DEPTHS_KM = {"icecube": (1.45, 2.45), "km3net-arca": (2.9, 3.45), "km3net-orca": (2.2, 2.45), "rock": (3.0, 3.8)}


def _depth_column_m(path, format: str) -> np.ndarray:
    """The depth column as stored (float32 vertical metres)."""
    if format == "hdf5":
        with h5py.File(path, "r") as handle:
            return handle["primaries"][:, legacy.H5_PRIMARY_DEPTH]
    primary = pq.read_table(path).column(legacy.PRIMARY_COLUMN).combine_chunks()
    return primary.values.to_numpy().reshape(-1, 4)[:, 3]


def _events_at_vertical_depths(site: str, showers: int = 60):
    """(events as `mubundle simulate --site SITE` makes them: one per shower and depth at the slant
    depth of each vertical depth through the site's overburden, zeniths up to 70 deg; the shard
    metadata; the vertical depth of each event in m)."""
    config = SimConfig(showers=showers, depths_km=DEPTHS_KM[site], site=site)
    rng = np.random.default_rng(11)
    zenith = np.concatenate([[0.0, np.radians(70.0)],
                             np.arccos(rng.uniform(np.cos(np.radians(70.0)), 1.0, showers - 2))])
    zenith = zenith.astype(np.float32).astype(np.float64)  # the zenith as the events store it
    slant = slant_depths_km(config, zenith)  # (S, D)
    template = make_synthetic_batch(slant.size, seed=12)
    conditions = template.conditions.copy()
    conditions[:, 1] = np.repeat(zenith, slant.shape[1])
    conditions[:, 3] = slant.reshape(-1)
    vertical_m = np.tile(np.sort(DEPTHS_KM[site]), showers) * 1000.0
    return RaggedBatch(conditions, template.counts, template.flat_muons), chunk_metadata(config, 0), vertical_m


def test_the_data_layers_overburden_radii_are_the_simulators():
    assert set(conventions.OVERBURDEN_RADIUS_M) == set(SITES)
    for name, site in SITES.items():
        assert conventions.overburden_radius_m(name) == site.depth_unit_radius_m
    assert conventions.overburden_radius_m(None) == SITES["icecube"].depth_unit_radius_m  # no site: IceCube


@pytest.mark.parametrize("name", sorted(SITES))
def test_site_vertical_km_is_the_inverse_of_slant_km(name):
    site = SITES[name]
    zenith = np.radians([0.0, 30.0, 60.0, 70.0, 80.0, 85.0])[:, None]
    vertical = np.array([0.0, 0.5, 1.5, 2.5, 3.45, 5.0])[None, :]
    slant = site.slant_km(vertical, np.cos(zenith))
    # km; 1e-9 km = 1 micrometre: the inverse subtracts two ~radius-sized terms (float64 eps x 17000 km)
    np.testing.assert_allclose(site.vertical_km(slant, zenith), np.broadcast_to(vertical, slant.shape),
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("site", sorted(SITES))
def test_legacy_file_holds_the_vertical_depths_of_its_sites_overburden_and_reads_back_the_slant_depths(
        tmp_path, site, format):
    batch, metadata, vertical_m = _events_at_vertical_depths(site)
    path = tmp_path / f"events.{format}"
    write_batch(batch, path, format, metadata)

    column_m = _depth_column_m(path, format).astype(np.float64)
    assert np.abs(column_m - vertical_m).max() < 1e-3  # m: the simulated vertical depths, within 1 mm

    result = read_events(path)
    assert not result.rejected and not result.failed_files
    assert same_events_up_to_depth_rounding(result.batch, batch)
    assert np.abs(result.batch.conditions[:, 3] - batch.conditions[:, 3]).max() < 1e-6  # km: the same slant depths


def test_icecube_and_siteless_depths_convert_through_muonitrons_ice_bit_for_bit():
    conditions = np.array([[1e6, 0.0, 1, 1.5], [1e6, np.radians(60), 4, 4.0], [2e6, np.radians(85), 56, 20.0]],
                          np.float32)
    # float32 vertical metres written before sites were told apart: 1500, 2000.9412, 1774.2545
    golden_m = np.array([0x44BB8000, 0x44FA1E1E, 0x44DDC825], np.uint32).view(np.float32)
    ice_m = geometry.vertical_from_slant_depth(conditions[:, 1], conditions[:, 3].astype(np.float64) * 1000.0,
                                               geometry.MUONITRON_SURFACE_RADIUS_M).astype(np.float32)
    raw = np.array([[1e6, 0.3, 0.938272, 2000.0], [1e6, np.radians(60), 3.7274, 2000.0],
                    [1e6, np.radians(85), 52.0898, 1450.0]], np.float32)
    # float32 slant km read before: 2.0934718, 3.9981194, 16.396738
    golden_km = np.array([0x4005FB71, 0x407FE130, 0x41832C85], np.uint32).view(np.float32)
    for site in (None, "icecube"):
        written = conventions.to_original_units(conditions, site)[:, 3]
        assert written.tobytes() == golden_m.tobytes() == ice_m.tobytes()
        read, codes = conventions.to_mubundle_units(raw, conventions.ORIGINAL, site)
        assert read[:, 3].tobytes() == golden_km.tobytes() and not codes.any()


@pytest.mark.parametrize("format", FORMATS)
def test_icecube_legacy_files_with_and_without_a_site_are_muonitrons_ice_files(tmp_path, format):
    batch = make_synthetic_batch(300, seed=13)
    slant_m = batch.conditions[:, 3].astype(np.float64) * 1000.0
    ice_m = geometry.vertical_from_slant_depth(batch.conditions[:, 1], slant_m,
                                               geometry.MUONITRON_SURFACE_RADIUS_M).astype(np.float32)
    read_back = []
    for name, metadata in (("plain", {}), ("icecube", {"site": "icecube"})):
        path = tmp_path / f"{name}.{format}"
        write_batch(batch, path, format, metadata)
        assert _depth_column_m(path, format).tobytes() == ice_m.tobytes()
        read_back.append(read_events(path).batch.conditions.tobytes())
    assert read_back[0] == read_back[1]


@pytest.mark.parametrize("format", FORMATS)
def test_an_unknown_site_is_refused_in_one_line_when_writing_and_when_reading(tmp_path, format):
    batch = make_synthetic_batch(20, seed=14)
    with pytest.raises(ValueError, match="unknown site 'moon'.*known sites: icecube"):
        write_batch(batch, tmp_path / f"refused.{format}", format, {"site": "moon"})
    assert not (tmp_path / f"refused.{format}").exists()

    path = tmp_path / f"moon.{format}"  # a legacy file in the original units that records an unknown site
    stated = json.dumps(conventions.original_metadata({"site": "moon"}))
    if format == "hdf5":
        write_batch(batch, path, format)
        with h5py.File(path, "a") as handle:
            handle.attrs[legacy.METADATA_KEY] = stated
    else:
        table = legacy_parquet_table(batch)
        pq.write_table(table.replace_schema_metadata({legacy.METADATA_KEY.encode(): stated.encode()}), path)
    result = read_events(path)
    assert len(result.batch) == 0 and len(result.failed_files) == 1
    error = result.failed_files[0]["error"]
    assert "unknown site 'moon'" in error and "\n" not in error


@pytest.mark.parametrize("format", FORMATS)
def test_generates_legacy_output_holds_the_vertical_depths_of_the_models_site(tmp_path, format):
    """`mubundle generate --format legacy-parquet|hdf5` writes through EventFileWriter with the model's
    site in its metadata: the depth column is that site's vertical depth, not the ice sphere's."""
    from mubundle.generate.output import EventFileWriter

    batch, metadata, vertical_m = _events_at_vertical_depths("km3net-arca")
    path = tmp_path / f"generated.{format}"
    with EventFileWriter(path, format=format, metadata={"site": "km3net-arca", "medium": "sea water"}) as writer:
        writer.write(batch)
    np.testing.assert_allclose(_depth_column_m(path, format), vertical_m, rtol=0, atol=1e-3)  # float32 metres: ulp 0.24 mm; the ice sphere is 3 mm off
