"""`simrun profile` and `simrun fidelity`: the commands that need torch, loaded only when run.

The simulator never imports `profiler` (the only package that needs torch); these handlers do,
lazily, and say how to install it when it is missing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from servesim.sim.errors import UserInputError
from servesim.sim.reporting.progress import add_progress_flags, options_from_args

INSTALL_HINT = "pip install -e '.[profile]'"


def add_commands(sub: argparse._SubParsersAction) -> None:
    profile = sub.add_parser("profile", help="time a model's operators on this device and write cost tables")
    profile.add_argument("--model", required=True, help="model catalog name")
    profile.add_argument("--device", required=True, choices=("cpu", "cuda"), help="torch device to time on")
    profile.add_argument("--tp", default="1", help="comma-separated tensor-parallel degrees, e.g. 1,2,4 (default 1)")
    profile.add_argument("--quick", action="store_true", help="a tiny grid (seconds), for tests and smoke checks")
    profile.add_argument("--hardware", help="hardware catalog name of the device (default: recognised from its name)")
    profile.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help="format to time in (default: the model's)")
    profile.add_argument("--threads", type=int, help="CPU threads (default 1; recorded in the tables)")
    profile.add_argument("-o", "--output", required=True, help="directory to write the tables into")
    profile.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
                         help="no progress bar")
    profile.add_argument("--debug", action="store_true", help="show tracebacks")
    profile.set_defaults(handler=run_profile)

    fidelity = sub.add_parser("fidelity", help="serve a config's workload on the reference engine and compare "
                              "with the simulator")
    fidelity.add_argument("config", type=Path, help="experiment YAML file (one replica, tp 1)")
    fidelity.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                          help="override a config key (repeatable)")
    fidelity.add_argument("-o", "--output", help="report directory (default: results/<name>_fidelity)")
    fidelity.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=True,
                          help="replace an earlier servesim report directory (default); --no-overwrite refuses it")
    fidelity.add_argument("--quick", action="store_true", help="profile on the tiny grid when profiling is needed")
    add_progress_flags(fidelity)
    fidelity.add_argument("--debug", action="store_true", help="show tracebacks")
    fidelity.set_defaults(handler=run_fidelity)


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserInputError(f"this command runs kernels with torch, which is not installed; install it with "
                             f"`{INSTALL_HINT}` (the CPU build torch==2.13.0)") from None


def run_profile(args: argparse.Namespace) -> int:
    """The tables directory is checked before timing starts; its two files are written into it."""
    from servesim.sim.reporting.output_target import OutputError, check_location

    shown, path = check_location(args.output)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output directory {shown!r} exists and is not a directory; choose another name")
    _require_torch()
    from servesim.profiler.profile import ProfileRequest, profile

    try:
        tps = tuple(int(tp) for tp in args.tp.split(","))
    except ValueError:
        raise UserInputError(f"--tp {args.tp!r}: expected comma-separated integers, e.g. 1,2,4") from None
    request = ProfileRequest(args.model, args.device, tps, args.quick, args.hardware, args.dtype, args.threads)
    try:
        profile(request, path, progress=not args.quiet and sys.stderr.isatty())
    except ValueError as exc:
        raise UserInputError(str(exc)) from None
    except OSError as exc:
        raise OutputError(f"could not write the tables to {shown!r}: {exc.strerror or exc}") from None
    print(f"tables: {shown}")
    return 0


def run_fidelity(args: argparse.Namespace) -> int:
    """The report directory gets the results directory's safety: checked first, locked, staged, swapped in."""
    from servesim.sim.reporting.output_dir import claim_output
    from servesim.sim.reporting.output_target import resolve_target

    progress = options_from_args(args)
    out = args.output if args.output is not None else str(Path("results") / f"{args.config.stem}_fidelity")
    target = resolve_target(out, args.overwrite)
    _require_torch()
    from servesim.profiler.fidelity import FidelityRequest, summary_lines
    from servesim.profiler.fidelity import run_fidelity as fidelity

    with claim_output(target, args.overwrite) as claim:
        with claim.staging("fidelity", f"{args.config.resolve()} {args.overrides}") as staging:
            request = FidelityRequest(args.config, staging, tuple(args.overrides), args.quick, progress)
            report = fidelity(request)
    print("\n".join(summary_lines(report)))
    print(f"report: {target.shown}")
    return 0
