"""``fp8accel synth``: the command line of :mod:`fp8accel.synth.flow` and
:mod:`fp8accel.synth.sweep`."""

import json
import shlex
import sys

from fp8accel.sim.cli.util import (
    CliError,
    check_distinct_outputs,
    check_output_dir,
    check_output_file,
    int_arg,
    positive_float,
    positive_int,
)
from fp8accel.sim.files import write_text
from fp8accel.synth.flow import TARGETS, UNITS, SynthError, synthesize_unit

__all__ = ["add_arguments", "run_cli"]


def add_arguments(parser):
    """Add the ``fp8accel synth`` arguments to ``parser``."""
    # UNIT and --target are checked in `run_cli` rather than with argparse choices, so that the
    # message lists them; the numbers' types raise CliError (sim.cli_util).
    parser.add_argument("unit", metavar="UNIT",
                        help=f"one of {', '.join(UNITS)}; or sweep (many sizes and formats, "
                             f"one table), area (the area study of docs/fpga.md) or parts "
                             f"(where the top's LUTs go, Yosys only)")
    parser.add_argument("--target", required=True, metavar="TARGET",
                        help=f"one of {', '.join(TARGETS)}")
    parser.add_argument("--seeds", type=positive_int("--seeds"), default=3, metavar="N",
                        help="nextpnr runs with seeds 1..N; Fmax is their median (default 3)")
    parser.add_argument("--freq", type=positive_float("--freq"), default=None, metavar="MHZ",
                        help="nextpnr target frequency (default 200 for ECP5, 50 for iCE40); "
                             "missing it is reported, not an error")
    parser.add_argument("--json", default=None, metavar="OUT.json",
                        help="write the report here (default: standard output)")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="run in DIR and keep every intermediate file and log")
    parser.add_argument("--jobs", type=positive_int("--jobs"), default=1, metavar="N",
                        help="seeds placed and routed side by side, one core each (default 1)")
    parser.add_argument("--router", default=None, type=str.lower, choices=("router1", "router2"),
                        help="nextpnr router (default: router2 for top and array, "
                             "nextpnr's own (router1) otherwise)")
    parser.add_argument("--estimate", action="store_true",
                        help="stop after Yosys: LUTs needed and whether the design fits the "
                             "device, without place and route (area: the arrays only)")
    parser.add_argument("--synth-args", default="", metavar="ARGS",
                        help="extra options of synth_ecp5/synth_ice40, e.g. "
                             "--synth-args='-nodsp -dff'")
    many = parser.add_argument_group("sweep and area")
    many.add_argument("--of", default="top", metavar="UNIT", type=str.lower,
                      choices=("top", "array", "pe"),
                      help="sweep: the unit swept, top, array or pe (default top)")
    many.add_argument("--sizes", default="2x2,4x4,8x8", metavar="RxC,...",
                      help="sweep: array sizes (default %(default)s)")
    many.add_argument("--formats", default="fp8/dlfloat16", metavar="IN/ACC,...",
                      help="sweep: operand/accumulator format pairs, e.g. "
                           "fp8/dlfloat16,binary16/binary32/conventional (a conventional "
                           "array, one running sum) (default %(default)s)")
    many.add_argument("--array-seeds", type=positive_int("--array-seeds"), default=None,
                      metavar="N", help="area: nextpnr seeds of the arrays (default --seeds)")
    many.add_argument("--markdown", default=None, metavar="OUT.md",
                      help="sweep, area: write the table here too")
    many.add_argument("--plot", default=None, metavar="OUT.png",
                      help="sweep: plot peak throughput against LUTs")
    unit = parser.add_argument_group("unit options (defaults depend on UNIT)")
    unit.add_argument("--fmt", help="adder, fma: operand and result format (dlfloat16)")
    unit.add_argument("--a-fmt", help="multiplier: format of a (e5m2)")
    unit.add_argument("--b-fmt", help="multiplier: format of b (e5m2)")
    unit.add_argument("--in-fmt", help="convert: input format (dlfloat16); pe, array: operand "
                                       "format (fp8: E5M2 or E4M3 per command)")
    unit.add_argument("--out-fmt", help="multiplier: product format (dlfloat16); "
                                        "convert: output format (e5m2)")
    unit.add_argument("--rounding", metavar="{rne,rna,rtz,sr}",
                      help="adder, fma, convert: rounding mode (rne)")
    unit.add_argument("--rbits", type=positive_int("--rbits"), metavar="N",
                      help="adder, fma, convert, update: random bits of stochastic rounding "
                           "(16)")
    unit.add_argument("--rows", type=int_arg("--rows", 1, 64), metavar="R",
                      help="array, top, area: array rows (8)")
    unit.add_argument("--cols", type=int_arg("--cols", 1, 64), metavar="C",
                      help="array, top, area: array columns (8)")
    unit.add_argument("--acc-fmt", help="pe, array, top: accumulator format (dlfloat16)")
    unit.add_argument("--conventional", dest="chunked", action="store_const", const=False,
                      default=None, help="pe, array: one running sum per column instead of "
                                         "chunk-based accumulation")
    unit.add_argument("--product", choices=("logic", "dsp"), default=None,
                      help="multiplier, pe, array: the significand product in logic or as a "
                           "`*` that Yosys maps to a DSP block (logic)")
    unit.add_argument("--no-saturate", dest="saturate", action="store_const", const=False,
                      default=None, help="convert: overflow to Inf/NaN instead of saturating")


