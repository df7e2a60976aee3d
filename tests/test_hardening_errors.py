"""Issue 20 hardening: one-line errors with documented exit codes (root cause 1), API argument
checks (5), numeric flags checked at parse time (6), no silent overwrites or format
mismatches (7). Each test name says which root cause it pins down."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mubundle import errors
from mubundle.cli import build_parser, main
from mubundle.data.native import write_shard
from mubundle.data.output_paths import is_mubundle_file
from mubundle.data.sources import read_events
from mubundle.data.writers import write_batch
from mubundle.generate.api import default_model_path, load_model
from mubundle.model.bundle import MuonBundleModel
from mubundle.train.checkpoint import (
    CHECKPOINT_DIR,
    CORRUPT_SUFFIX,
    list_checkpoints,
    load_latest_intact_checkpoint,
    save_checkpoint,
)
from mubundle.configio import to_yaml
from test_train_loop import synthetic_events, tiny_config, write_dataset


def error_lines(capsys) -> list[str]:
    """stderr lines of the command just run (the one-line error is the last)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def assert_one_line_error(capsys, *fragments: str) -> str:
    lines = error_lines(capsys)
    assert lines, "no error message"
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
    message = lines[-1]
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("events") / "events.parquet"
    write_shard(synthetic_events(40, seed=5), path, {})
    return path


# ============================================================================ root cause 1
def test_rc1_readonly_output_is_one_line_error(tmp_path, events_file, capsys, monkeypatch):
    out = tmp_path / "readonly" / "dataset"
    real_mkdir = Path.mkdir

    def read_only_mkdir(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "readonly")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    assert main(["convert", str(events_file), "--out", str(out)]) == errors.EXIT_FILESYSTEM
    assert_one_line_error(capsys, "mubundle convert: error:", "readonly", "read-only file system")


