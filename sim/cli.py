"""`simrun`: run, validate and list experiments from the command line.

User errors (config, trace, catalog, policy, output directory) print one paragraph and exit with
code 2; a traceback is shown only with `--debug`. SIGINT and SIGTERM end a run without a
traceback (exit 130 / 143), saying whether its results were written.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from servesim.hwmodels.errors import CatalogError
from servesim.policies import PolicyError
from servesim.profiler.commands import add_commands as add_profile_commands
from servesim.sim import __version__
from servesim.sim.errors import UserInputError
from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.placement.command import add_command as add_plan_command
from servesim.sim.reporting.output_target import OutputTarget
from servesim.sim.reporting.progress import ProgressOptions, add_progress_flags, options_from_args
from servesim.sim.sweeps.command import add_command as add_sweep_command
from servesim.traces.errors import TraceError

EXIT_USER_ERROR = 2
USER_ERRORS = (UserInputError, CatalogError, PolicyError, TraceError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(), _sigterm_interrupts():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            return args.handler(args)
    except USER_ERRORS as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"simrun: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        placed = getattr(exc, "results_in_place", None)
        outcome = (f"its results were already in place in {placed}" if placed else
                   "no results written; earlier results in the output directory, if any, are untouched")
        print(f"simrun: interrupted by {signal.Signals(signum).name}; {outcome}", file=sys.stderr)
        return 128 + signum


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that staging is cleaned up and the lock released on the way out."""

    signum = signal.SIGTERM


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM ends the command like SIGINT, unless someone chose another handling for it (e.g. ignored)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _show_warning(message: Warning | str, *args: object, **kwargs: object) -> None:
    """Warnings (cost tables out of their grid, operators priced by the roofline) as one line each."""
    print(f"simrun: warning: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simrun", description="servesim: simulate LLM serving clusters")
    parser.add_argument("--version", action="version", version=f"simrun (servesim) {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one experiment and write its results directory")
    run.add_argument("config", type=Path, help="experiment YAML file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                     help="override a config key (repeatable), e.g. --set scheduler.max_num_seqs=64")
    run.add_argument("-o", "--output", help="results directory (default: output.dir or results/<name>)")
    _add_overwrite_flag(run)
    run.add_argument("--seed", type=int, help="override the experiment seed")
    run.add_argument("--workers", metavar="N", help="processes that simulate the replicas at once, a number or "
                     "`auto` (one per CPU): the same results, when nothing couples the replicas (simulation.workers)")
    add_progress_flags(run)
    run.add_argument("--debug", action="store_true", help="show tracebacks")
    run.set_defaults(handler=_run)

    validate = sub.add_parser("validate", help="check configs (keys, catalogs, policies, traces) without running")
    validate.add_argument("configs", type=Path, nargs="+", help="experiment YAML files")
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    validate.add_argument("-o", "--output", help="check this results directory instead of each config's default")
    _add_overwrite_flag(validate)
    validate.add_argument("--debug", action="store_true", help="show tracebacks")
    validate.set_defaults(handler=_validate)

    goodput = sub.add_parser("goodput", help="search the highest load at which SLO attainment meets its target")
    goodput.add_argument("config", type=Path, help="experiment YAML file (each variant is searched)")
    goodput.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    goodput.add_argument("--low", type=float, default=0.25, help="lowest rate scale tried, relative to the config's")
    goodput.add_argument("--high", type=float, default=4.0, help="highest rate scale tried")
    goodput.add_argument("--tolerance", type=float, default=0.02,
                         help="stop when the bracket is this narrow (relative)")
    add_progress_flags(goodput)
    goodput.add_argument("--debug", action="store_true", help="show tracebacks")
    goodput.set_defaults(handler=_goodput)

    real = sub.add_parser("validate-real", help="replay a real serving run and compare simulated with real latencies")
    real.add_argument("run_dir", type=Path, help="folder of one real run (real_vllm_runs or neutral layout)")
    real.add_argument("-o", "--output", help="results directory (default: results/validate-real/<run>)")
    real.add_argument("--model", help="catalog model to replay on instead of the run's")
    real.add_argument("--hardware", help="catalog hardware to replay on instead of the run's")
    real.add_argument("--cost-model", choices=("auto", "table", "roofline"), default="auto",
                      help="auto (as cost_model.kind: auto): the shipped tables for the hardware, model and TP "
                           "when they exist, else the calibrated roofline")
    real.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                      help="override a key of the replay's experiment, e.g. --set engine.async_scheduling=false")
    _add_overwrite_flag(real)
    add_progress_flags(real)
    real.add_argument("--debug", action="store_true", help="show tracebacks")
    real.set_defaults(handler=_validate_real)

    listing = sub.add_parser("list", help="show catalog models and hardware and registered policies")
    listing.set_defaults(handler=_list)
    add_sweep_command(sub)
    add_plan_command(sub)
    add_profile_commands(sub)
    return parser