def _check_outputs(args):
    """The report files and ``--keep``, before any tool runs."""
    for option in ("json", "markdown", "plot"):
        if getattr(args, option) is not None:
            suffixes = None
            if option == "plot":
                # The formats matplotlib writes, known by the name's suffix.
                from matplotlib.backend_bases import FigureCanvasBase
                formats = FigureCanvasBase.get_supported_filetypes()
                suffixes = tuple(f".{f}" for f in sorted(formats))
            check_output_file(getattr(args, option), f"--{option}", suffixes)
    check_distinct_outputs({f"--{o}": getattr(args, o) for o in ("json", "markdown", "plot")})
    if args.keep is not None:
        check_output_dir(args.keep)


def run_cli(args):
    """Run ``fp8accel synth``; return the exit status."""
    if args.unit not in (*UNITS, "sweep", "area", "parts"):
        raise CliError(f"unknown unit {args.unit!r}; expected one of {', '.join(UNITS)}, "
                       f"sweep, area or parts")
    if args.target not in TARGETS:
        raise CliError(f"unknown target {args.target!r}; expected one of {', '.join(TARGETS)}")
    if args.unit in ("sweep", "area", "parts"):
        return _run_many(args)
    for option, default in (("of", "top"), ("sizes", "2x2,4x4,8x8"),
                            ("formats", "fp8/dlfloat16"), ("markdown", None), ("plot", None)):
        if getattr(args, option) != default:
            raise CliError(f"--{option} applies to sweep and area only")
    if args.array_seeds is not None:
        raise CliError("--array-seeds applies to area only")
    router = args.router
    opts = {name: getattr(args, name) for name in
            ("fmt", "a_fmt", "b_fmt", "in_fmt", "out_fmt", "rounding", "rbits", "saturate",
             "rows", "cols", "acc_fmt", "chunked", "product")
            if getattr(args, name) is not None}
    unknown = set(opts) - set(UNITS[args.unit])
    if unknown:
        special = {"saturate": "--no-saturate", "chunked": "--conventional"}
        flags = ", ".join(special.get(name, "--" + name.replace("_", "-"))
                          for name in sorted(unknown))
        raise CliError(f"{flags} does not apply to the {args.unit}")
    _check_outputs(args)

    try:
        result = synthesize_unit(args.unit, args.target, seeds=args.seeds, freq_mhz=args.freq,
                                 workdir=args.keep, router=router, jobs=args.jobs,
                                 extra_synth_args=shlex.split(args.synth_args),
                                 estimate_only=args.estimate, **opts)
    except SynthError as exc:
        # A tool failure rather than a user error: exit status 1.
        print(f"fp8accel synth: error: {exc}", file=sys.stderr)
        return 1

    text = json.dumps(result, indent=2) + "\n"
    if args.json is None:
        sys.stdout.write(text)
    else:
        write_text(args.json, text)
    if args.estimate:
        print(f"{args.unit} on {args.target}: {result['yosys_luts']:,} LUTs after synthesis of "
              f"{result['luts_available']:,}: "
              f"{'fits' if result['fits'] else 'does not fit'}", file=sys.stderr)
        return 0
    fmax = result["fmax_mhz"]
    print(f"{args.unit} on {args.target}: "
          + (f"{fmax:.1f} MHz" if fmax is not None else "no register-to-register path")
          + f" (target {result['freq_mhz']:g} MHz{'' if result['timing_met'] else ', not met'}), "
          f"{result['comb']} comb, {result['ff']} FF, {result['dsp']} DSP, {result['bram']} BRAM, "
          f"latency {result['latency']}", file=sys.stderr)
    return 0