def test_rc1_full_disk_is_one_line_error(tmp_path, capsys, monkeypatch):
    import mubundle.generate.output as output

    def disk_full(tmp, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    monkeypatch.setattr(output, "commit", disk_full)
    out = tmp_path / "bundles.parquet"
    code = main(["generate", "--no-progress", "--flux", "H3a", "--events", "3", "--out", str(out)])
    assert code == errors.EXIT_FILESYSTEM
    assert_one_line_error(capsys, "no space left on device", "bundles.parquet")
    assert not out.exists() and not list(tmp_path.iterdir())  # the temporary file was removed too


def test_rc1_existing_file_where_an_output_directory_belongs(tmp_path, events_file, capsys):
    occupied = tmp_path / "notes.txt"
    occupied.write_text("keep me")
    assert main(["train", "--data", str(events_file), "--run", str(occupied)]) == errors.EXIT_FILESYSTEM
    assert_one_line_error(capsys, "notes.txt", "not a directory")
    assert main(["evaluate", "--reference", str(events_file), "--out", str(occupied)]) == errors.EXIT_OUTPUT
    assert_one_line_error(capsys, "notes.txt", "is a file")
    assert occupied.read_text() == "keep me"


def test_rc1_file_name_too_long_for_an_input_and_an_output(tmp_path, events_file, capsys):
    long_name = "a" * 300
    assert main(["inspect", str(tmp_path / f"{long_name}.parquet")]) == errors.EXIT_FILESYSTEM
    assert_one_line_error(capsys, "file name too long", "255 bytes")
    assert main(["convert", str(events_file), "--out", str(tmp_path / long_name)]) == errors.EXIT_FILESYSTEM
    assert_one_line_error(capsys, "file name too long")


def test_rc1_hdf5_group_where_a_dataset_belongs_is_a_failed_file_not_a_crash(tmp_path, capsys):
    import h5py

    path = tmp_path / "grouped.h5"
    write_batch(synthetic_events(10, seed=1), path, format="hdf5")
    with h5py.File(path, "r+") as handle:
        del handle["counts"]
        handle.create_group("counts").create_dataset("x", data=[1, 2])
    loaded = read_events([path])
    assert len(loaded.batch) == 0
    assert [f["path"] for f in loaded.failed_files] == [str(path)]
    assert "'counts' is an HDF5 group, expected a dataset" in loaded.failed_files[0]["error"]
    assert main(["inspect", str(path)]) == 0  # inspect reports it by name and goes on
    assert "FAILED" in capsys.readouterr().out


@pytest.fixture(scope="module")
def shipped_copy(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("model") / "fast"
    shutil.copytree(default_model_path(), copy)
    return copy


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda meta: [1, 2], "must hold a JSON object"),
        (lambda meta: {k: v for k, v in meta.items() if k != "config"}, "lacks 'config'"),
        (lambda meta: dict(meta, config=[1]), "config must be a mapping"),
        (lambda meta: dict(meta, config=dict(meta["config"], generator_hidden="wide")), "config.generator_hidden must be int"),
        (lambda meta: dict(meta, config=dict(meta["config"], generator_hidden=0)), "generator_hidden must be an integer >= 1"),
        (lambda meta: dict(meta, transform=5), "invalid 'transform'"),
    ],
    ids=["not-a-mapping", "no-config", "config-list", "wrong-type", "zero-width", "bad-transform"],
)
def test_rc1_broken_model_json_is_one_line_error(tmp_path, shipped_copy, capsys, edit, fragment):
    model_dir = tmp_path / "model"
    shutil.copytree(shipped_copy, model_dir)
    metadata = json.loads((model_dir / "model.json").read_text())
    (model_dir / "model.json").write_text(json.dumps(edit(metadata)))
    with pytest.raises(ValueError, match="model.json"):
        MuonBundleModel.load(model_dir)
    code = main(["generate", "--no-progress", "--model", str(model_dir), "--flux", "H3a", "--events", "2",
                 "--out", str(tmp_path / "x.parquet")])
    assert code == errors.EXIT_USAGE
    assert_one_line_error(capsys, "model.json", fragment)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("max_steps: [1\n", "invalid YAML (line 2"),
        ("max_steps: many\n", "max_steps must be int, got str 'many'"),
        ("- 1\n- 2\n", "must hold a YAML mapping of TrainConfig fields"),
        ("model: {generator_hidden: 2.5}\n", "model.generator_hidden must be int, got float 2.5"),
        ("betas: [0.5]\n", "betas must have 2 values"),
        ("compile: 3\n", "compile must be bool"),
        ("lr: .nan\n", "lr must be a finite number"),
        ("checkpoint_every: 0\n", "checkpoint_every must be an integer >= 1, got 0"),
        ("betas: [0.5, 1.5]\n", "betas[1] must be a finite number in [0, 1)"),
    ],
    ids=["invalid-yaml", "str-for-int", "not-a-mapping", "nested-float-for-int", "tuple-length", "int-for-bool", "nan",
         "zero-interval", "beta-range"],
)
def test_rc1_invalid_config_yaml_names_the_file_and_field(tmp_path, events_file, capsys, text, fragment):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(text)
    assert main(["train", "--data", str(events_file), "--run", str(tmp_path / "run"), "--config", str(config_file)]) == 2
    assert_one_line_error(capsys, "config.yaml", fragment)
    assert not (tmp_path / "run").exists()