def _add_overwrite_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=True,
                         help="replace an earlier servesim results directory (default); --no-overwrite refuses it. "
                              "A directory servesim did not write is never replaced")


def _output_target(output: str | None, config: ExperimentConfig, overwrite: bool) -> OutputTarget:
    """The checked results directory of a run (-o, else output.dir, else results/<name>) and its variant names."""
    from servesim.sim.reporting.output_target import check_directory_name, check_variant_names, resolve_target

    check_variant_names(config.variants)
    if output is not None:
        return resolve_target(output, overwrite)
    if config.output.dir is not None:
        return resolve_target(config.output.dir, overwrite)
    check_directory_name(config.name, "experiment name:")
    return resolve_target(Path("results", config.name), overwrite)


def _run(args: argparse.Namespace) -> int:
    from servesim.sim.experiment.loading import load_config
    from servesim.sim.reporting.headline import headline
    from servesim.sim.reporting.output_dir import claim_output
    from servesim.sim.reporting.results import write_claimed_results
    from servesim.sim.runner import prepare, run_extent, simulate

    progress = options_from_args(args)
    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    overrides += [f"simulation.workers={args.workers}"] if args.workers is not None else []
    config, base_dir = load_config(args.config, overrides)
    target = _output_target(args.output, config, args.overwrite)
    if config.variants:
        return _run_variants(config, base_dir, target, args, progress)
    prepared = prepare(config, base_dir)
    with claim_output(target, args.overwrite) as claim:
        with progress.reporter(run_extent(prepared)) as callback:
            result = simulate(prepared, callback)
        write_claimed_results(claim, result, plots=config.output.plots)
    print(headline(result.summary, Path(target.shown)))
    return 0


