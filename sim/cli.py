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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fp8accel",
        description="fp8accel: an FP8 training accelerator with chunked DLFloat16 accumulation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_synth(sub)
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
    sys.exit(main())
