"""Start a Dask cluster on a batch system for ``mubundle simulate/generate --dask ADDRESS``.

Run it on the submit node (it holds the Dask scheduler for as long as it runs):

    python examples/dask_cluster.py htcondor --jobs 50 --memory 4GB --disk 4GB
    python examples/dask_cluster.py slurm --jobs 50 --memory 4GB --queue normal --account myproject --walltime 04:00:00

It prints the scheduler address (``tcp://HOST:PORT``) and keeps the cluster up until
Ctrl-C; in another shell: ``mubundle simulate ... --dask tcp://HOST:PORT``. Each batch job is
one Dask worker process with one thread (the interaction models are process-wide Fortran
state; docs/scale-out.md). ``--print-job-script`` shows the job description without
submitting anything. Without the batch system's submit command (``condor_submit``,
``sbatch``) on PATH it stops at once with one line naming it (exit code 2).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from typing import Any

#: The command each batch system submits its jobs with (what dask-jobqueue runs), and where it is found.
SUBMIT_COMMANDS = {"htcondor": ("condor_submit", "an HTCondor submit node"), "slurm": ("sbatch", "a SLURM login node")}


def missing_submit_command(kind: str) -> str | None:
    """One line saying that ``kind``'s submit command is not on PATH, or None when it is."""
    command, where = SUBMIT_COMMANDS[kind]
    if shutil.which(command) is not None:
        return None
    return (f"{command} not found on PATH: run this on {where} "
            "(--print-job-script shows the job description without submitting)")


def make_cluster(
    kind: str,
    memory: str = "4GB",
    disk: str = "4GB",
    python: str | None = None,
    queue: str | None = None,
    account: str | None = None,
    walltime: str = "04:00:00",
    scheduler_host: str | None = None,
    job_extra: dict[str, str] | None = None,
) -> Any:
    """A dask-jobqueue cluster whose jobs each run one single-threaded Dask worker.

    ``kind``: ``"htcondor"`` (``HTCondorCluster``: submits with ``condor_submit``) or
    ``"slurm"`` (``SLURMCluster``: ``sbatch``). ``memory`` / ``disk``: per job. ``python``:
    the interpreter on the execute nodes that has mubundle installed (default: this one).
    ``scheduler_host``: the address workers reach the scheduler at (default: this host's).
    ``job_extra``: further HTCondor submit commands (e.g. ``{"+ProjectName": '"myproject"'}``).
    Nothing is submitted until ``cluster.scale(jobs=N)`` or ``cluster.adapt(...)``.
    """
    scheduler = {"host": scheduler_host} if scheduler_host else {}
    common: dict[str, Any] = dict(cores=1, processes=1, memory=memory, scheduler_options=scheduler)
    if python:
        common["python"] = python
    if kind == "htcondor":
        from dask_jobqueue import HTCondorCluster

        return HTCondorCluster(disk=disk, job_extra_directives=dict(job_extra or {}), **common)
    if kind == "slurm":
        from dask_jobqueue import SLURMCluster

        return SLURMCluster(queue=queue, account=account, walltime=walltime, **common)
    raise ValueError(f"unknown batch system {kind!r}: choose htcondor or slurm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["htcondor", "slurm"])
    parser.add_argument("--jobs", type=int, default=10, help="batch jobs = Dask workers")
    parser.add_argument("--memory", default="4GB")
    parser.add_argument("--disk", default="4GB", help="HTCondor only")
    parser.add_argument("--python", help="python with mubundle installed on the execute nodes")
    parser.add_argument("--queue", help="SLURM partition")
    parser.add_argument("--account", help="SLURM account")
    parser.add_argument("--walltime", default="04:00:00", help="SLURM time limit")
    parser.add_argument("--scheduler-host", help="address the workers connect to (default: this host)")
    parser.add_argument("--print-job-script", action="store_true", help="print the job description, submit nothing")
    args = parser.parse_args()
    problem = None if args.print_job_script else missing_submit_command(args.kind)
    if problem:  # before the scheduler starts: dask-jobqueue would fail in the background, with no workers
        print(f"{parser.prog}: error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    cluster = make_cluster(args.kind, args.memory, args.disk, args.python, args.queue, args.account,
                           args.walltime, args.scheduler_host)
    if args.print_job_script:
        print(cluster.job_script())
        cluster.close()
        return
    cluster.scale(jobs=args.jobs)
    print(f"scheduler: {cluster.scheduler_address}  (use: mubundle simulate ... --dask {cluster.scheduler_address})", flush=True)
    try:
        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        cluster.close()


if __name__ == "__main__":
    main()
