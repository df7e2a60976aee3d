"""The ``mubundle`` command: one subcommand per pipeline stage.

Thin by design: each ``_add_<name>`` declares the arguments and each ``_run_<name>``
converts them to a call of the package API. No logic lives here.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import traceback
import warnings
from pathlib import Path
from typing import Callable, Sequence

from mubundle import __version__
from mubundle.argtypes import MAX_DEPTH_KM, finite_float, finite_float_list, non_negative_int, positive_int, seed_int
from mubundle.errors import (
    DEBUG_ENV,
    EXIT_BROKEN_PIPE,
    EXIT_NOTHING,
    OneLineWarningFormat,
    debug_enabled,
    exit_code_and_message,
)
from mubundle.generate.api import DEFAULT_TEACHER, MODEL_OPTION_HELP
from mubundle.host_allocator import tune_host_allocator
from mubundle.signals import install_sigterm_handler


# --------------------------------------------------------------------------- data
def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert legacy/native/CORSIKA files to native Parquet shards")
    p.add_argument("inputs", nargs="+", help="files, globs or directories (Parquet, HDF5 or CORSIKA DAT files)")
    p.add_argument("--out", required=True, type=Path, help="output dataset directory")
    p.add_argument("--events-per-shard", type=positive_int, default=100_000,
                   help="events per output Parquet shard; the last shard holds the rest (default %(default)s)")
    p.add_argument("--depths", type=_depth_list, default=None, metavar="KM,...",
                   help="CORSIKA inputs: propagate each shower's muons to these slant depths in km of ice "
                        "(one event per shower and depth; 0 = the observation level, the default)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the muon propagation (--depths; default %(default)s)")
    p.set_defaults(run=_run_convert)


#: ``convert --depths``: slant depths in km of ice, as ``simulate --depths`` parses its vertical ones
_depth_list = finite_float_list(0.0, MAX_DEPTH_KM, unit="km")


def _run_convert(args: argparse.Namespace) -> int:
    from mubundle.data.convert import convert, nothing_converted_reason, print_convert_summary

    propagation = None
    if args.depths is not None:
        from mubundle.sim.underground import DepthPropagation

        propagation = DepthPropagation(args.depths, seed=args.seed)
    summary = convert(args.inputs, args.out, events_per_shard=args.events_per_shard, depth_propagation=propagation)
    print_convert_summary(summary)
    reason = nothing_converted_reason(summary)
    if reason is None:
        return 0
    sys.stdout.flush()  # the summary above the line that explains it, also when both go to one terminal or file
    print(f"mubundle convert: {reason}", file=sys.stderr)
    return EXIT_NOTHING


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="summarise files: counts, multiplicities, ranges, rejections")
    p.add_argument("paths", nargs="+", help="files, globs or directories")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    p.set_defaults(run=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from mubundle.data.inspect import inspect_paths, print_inspection

    report = inspect_paths(args.paths)
    print_inspection(report, as_json=args.json)
    return 0


# --------------------------------------------------------------------------- sim
def _add_simulate(sub: argparse._SubParsersAction) -> None:
    from mubundle.executors import add_dask_argument
    from mubundle.sim.config import add_simulate_arguments

    p = sub.add_parser("simulate", help="reference air-shower muon simulation (chromo + atmosphere + ice)")
    add_simulate_arguments(p)
    add_dask_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    """Simulate, then print the dataset's summary: one JSON line on stdout, one human line on stderr."""
    import json
    import time

    from mubundle.executors import check_executor_arguments
    from mubundle.sim.config import config_from_args
    from mubundle.sim.run import print_simulation_summary, simulate_dataset, simulation_summary

    check_executor_arguments(args.dask, args.workers)  # before the output directory is made
    started = time.perf_counter()
    if args.primaries:
        from mubundle.sim.given import simulate_given_primaries

        if args.dask is not None:
            raise ValueError("--dask runs sampled primaries only; simulate --primaries with --workers K")
        simulate_given_primaries(args.primaries, args.out, config_from_args(args), repeat=args.repeat or 1,
                                 workers=args.workers, progress=not args.no_progress)
    else:
        simulate_dataset(config_from_args(args), args.out, workers=args.workers, dask=args.dask,
                         progress=not args.no_progress)
    summary = simulation_summary(args.out, seconds=time.perf_counter() - started)
    print_simulation_summary(summary)
    print(json.dumps(summary.to_dict()))
    return 0


