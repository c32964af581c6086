"""The ``fp8accel`` command line.

Every subcommand prints a one-line error (never a traceback) for bad input and exits with 2.
"""

import argparse
import sys

__all__ = ["main", "CliError"]


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _add_synth(sub):
    from synth.flow import add_arguments, run_cli
    p = sub.add_parser("synth", help="synthesise a unit with Yosys and nextpnr and report "
                                     "Fmax and resources",
                       description="Synthesise one arithmetic unit with registered I/O through "
                                   "Yosys and nextpnr (YoWASP) and write a JSON report.")
    add_arguments(p)
    p.set_defaults(func=run_cli)


def _run_verify(args):
    from sim.verify import generate_verilog, run_checks
    if args.count < 1:
        raise CliError(f"--count must be at least 1, not {args.count}")
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
    p.add_argument("--count", type=int, default=20000,
                   help="random operations per add/FMA check (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    p.set_defaults(func=_run_verify)


def _add_gemm(sub):
    from sim.gemm_cli import add_gemm_parser
    add_gemm_parser(sub)


def _add_update(sub):
    from sim.update_cli import add_update_parser
    add_update_parser(sub)


def _add_demo(sub):
    from sim.gemm_cli import add_demo_parser
    add_demo_parser(sub)


def _add_train(sub):
    from sim.train import add_train_parser
    add_train_parser(sub)


def _add_study(sub):
    from sim.study import add_study_parser
    add_study_parser(sub)


def _add_bench(sub):
    from sim.bench import add_bench_parser
    add_bench_parser(sub)


def _add_build(sub):
    from synth.boards import add_build_parser
    add_build_parser(sub)


def build_parser():
    parser = argparse.ArgumentParser(
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
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except CliError as exc:
        print(f"fp8accel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as exc:
        print(f"fp8accel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fp8accel {args.command}: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    # Run as `python -m sim.cli`: go through the imported module, so that the CliError the
    # subcommands raise (imported from sim.cli) is the class main() catches.
    from sim.cli import main as _main
    sys.exit(_main())
