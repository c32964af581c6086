"""``fp8accel verilog``: the accelerator top, the systolic array or an arithmetic unit as a
Verilog file, for another flow (a vendor's synthesis, a simulator, an SoC).

Every file starts with a comment that lists every parameter, the register-map version and the
``fp8accel verilog`` command that writes it again; the top's C header (:mod:`fp8accel.hw.regs`)
is written beside it.
"""

import shlex
import sys
from pathlib import Path

from fp8accel.sim.run.units import UNIT_KINDS

__all__ = ["add_verilog_parser", "run_verilog_cli", "verilog_text"]

#: The accumulator formats the array and the top take (16-bit formats).
ACC_FORMATS = ("dlfloat16", "binary16", "bfloat16")
#: Operand formats of ``fp8accel verilog unit``.
UNIT_FORMATS = ("e5m2", "e4m3", "dlfloat16", "binary16", "bfloat16", "binary32")
ROUNDINGS = ("rne", "rna", "rtz", "sr")
RAMS = ("lutram", "bram")


def add_verilog_parser(sub):
    from fp8accel.sim.cli.util import (
        STREAM_WIDTHS,
        ArgumentParser,
        array_size,
        int_arg,
        int_choice,
        positive_int,
    )

    p = sub.add_parser(
        "verilog", help="write the top, the array or a unit as Verilog",
        description="Write the accelerator top (AXI4-Lite and AXI4-Stream ports, with its C "
                    "header), the systolic array or one arithmetic unit as Verilog. The file "
                    "starts with every parameter and the command that writes it again.")
    kinds = p.add_subparsers(dest="design", metavar="DESIGN", required=True,
                             parser_class=ArgumentParser)

    def common(q, stem):
        q.add_argument("-o", "--out", required=True, metavar=f"{stem}.v",
                       help="the Verilog file to write")
        q.add_argument("--name", default=None, metavar="MODULE",
                       help="the top module's name (default: fp8accel_<design>)")

    top = kinds.add_parser(
        "top", help="the accelerator top",
        description="The accelerator top (hw.top.Accelerator): ports clk, rst, s_axil_*, "
                    "s_axis_*, m_axis_*; the C header of its registers is written beside it.")
    top.add_argument("--rows", type=array_size("--rows"), required=True, metavar="R")
    top.add_argument("--cols", type=array_size("--cols"), required=True, metavar="C")
    top.add_argument("--a-depth", type=positive_int("--a-depth"), default=1024, metavar="N",
                     help="words per A bank (default: %(default)s)")
    top.add_argument("--b-depth", type=positive_int("--b-depth"), default=4096, metavar="N",
                     help="bytes of B (default: %(default)s)")
    top.add_argument("--acc-depth", type=positive_int("--acc-depth"), default=1024,
                     metavar="N", help="accumulator words (default: %(default)s)")
    top.add_argument("--acc-fmt", type=str.lower, choices=ACC_FORMATS, default="dlfloat16",
                     help="accumulator format (default: %(default)s)")
    top.add_argument("--rbits", type=int_arg("--rbits", 1, 32), default=16, metavar="N",
                     help="random bits per stochastic rounding of the weight update "
                          "(default: %(default)s)")
    top.add_argument("--no-update", dest="update", action="store_false",
                     help="without the weight-update unit (CTRL.UPDATE fails with error 8)")
    top.add_argument("--no-fp8-out", dest="fp8_out", action="store_false",
                     help="without the FP8 output converters (READ_C in FP8 fails with "
                          "error 9)")
    top.add_argument("--no-stamps", dest="stamps", action="store_false",
                     help="without the time stamps CLOCK, FIRST_IN and LAST_OUT (CONFIG[31])")
    top.add_argument("--ram", type=str.lower, choices=RAMS, default="lutram",
                     help="the array's delay lines: lutram (ECP5) or bram (iCE40) "
                          "(default: %(default)s)")
    top.add_argument("--stream-width", type=int_choice("--stream-width", STREAM_WIDTHS),
                     default=64,
                     metavar="W", help="bits per AXI4-Stream beat: 16, 32, 64, 128 or 256 "
                                       "(default: %(default)s)")
    top.add_argument("--c-header", default=None, metavar="OUT.h",
                     help="where the C header goes (default: <out>_regs.h beside the "
                          "Verilog)")
    common(top, "accel")

    arr = kinds.add_parser(
        "array", help="the systolic array",
        description="The systolic array alone (hw.gemm.array.SystolicArray), without buffers "
                    "or controller.")
    arr.add_argument("--rows", type=array_size("--rows"), required=True, metavar="R")
    arr.add_argument("--cols", type=array_size("--cols"), required=True, metavar="C")
    arr.add_argument("--acc-fmt", type=str.lower, choices=ACC_FORMATS, default="dlfloat16",
                     help="accumulator format (default: %(default)s)")
    arr.add_argument("--in-fmt", type=str.lower, choices=("fp8", *UNIT_FORMATS),
                     default="fp8",
                     help="operand format; fp8: E5M2 or E4M3 per pass, as in the accelerator "
                          "(default: %(default)s)")
    arr.add_argument("--conventional", dest="chunked", action="store_false",
                     help="one running sum per column instead of chunk-based accumulation")
    arr.add_argument("--ram", type=str.lower, choices=RAMS, default="lutram",
                     help="delay lines in lutram or bram (default: %(default)s)")
    common(arr, "array")

    unit = kinds.add_parser(
        "unit", help="an arithmetic unit",
        description="One fixed-latency arithmetic unit of hw.fp, configured as for the "
                    "cocotb and synthesis runs.")
    unit.add_argument("kind", type=str.lower, choices=tuple(UNIT_KINDS), metavar="KIND",
                      help=f"one of {', '.join(UNIT_KINDS)}")
    fmts = {"type": str.lower, "choices": UNIT_FORMATS}
    unit.add_argument("--fmt", **fmts, help="adder, fma: operand and result format")
    unit.add_argument("--a-fmt", **fmts, help="multiplier: format of a")
    unit.add_argument("--b-fmt", **fmts, help="multiplier: format of b")
    unit.add_argument("--in-fmt", **fmts, help="convert: input format")
    unit.add_argument("--out-fmt", **fmts,
                      help="multiplier: product format; convert: output format")
    unit.add_argument("--rounding", type=str.lower, choices=ROUNDINGS,
                      help="adder, fma, convert: rounding mode (default rne)")
    unit.add_argument("--rbits", type=int_arg("--rbits", 1, 32), metavar="N",
                      help="adder, fma, convert: random bits of stochastic rounding (16)")
    unit.add_argument("--no-saturate", dest="saturate", action="store_const", const=False,
                      default=None, help="convert: overflow to Inf/NaN instead of saturating")
    common(unit, "unit")
    p.set_defaults(func=run_verilog_cli)