def test_rc1_wrongly_typed_run_config_yaml_names_the_file(tmp_path, events_file, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("batch_size: lots\n")
    assert main(["train", "--data", str(events_file), "--run", str(run)]) == errors.EXIT_USAGE
    assert_one_line_error(capsys, str(run / "config.yaml"), "batch_size must be int")


def test_rc1_config_yaml_numbers_written_as_yaml_strings_are_read(tmp_path):
    from mubundle.configio import from_yaml
    from mubundle.train.config import TrainConfig

    config = from_yaml(TrainConfig, "lr: 1e-4\nmax_steps: 1e3\n")  # PyYAML reads both as strings
    assert config.lr == 1e-4 and config.max_steps == 1000 and isinstance(config.max_steps, int)


@pytest.mark.parametrize(
    "damage",
    [b"", b"PK\x03\x04 truncated", os.urandom(4096), "wrong-keys"],
    ids=["empty", "truncated", "random", "wrong-keys"],
)
def test_rc1_corrupt_latest_checkpoint_falls_back_to_the_previous_intact_one(tmp_path, caplog, damage):
    for step in (10, 20):
        save_checkpoint(tmp_path, step, {"step": step, "w": torch.full((2,), float(step))}, keep=3, is_best=False)
    newest = tmp_path / CHECKPOINT_DIR / "step-000000020.pt"
    if damage == "wrong-keys":
        save_checkpoint(tmp_path, 20, {"weights": torch.zeros(2)}, keep=3, is_best=False)
    else:
        newest.write_bytes(damage)
    with caplog.at_level(logging.WARNING, logger="mubundle.train"):
        path, payload = load_latest_intact_checkpoint(tmp_path, ("step", "w"))
    assert payload["step"] == 10 and path.name == "step-000000010.pt"
    assert "step-000000020.pt" in caplog.text and "previous" in caplog.text
    assert [step for step, _ in list_checkpoints(tmp_path)] == [10]  # set aside, not deleted
    assert (newest.parent / (newest.name + CORRUPT_SUFFIX)).exists()


def test_rc1_no_intact_checkpoint_is_one_line_error(tmp_path, events_file, capsys):
    run = tmp_path / "run"
    (run / CHECKPOINT_DIR).mkdir(parents=True)
    to_yaml(tiny_config(max_steps=2), run / "config.yaml")
    (run / CHECKPOINT_DIR / "step-000000002.pt").write_bytes(b"garbage")
    assert main(["train", "--data", str(events_file), "--run", str(run)]) == errors.EXIT_USAGE
    assert_one_line_error(capsys, "no intact checkpoint", "step-000000002.pt")


def test_rc1_training_resumes_from_the_previous_checkpoint_when_the_latest_is_truncated(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    run = tmp_path / "run"
    config_file = tmp_path / "tiny.yaml"
    to_yaml(tiny_config(max_steps=2, checkpoint_every=1, keep_checkpoints=2), config_file)
    assert main(["train", "--data", str(data), "--run", str(run), "--config", str(config_file)]) == 0
    assert [step for step, _ in list_checkpoints(run)] == [1, 2]
    latest = run / CHECKPOINT_DIR / "step-000000002.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    assert main(["train", "--data", str(data), "--run", str(run), "--max-steps", "3"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from_step"] == 1 and summary["steps"] == 3
    assert (run / CHECKPOINT_DIR / ("step-000000002.pt" + CORRUPT_SUFFIX)).exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without a usable CUDA device")
def test_rc1_cuda_on_cpu_only_torch_is_exit_code_6(tmp_path, events_file, capsys):
    code = main(["generate", "--no-progress", "--flux", "H3a", "--events", "2", "--device", "cuda",
                 "--out", str(tmp_path / "x.parquet")])
    assert code == errors.EXIT_DEVICE
    assert_one_line_error(capsys, "device 'cuda' requested", "available: cpu")
    code = main(["train", "--data", str(events_file), "--run", str(tmp_path / "run"), "--device", "cuda"])
    assert code == errors.EXIT_DEVICE
    assert_one_line_error(capsys, "cuda")
    with pytest.raises(errors.DeviceUnavailableError):
        load_model(device="cuda:0")


def test_rc1_debug_flag_and_environment_show_the_traceback(tmp_path, capsys, monkeypatch):
    argv = ["inspect", str(tmp_path / ("b" * 300))]
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    assert main(argv) == errors.EXIT_FILESYSTEM
    assert "Traceback" not in capsys.readouterr().err
    assert main(["--debug", *argv]) == errors.EXIT_FILESYSTEM
    assert "Traceback" in capsys.readouterr().err
    assert main([*argv, "--debug"]) == errors.EXIT_FILESYSTEM  # after the subcommand too
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    assert main(argv) == errors.EXIT_FILESYSTEM
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("mubundle inspect: error:")


def test_rc1_a_bug_is_one_line_with_exit_70_and_ctrl_c_is_130(tmp_path, capsys, monkeypatch):
    import mubundle.data.inspect as inspect_module

    def bug(paths):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(inspect_module, "inspect_paths", bug)
    assert main(["inspect", str(tmp_path)]) == errors.EXIT_INTERNAL
    assert_one_line_error(capsys, "internal error ZeroDivisionError", "--debug")

    def interrupted(paths):
        raise KeyboardInterrupt

    monkeypatch.setattr(inspect_module, "inspect_paths", interrupted)
    assert main(["inspect", str(tmp_path)]) == errors.EXIT_INTERRUPTED

    class Terminated(KeyboardInterrupt):  # what a SIGTERM handler raises: the signal number rides along
        signum = 15

    def terminated(paths):
        raise Terminated

    monkeypatch.setattr(inspect_module, "inspect_paths", terminated)
    assert main(["inspect", str(tmp_path)]) == errors.EXIT_TERMINATED
    assert capsys.readouterr().err.strip().splitlines()[-1] == "mubundle: interrupted"


def test_rc1_exit_codes_are_the_documented_ones():
    codes = {name: getattr(errors, name) for name in dir(errors) if name.startswith("EXIT_")}
    assert codes == {"EXIT_OK": 0, "EXIT_NOTHING": 1, "EXIT_USAGE": 2, "EXIT_DIVERGED": 3, "EXIT_OUTPUT": 4,
                     "EXIT_FILESYSTEM": 5, "EXIT_DEVICE": 6, "EXIT_DISTRIBUTED": 7, "EXIT_INTERNAL": 70, "EXIT_INTERRUPTED": 130,
                     "EXIT_BROKEN_PIPE": 141, "EXIT_TERMINATED": 143}
    docs = (Path(__file__).resolve().parents[1] / "docs" / "data_format.md").read_text()
    section = docs[docs.index("## Errors and exit codes"):]
    for code in codes.values():
        assert f"| {code} |" in section, f"exit code {code} is not documented"
    from mubundle.train.supervisor import NOT_RETRIED_EXIT_CODES

    assert set(NOT_RETRIED_EXIT_CODES) == {2, 3, 4, 5, 6, 130, 143}


def test_rc1_an_exception_carrying_its_own_exit_code_ends_the_command_with_it_and_its_line():
    """errors.py names no exception of another module: a CommandError subclass brings its exit code,
    which wins over the built-in class it also derives from (this ConnectionError exits 7, not 5)."""
    from mubundle.executors import DaskConnectionError

    class ClusterGone(errors.CommandError, ConnectionError):
        exit_code = errors.EXIT_DISTRIBUTED

    for error_class in (ClusterGone, DaskConnectionError):
        error = error_class("cannot connect to the Dask scheduler at tcp://x:1: Connection refused\n(is it running?)")
        assert isinstance(error, ConnectionError) and error_class.exit_code == errors.EXIT_DISTRIBUTED
        assert errors.exit_code_and_message(error) == (
            errors.EXIT_DISTRIBUTED, "cannot connect to the Dask scheduler at tcp://x:1: Connection refused; (is it running?)")


def test_rc1_stdout_closed_by_its_reader_stops_quietly_with_exit_141(tmp_path, events_file):
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader quit before a byte was written, like `| head -0`
    source = Path(__file__).resolve().parents[1] / "src"
    env = dict(os.environ, PYTHONPATH=str(source))
    env.pop(errors.DEBUG_ENV, None)
    try:
        done = subprocess.run([sys.executable, "-m", "mubundle", "inspect", str(events_file)], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (errors.EXIT_BROKEN_PIPE, "")


def test_rc1_a_broken_pipe_while_a_command_prints_stops_quietly(tmp_path, capsys, monkeypatch):
    import mubundle.cli as cli
    import mubundle.data.inspect as inspect_module

    def reader_quit(paths):
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    redirected = []
    monkeypatch.setattr(inspect_module, "inspect_paths", reader_quit)
    monkeypatch.setattr(cli, "_stdout_reader_gone", lambda: True)
    monkeypatch.setattr(cli, "_redirect_stdout_to_devnull", lambda: redirected.append(True))
    assert main(["inspect", str(tmp_path)]) == errors.EXIT_BROKEN_PIPE
    assert capsys.readouterr().err == "" and redirected == [True]


def test_rc1_a_broken_pipe_that_is_not_stdout_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import mubundle.data.inspect as inspect_module

    def worker_gone(paths):  # stdout (captured here) is fine: another process's pipe broke
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    monkeypatch.setattr(inspect_module, "inspect_paths", worker_gone)
    assert main(["inspect", str(tmp_path)]) == errors.EXIT_FILESYSTEM
    assert_one_line_error(capsys, "mubundle inspect: error:", "Broken pipe")


_WARNING_COMMAND = """
import sys, warnings
import mubundle.data.inspect as inspect_module
from mubundle.cli import main
from mubundle.model.domain import ExtrapolationWarning

real_inspect_paths = inspect_module.inspect_paths

def warning_inspect_paths(paths):
    warnings.warn("extrapolating 2 of 4 events outside the domain of model 'm'", ExtrapolationWarning)
    warnings.warn("overflow encountered in exp\\n(second line)", RuntimeWarning)
    return real_inspect_paths(paths)

inspect_module.inspect_paths = warning_inspect_paths
python_format = warnings.formatwarning
code = main(["inspect", sys.argv[1]])
assert warnings.formatwarning is python_format, "main must restore Python's warning format"
warnings.warn("after main", UserWarning)
sys.exit(code)
"""


def test_rc1_warnings_print_as_one_line_naming_the_command_without_source_lines(events_file):
    import subprocess
    import sys

    source = Path(__file__).resolve().parents[1] / "src"
    env = dict(os.environ, PYTHONPATH=str(source))
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run([sys.executable, "-c", _WARNING_COMMAND, str(events_file)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[:2] == [
        "mubundle inspect: warning: extrapolating 2 of 4 events outside the domain of model 'm'",
        "mubundle inspect: warning: RuntimeWarning: overflow encountered in exp; (second line)",
    ]
    # programs that import mubundle keep Python's format (file:line: Category: message) after main returns
    assert "UserWarning: after main" in lines[2] and "mubundle" not in lines[2]


def test_rc1_warnings_during_a_command_still_reach_whoever_records_them(events_file, monkeypatch):
    import warnings

    import mubundle.data.inspect as inspect_module
    from mubundle.model.domain import ExtrapolationWarning

    real_inspect_paths = inspect_module.inspect_paths

    def warning_inspect_paths(paths):
        warnings.warn("extrapolating 2 of 4 events outside the domain of model 'm'", ExtrapolationWarning)
        return real_inspect_paths(paths)

    monkeypatch.setattr(inspect_module, "inspect_paths", warning_inspect_paths)
    with pytest.warns(ExtrapolationWarning, match="2 of 4 events"):
        assert main(["inspect", str(events_file)]) == 0


# ============================================================================ root cause 5
@pytest.fixture(scope="module")
def model() -> MuonBundleModel:
    return load_model()


VALID = dict(energy=1e5, zenith=0.3, mass=4.0, depth=2.0)


def test_rc5_sample_refuses_shapes_that_would_broadcast_to_other_event_counts(model):
    with pytest.raises(ValueError, match=r"energy must be a scalar or a 1-D array, got shape \(2, 1\)"):
        model.sample(**dict(VALID, energy=np.full((2, 1), 1e5), zenith=np.full(3, 0.3)), seed=1)
    with pytest.raises(ValueError, match=r"one common length, got energy \(2,\), zenith \(3,\)"):
        model.sample(**dict(VALID, energy=np.full(2, 1e5), zenith=np.full(3, 0.3)), seed=1)
    assert len(model.sample(**dict(VALID, energy=np.full(3, 1e5)), seed=1)) == 3  # scalars broadcast
    assert len(model.sample(**VALID, seed=1)) == 1
    assert len(model.sample(**dict(VALID, energy=np.zeros(0)), seed=1)) == 0


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("energy", float("nan"), "energy must be finite and > 0 GeV"),
        ("energy", 0.0, "energy must be finite and > 0 GeV"),
        ("energy", [1e5, -1.0], "energy[1] must be finite and > 0 GeV"),
        ("energy", float("inf"), "energy must be finite"),
        ("zenith", 2.0, "zenith must be finite and in [0, 1.570796]"),
        ("zenith", -0.1, "zenith must be finite and in [0"),
        ("depth", -1.0, "depth must be finite and >= 0 km"),
        ("mass", 0.5, "mass must be finite and >= 1"),
    ],
)
def test_rc5_sample_refuses_unphysical_values_naming_the_argument(model, name, value, fragment):
    with pytest.raises(ValueError) as raised:
        model.sample(**dict(VALID, **{name: value}), seed=1)
    assert fragment in str(raised.value)


@pytest.mark.parametrize("value", ["1e5", [1e5, None], True])
def test_rc5_sample_refuses_non_numeric_arguments(model, value):
    with pytest.raises(TypeError, match="energy must be a real number"):
        model.sample(**dict(VALID, energy=value), seed=1)


def test_rc5_sample_refuses_masked_values_and_a_non_boolean_allow_extrapolation(model):
    with pytest.raises(ValueError, match=r"energy\[1\] is masked"):
        model.sample(**dict(VALID, energy=np.ma.array([1e5, 1e6], mask=[0, 1])), seed=1)
    unmasked = model.sample(**dict(VALID, energy=np.ma.array([1e5, 1e6], mask=[0, 0])), seed=1)
    assert np.array_equal(unmasked.counts, model.sample(**dict(VALID, energy=[1e5, 1e6]), seed=1).counts)
    with pytest.raises(TypeError, match="allow_extrapolation must be True or False, got str 'False'"):
        model.sample(**VALID, seed=1, allow_extrapolation="False")


def test_rc5_sample_seed_must_be_an_integer_not_truncated(model):
    with pytest.raises(TypeError, match="seed must be an integer"):
        model.sample(**VALID, seed=1.7)
    with pytest.raises(TypeError, match="seed must be an integer"):
        model.sample(**VALID, seed=True)
    with pytest.raises(ValueError, match="seed must be an integer in"):
        model.sample(**VALID, seed=-1)
    same = [model.sample(**dict(VALID, energy=np.full(20, 1e6)), seed=s) for s in (3, np.int64(3), 3.0)]
    assert all(np.array_equal(same[0].flat_muons, other.flat_muons) for other in same[1:])


def test_rc5_sample_accepts_the_zenith_bound_in_float32(model):
    # physically valid (the horizon), though outside the shipped model's training domain
    assert len(model.sample(**dict(VALID, zenith=np.float32(math.pi / 2)), seed=1, allow_extrapolation=True)) == 1


def test_rc5_public_api_functions_check_their_arguments(tmp_path, events_file):
    from mubundle.evaluate.report import evaluate_model
    from mubundle.generate.run import FluxSettings, generate_from_flux
    from mubundle.sim.config import SimConfig
    from mubundle.sim.run import simulate_dataset, simulate_primaries

    with pytest.raises(TypeError, match="path must be a model directory"):
        load_model(3)
    with pytest.raises(ValueError, match="area_m2 must be a finite number > 0"):
        generate_from_flux(None, FluxSettings(events=2, area_m2=math.inf), tmp_path / "x.parquet")
    with pytest.raises(ValueError, match=r"energy_range\[1\] must be a finite number in \(0, 1e\+10\]"):
        generate_from_flux(None, FluxSettings(events=2, energy_range=(1e4, 1e300)), tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="events must be an integer >= 1"):
        generate_from_flux(None, FluxSettings(events=0), tmp_path / "x.parquet")
    with pytest.raises(TypeError, match="seed must be an integer"):
        evaluate_model(None, [events_file], tmp_path / "eval", seed=0.5)
    with pytest.raises(ValueError, match="seeds must be an integer >= 1"):
        evaluate_model(None, [events_file], tmp_path / "eval", seeds=0)
    with pytest.raises(ValueError, match=r"energy must be finite and in \(0, 1e\+10\] GeV"):
        simulate_primaries([1e30], [0.1], [1.0], [1.5], seed=1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        simulate_primaries([1e5], [0.1], [1.0], [1.5], seed=1.7)
    with pytest.raises(ValueError, match="energy range must satisfy"):
        SimConfig(energy_range=(1e4, math.inf))
    with pytest.raises(ValueError, match="--min-energy"):
        SimConfig(min_energy=math.nan)
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        simulate_dataset(SimConfig(showers=1), tmp_path / "sim", workers=0)
    assert not (tmp_path / "sim").exists() and not (tmp_path / "eval").exists()


# ============================================================================ root cause 6
@pytest.mark.parametrize(
    "argv, flag",
    [
        (["generate", "--flux", "H3a", "--events", "0", "--out", "x.parquet"], "--events"),
        (["generate", "--flux", "H3a", "--events", "-5", "--out", "x.parquet"], "--events"),
        (["generate", "--flux", "H3a", "--events", "5", "--area", "inf", "--out", "x.parquet"], "--area"),
        (["generate", "--flux", "H3a", "--events", "5", "--generation-gamma", "nan", "--out", "x"], "--generation-gamma"),
        (["generate", "--flux", "H3a", "--events", "5", "--energy-range", "1e4", "1e300", "--out", "x"], "--energy-range"),
        (["generate", "--flux", "H3a", "--events", "5", "--zenith-range", "0", "2", "--out", "x"], "--zenith-range"),
        (["generate", "--flux", "H3a", "--events", "5", "--depths", "nan", "--out", "x"], "--depths"),
        (["generate", "--flux", "H3a", "--events", "5", "--seed", "1.7", "--out", "x"], "--seed"),
        (["generate", "--flux", "H3a", "--events", "5", "--events-per-chunk", "0", "--out", "x"], "--events-per-chunk"),
        (["evaluate", "--reference", "r", "--out", "o", "--max-events", "-1"], "--max-events"),
        (["evaluate", "--reference", "r", "--out", "o", "--seeds", "0"], "--seeds"),
        (["train", "--data", "d", "--run", "r", "--max-steps", "-1"], "--max-steps"),
        (["train", "--data", "d", "--run", "r", "--batch-size", "0"], "--batch-size"),
        (["train", "--data", "d", "--run", "r", "--lr-decay-final", "nan"], "--lr-decay-final"),
        (["train", "--data", "d", "--run", "r", "--max-restarts", "-1"], "--max-restarts"),
        (["simulate", "--out", "o", "--showers", "1", "--energy", "inf"], "--energy"),
        (["simulate", "--out", "o", "--showers", "1", "--energy", "1e30"], "--energy"),
        (["simulate", "--out", "o", "--showers", "1", "--depths", "nan"], "--depths"),
        (["simulate", "--out", "o", "--showers", "1", "--depths", "1,1e6"], "--depths"),
        (["simulate", "--out", "o", "--showers", "1", "--depths", "1.5,,2"], "--depths"),
        (["simulate", "--out", "o", "--showers", "1", "--depths", "1.5,2,1.5"], "--depths"),
        (["generate", "--flux", "H3a", "--events", "5", "--depths", "1.5,", "--out", "x"], "--depths"),
        (["convert", "a", "--out", "b", "--depths", "1.5,,2"], "--depths"),
        (["convert", "a", "--out", "b", "--depths", "-1"], "--depths"),
        (["simulate", "--out", "o", "--showers", "1", "--spectral-index", "nan"], "--spectral-index"),
        (["simulate", "--out", "o", "--showers", "1", "--min-energy", "nan"], "--min-energy"),
        (["simulate", "--out", "o", "--showers", "0"], "--showers"),
        (["simulate", "--out", "o", "--showers", "1", "--zenith", "89.5"], "--zenith"),
        (["simulate", "--out", "o", "--showers", "1", "--workers", "0"], "--workers"),
        (["convert", "a", "--out", "b", "--events-per-shard", "1.5"], "--events-per-shard"),
        (["refit-multiplicity", "--data", "d", "--validation", "v", "--out", "o", "--lr", "-1"], "--lr"),
        (["refit-multiplicity", "--data", "d", "--validation", "v", "--out", "o", "--restarts", "0"], "--restarts"),
        (["distill", "--out", "o", "--steps", "-1"], "--steps"),
        (["demo", "--seed", "nan"], "--seed"),
    ],
)
def test_rc6_numeric_flags_refuse_nan_inf_and_out_of_range_at_parse_time(tmp_path, monkeypatch, capsys, argv, flag):
    monkeypatch.chdir(tmp_path)  # the relative outputs of a flag that is not refused land here, not in the checkout
    assert main(argv) == errors.EXIT_USAGE
    message = assert_one_line_error(capsys, f"error: argument {flag}", "must be")
    assert "got" in message


def test_rc6_every_numeric_flag_of_every_subcommand_has_a_checked_type():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    unchecked = [
        f"{command} {'/'.join(action.option_strings)}"
        for command, subparser in subparsers.choices.items()
        for action in subparser._actions
        if action.type in (int, float)
    ]
    assert unchecked == [], f"numeric flags without a finiteness/range check: {unchecked}"


# ============================================================================ root cause 7
def test_rc7_the_out_suffix_chooses_the_format_and_a_contradiction_is_refused(tmp_path, capsys):
    generate = ["generate", "--no-progress", "--flux", "H3a", "--events", "2"]
    assert main([*generate, "--out", str(tmp_path / "x.h5")]) == 0
    assert (tmp_path / "x.h5").read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"  # HDF5, not Parquet bytes
    capsys.readouterr()
    assert main([*generate, "--out", str(tmp_path / "y.h5"), "--format", "parquet"]) == errors.EXIT_OUTPUT
    assert_one_line_error(capsys, "y.h5", "suffix .h5 is for hdf5", "--format parquet")
    assert not (tmp_path / "y.h5").exists()
    assert main([*generate, "--out", str(tmp_path / "z.parquet")]) == 0
    assert (tmp_path / "z.parquet").read_bytes()[:4] == b"PAR1"


def test_rc7_an_existing_non_mubundle_file_is_replaced_only_with_overwrite(tmp_path, capsys):
    generate = ["generate", "--no-progress", "--flux", "H3a", "--events", "2"]
    notes = tmp_path / "notes.parquet"
    notes.write_text("my notes")
    assert main([*generate, "--out", str(notes)]) == errors.EXIT_OUTPUT
    assert_one_line_error(capsys, "notes.parquet exists and is not a mubundle output", "--overwrite")
    assert notes.read_text() == "my notes"
    assert main([*generate, "--out", str(notes), "--overwrite"]) == 0
    assert is_mubundle_file(notes)
    assert main([*generate, "--out", str(notes), "--seed", "4"]) == 0  # an earlier mubundle output: replaced


def test_rc7_an_input_is_never_silently_replaced(tmp_path, events_file, capsys, monkeypatch):
    primaries = tmp_path / "primaries.parquet"
    shutil.copy(events_file, primaries)
    link = tmp_path / "link.parquet"
    link.symlink_to(primaries)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    before = primaries.read_bytes()
    for out in (primaries, link, "primaries.parquet", "sub/../primaries.parquet"):
        assert main(["generate", "--no-progress", "--primaries", str(primaries), "--out", str(out)]) == errors.EXIT_OUTPUT
        assert_one_line_error(capsys, "is also an input")
    assert primaries.read_bytes() == before
    assert main(["generate", "--no-progress", "--primaries", str(tmp_path / "*.parquet"), "--out", str(primaries)]) == 4


def test_rc7_a_directory_or_trailing_slash_out_is_refused_for_a_file_output(tmp_path, capsys):
    generate = ["generate", "--no-progress", "--flux", "H3a", "--events", "2"]
    (tmp_path / "existing").mkdir()
    assert main([*generate, "--out", str(tmp_path / "existing")]) == errors.EXIT_OUTPUT
    assert_one_line_error(capsys, "is a directory; a file is expected")
    assert main([*generate, "--out", str(tmp_path / "fresh") + "/"]) == errors.EXIT_OUTPUT
    assert_one_line_error(capsys, "fresh/ is a directory")
    assert not (tmp_path / "fresh").exists()


def test_rc7_refit_multiplicity_never_writes_over_its_input_model(tmp_path, shipped_copy, events_file, capsys):
    before = (shipped_copy / "model.safetensors").read_bytes()
    code = main(["refit-multiplicity", "--model", str(shipped_copy), "--data", str(events_file),
                 "--validation", str(events_file), "--out", str(shipped_copy / ".")])
    assert code == errors.EXIT_OUTPUT
    assert_one_line_error(capsys, "is the input model", "another directory")
    assert (shipped_copy / "model.safetensors").read_bytes() == before


def test_rc7_a_device_or_fifo_out_is_refused_even_with_overwrite(tmp_path, capsys):
    fifo = tmp_path / "pipe.parquet"
    os.mkfifo(fifo)
    for out in (fifo, Path(os.devnull)):
        code = main(["generate", "--no-progress", "--flux", "H3a", "--events", "2", "--out", str(out), "--overwrite"])
        assert code == errors.EXIT_OUTPUT
        assert_one_line_error(capsys, "is not a regular file")
    assert Path(os.devnull).is_char_device() and fifo.is_fifo()


def test_rc1_the_installed_command_prints_one_line_and_no_traceback(tmp_path):
    import subprocess
    import sys

    source = Path(__file__).resolve().parents[1] / "src"
    env = dict(os.environ, PYTHONPATH=str(source))
    env.pop(errors.DEBUG_ENV, None)
    done = subprocess.run([sys.executable, "-m", "mubundle", "inspect", str(tmp_path / ("c" * 300))],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == errors.EXIT_FILESYSTEM
    assert done.stderr.strip().splitlines() == [
        f"mubundle inspect: error: {tmp_path / ('c' * 300)}: file name too long (most file systems allow 255 bytes per "
        "path component)"
    ]


def test_an_output_the_system_refuses_is_named_before_any_work(tmp_path, capsys, monkeypatch):
    """root cause 1: a refused --out (here: /proc-like, the temporary file cannot be created) is one
    line naming the path the user gave, not the hidden temporary file, and nothing is generated."""
    from mubundle.data import atomic
    from mubundle.generate import output

    out = tmp_path / "x.parquet"
    real_open = Path.open

    def refuse(self, *args, **kwargs):
        if self.name.startswith(".x.parquet.tmp-"):
            raise OSError(errno.ENOENT, "No such file or directory", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(FileNotFoundError) as raised:
        output.EventFileWriter(out)
    assert raised.value.filename == str(out)
    with pytest.raises(FileNotFoundError, match="x.parquet"):
        with atomic.atomic_output(out):
            raise AssertionError("the body must not run")
    assert main(["generate", "--flux", "H3a", "--events", "20", "--out", str(out), "--no-progress"]) == 2
    assert error_lines(capsys)[-1] == f"mubundle generate: error: {out}: no such file or directory"
    assert list(tmp_path.iterdir()) == []
