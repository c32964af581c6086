"""The ``fp8accel`` command line.

Every subcommand prints a one-line error (never a traceback) for bad input and exits with 2,
before any work starts and without leaving a partial output file; the checks and the writes
are those of :mod:`sim.cli_util`.
"""

import argparse
import sys

from fp8accel.sim.cli.util import ArgumentParser, CliError, check_output_dir, non_negative_int, \
    positive_int

__all__ = ["main", "build_parser", "CliError"]


def _add_synth(sub):
    from fp8accel.sim.cli.synth import add_arguments, run_cli
    p = sub.add_parser("synth", help="synthesise a unit with Yosys and nextpnr and report "
                                     "Fmax and resources",
                       description="Synthesise one arithmetic unit with registered I/O through "
                                   "Yosys and nextpnr (YoWASP) and write a JSON report.")
    add_arguments(p)
    p.set_defaults(func=run_cli)


def _run_verify(args):
    from fp8accel.sim.run.verify import generate_verilog, run_checks
    check_output_dir(args.out)
    paths = generate_verilog(args.out)
    print(f"Wrote Verilog of {len(paths)} units to {args.out}/")
    bad = run_checks(args.count, args.seed)
    if bad:
        print(f"FAILED: {bad} results differ from the golden model")
        return 1
    print("All results match the golden model bit for bit.")
    return 0


def _add_verify(sub):
    p = sub.add_parser("verify", help="generate the units' Verilog and check them against the "
                                      "golden model",
                       description="Write the Verilog of the standard arithmetic units, then "
                                   "run each in Amaranth's simulator against the golden model: "
                                   "every FP8 product, every DLFLOAT16 conversion to FP8, and "
                                   "random plus edge-case adds and FMAs in all rounding modes.")
    p.add_argument("--out", default="build/verilog", help="Verilog output directory "
                                                           "(default: %(default)s)")
    p.add_argument("--count", type=positive_int("--count", 10_000_000), default=20000,
                   help="random operations per add/FMA check (default: %(default)s)")
    p.add_argument("--seed", type=non_negative_int("--seed"), default=1,
                   help="random seed (default: %(default)s)")
    p.set_defaults(func=_run_verify)


def _add_gemm(sub):
    from fp8accel.sim.cli.gemm import add_gemm_parser
    add_gemm_parser(sub)


def _add_update(sub):
    from fp8accel.sim.cli.update import add_update_parser
    add_update_parser(sub)


def _add_demo(sub):
    from fp8accel.sim.cli.gemm import add_demo_parser
    add_demo_parser(sub)


def _add_train(sub):
    from fp8accel.sim.cli.train import add_train_parser
    add_train_parser(sub)


def _add_study(sub):
    from fp8accel.sim.cli.study import add_study_parser
    add_study_parser(sub)


def _add_bench(sub):
    from fp8accel.sim.cli.bench import add_bench_parser
    add_bench_parser(sub)


def _add_build(sub):
    from fp8accel.sim.cli.build import add_build_parser
    add_build_parser(sub)


def _add_regs(sub):
    from fp8accel.sim.cli.regs import add_regs_parser
    add_regs_parser(sub)


def _add_verilog(sub):
    from fp8accel.sim.cli.verilog import add_verilog_parser
    add_verilog_parser(sub)


def _add_cache(sub):
    from fp8accel.sim.cli.cache import add_cache_parser
    add_cache_parser(sub)


def build_parser():
    """The ``fp8accel`` parser; every subcommand's argparse errors are one line."""
    parser = ArgumentParser(
        prog="fp8accel",
        description="fp8accel: an FP8 training accelerator with chunked DLFloat16 accumulation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_verify(sub)
    _add_gemm(sub)
    _add_update(sub)
    _add_demo(sub)
    _add_synth(sub)
    _add_build(sub)
    _add_train(sub)
    _add_study(sub)
    _add_bench(sub)
    _add_regs(sub)
    _add_verilog(sub)
    _add_cache(sub)
    return parser


def main(argv=None):
    """Run ``fp8accel`` with ``argv``; returns the exit status.

    argparse's own errors exit (status 2) from ``parse_args``; the argument types of
    :mod:`sim.cli_util` raise :class:`CliError` there, which is reported like the errors of
    the subcommands. The subparser stores the command's name in ``args`` before it parses the
    command's arguments, so the message names it.
    """
    parser = build_parser()
    args = argparse.Namespace(command=None)
    prog = "fp8accel"
    try:
        try:
            _, extra = parser.parse_known_args(argv, args)
        except SystemExit as exc:
            # argparse has printed its one line (or the help): the status, not an exit, so
            # that main() returns for every outcome.
            return exc.code
        prog = f"fp8accel {args.command}"
        if extra:
            # As argparse reports them, but naming the subcommand they were given to.
            parser.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(extra)}\n")
        status = args.func(args)
    except (CliError, ValueError, TypeError) as exc:
        prog = f"fp8accel {args.command}" if args.command else prog
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A write that failed after the checks (a full disk, a file system gone read-only).
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return status or 0