# --------------------------------------------------------------------------- train
def _add_train(sub: argparse._SubParsersAction) -> None:
    from mubundle.train.config import DEVICE_CHOICES, TrainConfig

    # flags default to None: a flag given overrides --config / a resumed run's config.yaml, which
    # override TrainConfig (train/entry.py); the help states TrainConfig's value
    defaults = TrainConfig()
    p = sub.add_parser("train", help="train (or resume) the multiplicity model and WGAN-GP")
    p.add_argument("--data", nargs="+", required=True, help="training data: files, globs, directories")
    # dest run_dir: "run" is the subcommand dispatch attribute set by set_defaults below;
    # --run-dir: torchrun's own parser rejects "--run" as an ambiguous prefix of --run-path
    p.add_argument("--run", "--run-dir", required=True, type=Path, dest="run_dir", metavar="DIR",
                   help="run directory (resumed if it exists)")
    p.add_argument("--validation", nargs="+", default=None,
                   help="validation data: the multiplicity model's validation NLL, early stopping")
    p.add_argument("--config", type=Path, help="YAML TrainConfig (CLI flags override it; default: TrainConfig's "
                   "defaults, or the config.yaml of the run being resumed)")
    p.add_argument("--max-steps", type=non_negative_int, metavar="N",
                   help=f"generator steps to train to (default: the config's, {defaults.max_steps} in TrainConfig)")
    p.add_argument("--batch-size", type=positive_int, metavar="B",
                   help=f"events per step (default: the config's, {defaults.batch_size} in TrainConfig)")
    p.add_argument("--max-muons-per-step", type=positive_int, metavar="M",
                   help="muons per micro-batch; a larger step accumulates gradients over several "
                        f"(default: the config's, {defaults.max_muons_per_step} in TrainConfig)")
    p.add_argument("--device", choices=DEVICE_CHOICES,
                   help=f"where training runs; auto: cuda, else mps, else cpu (default: the config's, "
                        f"{defaults.device} in TrainConfig)")
    p.add_argument("--seed", type=seed_int,
                   help=f"initialisation and data order (default: the config's, {defaults.seed} in TrainConfig)")
    p.add_argument("--lr-decay-steps", type=non_negative_int, metavar="K",
                   help="generator/critic lr decays linearly over the last K steps (docs/training.md; default: the "
                        f"config's, {defaults.lr_decay_steps} in TrainConfig: constant lr)")
    p.add_argument("--lr-decay-final", type=finite_float(0.0), metavar="F",
                   help=f"lr factor reached at max-steps (default: the config's, {defaults.lr_decay_final:g} in TrainConfig)")
    p.add_argument("--init-from", metavar="MODEL",
                   help="fine-tune: start a fresh run from this model directory's transform, multiplicity "
                        "model and generator, with a fresh critic (default: the config's; none in TrainConfig)")
    p.add_argument("--critic-warmup-steps", type=non_negative_int, metavar="K",
                   help="the first K steps train the critic only (use with --init-from; default: the config's, "
                        f"{defaults.critic_warmup_steps} in TrainConfig)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the networks, or not (default: the config's, "
                        f"{'on' if defaults.compile else 'off'} in TrainConfig)")
    p.add_argument("--max-restarts", type=non_negative_int, default=0, metavar="K",
                   help="supervise: run training in a child process, restart on crash up to K times "
                        "(default %(default)s: no supervisor)")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from mubundle.train.entry import train_from_args

    return train_from_args(args)