def _run_many(args):
    """``fp8accel synth sweep``, ``fp8accel synth area`` and ``fp8accel synth parts``."""
    from fp8accel.synth import sweep as sw

    seeds, jobs, freq = args.seeds, args.jobs, args.freq
    wrong = [name for name in ("fmt", "a_fmt", "b_fmt", "out_fmt", "rounding", "rbits",
                               "saturate", "in_fmt", "acc_fmt", "product")
             if getattr(args, name) is not None]
    if wrong:
        raise CliError(f"--{wrong[0].replace('_', '-')} does not apply to {args.unit}; "
                       f"give formats with --formats")
    if args.unit == "parts" and (args.seeds != 3 or args.freq is not None or args.jobs != 1
                                 or args.plot is not None or args.chunked is not None):
        raise CliError("parts runs Yosys only: --seeds, --freq, --jobs, --plot and "
                       "--conventional do not apply")
    if args.synth_args or args.router is not None or (args.estimate and args.unit != "area"):
        raise CliError(f"--synth-args, --router and --estimate do not apply to {args.unit}")
    if args.array_seeds is not None and args.unit != "area":
        raise CliError("--array-seeds applies to area only")
    if args.unit == "sweep":
        if args.rows is not None or args.cols is not None:
            raise CliError("give sweep sizes with --sizes, not --rows/--cols")
        sizes = sw.parse_sizes(args.sizes)
        formats = sw.parse_formats(args.formats)
        of = args.of
    else:
        if args.plot is not None or args.chunked is not None:
            raise CliError(f"--plot and --conventional do not apply to {args.unit}")
        if args.sizes != "2x2,4x4,8x8" or args.formats != "fp8/dlfloat16" or args.of != "top":
            raise CliError("--sizes, --formats and --of apply to sweep only")
    _check_outputs(args)
    try:
        if args.unit == "sweep":
            rows = sw.sweep(args.target, unit=of, sizes=sizes, formats=formats,
                            chunked=args.chunked is not False, seeds=seeds, freq_mhz=freq,
                            jobs=jobs, workdir=args.keep)
            data = {"target": args.target, "unit": of, "seeds": seeds, "rows": rows}
            text = sw.sweep_markdown(rows)
            if args.plot is not None:
                sw.plot_sweep(rows, args.plot)
        elif args.unit == "parts":
            from fp8accel.synth.parts import parts_markdown, parts_study
            r = 8 if args.rows is None else args.rows
            c = 8 if args.cols is None else args.cols
            data = parts_study(args.target, rows=r, cols=c, workdir=args.keep,
                               progress=lambda line: print(line, file=sys.stderr))
            text = parts_markdown(data)
        else:
            r = 8 if args.rows is None else args.rows
            c = 8 if args.cols is None else args.cols
            data = sw.area_study(args.target, rows=r, cols=c, seeds=seeds,
                                 freq_mhz=100.0 if freq is None else freq, jobs=jobs,
                                 workdir=args.keep, array_seeds=args.array_seeds,
                                 array_estimate=args.estimate)
            text = sw.area_markdown(data)
    except SynthError as exc:
        print(f"fp8accel synth: error: {exc}", file=sys.stderr)
        return 1
    sw.write_reports(data, text, json_path=args.json, markdown_path=args.markdown)
    if args.json is None:
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
    sys.stderr.write(text)
    return 0