def _run_variants(config: ExperimentConfig, base_dir: Path, target: OutputTarget, args: argparse.Namespace,
                  progress: ProgressOptions) -> int:
    """Run every variant (all checked before the first starts), then write and compare them."""
    from servesim.sim.experiment.loading import variant_configs
    from servesim.sim.experiment.variants import comparison_json, comparison_table
    from servesim.sim.reporting.json_output import json_text
    from servesim.sim.reporting.output_dir import claim_output
    from servesim.sim.reporting.results import config_yaml, write_run_files
    from servesim.sim.runner import prepare, run_extent, simulate

    prepared = {name: prepare(c, base_dir) for name, c in variant_configs(config, str(args.config)).items()}
    with claim_output(target, args.overwrite) as claim:
        results = {}
        for name, run in prepared.items():
            with progress.reporter(run_extent(run), f"variant {name}") as callback:
                results[name] = simulate(run, callback)
        summaries = {name: result.summary for name, result in results.items()}
        with claim.staging("variants", config_yaml(config)) as staging:
            for name, result in results.items():
                (staging / name).mkdir()
                write_run_files(result, staging / name, config.output.plots)
            claims = [claim for _, claim in config.stated_claims]
            (staging / "comparison.json").write_text(json_text(comparison_json(summaries, claims)))
    print(comparison_table(summaries, claims))
    print(f"results: {target.shown}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from servesim.sim.experiment.loading import load_config
    from servesim.sim.placement.command import validate_plan
    from servesim.sim.runner import prepare
    from servesim.sim.sweeps.command import validate_sweep

    failures = 0
    for path in args.configs:
        try:
            config, base_dir = load_config(path, args.overrides)
            if config.sweep is not None:
                print(f"{path}: ok ({validate_sweep(config, base_dir, str(path))})")
                continue
            if config.plan is not None:
                print(f"{path}: ok ({validate_plan(config, base_dir)})")
                continue
            prepared = prepare(config, base_dir)
            target = _output_target(args.output, config, args.overwrite)
        except USER_ERRORS as exc:
            if args.debug:
                traceback.print_exc()
            print(f"simrun: error: {exc}", file=sys.stderr)
            failures += 1
            continue
        print(f"{path}: ok ({len(prepared.workload)} requests, {prepared.capacity.num_blocks} KV blocks per replica; "
              f"results to {target.shown})")
    return EXIT_USER_ERROR if failures else 0


def _goodput(args: argparse.Namespace) -> int:
    from servesim.sim.experiment.loading import load_config, variant_configs
    from servesim.sim.goodput import check_search, max_goodput

    progress = options_from_args(args)
    config, base_dir = load_config(args.config, args.overrides)
    configs = variant_configs(config, str(args.config)) if config.variants else {config.name: config}
    for variant in configs.values():
        check_search(variant, args.low, args.high, args.tolerance)
    print(f"SLO attainment target {config.slo.attainment_target:.0%}; rate scale searched in [{args.low}, {args.high}]")
    best = {}
    for name, variant in configs.items():
        def report(scale: float, offered: float, attainment: float, name: str = name) -> None:
            print(f"  {name}: scale {scale:.3f} ({offered:,.2f} req/s offered) -> attainment {attainment:.1%}")

        found = max_goodput(variant, base_dir, args.low, args.high, args.tolerance, report, progress,
                            name if len(configs) > 1 else "").best
        best[name] = found
        shown = (f"{found[1]:,.2f} req/s (scale {found[0]:.3f})" if found
                 else f"below the lowest scale tried ({args.low})")
        print(f"{name}: max goodput {shown}")
    return 0


def _validate_real(args: argparse.Namespace) -> int:
    import tempfile

    from servesim.sim.reporting.output_dir import claim_output
    from servesim.sim.reporting.output_target import resolve_target
    from servesim.sim.validation.real_runs import read_run
    from servesim.sim.validation.replay import ReplayOptions, replay, report, write_replay

    progress = options_from_args(args)
    run = read_run(args.run_dir)
    options = ReplayOptions(args.model, args.hardware, args.cost_model, list(args.overrides))
    default = Path("results/validate-real") / run.name.replace("/", "-")
    target = resolve_target(args.output if args.output is not None else default, args.overwrite)
    with claim_output(target, args.overwrite) as claim:
        with tempfile.TemporaryDirectory() as work:
            replayed = replay(run, options, Path(work), progress)
        write_replay(replayed, claim)
    print(report(replayed))
    print(f"results: {target.shown}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from servesim.hwmodels.catalog import list_hardware, list_models
    from servesim.policies import all_policies

    print("models:   " + ", ".join(list_models()))
    print("hardware: " + ", ".join(list_hardware()))
    entries = all_policies()
    width = max(len(entry.name) for entry in entries)
    print("policies, by kind (parameters indented: type, default, meaning):")
    for kind in dict.fromkeys(entry.kind for entry in entries):
        print(f"  {kind}:")
        for entry in (e for e in entries if e.kind == kind):
            origin = "" if entry.origin == "built-in" else f" [{entry.origin}]"
            print(f"    {entry.name:<{width}}  {entry.description}{origin}")
            for key, (type_name, default, description) in entry.parameters().items():
                print(f"    {'':<{width}}    {key} ({type_name}, default {default!r}): {description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