def _add_model_data_out(p: argparse.ArgumentParser) -> None:
    """--model, --data, --out of the commands that make a new model directory from a trained one."""
    p.add_argument("--model", type=Path, help=MODEL_OPTION_HELP)
    p.add_argument("--data", nargs="+", required=True, help="training events: files, globs, directories")
    p.add_argument("--out", required=True, type=Path, help="output model directory")


def _add_refit_multiplicity(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "refit-multiplicity",
        help="refit a model's multiplicity part alone, with early stopping on validation events",
    )
    from mubundle.train.multiplicity_fit import MultiplicityFitConfig

    defaults = MultiplicityFitConfig()  # the flags default to None: MultiplicityFitConfig's values
    _add_model_data_out(p)
    p.add_argument("--validation", nargs="+", required=True, help="validation events (early stopping)")
    p.add_argument("--seed", type=seed_int, help=f"initialisation and batch order (default {defaults.seed})")
    p.add_argument("--lr", type=finite_float(0.0, min_inclusive=False), help=f"Adam learning rate (default {defaults.lr:g})")
    p.add_argument("--batch-size", type=positive_int, help=f"events per Adam step (default {defaults.batch_size})")
    p.add_argument("--max-epochs", type=positive_int,
                   help=f"most passes over the training events (default {defaults.max_epochs})")
    p.add_argument("--patience", type=non_negative_int,
                   help=f"stop after this many epochs without a better validation NLL (default {defaults.patience})")
    p.add_argument("--restarts", type=positive_int,
                   help=f"fits from seeds SEED, SEED+1, ...; keep the lowest validation NLL (default {defaults.restarts})")
    p.add_argument("--keep-weights", action="store_true",
                   help="continue from the model's multiplicity weights instead of a fresh seeded start")
    p.add_argument("--distill", action="store_true",
                   help="fit to the model's own multiplicity network (the teacher) on the conditions of --data "
                        "instead of their N: a smaller network (--multiplicity-hidden) that keeps its rates; the "
                        "figures reported are then divergences from the teacher (not with --keep-weights)")
    for field, what in (("hidden", "hidden units per layer"), ("layers", "hidden layers"), ("components", "mixture components")):
        p.add_argument(f"--multiplicity-{field}", type=positive_int, dest=f"multiplicity_{field}",
                       help=f"refit a multiplicity network with this many {what} (default: the model's)")
    p.add_argument("--allow-extrapolation", action="store_true",
                   help="fit events outside the model's training domain (refused otherwise; counted and warned "
                        "about); data of another site than the model's is always refused")
    p.set_defaults(run=_run_refit_multiplicity)


def _run_refit_multiplicity(args: argparse.Namespace) -> int:
    from mubundle.train.multiplicity_fit import refit_from_args

    return refit_from_args(args)


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="map the tails of a model's muon energies and radii onto training data's (monotone maps; docs/model.md)",
    )
    _add_model_data_out(p)
    p.add_argument("--seed", type=seed_int, default=0, help="the generator's noise (default 0)")
    p.add_argument("--maps", nargs="+",
                   choices=("energy", "radius", "energy-by-energy", "radius-by-energy", "energy-by-multiplicity",
                            "energy-by-multiplicity-and-energy"),
                   default=None,
                   help="what to fit: the muon energies' upper tail, the radii's two tails, the whole distribution of "
                        "either per half decade of E0 (*-by-energy, after the tail map), and of the muon energies per "
                        "class of the event's N (energy-by-multiplicity: 1, 2-3, 4-10; applied last; "
                        "energy-by-multiplicity-and-energy: per class and half decade of E0); maps not named "
                        "are kept from the input model (default: the kinds of maps the input model holds, refitted; "
                        "energy radius for a model without maps)")
    p.add_argument("--muon-energy-classes", type=positive_int, default=None, metavar="K",
                   help="radius-by-energy: also by the muon's energy, in K classes at the data's muon-energy quantiles "
                        "per half decade of E0 (K x 2000 muons per bin, else one map); corrects how radius and energy "
                        "go together (default: without --maps the input model's K, else 1: by E0 only)")
    p.add_argument("--allow-extrapolation", action="store_true",
                   help="fit on events outside the model's training domain (refused otherwise; counted and warned "
                        "about); data of another site than the model's is always refused")
    p.set_defaults(run=_run_calibrate)