def _flag(name):
    return "--" + name.replace("_", "-")


def _design(args):
    """``(component, parameters, command)``: the design asked for, every parameter by name,
    and the ``fp8accel verilog`` arguments that describe it in full."""
    from fp8accel.sim.cli.util import CliError

    if args.design == "top":
        from fp8accel.hw.top import Accelerator
        params = {"rows": args.rows, "cols": args.cols, "a_depth": args.a_depth,
                  "b_depth": args.b_depth, "acc_depth": args.acc_depth,
                  "acc_fmt": args.acc_fmt, "update_rbits": args.rbits,
                  "update": args.update, "fp8_out": args.fp8_out, "ram": args.ram,
                  "stamps": args.stamps, "stream_width": args.stream_width}
        command = ["top", "--rows", args.rows, "--cols", args.cols,
                   "--stream-width", args.stream_width, "--a-depth", args.a_depth,
                   "--b-depth", args.b_depth, "--acc-depth", args.acc_depth, "--acc-fmt",
                   args.acc_fmt, "--rbits", args.rbits, "--ram", args.ram]
        command += [] if args.update else ["--no-update"]
        command += [] if args.fp8_out else ["--no-fp8-out"]
        command += [] if args.stamps else ["--no-stamps"]
        return Accelerator(**params), params, command
    if args.design == "array":
        from fp8accel.hw.gemm.array import SystolicArray
        in_fmt = None if args.in_fmt == "fp8" else args.in_fmt
        params = {"rows": args.rows, "cols": args.cols, "acc_fmt": args.acc_fmt,
                  "in_fmt": args.in_fmt, "chunked": args.chunked, "ram": args.ram}
        command = ["array", "--rows", args.rows, "--cols", args.cols, "--acc-fmt",
                   args.acc_fmt, "--in-fmt", args.in_fmt, "--ram", args.ram]
        command += [] if args.chunked else ["--conventional"]
        design = SystolicArray(args.rows, args.cols, args.acc_fmt, in_fmt,
                               chunked=args.chunked, ram=args.ram)
        return design, params, command
    from fp8accel.sim.run.units import UnitSpec
    given = {name: getattr(args, name) for name in
             ("fmt", "a_fmt", "b_fmt", "in_fmt", "out_fmt", "rounding", "rbits", "saturate")
             if getattr(args, name) is not None}
    takes = UNIT_KINDS[args.kind]
    unknown = sorted(set(given) - set(takes))
    if unknown:
        flags = ", ".join("--no-saturate" if n == "saturate" else _flag(n) for n in unknown)
        raise CliError(f"{flags} does not apply to the {args.kind}; it takes "
                       f"{', '.join(_flag(n) for n in takes)}")
    missing = [n for n, default in takes.items() if default is None and n not in given]
    if missing:
        raise CliError(f"the {args.kind} needs {', '.join(_flag(n) for n in missing)}")
    spec = UnitSpec(args.kind, given)
    params = dict(spec.options)
    command = ["unit", args.kind]
    for name, value in params.items():
        if name == "saturate":
            command += [] if value else ["--no-saturate"]
        else:
            command += [_flag(name), value]
    return spec.build(), params, command


