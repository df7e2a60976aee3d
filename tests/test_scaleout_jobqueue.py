"""docs/scale-out.md's batch-system clusters (examples/dask_cluster.py): the job descriptions
dask-jobqueue builds for HTCondor and SLURM, and, where the HTCondor Python bindings are
importable, HTCondor's own parse of the submit description. Nothing is submitted."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is not installed (pip install dask-jobqueue)")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dask_cluster.py"


def example():
    spec = importlib.util.spec_from_file_location("dask_cluster_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def htcondor_bindings():
    """``htcondor2`` (bindings >= 24) or the older ``htcondor`` module; skip without them."""
    for name in ("htcondor2", "htcondor"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    pytest.skip("the HTCondor Python bindings are not importable here (pip install htcondor)")


def test_slurm_job_script_runs_one_single_threaded_worker_for_our_scheduler():
    with example().make_cluster("slurm", memory="4GB", queue="normal", account="myproject",
                                walltime="02:00:00", scheduler_host="127.0.0.1", python="/opt/mubundle/bin/python") as cluster:
        script = cluster.job_script()
        address = cluster.scheduler_address
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    for directive in ("#SBATCH -p normal", "#SBATCH -A myproject", "#SBATCH --cpus-per-task=1", "#SBATCH --mem=4G",
                      "#SBATCH -t 02:00:00"):
        assert directive in lines
    command = lines[-1]
    assert command.startswith("/opt/mubundle/bin/python -m distributed.cli.dask_worker " + address)
    assert "--nthreads 1" in command and "--nanny" in command


@pytest.fixture(scope="module")
def htcondor_job():
    """(job script, scheduler address) of the HTCondor cluster of docs/scale-out.md."""
    with example().make_cluster("htcondor", memory="4GB", disk="2GB", scheduler_host="127.0.0.1",
                                job_extra={"+ProjectName": '"myproject"'}) as cluster:
        return cluster.job_script(), cluster.scheduler_address


def test_htcondor_job_script_requests_one_core_and_runs_a_worker_for_our_scheduler(htcondor_job):
    script, address = htcondor_job
    assert script.startswith("#!/usr/bin/env condor_submit")
    assert "MY.DaskWorkerCores = 1" in script and "RequestCpus = MY.DaskWorkerCores" in script
    assert '+ProjectName = "myproject"' in script
    assert f"distributed.cli.dask_worker {address} " in script and "--nthreads 1" in script
    assert script.rstrip().endswith("Queue")


def test_htcondor_bindings_accept_the_job_description(htcondor_job):
    htcondor = htcondor_bindings()
    script, address = htcondor_job
    description = "\n".join(line for line in script.splitlines() if not line.startswith("#!"))
    submit = htcondor.Submit(description)  # HTCondor's parser: built, not submitted
    assert submit["Executable"] == "/bin/sh"
    assert address in submit["Arguments"]
    assert submit["MY.DaskWorkerCores"] == "1"
    assert submit["RequestMemory"] == "floor(MY.DaskWorkerMemory / 1048576)"


def test_an_unknown_batch_system_is_refused():
    with pytest.raises(ValueError, match="htcondor or slurm"):
        example().make_cluster("pbs")


def test_without_the_submit_command_the_script_stops_before_starting_a_scheduler(monkeypatch, capsys):
    module = example()
    monkeypatch.setattr(module.shutil, "which", lambda command: None)  # no sbatch, no condor_submit here

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(module, "make_cluster", no_cluster)
    monkeypatch.setattr("sys.argv", ["dask_cluster.py", "slurm", "--jobs", "1", "--queue", "normal", "--account", "myproject"])
    with pytest.raises(SystemExit) as stopped:
        module.main()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dask_cluster.py: error: sbatch not found on PATH")


def test_print_job_script_needs_no_submit_command(monkeypatch, capsys):
    module = example()
    monkeypatch.setattr(module.shutil, "which", lambda command: None)
    monkeypatch.setattr("sys.argv", ["dask_cluster.py", "htcondor", "--print-job-script", "--scheduler-host", "127.0.0.1"])
    module.main()
    assert capsys.readouterr().out.startswith("#!/usr/bin/env condor_submit")