def _run_calibrate(args: argparse.Namespace) -> int:
    from mubundle.train.calibration_fit import calibrate_from_args

    return calibrate_from_args(args)


def _add_distill(sub: argparse._SubParsersAction) -> None:
    from mubundle.train.config import DEVICE_CHOICES
    from mubundle.train.distill import DistillConfig

    defaults = DistillConfig()  # the flags default to None: --config's values, else DistillConfig's
    p = sub.add_parser("distill", help="train a smaller, faster student that reproduces a trained model")
    p.add_argument("--teacher", type=Path, help=f"teacher model directory or shipped model name (default: {DEFAULT_TEACHER})")
    p.add_argument("--out", required=True, type=Path, help="run directory (resumed if it holds a run); the student is OUT/model")
    p.add_argument("--config", type=Path, help="YAML of DistillConfig fields (student sizes, steps, learning rates, ...; "
                   "default: DistillConfig's defaults)")
    p.add_argument("--primaries", nargs="+",
                   help="train on the primaries of these events (default: those of `mubundle simulate` defaults)")
    p.add_argument("--steps", type=positive_int,
                   help=f"training steps of the student (default: the config's, {defaults.steps} in DistillConfig)")
    p.add_argument("--batch-size", type=positive_int,
                   help=f"primaries per step (default: the config's, {defaults.batch_size} in DistillConfig)")
    p.add_argument("--device", choices=DEVICE_CHOICES,
                   help=f"where the student trains; auto: cuda, else mps, else cpu (default: the config's, "
                        f"{defaults.device} in DistillConfig)")
    p.add_argument("--seed", type=seed_int,
                   help=f"the student's initialisation and the primaries drawn (default: the config's, {defaults.seed} "
                        "in DistillConfig)")
    p.set_defaults(run=_run_distill)


def _run_distill(args: argparse.Namespace) -> int:
    from mubundle.train.distill import distill_from_args

    return distill_from_args(args)


# --------------------------------------------------------------------------- generate
def _add_generate(sub: argparse._SubParsersAction) -> None:
    from mubundle.generate.cli_args import add_generate_arguments

    p = sub.add_parser("generate", help="generate muon bundles with a trained model")
    add_generate_arguments(p)
    p.set_defaults(run=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from mubundle.generate.cli_args import generate_from_args

    return generate_from_args(args)


# --------------------------------------------------------------------------- evaluate
def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="compare a model with reference data: metrics, plots, report.html")
    p.add_argument("--model", type=Path, help=MODEL_OPTION_HELP)
    p.add_argument("--reference", nargs="+", required=True, help="reference data: files, globs, directories")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seed of the model's sampling: the same command gives the same report (default %(default)s)")
    p.add_argument("--seeds", type=positive_int, default=1, metavar="K",
                   help="also generate with seeds seed+1 .. seed+K-1: every ratio per seed and its mean "
                        "(default %(default)s)")
    p.add_argument("--max-events", type=positive_int, default=None,
                   help="use at most this many reference events (default: all)")
    p.add_argument("--allow-extrapolation", action="store_true",
                   help="evaluate reference primaries outside the model's training domain (refused otherwise)")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from mubundle.evaluate.report import evaluate_model

    evaluate_model(args.model, args.reference, args.out, seed=args.seed, max_events=args.max_events, seeds=args.seeds,
                   allow_extrapolation=args.allow_extrapolation)
    return 0


# --------------------------------------------------------------------------- demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="end-to-end demo: generate, simulate a reference, evaluate, short training")
    p.add_argument("--out", type=Path, default=Path("demo_output"),
                   help="output directory: generated.parquet, reference/, report/ (report.html), train_run/, "
                        "demo_timings.json (default %(default)s)")
    p.add_argument("--seed", type=seed_int, default=1,
                   help="seed of the primaries, the generation, the simulation and the training (default %(default)s)")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from mubundle.demo import run_demo

    return run_demo(args.out, seed=args.seed)


