"""Verification summary of the arithmetic units: generate their Verilog, then run each against
the golden model in Amaranth's simulator and print a table of results."""

import sys
import time
from pathlib import Path

import numpy as np

from fp8accel.hw.fp import (DLFLOAT16, E4M3, E5M2, FPAdder, FPConvert, FPFMA, FPMultiplier)
from fp8accel.sim import golden
from fp8accel.sim.run.pysim import run_unit
from fp8accel.sim.run.units import UnitSpec
from fp8accel.sim.vectors import make_operations

__all__ = ["CHECKS", "generate_verilog", "run_checks"]


def _exhaustive_products(fmt):
    codes = np.arange(256)
    a, b = np.repeat(codes, 256), np.tile(codes, 256)
    unit = FPMultiplier(fmt, fmt, DLFLOAT16)
    return unit, {"a": a, "b": b}, "p", golden.mul(a, b, fmt, fmt, DLFLOAT16)


def _every_dlfloat16_code(fmt):
    a = np.arange(1 << 16)
    unit = FPConvert(DLFLOAT16, fmt, "rne", True)
    return unit, {"a": a}, "r", golden.convert(a, DLFLOAT16, fmt, "rne", True)


def _random(kind, mode, count, rng):
    spec = UnitSpec({"add": "adder"}.get(kind, kind), {"fmt": DLFLOAT16, "rounding": mode})
    ops = make_operations(spec, count, rng)
    return spec.build(), ops, spec.output[0], spec.golden(ops)


#: (name, builder(count, rng)) of every check in the summary.
CHECKS = [
    ("mul E5M2 x E5M2 -> DLFLOAT16, all 65,536 pairs", lambda n, r: _exhaustive_products(E5M2)),
    ("mul E4M3 x E4M3 -> DLFLOAT16, all 65,536 pairs", lambda n, r: _exhaustive_products(E4M3)),
    ("convert every DLFLOAT16 code -> E5M2 (rne, sat)", lambda n, r: _every_dlfloat16_code(E5M2)),
    ("convert every DLFLOAT16 code -> E4M3 (rne, sat)", lambda n, r: _every_dlfloat16_code(E4M3)),
] + [(f"{kind} DLFLOAT16 {mode}", lambda n, r, kind=kind, mode=mode: _random(kind, mode, n, r))
     for kind in ("add", "fma") for mode in ("rne", "rna", "rtz", "sr")]

#: Units written out as Verilog: (file stem, factory).
VERILOG = [
    ("fp_mul_e5m2_e5m2_dlfloat16", lambda: FPMultiplier(E5M2, E5M2, DLFLOAT16)),
    ("fp_mul_e4m3_e4m3_dlfloat16", lambda: FPMultiplier(E4M3, E4M3, DLFLOAT16)),
    ("fp_add_dlfloat16_rne", lambda: FPAdder(DLFLOAT16, "rne")),
    ("fp_fma_dlfloat16_sr", lambda: FPFMA(DLFLOAT16, "sr")),
    ("fp_convert_dlfloat16_e5m2", lambda: FPConvert(DLFLOAT16, E5M2)),
    ("fp_convert_dlfloat16_e4m3", lambda: FPConvert(DLFLOAT16, E4M3)),
]


def generate_verilog(out_dir):
    """Write the Verilog of the standard unit configurations; returns the paths."""
    from fp8accel.sim.run.runner import write_verilog
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, make in VERILOG:
        path = out / f"{stem}.v"
        write_verilog(make(), path, stem)
        paths.append(path)
    return paths


def run_checks(count=20000, seed=1, out=None):
    """Run every check; prints one line each (to ``out``, standard output by default) and
    returns the number of mismatching results."""
    # Looked up now rather than bound as a default: sys.stdout may have been replaced since
    # the import (pytest's capture does).
    out = sys.stdout if out is None else out
    rng = np.random.default_rng(seed)
    total_bad = 0
    print(f"{'check':52} {'vectors':>9} {'mismatches':>10} {'latency':>7} {'time':>7}",
          file=out)
    for name, build in CHECKS:
        start = time.monotonic()
        unit, ins, port, ref = build(count, rng)
        got = run_unit(unit, ins, port)
        bad = int(np.count_nonzero(got != np.asarray(ref, np.int64)))
        total_bad += bad
        print(f"{name:52} {got.size:9,} {bad:10,} {unit.latency:7} "
              f"{time.monotonic() - start:6.1f}s", file=out, flush=True)
    return total_bad