def verilog_text(design, name, params, command, c_header=None):
    """The Verilog of ``design`` as module ``name``, after a comment naming every parameter
    (``params``), the command (``fp8accel verilog`` and ``command``) that writes it again and,
    for the top, the register-map version and its C header ``c_header``."""
    import amaranth
    from amaranth.back import verilog

    from fp8accel.hw.axi import verilog_ports

    from fp8accel.hw.regs import ID_VALUE, REGMAP_VERSION

    text = verilog.convert(design, name=name, emit_src=False, ports=verilog_ports(design))
    lines = [f"// {name}: fp8accel, Verilog from Amaranth {amaranth.__version__}.",
             "// Parameters:"]
    width = max(map(len, params))
    lines += [f"//   {key:<{width}} = {value}" for key, value in params.items()]
    if c_header is not None:
        lines.append(f"// Register map version {REGMAP_VERSION} (ID register "
                     f"0x{ID_VALUE:08X}); C header: {c_header}.")
    lines.append("// Generated by: " + shlex.join(["fp8accel", "verilog",
                                                   *map(str, command)]))
    return "\n".join(lines) + "\n" + text


def run_verilog_cli(args):
    from fp8accel.sim.cli.regs import write_c_header
    from fp8accel.sim.cli.util import check_distinct_outputs, check_output_file
    from fp8accel.sim.files import write_text

    out = check_output_file(args.out, "-o", (".v",))
    header = None
    if args.design == "top":
        header = Path(args.c_header) if args.c_header is not None else \
            out.with_name(f"{out.stem}_regs.h")
        check_output_file(header, "--c-header", (".h",))
        check_distinct_outputs({"-o": str(out), "--c-header": str(header)})
    name = args.name or f"fp8accel_{args.design if args.design != 'unit' else args.kind}"
    if not name.isidentifier():
        from fp8accel.sim.cli.util import CliError
        raise CliError(f"--name must be a Verilog identifier, not {name!r}")
    # The design is built (its parameters checked) before anything is written, and converted
    # at once.
    design, params, command = _design(args)
    command = [*command, "--name", name] if args.name else command
    command = [*command, "-o", str(out)]
    if header is not None and args.c_header is not None:
        command += ["--c-header", str(header)]
    text = verilog_text(design, name, params, command,
                        None if header is None else header.name)
    write_text(out, text)
    wrote = [str(out)]
    if header is not None:
        write_c_header(header, generator=shlex.join(["fp8accel", "verilog",
                                                     *map(str, command)]))
        wrote.append(str(header))
    print(f"Wrote {' and '.join(wrote)}", file=sys.stderr)
    return 0