_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_convert,
    _add_inspect,
    _add_simulate,
    _add_train,
    _add_refit_multiplicity,
    _add_calibrate,
    _add_distill,
    _add_generate,
    _add_evaluate,
    _add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mubundle", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mubundle {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the Python traceback of an error (also: {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    for subparser in sub.choices.values():  # `mubundle train ... --debug` works too
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mubundle`` console script; returns the exit code.

    While it runs, Python warnings print as one line each, ``mubundle COMMAND: warning: MESSAGE``
    (:class:`~mubundle.errors.OneLineWarningFormat`, also in the worker processes of
    ``--workers`` and ``--dask``); programs that ``import mubundle`` keep Python's own format.
    """
    # Before torch is imported: OpenMP's default spin-waiting made 2-thread steps 5-12x slower
    # than 1 thread on a shared 2-core machine (docs/model.md, Speed); passive waiting does not.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # formatwarning, not showwarning: a caller that records warnings (catch_warnings(record=True),
    # pytest.warns) still gets them; only the text Python prints on stderr changes
    python_format = warnings.formatwarning
    try:
        warnings.formatwarning = OneLineWarningFormat("mubundle")
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as done:  # argparse printed its one line (or --help / --version): its code
            return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
        warnings.formatwarning = OneLineWarningFormat(_command_prefix(args.command))
        # keep freed activation buffers for reuse: 20-30 % faster CPU sampling (host_allocator.py)
        tune_host_allocator()
        install_sigterm_handler()  # SIGTERM (batch schedulers) cleans up like Ctrl-C
        return _run_command(args)
    finally:
        warnings.formatwarning = python_format


def _run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; a failure becomes one line on stderr and its documented exit code."""
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # a reader that quit early (`| head`) shows here, not at interpreter exit
        return code
    except BrokenPipeError as error:
        if not _stdout_reader_gone():  # a pipe to another process broke: a real error
            return _report_failure(args, error)
        _redirect_stdout_to_devnull()
        return EXIT_BROKEN_PIPE
    except (Exception, KeyboardInterrupt) as error:
        return _report_failure(args, error)


def _report_failure(args: argparse.Namespace, error: BaseException) -> int:
    """Print the one line (and with --debug the traceback) for ``error``; its exit code (mubundle.errors)."""
    code, message = exit_code_and_message(error)
    if debug_enabled(args.debug):
        traceback.print_exc()
    if isinstance(error, KeyboardInterrupt):  # exit code 130 (Ctrl-C) or 143 (SIGTERM)
        print("mubundle: interrupted", file=sys.stderr)
    else:
        print(f"{_command_prefix(args.command)}: error: {message}", file=sys.stderr)
    return code


def _command_prefix(command: str) -> str:
    """``mubundle COMMAND``, with ``(rank R)`` in a distributed run (torchrun's WORLD_SIZE > 1), whose
    N processes print into one terminal: the lines then say which process has the problem."""
    from mubundle.train.dist_env import context_from_env

    try:
        context = context_from_env()
    except ValueError:  # a malformed RANK / WORLD_SIZE: the command's own error says so
        return f"mubundle {command}"
    return f"mubundle {command} (rank {context.rank})" if context.enabled else f"mubundle {command}"


def _stdout_reader_gone() -> bool:
    """True when stdout is a pipe or socket whose reader has closed it (``mubundle inspect ... | head``).

    The write end of such a pipe polls as an error or hang-up. An stdout without a file descriptor
    (replaced by an in-memory stream) cannot be the broken pipe. Without ``select.poll`` (Windows) the
    broken pipe is taken to be stdout, as in the Python docs' recipe (library reference, signal module,
    "Note on SIGPIPE").
    """
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation, or closed
        return False
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in poller.poll(0))


def _redirect_stdout_to_devnull() -> None:
    """Point stdout's file descriptor at os.devnull: the output still buffered is dropped at exit
    instead of failing a second time in the interpreter's final flush ("Exception ignored ...")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
